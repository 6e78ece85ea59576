"""Averaging a run's checkpoints (trainer/average.py): the weights' mean, a checkpoint the rest of the
toolchain loads, and a refusal of anything that is not one model's run."""

from __future__ import annotations

import pytest
import torch

from trainer.average import average_checkpoints, main
from trainer.checkpoint import load_checkpoint, load_model, make_checkpoint, save_checkpoint, save_warm_start
from trainer.registry import create_model

CONFIG = {"channels": 8, "latent_channels": 8, "hyper_channels": 6, "lambdas": [0.001, 0.01], "context_slices": 2}


def _checkpoint(seed: int, step: int, config: dict = CONFIG) -> dict:
    """A checkpoint at `step` of one run validated every 10 steps (their weights differ by `seed`)."""
    torch.manual_seed(seed)
    model = create_model("baseline", **config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    history = [{"step": s} for s in range(10, step + 1, 10)]
    return make_checkpoint(model, epoch=step // 10, step=step, best_val_loss=1.0, history=history,
                           preprocessing_params={}, config={"lr": 1e-5}, data_summary={"patches_seen": 4 * step})


def test_average_is_the_mean_of_the_weights_and_keeps_the_last_counters(tmp_path):
    a, b, c = _checkpoint(0, 10), _checkpoint(1, 20), _checkpoint(2, 30)
    save_checkpoint(a, tmp_path / "a.pth")
    save_warm_start(b, tmp_path / "b.pth")  # fp16 weights: averaged in float32 all the same
    save_checkpoint(c, tmp_path / "c.pth")
    assert main([str(tmp_path / "mean.pth"), str(tmp_path / "c.pth"), str(tmp_path / "a.pth"),
                 str(tmp_path / "b.pth")]) == 0
    model, ckpt = load_model(tmp_path / "mean.pth", expected_variant="baseline")
    b16 = load_checkpoint(tmp_path / "b.pth")["model_state_dict"]
    for name, value in model.state_dict().items():
        expected = (a["model_state_dict"][name] + b16[name].float() + c["model_state_dict"][name]) / 3
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert ckpt["step"] == 30 and ckpt["history"] == [{"step": 10}, {"step": 20}, {"step": 30}]
    assert ckpt["data_summary"] == {"patches_seen": 120, "averaged_steps": [10, 20, 30]}
    assert ckpt["optimizer_state_dict"] == {}
    with torch.no_grad():  # a working model, not a pile of tensors
        out = model(torch.rand(1, 1, 64, 64), torch.tensor([0.5]))
    assert torch.isfinite(out["x_hat"]).all()


def test_average_refuses_what_is_not_one_run(tmp_path, capsys):
    with pytest.raises(Exception, match="at least two"):
        average_checkpoints([_checkpoint(0, 10)])
    with pytest.raises(Exception, match="different models"):
        average_checkpoints([_checkpoint(0, 10), _checkpoint(1, 20, {**CONFIG, "channels": 10})])
    with pytest.raises(Exception, match="same step"):
        average_checkpoints([_checkpoint(0, 10), _checkpoint(1, 10)])
    save_checkpoint(_checkpoint(0, 10), tmp_path / "a.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert main([str(tmp_path / "out.pth"), str(tmp_path / "a.pth"), str(tmp_path / "bad.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.pth" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.pth").exists()


def test_validate_measures_the_average_as_training_validates(sar_data, tmp_path, capsys):
    """Two checkpoints of one real (tiny) run: --validate reports the last one's validation loss exactly as
    the run's own history recorded it, and the average's beside it."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from trainer.cli import main as train_main  # noqa: PLC0415

    data = tmp_path / "data"
    data.mkdir()
    for name in ("s1_iw_grd_berlin_512.tif", "s1_iw_grd_frankfurt_512.tif", "s1_iw_grd_ottawa_512.tif"):
        shutil.copy(sar_data / name, data / name)
    run = tmp_path / "run"
    args = ["--variant", "baseline", "--data", str(data), "--out", str(run), "--device", "cpu", "--patch-size", "256",
            "--batch-size", "2", "--channels", "8", "--latent-channels", "16", "--hyper-channels", "8",
            "--lambdas", "0.001", "0.01", "--no-progress", "--val-fraction", "0.34", "--steps-per-epoch", "2"]
    assert train_main([*args, "--max-steps", "2"]) == 0
    shutil.copy(run / "last.pth", tmp_path / "step2.pth")
    assert train_main([*args, "--max-steps", "4", "--resume"]) == 0
    capsys.readouterr()
    assert main([str(tmp_path / "mean.pth"), str(tmp_path / "step2.pth"), str(run / "last.pth"), "--validate"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert report["averaged_steps"] == [2, 4] and history[-1]["step"] == 4
    assert report["last"]["val_loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-6)
    assert report["average"]["val_loss"] != report["last"]["val_loss"]
    assert len(report["average"]["val_levels"]) == 2
