"""sar-train used a second time on the same run folder: rerun, killed between its epoch-end files, resumed
from an earlier checkpoint, resumed without repeating the options that fix the run's seeds and split."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from trainer.cli import main

SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"
needs_data = pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
TINY = ["--variant", "baseline", "--data", str(SCENE), "--device", "cpu", "--patch-size", "64", "--batch-size", "2",
        "--channels", "8", "--latent-channels", "16", "--hyper-channels", "8", "--lambdas", "0.001", "0.01",
        "--steps-per-epoch", "1", "--threads", "1", "--lr", "1e-3", "--no-progress"]


class _Killed(Exception):
    pass


def _train(out: Path, *extra: str) -> int:
    return main([*TINY, "--out", str(out), *extra])


def _history_file(out: Path) -> list[tuple[int, int]]:
    return [(h["epoch"], h["step"]) for h in map(json.loads, (out / "history.jsonl").read_text().splitlines())]


def _checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@needs_data
def test_history_file_and_best_checkpoint_agree_with_last_after_kills_reruns_and_resumes(tmp_path, monkeypatch):
    """The epoch-end files of a run killed between them, rerun or resumed from an earlier checkpoint describe the
    run last.pth continues. Before: best.pth was written after last.pth, so a kill between them left a best.pth
    older than the best_val_loss recorded in last.pth (nothing rewrote it if no later epoch improved); and
    history.jsonl was only ever appended to, so it lost the epoch killed before its line, and repeated epochs
    (and mixed in another run's) when the folder was trained again or resumed from an earlier checkpoint."""
    import trainer.train as train_module

    real_save = train_module.save_checkpoint

    def save_then_die(ckpt, path):
        real_save(ckpt, path)
        if Path(path).name == "last.pth" and ckpt["step"] == 3:
            raise _Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _train(tmp_path, "--max-steps", "3")
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    last = _checkpoint(tmp_path / "last.pth")
    assert last["best_val_loss"] == last["history"][-1]["val_loss"]  # epoch 3 improved: best.pth must be it
    assert _checkpoint(tmp_path / "best.pth")["step"] == 3

    assert _train(tmp_path, "--max-steps", "4", "--resume") == 0
    assert _history_file(tmp_path) == [(1, 1), (2, 2), (3, 3), (4, 4)]
    shutil.copy(tmp_path / "last.pth", tmp_path / "step4.pth")
    assert _train(tmp_path, "--max-steps", "5", "--resume") == 0
    assert _train(tmp_path, "--max-steps", "5", "--resume", str(tmp_path / "step4.pth")) == 0  # step 5 again
    assert _history_file(tmp_path) == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]

    assert _train(tmp_path, "--max-steps", "2") == 0  # a new run in the folder: its own history only
    assert _history_file(tmp_path) == [(1, 1), (2, 2)]
    assert [(h["epoch"], h["step"]) for h in _checkpoint(tmp_path / "last.pth")["history"]] == [(1, 1), (2, 2)]


@needs_data
def test_resume_goes_on_with_the_runs_seed_and_split_unless_given(tmp_path):
    """`--resume` alone continues a run of --seed 3 --split-seed 2 --val-fraction 0.5 on its own patch stream and
    validation rows, to the bit as if never stopped. Before, it fell back to the defaults: other patches, and
    validation on other rows, part of which the run had trained on."""
    identity = ["--seed", "3", "--split-seed", "2", "--val-fraction", "0.5"]
    assert _train(tmp_path / "whole", *identity, "--max-steps", "3") == 0
    assert _train(tmp_path / "resumed", *identity, "--max-steps", "1") == 0
    assert _train(tmp_path / "resumed", "--max-steps", "3", "--resume") == 0

    whole = _checkpoint(tmp_path / "whole" / "last.pth")
    resumed = _checkpoint(tmp_path / "resumed" / "last.pth")
    assert {k: resumed["config"][k] for k in ("seed", "split_seed", "val_fraction")} == {
        "seed": 3, "split_seed": 2, "val_fraction": 0.5}
    assert resumed["data_summary"] == whole["data_summary"]
    for name, tensor in whole["model_state_dict"].items():
        assert torch.equal(tensor, resumed["model_state_dict"][name]), name
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in whole["history"]]
    assert json.loads((tmp_path / "resumed" / "config.json").read_text())["seed"] == 3
    # an option given on the command line still wins
    assert _train(tmp_path / "resumed", "--max-steps", "4", "--resume", "--seed", "5") == 0
    assert _checkpoint(tmp_path / "resumed" / "last.pth")["config"]["seed"] == 5


