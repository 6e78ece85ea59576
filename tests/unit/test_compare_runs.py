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
    assert "| residual | 2 | 0.00M | ? | ? | 20.5 ± 0.7 |" in (out / "runs.md").read_text()  # no training record
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


def _eval_at(out, run, bd, steps, patches=None, note=None, qualities=(0.0, 1.0, 2.0)):
    """rd_points.json of a bundle exported from the checkpoint at `steps` (the manifest's training record, as
    rate_distortion.model_info keeps it)."""
    (out / run).mkdir(parents=True)
    training = {"epochs": 1, "steps": steps, "steps_total": steps, "patches_seen_total": patches}
    settings = {"scenes": ["frankfurt_512"], "qualities": list(qualities), "jpeg2000_target_bpp": [0.1, 0.5, 2.0],
                "rounding": ["rate_distortion"], "jpeg2000": "JPEG-2000 (GDAL JP2OpenJPEG)"}
    doc = {"model": {"name": run, "parameters": 1000, "training": training}, "settings": settings,
           "bd_rate": {"all": {"bd_rate_percent": bd, **({"note": note} if note else {})}}}
    (out / run / "rd_points.json").write_text(json.dumps(doc))


def test_the_bd_rate_table_says_which_budget_each_evaluated_checkpoint_had(tmp_path):
    """The BD-rate is of each run's best.pth, which may be an earlier epoch than the run's last: the committed
    comparison averaged residual_s1 at 1,000 steps with 1,500-step runs under "each variant trained 1,500 steps",
    and the table named no budget at all."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])  # best at its last step, 12
    _run(runs_dir, "residual", 1, [0.3, 0.2, 0.25])  # best.pth at step 8
    _run(runs_dir, "baseline", 0, [0.4, 0.35, 0.33])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    _eval_at(out, "residual_s1", 30.0, 8, 32)
    _eval_at(out, "baseline_s0", 10.0, 12, 48)

    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    md = (out / "runs.md").read_text()
    assert "| Variant | Seeds | Params | Steps (evaluated) | Patches (evaluated) | BD-rate (%) |" in md
    assert "| residual | 2 | 0.00M | 12 / 8 | 48 / 32 | 25.0 ± 7.1 |" in md
    assert "| baseline | 1 | 0.00M | 12 | 48 | 10.0 |" in md
    assert "**Budgets differ**" in md and "12 steps, 48 patches: baseline_s0, residual_s0; 8 steps, 32 patches: " \
        "residual_s1" in md
    assert "| residual_s1 | residual | 1 | 12 | 48 | 0.2000 | 8 |" in md  # the run's best.pth step beside its last
    doc = json.loads((out / "runs.json").read_text())
    assert doc["by_variant"]["residual"]["steps"] == [12, 8]
    assert doc["by_variant"]["residual"]["runs"] == ["residual_s0", "residual_s1"]


def test_one_budget_says_so_and_flags_nothing(tmp_path):
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])
    _run(runs_dir, "baseline", 0, [0.4, 0.35, 0.33])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    _eval_at(out, "baseline_s0", 10.0, 12, 48)
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    md = (out / "runs.md").read_text()
    assert "budgets differ" not in md.lower()
    assert "every evaluated checkpoint saw 12 steps, 48 patches." in md


def test_an_evaluation_of_an_older_checkpoint_is_named_not_averaged(tmp_path):
    """A run trained on after its evaluation (or an evaluate loop stopped before it reached the run) kept its
    earlier rd_points.json, which was averaged into the variant's BD-rate without a word."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])  # best.pth now at step 12
    _run(runs_dir, "residual", 1, [0.3, 0.2, 0.1])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    _eval_at(out, "residual_s1", 99.0, 4, 16)  # measured when best.pth was step 4's

    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    doc = json.loads((out / "runs.json").read_text())
    assert doc["by_variant"]["residual"]["bd_rate_percent"]["values"] == [20.0]
    assert "evaluated at step 4" in doc["left_out"]["residual_s1"]
    md = (out / "runs.md").read_text()
    assert "residual_s1: evaluated at step 4, its best.pth is now step 12's" in md


