"""sar-export refuses an unusable or unsafe OUTDIR in one line before any work, and never deletes what it did
not write: the bundle replaces OUTDIR as a whole, so OUTDIR must be new, empty or a bundle of its own."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from export.cli import main as export_main
from export.retire import main as retire_main
from export.retire import retire_bundle
from sar_compress_plugin.core.preprocessing import PreprocessingParams
from trainer.checkpoint import make_checkpoint, save_checkpoint
from trainer.registry import create_model

SAMPLES = Path(__file__).resolve().parents[2] / "sar_compress_plugin" / "sample_data"
SCENE = SAMPLES / "s1_iw_grd_frankfurt_512.tif"


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[],
                                    preprocessing_params=PreprocessingParams(clip_db=(20.0, 60.0)).to_dict(),
                                    config={}, data_summary={}), path)
    return path


def _export(ckpt: Path, out: Path | str) -> int:
    return export_main([str(ckpt), str(out), "--calibration", str(SCENE), "--tile", "64", "--max-tiles", "1"])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_outdir_holding_the_input_checkpoint_is_refused(tmp_path, capsys):
    (tmp_path / "w" / "sub").mkdir(parents=True)
    ckpt = _checkpoint(tmp_path / "w" / "best.pth")
    before = ckpt.read_bytes()
    assert _export(ckpt, tmp_path / "w") == 2
    assert "holds the input checkpoint" in _one_error_line(capsys)
    assert ckpt.read_bytes() == before and (tmp_path / "w" / "sub").is_dir()


@pytest.mark.parametrize("outdir", ["", ".", "here"])
def test_a_folder_with_other_files_is_refused(tmp_path, capsys, monkeypatch, outdir):
    ckpt = _checkpoint(tmp_path / "c.pth")
    here = tmp_path / "here"
    here.mkdir()
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here if outdir != "here" else tmp_path)
    assert _export(ckpt, outdir) == 2
    assert ("outdir is an empty path" if outdir == "" else "is not a model bundle to replace (it holds notes.txt)") \
        in _one_error_line(capsys)
    assert (here / "notes.txt").read_text() == "mine"


def test_an_existing_file_or_unwritable_place_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    ckpt = _checkpoint(tmp_path / "c.pth")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    monkeypatch.setattr("export.cli.load_model", lambda *a, **k: pytest.fail("work started"))
    cases = [(afile, "exists and is not a folder"), (afile / "x", "afile: exists and is not a folder")]
    if os.path.isdir("/proc/self"):  # Linux: a folder nothing can be created in
        cases.append((Path("/proc/x"), "cannot write there"))
    for outdir, message in cases:
        assert _export(ckpt, outdir) == 2
        assert message in _one_error_line(capsys)
    assert afile.read_text() == "keep"


def test_a_bundle_is_replaced_but_not_one_holding_other_files(tmp_path, capsys, caplog):
    ckpt = _checkpoint(tmp_path / "c.pth")
    out = tmp_path / "bundle"
    assert _export(ckpt, out) == 0
    first = json.loads((out / "manifest.json").read_text())
    capsys.readouterr()
    with caplog.at_level("INFO"):
        assert _export(ckpt, out) == 0
    assert "replacing the model bundle" in caplog.text
    assert json.loads((out / "manifest.json").read_text())["files"] == first["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "c.pth"]  # no work or aside folders left
    capsys.readouterr()
    (out / "my_notes.txt").write_text("mine")
    assert _export(ckpt, out) == 2
    assert "it holds my_notes.txt" in _one_error_line(capsys)
    assert (out / "my_notes.txt").exists() and (out / "manifest.json").exists()


def test_a_failed_export_leaves_no_new_parent_folders(tmp_path, capsys):
    """OUTDIR's parent is created to check it before the work; an export that then fails removes it again."""
    assert _export(tmp_path / "absent.pth", tmp_path / "new" / "models" / "mine") == 2
    assert "no such checkpoint file" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_an_export_does_not_replace_a_retired_models_decode_only_copy(tmp_path, capsys, tiny_bundle):
    """The decode-only copy a retired model keeps in the plugin (export/retire.py) is all that decodes the files
    it wrote, and it is a bundle of this format like any other: an export into its folder replaced it."""
    retired = tmp_path / "models" / "tiny-v1"
    retired.parent.mkdir()
    retire_bundle(tiny_bundle, retired)
    before = _tree(retired)
    assert _export(_checkpoint(tmp_path / "c.pth"), retired) == 2
    assert "decode-only copy of the retired model 'tiny'" in _one_error_line(capsys)
    assert _tree(retired) == before
    assert sorted(p.name for p in retired.parent.iterdir()) == ["tiny-v1"]