@needs_data
def test_resume_alone_goes_on_with_the_runs_recipe_and_data(tmp_path):
    """`--resume` with no other option continues the run as it was set up: its data, learning-rate schedule,
    batch and patch size and steps per epoch, to the bit as if never stopped. Before, they fell back to the
    defaults: the default manifest (the whole collection instead of the run's one scene), lr 2e-4 instead of the
    run's dropped 5e-4, 256 px patches and 500 steps an epoch."""
    recipe = ["--lr-drop-step", "2", "--lr-drop-factor", "0.5"]
    assert _train(tmp_path / "whole", *recipe, "--max-steps", "3") == 0
    assert _train(tmp_path / "resumed", *recipe, "--max-steps", "1") == 0
    assert main(["--out", str(tmp_path / "resumed"), "--resume", "--max-steps", "3", "--device", "cpu",
                 "--threads", "1", "--no-progress"]) == 0

    whole = _checkpoint(tmp_path / "whole" / "last.pth")
    resumed = _checkpoint(tmp_path / "resumed" / "last.pth")
    assert {k: resumed["config"][k] for k in ("data", "lr", "lr_drop_step", "patch_size", "batch_size",
                                              "steps_per_epoch")} == {
        "data": str(SCENE), "lr": 1e-3, "lr_drop_step": 2, "patch_size": 64, "batch_size": 2, "steps_per_epoch": 1}
    assert [h["lr"] for h in resumed["history"]] == [h["lr"] for h in whole["history"]] == [1e-3, 5e-4, 5e-4]
    assert resumed["data_summary"] == whole["data_summary"]
    for name, tensor in whole["model_state_dict"].items():
        assert torch.equal(tensor, resumed["model_state_dict"][name]), name


@needs_data
def test_a_resume_that_would_validate_on_other_pixels_is_refused(tmp_path, capsys):
    """Another --val-fraction on resume moved rows between training and validation: the run then validated on
    rows it had trained on and compared the figures with a best_val_loss measured elsewhere, without a word."""
    assert _train(tmp_path, "--max-steps", "1") == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("last.pth", "config.json", "history.jsonl")}
    capsys.readouterr()
    assert _train(tmp_path, "--max-steps", "2", "--resume", "--val-fraction", "0.5") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "would validate on other pixels of s1_iw_grd_berlin_512.tif" in err and "--init" in err
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert _train(tmp_path, "--max-steps", "2", "--resume", "--val-fraction", "0.2") == 0  # its own: goes on


@needs_data
def test_a_run_stopped_within_an_epoch_by_max_steps_goes_on_within_it(tmp_path):
    """--max-steps 4 then --resume --max-steps 6, with 3 steps an epoch, ends with the weights of one run of 6
    steps, to the bit. Before, the stop was saved as the end of epoch 2, so the resumed run drew epoch 3's
    patches for steps 5 and 6 instead of epoch 2's last batches (and its history had three epochs for two)."""
    epochs = ["--steps-per-epoch", "3"]
    assert _train(tmp_path / "whole", *epochs, "--max-steps", "6") == 0
    assert _train(tmp_path / "stopped", *epochs, "--max-steps", "4") == 0
    stopped = _checkpoint(tmp_path / "stopped" / "last.pth")
    assert stopped["epoch"] == 1 and stopped["history"][-1]["partial"] is True
    assert _train(tmp_path / "stopped", *epochs, "--max-steps", "6", "--resume") == 0
    whole, resumed = _checkpoint(tmp_path / "whole" / "last.pth"), _checkpoint(tmp_path / "stopped" / "last.pth")
    for k, v in whole["model_state_dict"].items():
        assert torch.equal(v, resumed["model_state_dict"][k]), k
    assert _history_file(tmp_path / "whole") == [(1, 3), (2, 6)]
    assert _history_file(tmp_path / "stopped") == [(1, 3), (2, 4), (2, 6)]  # the stop's validation, then epoch 2
    assert "partial" not in resumed["history"][-1] and resumed["epoch"] == whole["epoch"] == 2


@needs_data
def test_a_warm_start_or_a_new_lr_does_not_carry_the_old_legs_schedule(tmp_path):
    """A warm start (fp16, no optimiser state) starts a new leg, often on another machine: resumed on the CPU
    after a GPU call it took that call's batch of 32 and its lr drop, which scaled the trunk's --lr 3.125e-6
    by 0.25 without a word. And a new --lr given to the run's own last.pth does not take the old rate's drop."""
    from trainer.checkpoint import load_checkpoint, save_warm_start
    from trainer.config import TrainConfig
    from trainer.train import adopt_resumed_settings

    assert _train(tmp_path / "leg", "--lr-drop-step", "1", "--lr-drop-factor", "0.25", "--max-steps", "1") == 0
    last = tmp_path / "leg" / "last.pth"
    save_warm_start(load_checkpoint(last), tmp_path / "warm.pth")
    defaults = TrainConfig()

    warm = adopt_resumed_settings(TrainConfig(resume=str(tmp_path / "warm.pth"), lr=3e-6), {"resume", "lr"})
    assert (warm.batch_size, warm.patch_size, warm.lr_drop_step) == (defaults.batch_size, defaults.patch_size, None)
    assert (warm.seed, warm.latent_channels) == (0, 16)  # identity and shape still come with it

    own = adopt_resumed_settings(TrainConfig(resume=str(last), lr=3e-6), {"resume", "lr"})
    assert (own.lr, own.lr_drop_step, own.batch_size, own.patch_size) == (3e-6, None, 2, 64)
    again = adopt_resumed_settings(TrainConfig(resume=str(last)), {"resume"})
    assert (again.lr, again.lr_drop_step, again.lr_drop_factor) == (1e-3, 1, 0.25)
