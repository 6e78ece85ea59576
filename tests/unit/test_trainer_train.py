"""sar-train end to end on one real shared scene, checkpoints, resume, NaN skipping, bad inputs."""

import json
import math
from pathlib import Path

import pytest
import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.checkpoint import REQUIRED_KEYS, CheckpointError, load_model
from trainer.cli import main
from trainer.config import ConfigError, TrainConfig, read_config_file, resolve
from trainer.engine import NonFiniteGuard, TrainingDivergedError, train_one_epoch
from trainer.losses import SarLoss
from trainer.registry import available_models, create_model

SAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar"
SCENE = SAR / "s1_iw_grd_berlin_512.tif"
needs_data = pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
FAST = ["--device", "cpu", "--patch-size", "64", "--batch-size", "4", "--base-channels", "8", "--no-progress"]


def _train(out, variant="baseline", *extra):
    return main(["--variant", variant, "--data", str(SCENE), "--out", str(out), *FAST, *extra])


@needs_data
@pytest.mark.parametrize("variant", available_models())
def test_sar_train_writes_complete_safe_checkpoints(variant, tmp_path):
    assert _train(tmp_path, variant, "--max-steps", "3", "--steps-per-epoch", "2") == 0
    for name in ("best.pth", "last.pth"):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        assert set(REQUIRED_KEYS) <= set(ckpt)
        assert ckpt["model_name"] == variant
        assert ckpt["model_config"] == {"latent_channels": 16, "base_channels": 8}
    last = torch.load(tmp_path / "last.pth", weights_only=True)
    assert last["step"] == 3 and last["epoch"] == 2  # 2 steps in epoch 1, then max-steps stops epoch 2 after 1
    assert [h["epoch"] for h in last["history"]] == [1, 2]
    h = last["history"][-1]
    for key in ("train_loss", "val_loss", "val_psnr", "val_ssim", "seconds", "skipped_batches"):
        assert key in h and math.isfinite(h[key])
    assert 0 < h["val_loss"] < 1 and 0 < h["val_psnr"] < 60 and -1 < h["val_ssim"] <= 1
    assert last["best_val_loss"] == min(x["val_loss"] for x in last["history"])
    pp = last["preprocessing_params"]
    assert pp["input_domain"] == "intensity" and pp["clip_percentiles"] == [0.5, 99.5]
    assert pp["clip_db"][0] < pp["clip_db"][1]
    ds = last["data_summary"]
    assert ds["train_scenes"] == ["s1_iw_grd_berlin_512.tif"] and ds["patches_seen"] == 12
    assert ds["split_rule"] == "single_scene_row_strips"
    assert last["config"]["variant"] == variant and last["config"]["patch_size"] == 64
    model, _ = load_model(tmp_path / "best.pth", expected_variant=variant)
    assert model(torch.rand(1, 1, 32, 32))["y"].shape == (1, 16, 2, 2)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "training_curve.png").stat().st_size > 1000
    assert "epoch 2 step 3" in (tmp_path / "train.log").read_text()
    assert json.loads((tmp_path / "config.json").read_text())["max_steps"] == 3


@needs_data
def test_resume_continues_where_it_stopped(tmp_path):
    assert _train(tmp_path, "baseline", "--max-steps", "2", "--steps-per-epoch", "1") == 0
    first = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (first["epoch"], first["step"]) == (2, 2)
    assert _train(tmp_path, "baseline", "--max-steps", "4", "--steps-per-epoch", "1", "--resume") == 0
    resumed = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (resumed["epoch"], resumed["step"]) == (4, 4)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["history"][:2] == first["history"]
    assert resumed["optimizer_state_dict"]["state"][0]["step"] == 4  # AdamW state carried over
    # resuming a run of another variant is refused
    assert _train(tmp_path, "residual", "--max-steps", "5", "--resume") == 2


def test_nan_batches_are_skipped_and_counted():
    torch.manual_seed(0)
    model = create_model("baseline", base_channels=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    good = torch.rand(2, 1, 32, 32)
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    guard = NonFiniteGuard(3)
    stats = train_one_epoch(model, SarLoss(), opt, [good, bad, good, bad, bad, good], guard=guard)
    assert stats["skipped_batches"] == 3 and stats["steps"] == 3 and stats["step"] == 3
    assert math.isfinite(stats["train_loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(TrainingDivergedError, match="3 consecutive batches"):
        train_one_epoch(model, SarLoss(), opt, [bad] * 5, guard=NonFiniteGuard(3))


def test_config_precedence(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 7\nlr: 0.001\nbatch_size: 8\n")
    cfg = resolve(read_config_file(cfg_file), {"lr": 0.01, "batch_size": None})
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed) == (7, 0.01, 8, TrainConfig().seed)
    cfg_file.write_text("epoch: 7\n")
    with pytest.raises(ConfigError, match="unknown option"):
        read_config_file(cfg_file)
    with pytest.raises(ConfigError, match="multiple of 16"):
        resolve({}, {"patch_size": 40})


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o"), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.tif: no such file" in err and "Traceback" not in err
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.pth: not a readable checkpoint"):
        load_model(corrupt)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "absent.pth")
    torch.save({"model_state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="missing model_name"):
        load_model(tmp_path / "other.pth")


def test_wrong_variant_is_refused(tmp_path):
    from trainer.checkpoint import make_checkpoint, save_checkpoint

    model = create_model("residual", base_channels=4)
    save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[], preprocessing_params={},
                                    config={}, data_summary={}), tmp_path / "r.pth")
    assert not (tmp_path / "r.pth.tmp").exists()
    with pytest.raises(ModelMismatchError, match="variant 'residual', expected 'attention'"):
        load_model(tmp_path / "r.pth", expected_variant="attention")
    loaded, ckpt = load_model(tmp_path / "r.pth", expected_variant="residual")
    assert ckpt["epoch"] == 1 and not loaded.training
