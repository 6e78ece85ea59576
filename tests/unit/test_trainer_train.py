"""sar-train end to end on one real shared scene, checkpoints, resume, NaN skipping, bad inputs."""

import json
import math
from pathlib import Path

import pytest
import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.checkpoint import REQUIRED_KEYS, CheckpointError, load_model, training_totals
from trainer.cli import main
from trainer.config import ConfigError, TrainConfig, read_config_file, resolve
from trainer.engine import NonFiniteGuard, TrainingDivergedError, train_one_epoch
from trainer.losses import RateDistortionLoss
from trainer.registry import available_models, create_model

SAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar"
SCENE = SAR / "s1_iw_grd_berlin_512.tif"
needs_data = pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
FAST = ["--device", "cpu", "--patch-size", "64", "--batch-size", "4", "--channels", "8", "--latent-channels", "16",
        "--hyper-channels", "8", "--lambdas", "0.001", "0.01", "--no-progress"]
SMALL_CONFIG = {"channels": 8, "latent_channels": 16, "hyper_channels": 8, "lambdas": [0.001, 0.01]}


def _train(out, variant="baseline", *extra):
    return main(["--variant", variant, "--data", str(SCENE), "--out", str(out), *FAST, *extra])


@needs_data
@pytest.mark.parametrize("variant", available_models())
def test_sar_train_writes_complete_safe_checkpoints(variant, tmp_path, capsys):
    assert _train(tmp_path, variant, "--max-steps", "3", "--steps-per-epoch", "2") == 0
    assert "done: 1 epoch(s) and part of the next, 3 step(s)" in capsys.readouterr().out
    for name in ("best.pth", "last.pth"):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        assert set(REQUIRED_KEYS) <= set(ckpt)
        assert ckpt["model_name"] == variant
        assert ckpt["model_config"] == {**SMALL_CONFIG, "context_slices": 1, "decoder_channels": None}
    last = torch.load(tmp_path / "last.pth", weights_only=True)
    # 2 steps in epoch 1, then max-steps stops epoch 2 after 1: recorded, and saved as within epoch 2 (epoch: the
    # last whole one), so that --resume goes on there
    assert last["step"] == 3 and last["epoch"] == 1 and last["resume_state"]["drawn_in_epoch"] == 1
    assert [h["epoch"] for h in last["history"]] == [1, 2]
    h = last["history"][-1]
    for key in ("train_loss", "train_bpp", "train_mse", "val_loss", "val_psnr", "val_ssim", "val_bpp", "seconds",
                "skipped_batches", "lr"):
        assert key in h and math.isfinite(h[key])
    assert h["val_loss"] > 0 and 0 < h["val_psnr"] < 60 and -1 < h["val_ssim"] <= 1 and h["val_bpp"] > 0
    assert [lv["level"] for lv in h["val_levels"]] == [0, 1]  # the whole rate range is validated
    assert h["val_levels"][0]["lambda"] == 0.001 and h["patches_seen"] == 4 * h["step"]
    assert last["best_val_loss"] == min(x["val_loss"] for x in last["history"])
    pp = last["preprocessing_params"]
    assert pp["input_domain"] == "intensity" and pp["clip_percentiles"] == [0.5, 99.5]
    assert pp["clip_db"][0] < pp["clip_db"][1]
    ds = last["data_summary"]
    assert ds["train_scenes"] == ["s1_iw_grd_berlin_512.tif"] and ds["patches_seen"] == 12
    assert ds["split_rule"] == "single_scene_row_strips"
    assert last["config"]["variant"] == variant and last["config"]["patch_size"] == 64
    model, _ = load_model(tmp_path / "best.pth", expected_variant=variant)
    assert model(torch.rand(1, 1, 64, 64), torch.zeros(1))["likelihoods"]["y"].shape == (1, 16, 4, 4)
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
    # patches are counted across resumes that change the batch (or world) size: 4 steps of 4, then 1 of 2
    assert _train(tmp_path, "baseline", "--max-steps", "5", "--steps-per-epoch", "1", "--resume",
                  "--batch-size", "2") == 0
    smaller = torch.load(tmp_path / "last.pth", weights_only=True)
    assert smaller["data_summary"]["patches_seen"] == smaller["history"][-1]["patches_seen"] == 4 * 4 + 2
    assert [h["patches_seen"] for h in smaller["history"]] == [4, 8, 12, 16, 18]
    # resuming a run of another variant, or of another shape, is refused
    assert _train(tmp_path, "residual", "--max-steps", "5", "--resume") == 2
    assert _train(tmp_path, "baseline", "--max-steps", "5", "--resume", "--latent-channels", "32") == 2