def test_retire_replaces_a_bundle_but_never_a_folder_of_other_files(tmp_path, capsys, tiny_bundle):
    """`python -m export.retire BUNDLE DEST` deleted whatever DEST was (shutil.rmtree) before moving the copy in:
    a slip of the destination (the models folder itself, a run folder) lost it all."""
    models = tmp_path / "models"
    shutil.copytree(tiny_bundle, models / "default")
    (models / "notes.txt").write_text("mine")
    for dest in (models, models / "notes.txt"):
        assert retire_main([str(models / "default"), str(dest)]) == 2
        _one_error_line(capsys)
    assert sorted(p.name for p in models.iterdir()) == ["default", "notes.txt"]
    assert (models / "notes.txt").read_text() == "mine" and _tree(models / "default") == _tree(tiny_bundle)
    assert retire_main([str(models / "default"), str(models / "tiny-v1")]) == 0
    assert retire_main([str(models / "default"), str(models / "tiny-v1")]) == 0  # a decode-only copy is replaced
    assert sorted(p.name for p in models.iterdir()) == ["default", "notes.txt", "tiny-v1"]


def _checkpoint_with(path: Path, bad_weight: str) -> Path:
    torch.manual_seed(0)
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    with torch.no_grad():
        dict(model.named_parameters())[bad_weight].view(-1)[0] = float("nan")
    save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[],
                                    preprocessing_params=PreprocessingParams(clip_db=(20.0, 60.0)).to_dict(),
                                    config={}, data_summary={}), path)
    return path


@pytest.mark.parametrize("bad_weight", ["g_s.6.bias", "g_a.0.bias"])
def test_a_checkpoint_with_non_finite_weights_is_refused_in_one_line(tmp_path, capsys, bad_weight):
    """A NaN in g_s (a diverged run, an fp16 warm start of a weight over 65504) ended the export in a
    StopIteration traceback from the decoder-reach probe; one in g_a in the hyperprior's "cannot convert float
    NaN to integer"."""
    ckpt = _checkpoint_with(tmp_path / "c.pth", bad_weight)
    assert _export(ckpt, tmp_path / "out") == 2
    assert f"non-finite (NaN or infinite) weights in {bad_weight}" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


def test_a_parity_check_giving_nan_fails_the_export(tmp_path, capsys, monkeypatch):
    """An ONNX file whose outputs are NaN makes the parity difference NaN, and `max(nan, d) > tolerance` is False:
    the export wrote a bundle that looked verified. Now a NaN difference fails the check like a large one."""
    monkeypatch.setattr("export.onnx_export._max_abs_diff", lambda *a: float("nan"))
    assert _export(_checkpoint(tmp_path / "c.pth"), tmp_path / "out") == 2
    assert "ONNX output differs from PyTorch" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]  # no bundle, no work folder


def test_a_float16_decoder_giving_nan_fails_the_export(tmp_path, capsys, monkeypatch):
    """--fp16 took the larger of the encoder's and the decoder's differences with max(), and max(d, nan) is d:
    a float16 decoder whose outputs were NaN passed its check and shipped in the bundle."""
    import export.onnx_export as onnx_export

    real_session, real_diff, paths = onnx_export._session, onnx_export._max_abs_diff, {}

    def session(path):
        made = real_session(path)
        paths[id(made)] = Path(path).name
        return made

    def nan_for_the_float16_decoder(session, inputs, reference):
        diff = real_diff(session, inputs, reference)
        return float("nan") if paths.get(id(session)) == "decoder_fp16.onnx" else diff

    monkeypatch.setattr(onnx_export, "_session", session)
    monkeypatch.setattr(onnx_export, "_max_abs_diff", nan_for_the_float16_decoder)
    ckpt = _checkpoint(tmp_path / "c.pth")
    args = [str(ckpt), str(tmp_path / "out"), "--calibration", str(SCENE), "--tile", "64", "--max-tiles", "1", "--fp16"]
    assert export_main(args) == 2
    assert "float16 copy differs from float32 by nan" in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


@pytest.mark.parametrize("option, value, says", [("--halo", "20", "--halo must be a multiple of 16"),
                                                 ("--halo", "-16", "--halo must be a multiple of 16"),
                                                 ("--max-tiles", "0", "--max-tiles must be >= 1"),
                                                 ("--tile", "100", "--tile must be a positive multiple of 64")])
def test_numbers_the_codec_or_the_export_cannot_use_are_one_line_before_any_work(tmp_path, capsys, option, value,
                                                                                 says):
    """--halo 20 wrote a bundle the codec then refused to load ("halo a multiple of it"); --halo -16 and
    --max-tiles 0 ended in StopIteration and ValueError tracebacks once the model and scenes had loaded."""
    ckpt = _checkpoint(tmp_path / "c.pth")
    assert export_main([str(ckpt), str(tmp_path / "out"), "--calibration", str(SCENE), "--tile", "64",
                        "--max-tiles", "1", option, value]) == 2
    assert says in _one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


def test_an_empty_outdir_or_checkpoint_is_refused_not_read_as_the_current_folder(tmp_path, capsys, monkeypatch):
    """`sar-export CKPT "$OUT"` with OUT unset: Path("") is ".", and run in an empty folder the export replaced
    that folder, the shell's current one, with the bundle (a new folder under its name)."""
    ckpt = _checkpoint(tmp_path / "last.pth")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    for args in ([str(ckpt), ""], ["", "bundle"], [str(ckpt), "bundle", "--calibration", ""]):
        assert export_main([*args, "--tile", "64", "--max-tiles", "1"]) == 2
        assert _one_error_line(capsys).rstrip().endswith("is an empty path")
    assert here.stat().st_ino == inode and os.listdir(here) == []
