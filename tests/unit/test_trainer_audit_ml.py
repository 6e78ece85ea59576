"""An ML engineer's audit of sar-train: runs resumed past their stop, a relative --data, a checkpoint whose weights
do not fit its recorded shape, the best validation loss of a new --out, `--resume` finding no last.pth, the record
of an epoch cut by --max-steps and resumed, and patches drawn with too few valid pixels."""

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from trainer.checkpoint import load_checkpoint, load_model, save_checkpoint
from trainer.cli import build_parser, main
from trainer.config import TrainConfig
from trainer.data import PatchSampler, Plane

SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"
needs_data = pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
TINY = ["--variant", "baseline", "--device", "cpu", "--patch-size", "64", "--batch-size", "2", "--channels", "8",
        "--latent-channels", "16", "--hyper-channels", "8", "--lambdas", "0.001", "0.01", "--steps-per-epoch", "1",
        "--threads", "1", "--no-progress"]


def _train(out: Path, *extra: str, data: str | Path = SCENE) -> int:
    return main([*TINY, "--data", str(data), "--out", str(out), *extra])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@needs_data
def test_a_resume_whose_stop_is_reached_is_refused_and_creates_nothing(tmp_path, capsys):
    """`--resume runD/last.pth --out runD2 --max-steps N` with runD at N steps or more trained nothing, exited 0
    and said "done: ... checkpoints in runD2", a folder with none: --max-steps (and --epochs) count the run's
    steps in all, not this leg's."""
    assert _train(tmp_path / "runD", "--max-steps", "2") == 0  # two epochs of one step
    last = tmp_path / "runD" / "last.pth"
    for stop in (["--max-steps", "2"], ["--max-steps", "1"], ["--epochs", "2"]):
        assert main(["--resume", str(last), "--out", str(tmp_path / "runD2"), "--device", "cpu", "--threads", "1",
                     "--no-progress", *stop]) == 2, stop
        err = _one_error_line(capsys)
        assert ("already at step 2, and --max-steps counts steps in total" in err if stop[0] == "--max-steps"
                else "already trained 2 epoch(s), and --epochs counts epochs in total" in err), err
        assert not (tmp_path / "runD2").exists()
    # the run's own folder: refused too, its files as they were
    before = {p.name: p.read_bytes() for p in (tmp_path / "runD").iterdir()}
    assert _train(tmp_path / "runD", "--max-steps", "2", "--resume") == 2
    assert "already at step 2" in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in (tmp_path / "runD").iterdir()} == before
    # a larger total goes on
    assert _train(tmp_path / "runD", "--max-steps", "3", "--resume") == 0
    assert load_checkpoint(last)["step"] == 3


@needs_data
def test_a_relative_data_path_is_recorded_as_an_absolute_one(tmp_path, monkeypatch):
    """`--data data` was stored as typed (`data: data` in config.yaml and the checkpoints), so sar-eval, sar-export
    and --resume run from another folder read another folder, or fell back to the default manifest."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True)
    elsewhere.mkdir()
    shutil.copy(SCENE, work / "data" / SCENE.name)
    monkeypatch.chdir(work)
    assert _train(Path("run"), "--max-steps", "1", data="data") == 0
    absolute = str((work / "data").resolve())
    assert yaml.safe_load((work / "run" / "config.yaml").read_text())["data"] == absolute
    assert json.loads((work / "run" / "config.json").read_text())["data"] == absolute
    assert load_checkpoint(work / "run" / "last.pth")["config"]["data"] == absolute

    monkeypatch.chdir(elsewhere)  # the run goes on with its own data from any folder
    assert main(["--resume", str(work / "run" / "last.pth"), "--out", "run2", "--max-steps", "2", "--device", "cpu",
                 "--no-progress"]) == 0
    resumed = load_checkpoint(elsewhere / "run2" / "last.pth")
    assert resumed["config"]["data"] == absolute and resumed["data_summary"]["train_scenes"] == [SCENE.name]

    # a checkpoint written before, with the path as typed, resumes where that path still holds, as it did
    old = load_checkpoint(work / "run" / "last.pth")
    old["config"]["data"] = "data"
    save_checkpoint(old, work / "old.pth")
    monkeypatch.chdir(work)
    assert main(["--resume", "old.pth", "--out", "run3", "--max-steps", "2", "--device", "cpu", "--no-progress"]) == 0
    assert load_checkpoint(work / "run3" / "last.pth")["config"]["data"] == absolute


@needs_data
@pytest.mark.parametrize("how", ["--resume", "--init"])
def test_weights_that_do_not_fit_their_recorded_shape_are_one_line(tmp_path, capsys, how):
    """A checkpoint whose model_config says 16 channels over weights of 8 was a 38-line load_state_dict traceback
    for --resume and --init, which left the new --out with its config files; sar-eval and sar-export said it in
    one line. Now all of them say the same line, and --out is not created."""
    assert _train(tmp_path / "run", "--max-steps", "1") == 0
    lie = load_checkpoint(tmp_path / "run" / "last.pth")
    lie["model_config"]["channels"] = 16
    save_checkpoint(lie, tmp_path / "lie.pth")
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    assert _train(fresh, how, str(tmp_path / "lie.pth"), "--max-steps", "3", "--channels", "16") == 2
    err = _one_error_line(capsys)
    assert f"{tmp_path / 'lie.pth'}: weights do not fit variant 'baseline' (" in err, err
    assert not fresh.exists()
    with pytest.raises(Exception) as same:  # sar-eval's and sar-export's reading of the file
        load_model(tmp_path / "lie.pth")
    assert f"error: {same.value}\n" == err
    state = torch.get_rng_state()  # the check builds a model: an --init run's training noise stays as it was
    load_model(tmp_path / "run" / "last.pth")
    assert torch.equal(torch.get_rng_state(), state)


def test_steps_per_epoch_help_names_its_real_default():
    """The help said "[about one pass over the training pixels]"; the default is TrainConfig's 500 steps."""
    help_text = next(a.help for a in build_parser()._actions if "--steps-per-epoch" in a.option_strings)
    assert f"[{TrainConfig().steps_per_epoch};" in help_text and "steps_per_epoch: null" in help_text


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory) -> tuple[Path, float]:
    """A run of two one-step epochs: its last.pth and its lowest validation loss."""
    out = tmp_path_factory.mktemp("warm")
    assert _train(out, "--max-steps", "2") == 0
    warm = load_checkpoint(out / "last.pth")
    lowest = min(h["val_loss"] for h in warm["history"])
    assert warm["best_val_loss"] == lowest
    return out / "last.pth", lowest