class _Killed(Exception):
    pass


@needs_data
def test_a_run_killed_mid_epoch_and_resumed_takes_the_same_steps_as_one_never_stopped(tmp_path, monkeypatch):
    """The same weights to the bit, and the same validation figures, as an uninterrupted run: the training noise
    and the place in the epoch's patch stream come back with the checkpoint. Before, a resumed run redrew the
    interrupted epoch's patches from its start with fresh noise. The kill is simulated: the process "dies"
    (an exception out of the CLI) right after its periodic mid-epoch last.pth, as a SIGKILL would leave it."""
    import trainer.train as train_module

    args = ["--max-steps", "5", "--steps-per-epoch", "3", "--threads", "1"]
    assert _train(tmp_path / "whole", "baseline", *args) == 0
    real_save = train_module.save_checkpoint

    def save_then_die(ckpt, path):
        real_save(ckpt, path)
        if Path(path).name == "last.pth" and ckpt["step"] == 4:  # mid-epoch 2: one of its three batches used
            raise _Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _train(tmp_path / "killed", "baseline", *args, "--checkpoint-minutes", "0")
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    stopped = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    assert (stopped["epoch"], stopped["step"], stopped["resume_state"]["drawn_in_epoch"]) == (1, 4, 1)
    assert _train(tmp_path / "killed", "baseline", *args, "--resume") == 0

    whole = torch.load(tmp_path / "whole" / "last.pth", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    assert (resumed["epoch"], resumed["step"]) == (whole["epoch"], whole["step"]) == (1, 5)  # within epoch 2
    for name, tensor in whole["model_state_dict"].items():
        assert torch.equal(tensor, resumed["model_state_dict"][name]), name
    for a, b in zip(whole["history"], resumed["history"], strict=True):
        assert (a["epoch"], a["step"], a["patches_seen"], a["val_loss"]) == (b["epoch"], b["step"],
                                                                              b["patches_seen"], b["val_loss"])
    # the epoch the kill cut (epoch 2, here stopped by --max-steps) is recorded over all its steps, as the
    # uninterrupted run's: its train figures averaged only the steps after the mid-epoch checkpoint
    train = [k for k in whole["history"][-1] if k.startswith("train_")]
    assert train and [[h[k] for k in train] for h in whole["history"]] == \
        [[h[k] for k in train] for h in resumed["history"]]


@needs_data
def test_skipped_batches_are_counted_over_the_whole_run_through_resumes(tmp_path, capsys):
    """The checkpoint's skipped_batches_total (and the bundle manifest's copy of it) started again from 0 at
    every --resume, while its steps and patches count the whole run."""
    from trainer.checkpoint import load_checkpoint, save_checkpoint

    assert _train(tmp_path, "baseline", "--max-steps", "1", "--steps-per-epoch", "1") == 0
    ckpt = load_checkpoint(tmp_path / "last.pth")
    ckpt["data_summary"]["skipped_batches_total"] = 5  # as if five non-finite batches had been skipped
    save_checkpoint(ckpt, tmp_path / "last.pth")
    capsys.readouterr()
    assert _train(tmp_path, "baseline", "--max-steps", "2", "--steps-per-epoch", "1", "--resume") == 0
    assert torch.load(tmp_path / "last.pth", weights_only=True)["data_summary"]["skipped_batches_total"] == 5
    assert "5 skipped batch(es)" in capsys.readouterr().out


@needs_data
@pytest.mark.parametrize("signame, expected_rc, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_during_the_epochs_writes_leaves_checkpoints_and_history_agreeing(tmp_path, monkeypatch, capsys,
                                                                                  signame, expected_rc, word):
    """A Ctrl-C right after an epoch's first checkpoint save (best.pth, or last.pth when the epoch did not
    improve) left best.pth, last.pth and history.jsonl at different epochs, and ended in a KeyboardInterrupt
    traceback. Now it waits for the epoch's writes, and sar-train says where --resume goes on, with 130. A kill
    (SIGTERM) killed the run silently on the spot; it now ends the same way, with 143."""
    import os
    import signal

    import trainer.train as train_module

    real_save = train_module.save_checkpoint
    sent = []

    def save_then_ctrl_c(ckpt, path):
        real_save(ckpt, path)
        if ckpt["epoch"] == 2 and not sent:
            sent.append(Path(path).name)
            os.kill(os.getpid(), getattr(signal, signame))

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_ctrl_c)
    capsys.readouterr()
    try:
        rc = _train(tmp_path, "baseline", "--max-steps", "3", "--steps-per-epoch", "1")
    except KeyboardInterrupt:
        rc = "KeyboardInterrupt out of sar-train"
    assert sent and rc == expected_rc
    assert f"{word}: --resume goes on from {tmp_path / 'last.pth'}" in capsys.readouterr().err
    last = torch.load(tmp_path / "last.pth", weights_only=True)
    best = torch.load(tmp_path / "best.pth", weights_only=True)
    lines = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert last["epoch"] == 2 and [h["epoch"] for h in lines] == [h["epoch"] for h in last["history"]] == [1, 2]
    best_epoch = min(last["history"], key=lambda h: h["val_loss"])["epoch"]
    assert best["epoch"] == best_epoch and best["best_val_loss"] == last["best_val_loss"]
    assert not list(tmp_path.glob("*.tmp"))