def test_runs_without_a_bd_rate_are_named(tmp_path):
    """A variant whose runs had no BD-rate (no overlap with JPEG-2000's range, or never evaluated) vanished from
    the table: "does CBAM help?" then had no attention row and no reason."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])
    _run(runs_dir, "attention", 0, [0.3, 0.2, 0.1])
    _run(runs_dir, "baseline", 0, [0.3, 0.2, 0.1])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    _eval_at(out, "attention_s0", None, 12, 48, note="no overlap in dB RMSE (reference 0.5-2.2, test 9-13)")
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    md = (out / "runs.md").read_text()
    assert "attention_s0: no overlap in dB RMSE (reference 0.5-2.2, test 9-13)" in md
    assert "baseline_s0: not evaluated" in md


def test_results_are_published_whole_or_not_at_all(tmp_path, disk_full_mid_write):
    """runs.json and runs.md were written in place: a full disk or a Ctrl-C mid-write left a cut-off table
    where the last comparison's had been."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    _run(runs_dir, "residual", 1, [0.3, 0.2, 0.1])  # a second seed: every file would change
    disk_full_mid_write()
    with pytest.raises(OSError):
        compare_runs.main([str(runs_dir), "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_each_seed_of_a_variant_is_drawn_its_own_way(tmp_path, monkeypatch):
    """Every seed but 0 was drawn dotted in the variant's colour: three seeds of a variant were two lines."""
    from matplotlib.figure import Figure

    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    for seed in (0, 1, 2):
        _run(runs_dir, "residual", seed, [0.3, 0.2, 0.1])
    styles = []
    savefig = Figure.savefig

    def recording(fig, *args, **kwargs):
        styles.extend((line.get_color(), line.get_linestyle()) for line in fig.axes[0].get_lines()
                      if line.get_label().startswith("residual"))
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    assert len(styles) == 3 and len(set(styles)) == 3


def test_the_table_is_rebuilt_from_runs_json_when_the_run_folders_are_gone(tmp_path):
    """The committed comparison's run folders no longer exist; after `rate_distortion.py --rebaseline` rewrote each
    run's rd_points.json, runs.md and runs.json kept the BD-rates of before (attention +219.1% in runs.md,
    +242.4% in attention_s0/rd_points.json), and nothing could rebuild them."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    curves = (out / "training_curves.png").read_bytes()
    doc = json.loads((out / "residual_s0" / "rd_points.json").read_text())
    doc["bd_rate"]["all"]["bd_rate_percent"] = 25.0  # rebaselined
    (out / "residual_s0" / "rd_points.json").write_text(json.dumps(doc))
    for f in (runs_dir / "residual_s0").iterdir():
        f.unlink()

    assert compare_runs.main([str(out / "runs.json"), "--out", str(out)]) == 0
    md = (out / "runs.md").read_text()
    assert "| residual | 1 | 0.00M | 12 | 48 | 25.0 |" in md
    assert "| residual_s0 | residual | 0 | 12 | 48 | 0.1000 | 12 |" in md  # the runs' rows as recorded
    assert (out / "training_curves.png").read_bytes() == curves  # no histories to draw: the figure is kept


def test_a_diverged_run_is_rebuilt_from_runs_json_too(tmp_path):
    """A run whose every validation loss was NaN has a NaN best loss, which runs.json records as null (strict
    JSON): rebuilding the table from that runs.json failed on it (TypeError formatting None)."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [math.nan, math.nan])
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    row = next(line for line in (out / "runs.md").read_text().splitlines() if line.startswith("| residual_s0 "))
    assert json.loads((out / "runs.json").read_text())["runs"][0]["best_val_loss"] is None
    assert compare_runs.main([str(out / "runs.json"), "--out", str(out)]) == 0
    assert row in (out / "runs.md").read_text().splitlines()  # the same row either way


def test_runs_measured_with_other_benchmark_settings_are_flagged(tmp_path):
    """A --quick evaluation (two quality levels, three JPEG-2000 rates) beside full ones was averaged with them."""
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    runs_dir.mkdir()
    _run(runs_dir, "residual", 0, [0.3, 0.2, 0.1])
    _run(runs_dir, "residual", 1, [0.3, 0.2, 0.1])
    _eval_at(out, "residual_s0", 20.0, 12, 48)
    _eval_at(out, "residual_s1", 30.0, 12, 48, qualities=(0.0, 2.0))
    assert compare_runs.main([str(runs_dir), "--out", str(out)]) == 0
    assert "**Measured differently** (BD-rates not comparable): qualities of residual_s1 differ from residual_s0's" \
        in (out / "runs.md").read_text()
    assert json.loads((out / "runs.json").read_text())["settings_differ"] == {"qualities": ["residual_s1"]}


def test_the_committed_comparison_agrees_with_its_runs_reports():
    """benchmarks/results/variant_comparison_rd: runs.md and runs.json kept the BD-rates from before each run's
    rd_points.json was rebaselined (attention +219.1% against +242.4% beside it), and the 1,000-step checkpoint of
    residual_s1 passed for a 1,500-step one."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "variant_comparison_rd"
    doc = json.loads((folder / "runs.json").read_text())
    for variant, stats in doc["by_variant"].items():
        for run, value, steps in zip(stats["runs"], stats["bd_rate_percent"]["values"], stats["steps"]):
            points = json.loads((folder / run / "rd_points.json").read_text())
            assert value == points["bd_rate"]["all"]["bd_rate_percent"], run
            assert steps == points["model"]["training"]["steps"], run
    md = (folder / "runs.md").read_text()
    assert "| attention | 1 | 2.34M | 1,500 | ? | 242.4 |" in md
    assert "1,000 steps, patches not recorded: residual_s1" in md