def _validation_loss_set_to(monkeypatch, *values: float) -> None:
    """sar-train's validations report `values` as their losses, one each, the last one from then on."""
    import trainer.train as train_module

    real_evaluate, reported = train_module.evaluate, list(values)
    monkeypatch.setattr(train_module, "evaluate", lambda *args, **kwargs: dict(
        real_evaluate(*args, **kwargs), val_loss=reported.pop(0) if len(reported) > 1 else reported[0]))


@needs_data
def test_a_new_out_gets_a_best_pth_but_keeps_the_runs_lowest_validation_loss(tmp_path, monkeypatch, warm_run):
    """Resumed into a new --out, the first epoch was written as best.pth and its (higher) validation loss became
    best_val_loss (the committed warm start records 1.73809, its history's lowest is 1.73780), and later epochs
    were compared to that."""
    last, lowest = warm_run
    _validation_loss_set_to(monkeypatch, lowest + 1.0, lowest + 0.5, lowest + 0.7)
    assert _train(tmp_path / "new", "--resume", str(last), "--max-steps", "4") == 0
    best, after = load_checkpoint(tmp_path / "new" / "best.pth"), load_checkpoint(tmp_path / "new" / "last.pth")
    assert best["step"] == 4  # the folder's best epoch, none of them better than the run's best ...
    assert best["best_val_loss"] == after["best_val_loss"] == lowest  # ... which stays the run's best_val_loss
    assert _train(tmp_path / "new", "--resume", "--max-steps", "5") == 0  # resumed in the folder: 0.7 is worse
    assert load_checkpoint(tmp_path / "new" / "best.pth")["step"] == 4
    assert load_checkpoint(tmp_path / "new" / "last.pth")["best_val_loss"] == lowest


@needs_data
def test_a_raised_best_val_loss_goes_on_from_the_historys_lowest(tmp_path, monkeypatch, warm_run):
    last, lowest = warm_run
    save_checkpoint(dict(load_checkpoint(last), best_val_loss=lowest + 0.5), tmp_path / "raised.pth")
    _validation_loss_set_to(monkeypatch, lowest + 1.0)
    assert _train(tmp_path / "fixed", "--resume", str(tmp_path / "raised.pth"), "--max-steps", "3") == 0
    assert load_checkpoint(tmp_path / "fixed" / "last.pth")["best_val_loss"] == lowest


@needs_data
def test_a_nan_validation_loss_is_never_the_best(tmp_path, monkeypatch, warm_run):
    """In a new --out a NaN validation loss was written as best.pth, the first epoch's whatever it was."""
    last, lowest = warm_run
    _validation_loss_set_to(monkeypatch, math.nan)
    assert _train(tmp_path / "nan", "--resume", str(last), "--max-steps", "3") == 0
    assert not (tmp_path / "nan" / "best.pth").exists()
    assert load_checkpoint(tmp_path / "nan" / "last.pth")["best_val_loss"] == lowest