@needs_data
def test_resume_goes_on_with_the_checkpoints_model_shape(tmp_path):
    """--resume without the shape options continues a channel-context run; a shape that contradicts the
    checkpoint is still one clear error."""
    assert _train(tmp_path, "baseline", "--max-steps", "2", "--steps-per-epoch", "1", "--context-slices", "2") == 0
    assert _train(tmp_path, "baseline", "--max-steps", "3", "--steps-per-epoch", "1", "--resume") == 0
    resumed = torch.load(tmp_path / "last.pth", weights_only=True)
    assert resumed["step"] == 3 and resumed["model_config"]["context_slices"] == 2
    assert _train(tmp_path, "baseline", "--max-steps", "4", "--resume", "--context-slices", "1") == 2


@needs_data
def test_resume_without_variant_goes_on_with_the_checkpoints_variant(tmp_path):
    """`--resume CKPT` alone continues any run: a residual run resumed without --variant was refused with
    "checkpoint is variant 'residual', run asks for 'baseline'" (the default). A --variant that contradicts the
    checkpoint is still one clear error."""
    assert _train(tmp_path, "residual", "--max-steps", "1", "--steps-per-epoch", "1") == 0
    assert main(["--data", str(SCENE), "--out", str(tmp_path), *FAST, "--max-steps", "2", "--steps-per-epoch", "1",
                 "--resume"]) == 0
    resumed = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (resumed["model_name"], resumed["step"], resumed["config"]["variant"]) == ("residual", 2, "residual")
    assert _train(tmp_path, "baseline", "--max-steps", "3", "--resume") == 2


@needs_data
def test_resume_goes_on_with_the_checkpoints_level_weights_unless_given(tmp_path):
    assert _train(tmp_path, "baseline", "--max-steps", "1", "--steps-per-epoch", "1",
                  "--level-weights", "2", "0.5") == 0
    assert _train(tmp_path, "baseline", "--max-steps", "2", "--steps-per-epoch", "1", "--resume") == 0
    assert torch.load(tmp_path / "last.pth", weights_only=True)["config"]["level_weights"] == [2.0, 0.5]
    assert _train(tmp_path, "baseline", "--max-steps", "3", "--steps-per-epoch", "1", "--resume",
                  "--level-weights", "1", "1") == 0
    assert torch.load(tmp_path / "last.pth", weights_only=True)["config"]["level_weights"] == [1.0, 1.0]


