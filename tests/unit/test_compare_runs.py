"""Grouping of sar-eval figures by variant over seeds (trainer.compare_runs), on hand-made run folders."""

import json
import math

import pytest

from trainer import compare_runs


def _run(root, variant, seed, val_losses, seconds=(10.0, 8.0, 9.0)):
    d = root / f"{variant}_s{seed}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"variant": variant, "seed": seed, "steps_per_epoch": 4}))
    lines = [json.dumps({"epoch": i + 1, "step": 4 * (i + 1), "patches_seen": 16 * (i + 1), "val_loss": v,
                         "val_psnr": 20.0 - v, "seconds": s, "skipped_batches": i}) for i, (v, s) in enumerate(zip(val_losses, seconds))]
    (d / "history.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _eval_doc(out, bd_by_run):
    """rd_points.json as benchmarks/rate_distortion.py writes it, one folder per run."""
    for run, bd in bd_by_run.items():
        (out / run).mkdir(parents=True)
        doc = {"model": {"parameters": 1000},
               "bd_rate": {"all": {"bd_rate_percent": bd}, "VV": {"bd_rate_percent": 0.0}}}
        (out / run / "rd_points.json").write_text(json.dumps(doc))


def test_runs_and_seed_statistics(tmp_path, drawn_text):
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.25])
    _run(runs_dir, "residual", 1, [0.3, 0.22, 0.21])
    _run(runs_dir, "baseline", 0, [0.4, 0.35, 0.33])
    _eval_doc(out, {"residual_s0": 20.0, "residual_s1": 21.0, "baseline_s0": 18.0, "attention_s0": None})

    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    doc = json.loads((out / "runs.json").read_text())
    by_run = {r["run"]: r for r in doc["runs"]}
    assert by_run["residual_s0"]["best_val_loss"] == pytest.approx(0.2)
    assert by_run["residual_s0"]["skipped_batches"] == 0 + 1 + 2
    assert by_run["residual_s0"]["step_s_median"] == pytest.approx(8.5 / 4, abs=0.01)  # first epoch excluded
    res = doc["by_variant"]["residual"]
    assert res["seeds"] == 2
    assert res["bd_rate_percent"]["mean"] == pytest.approx(20.5)
    assert res["bd_rate_percent"]["std"] == pytest.approx(math.sqrt(0.5))
    assert doc["by_variant"]["baseline"]["bd_rate_percent"]["std"] is None
    assert "attention" not in doc["by_variant"]  # no BD-rate (no overlap): left out, not counted as 0
    assert "| residual | 2 | 0.00M | 20.5 ± 0.7 |" in (out / "runs.md").read_text()
    assert "| residual_s1 | residual | 1 | 12 | 48 | 0.2100 |" in (out / "runs.md").read_text()  # patches too
    assert (out / "training_curves.png").stat().st_size > 1000
    assert "residual s1 (12 steps, 48 patches)" in drawn_text[-1]  # each run says how far it trained


def test_no_runs_is_an_error(tmp_path, capsys):
    assert compare_runs.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "no runs" in capsys.readouterr().err


def test_a_missing_or_empty_runs_folder_is_one_line_and_makes_no_out_folder(tmp_path, capsys):
    for runs in (tmp_path / "absent", tmp_path):
        assert compare_runs.main([str(runs), "--out", str(tmp_path / "new" / "o")]) == 1
        err = capsys.readouterr().err
        assert err == f"no runs with history.jsonl under {runs}\n"
        assert not (tmp_path / "new").exists()


def test_a_run_not_validated_yet_is_named_not_dropped_or_a_traceback(tmp_path, capsys):
    """A run folder without a validated epoch (sar-train writes config.json as it starts, last.pth within the
    first epoch) was left out of the table without a word, and one with an empty history.jsonl ended the
    comparison in an IndexError traceback while drawing the curves."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "baseline", 0, [0.4, 0.35])
    started = runs_dir / "residual_s0"
    started.mkdir()
    (started / "config.json").write_text(json.dumps({"variant": "residual", "seed": 0}))
    empty = _run(runs_dir, "attention", 0, [0.3])
    (empty / "history.jsonl").write_text("")
    (runs_dir / "notes").mkdir()  # not a run folder

    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    doc = json.loads((out / "runs.json").read_text())
    assert [r["run"] for r in doc["runs"]] == ["baseline_s0"]
    assert doc["not_validated"] == ["attention_s0", "residual_s0"]
    assert "Not validated yet (no epoch ended), so not in the table: attention_s0, residual_s0" in \
        (out / "runs.md").read_text()
    # with no validated run at all, the one-line error names them
    for name in ("baseline_s0", "notes"):
        for f in (runs_dir / name).iterdir():
            f.unlink()
        (runs_dir / name).rmdir()
    capsys.readouterr()
    assert compare_runs.main([str(runs_dir), "--out", str(tmp_path / "o2")]) == 1
    assert capsys.readouterr().err == (f"no runs with history.jsonl under {runs_dir} "
                                       f"(not validated yet: attention_s0, residual_s0)\n")
