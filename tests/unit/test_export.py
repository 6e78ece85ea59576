"""ONNX export: bundle contents, parity with PyTorch on real SAR tiles, metadata, clear failures."""

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import onnx_export
from export.cli import main as export_main
from sar_compress_plugin.core.preprocessing import PreprocessingParams
from trainer.checkpoint import make_checkpoint, save_checkpoint
from trainer.registry import available_models, create_model

SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"


def small_checkpoint(tmp_path: Path, variant: str, **shape) -> Path:
    torch.manual_seed(0)
    model = create_model(variant, channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01, 0.1],
                         **shape)
    ckpt = make_checkpoint(model, epoch=1, step=3, best_val_loss=0.5,
                           history=[{"epoch": 1, "train_loss": 0.6, "val_loss": 0.5, "val_psnr": 20.0, "val_ssim": 0.4}],
                           preprocessing_params=PreprocessingParams(clip_db=(20.0, 60.0)).to_dict(),
                           config={"variant": variant}, data_summary={"train_scenes": ["x"], "val_scenes": []})
    path = tmp_path / f"{variant}.pth"
    save_checkpoint(ckpt, path)
    return path


@pytest.mark.parametrize("variant", available_models())
def test_export_writes_verified_bundle(tmp_path, variant):
    ckpt = small_checkpoint(tmp_path, variant)
    out = tmp_path / "bundle"
    rc = export_main([str(ckpt), str(out), "--calibration", str(SCENE), "--tile", "64", "--max-tiles", "4"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["variant"] == variant and manifest["latent_channels"] == 16
    assert manifest["downsampling_factor"] == 16
    assert manifest["preprocessing"]["clip_db"] == [20.0, 60.0]
    for role in ("encoder", "decoder"):
        entry = manifest["files"][role]
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        props = {p.key: p.value for p in onnx.load(str(out / entry["path"])).metadata_props}
        assert json.loads(props["sar_compress"])["variant"] == variant
    assert manifest["parity"]["encoder_max_rel_diff"] <= 1e-4
    assert manifest["parity"]["decoder_max_abs_diff"] <= 1e-4
    # the decoder is exported with sub-pixel convolutions (export/subpixel.py) but for its one-channel last layer
    ops = [n.op_type for n in onnx.load(str(out / manifest["files"]["decoder"]["path"])).graph.node]
    assert ops.count("ConvTranspose") == 1 and "DepthToSpace" in ops
    assert manifest["version"] == 2 and "quantization" not in manifest
    reach = manifest["decoder_reach"]  # measured (export/decoder_reach.py), within the 2-cell halo
    assert 0 <= reach["before"] <= 2 and 0 <= reach["after"] <= 2
    if variant == "baseline":
        assert reach == {"before": 1, "after": 2}
    rate = manifest["rate"]
    assert rate["levels"] == len(rate["lambdas"]) >= 2 and 0 <= rate["default_quality"] <= rate["levels"] - 1
    for role in ("hyper_encoder", "hyperprior"):
        entry = manifest["files"][role]
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    hp = manifest["hyperprior"]
    assert hp["y_symbols"] == [-1023, 1023] and hp["hyper_encoder_max_rel_diff"] <= 1e-4
    assert [v["level"] for v in hp["integer_vs_float"]["levels"]] == list(range(rate["levels"]))
    from sar_compress_plugin.core.runtime import OnnxCodecModel  # noqa: PLC0415

    m = OnnxCodecModel(out, device="cpu")  # the codec loads what export wrote
    assert m.hyperprior.levels == rate["levels"] and m.hyperprior.latent_channels == 16
    # dynamic batch and spatial axes: a shape never seen at export time runs
    sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.zeros((3, 1, 48, 80), np.float32)})[0].shape == (3, 16, 3, 5)