@needs_data
def test_mid_epoch_checkpoint_and_lr_schedule(tmp_path):
    """checkpoint_minutes 0 writes last.pth after every step; the lr drops at lr_drop_step."""
    assert _train(tmp_path, "baseline", "--max-steps", "3", "--steps-per-epoch", "10", "--checkpoint-minutes", "0",
                  "--lr", "0.001", "--lr-drop-step", "2", "--lr-drop-factor", "0.5") == 0
    last = torch.load(tmp_path / "last.pth", weights_only=True)
    assert last["step"] == 3 and last["epoch"] == 0  # stopped within epoch 1
    assert last["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(0.0005)
    assert last["history"][-1]["lr"] == pytest.approx(0.0005)


@needs_data
def test_init_warm_starts_from_an_fp16_checkpoint(tmp_path):
    """The committed warm start is fp16 weights; --init loads them into a fresh float32 run at step 0."""
    from trainer.checkpoint import make_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = create_model("baseline", **SMALL_CONFIG)
    # the warm start is itself a branch: 30 steps of its own after 100 of the run before it
    ckpt = make_checkpoint(model, epoch=3, step=30, best_val_loss=1.0, history=[], preprocessing_params={},
                           config={}, data_summary={"patches_seen": 120, "initialised_from": {
                               "steps_total": 100, "patches_seen_total": 400}})
    ckpt["model_state_dict"] = {k: v.half() for k, v in ckpt["model_state_dict"].items()}
    save_checkpoint(ckpt, tmp_path / "warm.pth")
    assert _train(tmp_path / "run", "baseline", "--max-steps", "1", "--init", str(tmp_path / "warm.pth")) == 0
    assert "initialised from" in (tmp_path / "run" / "train.log").read_text()
    last = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert last["step"] == 1
    # what the weights have seen in all is carried down the branches, and through a resume
    assert training_totals(last) == {"steps_total": 131, "patches_seen_total": 524}
    assert _train(tmp_path / "run", "baseline", "--max-steps", "2", "--resume") == 0
    assert training_totals(torch.load(tmp_path / "run" / "last.pth", weights_only=True)) == {
        "steps_total": 132, "patches_seen_total": 528}


def test_nan_batches_are_skipped_and_counted():
    torch.manual_seed(0)
    model = create_model("baseline", **SMALL_CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    good = torch.rand(2, 1, 64, 64)
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    levels = torch.tensor([0.0, 1.0])
    guard = NonFiniteGuard(3)
    batches = [(b, levels) for b in (good, bad, good, bad, bad, good)]
    stats = train_one_epoch(model, RateDistortionLoss(), opt, batches, guard=guard)
    assert stats["skipped_batches"] == 3 and stats["steps"] == 3 and stats["step"] == 3
    assert math.isfinite(stats["train_loss"]) and stats["train_bpp"] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(TrainingDivergedError, match="3 consecutive batches"):
        train_one_epoch(model, RateDistortionLoss(), opt, [(bad, levels)] * 5, guard=NonFiniteGuard(3))


def test_rd_training_lowers_the_loss_and_levels_trade_rate():
    """A few steps on one batch lower the loss; afterwards the top level spends more bits than the bottom one."""
    torch.manual_seed(0)
    model = create_model("baseline", **SMALL_CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(4, 1, 64, 64)
    levels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    first = train_one_epoch(model, RateDistortionLoss(), opt, [(x, levels)], guard=NonFiniteGuard())
    later = train_one_epoch(model, RateDistortionLoss(), opt, [(x, levels)] * 15, guard=NonFiniteGuard())
    assert later["train_loss"] < first["train_loss"]
    model.eval()
    with torch.no_grad():
        bpp = [RateDistortionLoss()(*(lambda o: (o["x_hat"], x, o["likelihoods"]))(model(x, torch.full((4,), q))),
                                    model.lambda_of(torch.full((4,), q)))["bpp"] for q in (0.0, 1.0)]
    assert float(bpp[1]) > float(bpp[0])


def test_config_precedence(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 7\nlr: 0.001\nbatch_size: 8\n")
    cfg = resolve(read_config_file(cfg_file), {"lr": 0.01, "batch_size": None})
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed) == (7, 0.01, 8, TrainConfig().seed)
    cfg_file.write_text("epoch: 7\n")
    with pytest.raises(ConfigError, match="unknown option"):
        read_config_file(cfg_file)
    with pytest.raises(ConfigError, match="multiple of 64"):
        resolve({}, {"patch_size": 80})
    with pytest.raises(ConfigError, match="strictly increasing"):
        resolve({}, {"lambdas": [0.1, 0.01]})
    with pytest.raises(ConfigError, match="level_weights must be 2 positive"):
        resolve({}, {"lambdas": [0.01, 0.1], "level_weights": [1.0, 1.0, 1.0]})
    with pytest.raises(ConfigError, match="level_weights must be 2 positive"):
        resolve({}, {"lambdas": [0.01, 0.1], "level_weights": [1.0, 0.0]})
    assert resolve({}, {"lr": 1e-3, "lr_drop_step": 10}).lr_at(9) == 1e-3
    assert resolve({}, {"lr": 1e-3, "lr_drop_step": 10}).lr_at(10) == pytest.approx(2.5e-4)


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

    model = create_model("residual", **SMALL_CONFIG)
    save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[], preprocessing_params={},
                                    config={}, data_summary={}), tmp_path / "r.pth")
    assert not (tmp_path / "r.pth.tmp").exists()
    with pytest.raises(ModelMismatchError, match="variant 'residual', expected 'attention'"):
        load_model(tmp_path / "r.pth", expected_variant="attention")
    loaded, ckpt = load_model(tmp_path / "r.pth", expected_variant="residual")
    assert ckpt["epoch"] == 1 and not loaded.training


def test_retired_autoencoder_checkpoint_is_refused_by_name(tmp_path):
    """A checkpoint of the fixed-bottleneck model (no lambdas in its config) gets one clear message."""
    from trainer.checkpoint import make_checkpoint, save_checkpoint

    model = create_model("baseline", **SMALL_CONFIG)
    ckpt = make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[], preprocessing_params={},
                           config={}, data_summary={})
    ckpt["model_config"] = {"latent_channels": 16, "base_channels": 64}
    save_checkpoint(ckpt, tmp_path / "old.pth")
    with pytest.raises(ModelMismatchError, match="retired fixed-bottleneck autoencoder"):
        load_model(tmp_path / "old.pth")