@needs_data
def test_a_run_stopped_early_is_refused_until_patience_is_raised(tmp_path, monkeypatch, capsys, warm_run):
    """A run early stopping had ended went on with the same --patience to stop before a step, exit 0."""
    last, lowest = warm_run
    _validation_loss_set_to(monkeypatch, lowest + 1.0)
    assert _train(tmp_path / "run", "--resume", str(last), "--max-steps", "10", "--patience", "2") == 0
    assert load_checkpoint(tmp_path / "run" / "last.pth")["step"] == 4  # two epochs without a better loss
    capsys.readouterr()
    assert _train(tmp_path / "run", "--resume", "--max-steps", "10", "--patience", "2") == 2
    assert "stopped early, 2 epoch(s) without a better validation loss: give a --patience above 2" in \
        _one_error_line(capsys)
    assert _train(tmp_path / "run", "--resume", "--max-steps", "10", "--patience", "3") == 0
    assert load_checkpoint(tmp_path / "run" / "last.pth")["step"] == 5


@needs_data
def test_resume_without_a_last_pth_warns_naming_what_it_looked_for(tmp_path, caplog, capsys):
    """`--resume` with an --out lacking last.pth (a typo in --out) started over from step 0 with an INFO line."""
    with caplog.at_level(logging.INFO):
        assert _train(tmp_path / "typo", "--max-steps", "1", "--resume") == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "--resume" in r.getMessage()]
    assert len(warned) == 1 and str(tmp_path / "typo" / "last.pth") in warned[0] and "step 0" in warned[0], warned
    # an explicit file that is not there stays a refusal
    assert _train(tmp_path / "other", "--max-steps", "1", "--resume", str(tmp_path / "typo" / "lats.pth")) == 2
    assert "does not exist" in _one_error_line(capsys)


@needs_data
def test_an_epoch_cut_by_max_steps_and_resumed_is_recorded_over_all_its_steps(tmp_path):
    """The epoch --max-steps cut short has its validation recorded (partial), and once resumed its whole record:
    that one's train figures covered only the steps after the stop (113 against 78 for the uninterrupted run in
    the audit). The stop's checkpoint now carries the epoch's running totals, as a mid-epoch one does."""
    epochs = ["--steps-per-epoch", "3"]
    assert _train(tmp_path / "whole", *epochs, "--max-steps", "6") == 0
    assert _train(tmp_path / "stopped", *epochs, "--max-steps", "4") == 0
    stop = load_checkpoint(tmp_path / "stopped" / "last.pth")["resume_state"]
    assert stop["drawn_in_epoch"] == 1 and stop["epoch_totals"]["steps"] == 1
    assert _train(tmp_path / "stopped", *epochs, "--max-steps", "6", "--resume") == 0
    whole = load_checkpoint(tmp_path / "whole" / "last.pth")["history"]
    resumed = load_checkpoint(tmp_path / "stopped" / "last.pth")["history"]
    assert [(h["epoch"], h["step"], bool(h.get("partial"))) for h in resumed] == [(1, 3, False), (2, 4, True),
                                                                                   (2, 6, False)]
    train = sorted(k for k in whole[-1] if k.startswith("train_")) + ["skipped_batches"]
    assert [resumed[-1][k] for k in train] == [whole[-1][k] for k in train]


def _plane(valid_columns: int, size: int = 128) -> Plane:
    x = torch.rand(size, size) * 0.9 + 0.1
    valid = torch.zeros(size, size, dtype=torch.bool)
    valid[:, :valid_columns] = True
    x[~valid] = 0.0
    return Plane("a", "VV", x, valid, (0.0, 1.0))


def test_patches_with_too_few_valid_pixels_are_counted_per_epoch():
    """After 50 draws under --min-valid the sampler kept the last patch without a word: a mostly-nodata data set
    trained on invalid pixels unseen. The count leaves the patch stream as it was (a resumed run draws the same)."""
    sampler = PatchSampler([_plane(valid_columns=40)], 64, min_valid=0.9, seed=0)  # no 64 px patch is 90% valid
    sampler.set_epoch(1)
    batch = sampler.sample(6)
    assert (sampler.patches_drawn, sampler.patches_under_valid) == (6, 6)
    sampler.set_epoch(1)
    assert torch.equal(sampler.sample(6), batch)
    sampler.set_epoch(2)
    assert (sampler.patches_drawn, sampler.patches_under_valid) == (0, 0)
    fine = PatchSampler([_plane(valid_columns=128)], 64, min_valid=0.9, seed=0)
    fine.sample(6)
    assert (fine.patches_drawn, fine.patches_under_valid) == (6, 0)


def test_a_run_on_mostly_nodata_says_so_once_an_epoch(tmp_path, caplog):
    scene = np.random.default_rng(0).gamma(1.0, 0.1, (256, 256)).astype(np.float32) + 0.01
    scene[:, 40:] = 0.0  # intensity 0 is invalid: no 64 px patch is 90% valid
    np.save(tmp_path / "nodata.npy", scene)
    with caplog.at_level(logging.INFO):
        assert _train(tmp_path / "run", "--max-steps", "2", data=tmp_path / "nodata.npy") == 0
    warned = [r.getMessage() for r in caplog.records if "valid pixels" in r.getMessage()]
    assert warned == [f"epoch {e}: 2 of 2 patches drawn have under 90% valid pixels (none better in 50 draws each; "
                      f"min_valid_fraction in a --config file sets the share)" for e in (1, 2)]
