"""An ML engineer's audit of the trainer's tools, fixed: trainer.average refuses checkpoints of different runs,
sar-eval refuses scene names it cannot find and says which scenes and planes its figures cover, trainer.pack
and trainer.compare_runs refuse an unusable --out in one line (and the pack leaves no partial file), and
sar-export names a bundle after the checkpoint's folder when given a path relative to it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_compress_plugin.core.preprocessing import PreprocessingParams
from trainer import compare_runs
from trainer.average import main as average_main
from trainer.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint, save_warm_start
from trainer.cli import main as train_main
from trainer.evaluate import main as eval_main
from trainer.pack import main as pack_main
from trainer.registry import create_model

SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"
needs_data = pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")

#: A tiny run on the one shared scene (its rows split into training and validation), fast on one CPU core.
TINY_RUN = ["--variant", "baseline", "--data", str(SCENE), "--device", "cpu", "--patch-size", "64", "--batch-size",
            "2", "--channels", "8", "--latent-channels", "16", "--hyper-channels", "8", "--lambdas", "0.001", "0.01",
            "--steps-per-epoch", "2", "--no-progress"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> Path:
    """Run A (2 steps) and its snapshot at step 2; its warm start resumed into another folder, B (to step 4);
    run C, another seed (4 steps)."""
    root = tmp_path_factory.mktemp("runs")
    assert train_main([*TINY_RUN, "--out", str(root / "A"), "--max-steps", "2"]) == 0
    shutil.copy(root / "A" / "last.pth", root / "A_step2.pth")
    save_warm_start(load_checkpoint(root / "A" / "last.pth"), root / "warm_start.pth")
    assert train_main([*TINY_RUN, "--out", str(root / "B"), "--resume", str(root / "warm_start.pth"),
                       "--max-steps", "4"]) == 0
    assert train_main([*TINY_RUN, "--out", str(root / "C"), "--max-steps", "4", "--seed", "1"]) == 0
    return root


# 1. trainer.average: checkpoints of one run only

@needs_data
def test_average_takes_snapshots_and_a_warm_starts_resumed_run(tiny_runs, tmp_path, capsys):
    """What the project averages: a run's snapshots, and the run resumed from its warm start into another folder
    (the resumed run keeps the warm start's history)."""
    last = tiny_runs / "B" / "last.pth"
    assert average_main([str(tmp_path / "a.pth"), str(tiny_runs / "A_step2.pth"), str(last)]) == 0
    assert average_main([str(tmp_path / "b.pth"), str(tiny_runs / "warm_start.pth"), str(last)]) == 0
    assert load_checkpoint(tmp_path / "b.pth")["data_summary"]["averaged_steps"] == [2, 4]


@needs_data
def test_average_refuses_checkpoints_of_two_runs(tiny_runs, tmp_path, capsys):
    """Two runs of other seeds and patch sizes were averaged into a checkpoint that claimed the last one's
    training (its validation loss 154 against the last one's 16.7)."""
    out = tmp_path / "mean.pth"
    assert average_main([str(out), str(tiny_runs / "A" / "last.pth"), str(tiny_runs / "C" / "last.pth")]) == 2
    err = _one_error_line(capsys)
    assert "are not checkpoints of one run (seed 0 against 1)" in err and f"step 4 of {tiny_runs / 'C'}" in err
    assert not out.exists()


def _checkpoint(step: int, history: list[dict], seed: int = 0) -> dict:
    torch.manual_seed(step)
    model = create_model("baseline", channels=8, latent_channels=8, hyper_channels=6, lambdas=[0.001, 0.01])
    return make_checkpoint(model, epoch=len(history), step=step, best_val_loss=1.0, history=history,
                           preprocessing_params={}, config={"seed": seed, "split_seed": 0},
                           data_summary={"val_scenes": ["v.tif"]})


def test_average_refuses_a_branch_whose_history_the_last_one_does_not_go_on_from(tmp_path, capsys):
    """Same seeds and split, but the last checkpoint's run did not pass through the earlier one: a run resumed
    from an earlier checkpoint, or another run of the same settings. A NaN validation loss is no difference."""
    nan_epoch, epoch = {"step": 10, "val_loss": float("nan")}, {"step": 20, "val_loss": 1.5}
    save_checkpoint(_checkpoint(10, [nan_epoch]), tmp_path / "a.pth")
    save_checkpoint(_checkpoint(20, [nan_epoch, epoch]), tmp_path / "b.pth")
    save_checkpoint(_checkpoint(30, [{"step": 10, "val_loss": 2.0}, epoch]), tmp_path / "other.pth")
    assert average_main([str(tmp_path / "mean.pth"), str(tmp_path / "a.pth"), str(tmp_path / "b.pth")]) == 0
    assert average_main([str(tmp_path / "m2.pth"), str(tmp_path / "a.pth"), str(tmp_path / "other.pth")]) == 2
    assert "its history of 1 validations is not the start of the other's 2" in _one_error_line(capsys)
    # within a first epoch nothing is validated yet: the seeds tell the runs apart
    save_checkpoint(_checkpoint(5, [], seed=1), tmp_path / "c.pth")
    assert average_main([str(tmp_path / "m3.pth"), str(tmp_path / "c.pth"), str(tmp_path / "a.pth")]) == 2
    assert "(seed 1 against 0)" in _one_error_line(capsys)
    assert not (tmp_path / "m2.pth").exists() and not (tmp_path / "m3.pth").exists()


# 2. sar-eval: scene names, non-validation scenes, --max-planes

@needs_data
def test_sar_eval_refuses_a_scene_name_it_cannot_find(tmp_path, capsys, tiny_bundle):
    out = tmp_path / "eval"
    rc = eval_main(["--bundle", str(tiny_bundle), "--scenes", SCENE.name, "typo_scene.tif", "--data",
                    str(SCENE.parent), "--out", str(out)])
    assert rc == 2
    assert f"no scene typo_scene.tif under {SCENE.parent} (--scenes takes names" in _one_error_line(capsys)
    assert not out.exists()


@needs_data
def test_sar_eval_says_which_scenes_are_not_validation_scenes(tmp_path, capsys, tiny_bundle):
    """Berlin, a training scene of the bundle's run, was reported as "the validation scene-bands"."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"] = {"data_summary": {"data": str(SCENE.parent), "train_scenes": [SCENE.name],
                                             "val_scenes": ["s1_iw_grd_frankfurt_512.tif"]}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "eval"
    assert eval_main(["--bundle", str(bundle), "--scenes", SCENE.name, "--out", str(out)]) == 0
    md = (out / "codec_results.md").read_text()
    assert "validation scene-bands" not in md
    (label, result), = json.loads((out / "codec_results.json").read_text())["results"].items()
    assert [f["split"] for f in result["files"]] == ["training"]
    assert f"**Not validation scenes** of the model's training run: {label}: {SCENE.name} (training)" in md


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_runs) -> Path:
    return tiny_runs / "A" / "best.pth"


@needs_data
@pytest.mark.parametrize("value", ["0", "-1"])
def test_sar_eval_refuses_max_planes_below_one(tiny_checkpoint, tmp_path, capsys, value):
    """0 evaluated every plane, -1 all but the last."""
    out = tmp_path / "eval"
    assert eval_main([str(tiny_checkpoint), "--out", str(out), "--max-planes", value]) == 2
    assert f"--max-planes must be >= 1, got {value}" in _one_error_line(capsys)
    assert not out.exists()


@needs_data
def test_sar_eval_says_when_only_some_planes_were_evaluated(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    assert eval_main([str(tiny_checkpoint), "--out", str(out), "--max-planes", "1"]) == 0
    assert "**Only some validation planes** (--max-planes): baseline: the first 1 of 2" in \
        (out / "results.md").read_text()
    assert eval_main([str(tiny_checkpoint), "--out", str(out), "--max-planes", "2"]) == 0
    assert "Only some" not in (out / "results.md").read_text()


# 3. trainer.pack: --out

@pytest.fixture
def small_data(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "scene.npy", np.random.default_rng(0).gamma(4.0, 1.0, (64, 64)).astype(np.float32))
    return data


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if "partial" in p.name)


def test_pack_refuses_an_unusable_out_in_one_line_before_packing(small_data, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "pkdir"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("keep")
    cases = [(folder, "pkdir: is a folder; --out names the .npz file to write"),
             (afile / "x.npz", "afile: exists and is not a folder")]
    if os.path.isdir("/proc/self"):  # Linux: a folder nothing can be created in, even as root
        cases.append((Path("/proc/x.npz"), "/proc: cannot write there"))
    monkeypatch.setattr("trainer.pack.read_collection", lambda *a, **k: pytest.fail("packing started"))
    for out, message in cases:
        assert pack_main(["--data", str(small_data), "--out", str(out)]) == 2
        assert message in _one_error_line(capsys)
    assert afile.read_text() == "keep" and list(folder.iterdir()) == [] and _leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_pack_cut_short_leaves_no_partial_file(small_data, tmp_path, capsys, monkeypatch, failure):
    real = np.savez_compressed

    def cut_short(file, *args, **kwargs):
        real(file, *args, **kwargs)
        raise failure

    monkeypatch.setattr(np, "savez_compressed", cut_short)
    out = tmp_path / "new" / "planes.npz"
    if isinstance(failure, OSError):
        assert pack_main(["--data", str(small_data), "--out", str(out)]) == 2
        assert "planes.npz: cannot write the pack (No space left on device)" in _one_error_line(capsys)
    else:
        with pytest.raises(KeyboardInterrupt):
            pack_main(["--data", str(small_data), "--out", str(out)])
    assert _leftovers(tmp_path) == [] and not (tmp_path / "new").exists()


# 4. trainer.compare_runs: --out, an empty BD-rate table, the runs table

def _run(root: Path, name: str, config: dict, steps: int = 3000, patches: int = 12000) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"variant": name.rsplit("_s", 1)[0], "seed": 0, **config}))
    (d / "history.jsonl").write_text(json.dumps({"epoch": 1, "step": steps, "patches_seen": patches,
                                                 "val_loss": 0.3, "val_psnr": 20.0, "seconds": 9.0}) + "\n")


def test_compare_runs_refuses_an_unusable_out_in_one_line(tmp_path, capsys):
    _run(tmp_path / "runs", "baseline_s0", {})
    afile = tmp_path / "afile"
    afile.write_text("keep")
    cases = [(afile, "afile: exists and is not a folder")]
    if os.path.isdir("/proc/self"):
        cases.append((Path("/proc/x"), "/proc/x: cannot write there"))
    for out, message in cases:
        assert compare_runs.main([str(tmp_path / "runs"), "--out", str(out)]) == 2
        assert message in _one_error_line(capsys)
    assert afile.read_text() == "keep"


def test_compare_runs_without_rd_points_says_how_to_make_them(tmp_path, capsys):
    _run(tmp_path / "runs", "baseline_s0", {})
    assert compare_runs.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "runs.md").read_text()
    assert "| Variant | Seeds |" not in md  # no table of headers alone
    assert "No BD-rates yet: no run has its <out>/<run>/rd_points.json (`benchmarks/rate_distortion.py" in md
    assert "scripts/compare_variants.sh evaluate" in md
    with pytest.raises(SystemExit):
        compare_runs.main(["--help"])
    assert "benchmarks/rate_distortion.py --model BUNDLE --out <out>/<run>" in " ".join(capsys.readouterr().out.split())


def test_compare_runs_writes_counts_with_separators_and_flags_other_validation(tmp_path):
    """Runs of another patch size or split validate on other tiles: their validation losses do not compare."""
    _run(tmp_path / "runs", "baseline_s0", {"patch_size": 256, "split_seed": 0})
    _run(tmp_path / "runs", "baseline_s1", {"patch_size": 64, "split_seed": 0})
    _run(tmp_path / "runs", "residual_s0", {"patch_size": 256, "split_seed": 1})
    assert compare_runs.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "runs.md").read_text()
    assert "| baseline_s0 | baseline | 0 | 3,000 | 12,000 | 0.3000 | 3,000 |" in md
    assert ("**Validated differently** (best validation losses not comparable): split_seed of residual_s0 differs "
            "from baseline_s0's; patch_size of baseline_s1 differs from baseline_s0's") in md
    doc = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert doc["validation_differs"] == {"split_seed": ["residual_s0"], "patch_size": ["baseline_s1"]}
    # rebuilt from runs.json (the run folders gone), the flag stays
    assert compare_runs.main([str(tmp_path / "out" / "runs.json"), "--out", str(tmp_path / "out")]) == 0
    assert "patch_size of baseline_s1 differs" in (tmp_path / "out" / "runs.md").read_text()


# 5. sar-export: the bundle's default name

@needs_data
def test_export_from_the_checkpoints_own_folder_names_the_bundle_after_it(tmp_path, monkeypatch):
    from export.cli import main as export_main  # noqa: PLC0415

    run = tmp_path / "hilr"
    run.mkdir()
    ckpt = _checkpoint(3, [])
    ckpt["preprocessing_params"] = PreprocessingParams(clip_db=(20.0, 60.0)).to_dict()
    save_checkpoint(ckpt, run / "best.pth")
    monkeypatch.chdir(run)
    assert export_main(["./best.pth", str(tmp_path / "bundle"), "--calibration", str(SCENE), "--tile", "64",
                        "--max-tiles", "1"]) == 0
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["name"] == "baseline-hilr"