@needs_data
def test_seed_replicates_keep_the_scene_split_and_split_seed_changes_it(tmp_path):
    """A seed replicate must be judged on the scenes its siblings held out: --seed changes the initialisation
    and the patch stream, --split-seed alone which scenes are held out."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("berlin_512", "brazil_512", "ottawa_512", "frankfurt_512", "flevoland_north_512"):
        (data / f"s1_iw_grd_{name}.tif").symlink_to(SAR / f"s1_iw_grd_{name}.tif")
    summaries = {}
    for seed, split_seed in ((0, 0), (1, 0), (0, 1)):
        out = tmp_path / f"s{seed}_{split_seed}"
        assert main(["--variant", "baseline", "--data", str(data), "--out", str(out), *FAST, "--max-steps", "1",
                     "--steps-per-epoch", "1", "--seed", str(seed), "--split-seed", str(split_seed)]) == 0
        last = torch.load(out / "last.pth", weights_only=True)
        summaries[seed, split_seed] = (last["data_summary"]["val_scenes"], last["model_state_dict"])
    assert summaries[0, 0][0] == summaries[1, 0][0]
    assert summaries[0, 1][0] != summaries[0, 0][0]
    first = next(iter(summaries[0, 0][1]))
    assert not torch.equal(summaries[0, 0][1][first], summaries[1, 0][1][first])  # a different initialisation


@needs_data
def test_amp_trains_in_bf16_on_a_cpu_with_bf16_kernels(tmp_path, caplog):
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 kernels")  # some of the project's machines have AVX512-BF16, some AVX2 only
    args = ("--max-steps", "2", "--steps-per-epoch", "2")
    with caplog.at_level("INFO", logger="trainer"):
        assert _train(tmp_path / "amp", "baseline", *args, "--amp") == 0
    assert "mixed precision: bfloat16 autocast on cpu" in caplog.text
    assert _train(tmp_path / "fp32", "baseline", *args) == 0
    amp = torch.load(tmp_path / "amp" / "last.pth", weights_only=True)
    fp32 = torch.load(tmp_path / "fp32" / "last.pth", weights_only=True)
    # the same seed draws the same patches; only the arithmetic differs, so the losses differ but stay close
    a, b = amp["history"][-1]["train_loss"], fp32["history"][-1]["train_loss"]
    assert math.isfinite(a) and a != b and abs(a - b) < 0.05 * abs(b)
    assert all(v.dtype == torch.float32 for v in amp["model_state_dict"].values() if v.is_floating_point())


def test_amp_is_ignored_on_a_cpu_without_bf16_kernels(monkeypatch, caplog):
    # A mock where the CPU has bf16 kernels (the probe is made to say no), so the fallback is tested on every machine.
    from trainer import train
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level("INFO", logger="trainer"):
        assert train._amp(TrainConfig(amp=True), torch.device("cpu")) == (None, None)
    assert "no fast bf16 kernels" in caplog.text
    assert train._amp(TrainConfig(amp=False), torch.device("cpu")) == (None, None)


def test_curve_caption_of_a_branch_from_weights_that_did_not_count_patches():
    """An --init from a checkpoint without patches_seen (training_totals: None) crashed the training-curve
    plot with a TypeError after the first epoch; the caption says the patches are not recorded."""
    from trainer.reporting import _seen_caption

    last = {"step": 2, "epoch": 1, "patches_seen": 8}
    assert _seen_caption(last, {"steps_total": 10, "patches_seen_total": None}) == (
        "after epoch 1: 12 steps in all, patches not recorded (10 of the steps before this run)")
    assert _seen_caption(last, {"steps_total": 10, "patches_seen_total": 40}) == (
        "after epoch 1: 12 steps, 48 patches in all (10 of the steps before this run)")
    assert _seen_caption(last, {}) == "after epoch 1: 2 steps, 8 patches in all"


@needs_data
def test_a_resumed_run_that_would_stop_at_once_is_refused(tmp_path, capsys):
    """A run stopped within its first epoch, resumed with the same --max-steps, would stop before a step: it said
    "done: -1 epoch(s) and part of the next", then "done: 0 epoch(s) ...", exit 0, having trained nothing. Now
    it is one line, exit 2, and the run folder is as it was."""
    assert _train(tmp_path, "baseline", "--max-steps", "1", "--steps-per-epoch", "2") == 0
    assert "done: 0 epoch(s) and part of the next, 1 step(s)" in capsys.readouterr().out
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert _train(tmp_path, "baseline", "--max-steps", "1", "--steps-per-epoch", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already at step 1, and --max-steps counts steps in total" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_kill_as_the_writes_are_held_leaves_ctrl_c_as_it_was(monkeypatch):
    """interrupts_held holds SIGINT, then SIGTERM. A SIGTERM between the two (sar-train's handler raises the
    KeyboardInterrupt) left SIGINT held for good: every later Ctrl-C of the process was swallowed."""
    import signal

    from trainer.train import interrupts_held

    real, before, term = signal.signal, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    arrived = []

    def kill_arrives_as_sigterm_is_held(signum, handler):
        if signum == signal.SIGTERM and not arrived:
            arrived.append(signum)
            raise KeyboardInterrupt  # what sar-train's SIGTERM handler raises, here before SIGTERM is held
        return real(signum, handler)

    monkeypatch.setattr(signal, "signal", kill_arrives_as_sigterm_is_held)
    try:
        with pytest.raises(KeyboardInterrupt), interrupts_held():
            pass
        assert arrived and signal.getsignal(signal.SIGINT) is before
    finally:
        real(signal.SIGINT, before)
        real(signal.SIGTERM, term)