def test_a_narrowed_decoder_exports_with_its_width_and_parity(tmp_path):
    """A --decoder-channels model (trainer/narrow.py) exports like any other: the manifest records the width,
    the decoder graph has it, and the parity checks hold."""
    out = tmp_path / "bundle"
    rc = export_main([str(small_checkpoint(tmp_path, "baseline", decoder_channels=3)), str(out), "--calibration",
                      str(SCENE), "--tile", "64", "--max-tiles", "2"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model_config"]["decoder_channels"] == 3
    assert manifest["parity"]["decoder_max_abs_diff"] <= 1e-4
    graph = onnx.load(str(out / manifest["files"]["decoder"]["path"])).graph
    last = next(n for n in graph.node if n.op_type == "ConvTranspose")
    weight = next(t for t in graph.initializer if t.name == last.input[1])
    assert list(weight.dims)[:2] == [3, 1]


def test_float16_copy_is_checked(tmp_path):
    ckpt = small_checkpoint(tmp_path, "baseline")
    out = tmp_path / "bundle16"
    assert export_main([str(ckpt), str(out), "--calibration", str(SCENE), "--tile", "64", "--max-tiles", "2",
                        "--fp16"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "decoder_fp16" in manifest["files"]
    assert manifest["parity"]["float16_max_diff"] <= manifest["parity"]["float16_tolerance"]


def test_parity_failure_leaves_no_bundle(tmp_path, monkeypatch):
    ckpt = small_checkpoint(tmp_path, "baseline")
    monkeypatch.setattr(onnx_export, "FLOAT32_ATOL", -1.0)  # no export can pass: the check must fire
    out = tmp_path / "bad"
    assert export_main([str(ckpt), str(out), "--calibration", str(SCENE), "--tile", "64", "--max-tiles", "1"]) == 2
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    assert export_main([str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "broken.pth" in err and err.startswith("error:")


def _save_tiny(path: Path, history: list[dict], step: int) -> Path:
    """A small baseline model's checkpoint at `step` with `history`, as sar-train writes it."""
    torch.manual_seed(0)
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    ckpt = make_checkpoint(model, epoch=len(history) or 1, step=step, best_val_loss=0.4, history=history,
                           preprocessing_params=PreprocessingParams(clip_db=(20.0, 60.0)).to_dict(),
                           config={}, data_summary={})
    save_checkpoint(ckpt, path)
    return path


def _export_tiny(ckpt: Path, out: Path) -> int:
    return export_main([str(ckpt), str(out), "--calibration", str(SCENE), "--tile", "64", "--max-tiles", "1"])


def test_manifest_validation_is_that_of_the_exported_weights(tmp_path):
    """A last.pth whose history has a better epoch earlier: the manifest reports the epoch that ended at the
    checkpoint's own step, not the best one (other weights)."""
    history = [{"epoch": 1, "step": 2, "val_loss": 0.4, "val_psnr": 21.0},
               {"epoch": 2, "step": 3, "val_loss": 0.5, "val_psnr": 20.0}]
    out = tmp_path / "bundle"
    assert _export_tiny(_save_tiny(tmp_path / "last.pth", history, 3), out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["step"] == 3 and manifest["validation"]["val_loss"] == 0.5
    assert manifest["training"]["steps"] == manifest["training"]["steps_total"] == 3  # not a branch


def test_default_calibration_reads_the_runs_scenes_in_the_runs_domain(tmp_path):
    """A run trained on a folder of dB chips without a manifest (`sar-train --domain sigma0_db`) was calibrated
    on its validation scenes read as linear intensity: their negative dB values invalid, bands skipped or
    all noise floor (here: no usable tile at all, the export refused). They are read in the run's --domain."""
    data = tmp_path / "chips"
    data.mkdir()
    rng = np.random.default_rng(0)
    np.save(data / "chip.npy", rng.uniform(-25.0, -5.0, (128, 128)).astype(np.float32))  # sigma0 in dB
    torch.manual_seed(0)
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    ckpt = tmp_path / "last.pth"
    save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[],
                                    preprocessing_params=PreprocessingParams(input_domain="db",
                                                                             clip_db=(-25.0, -5.0)).to_dict(),
                                    config={"data": str(data), "domain": "sigma0_db"},
                                    data_summary={"data": str(data), "val_scenes": ["chip.npy"]}), ckpt)
    out = tmp_path / "bundle"
    assert export_main([str(ckpt), str(out), "--tile", "64", "--max-tiles", "8"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["tiles"] == 4  # the whole 128 x 128 chip, valid, in 64-px tiles
