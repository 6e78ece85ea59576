"""scripts/compare_variants.sh's plumbing, with stand-ins for sar-train, sar-export and python that record their
arguments: what it passes to each step and what it leaves in the results folder when a step fails."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "{log}"
{body}
"""


def _sandbox(tmp_path, export_body="echo '{\"bundle\": \"new\"}'; mkdir -p \"$2\"; touch \"$2/manifest.json\""):
    """A copy of the script beside stand-in tools; one run folder with a best.pth newer than its bundle."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "compare_variants.sh", root / "scripts")
    (root / ".venv" / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    for tool, body in (("sar-train", ""), ("sar-export", export_body), ("python", "")):
        path = root / ".venv" / "bin" / tool
        path.write_text(STUB.format(log=log, body=body))
        path.chmod(0o755)
    runs, res = tmp_path / "runs", tmp_path / "res"
    (runs / "residual_s0").mkdir(parents=True)
    (runs / "residual_s0" / "best.pth").write_bytes(b"weights")
    return root, runs, res, log


def _run(root, runs, res, *args, **env):
    return subprocess.run(["bash", str(root / "scripts" / "compare_variants.sh"), *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, RUNS=str(runs), RESULTS=str(res), **env))


def test_a_failed_export_keeps_the_earlier_report(tmp_path):
    """The export's report was the target of a shell redirect, emptied before sar-export ran: a failed export
    left an empty export_<run>.json in place of the last good one."""
    root, runs, res, _ = _sandbox(tmp_path, export_body="echo '{\"bund'; exit 2")
    res.mkdir()
    (res / "export_residual_s0.json").write_text('{"bundle": "earlier"}')
    proc = _run(root, runs, res, "evaluate")
    assert proc.returncode != 0
    assert sorted(p.name for p in res.iterdir()) == ["export_residual_s0.json"]
    assert (res / "export_residual_s0.json").read_text() == '{"bundle": "earlier"}'


def test_evaluate_exports_measures_and_compares_each_run_quick_on_request(tmp_path):
    root, runs, res, log = _sandbox(tmp_path)
    proc = _run(root, runs, res, "evaluate", QUICK="1")
    assert proc.returncode == 0, proc.stderr
    assert (res / "export_residual_s0.json").read_text() == '{"bundle": "new"}\n'
    calls = log.read_text().splitlines()
    assert calls[0].startswith(f"sar-export {runs}/residual_s0/best.pth {runs}/bundles/residual_s0 ")
    assert calls[1].startswith("python benchmarks/rate_distortion.py") and " --quick " in calls[1]
    assert calls[1].endswith(f"--out {res}/residual_s0")
    assert calls[2] == f"python -m trainer.compare_runs {runs} --out {res}"
    # without QUICK: every level against every JPEG-2000 rate; the bundle is current, so it is not exported again
    log.unlink()
    assert _run(root, runs, res, "evaluate").returncode == 0
    calls = log.read_text().splitlines()
    assert calls[0].startswith("python benchmarks/rate_distortion.py") and "--quick" not in calls[0]


def test_train_gives_every_seed_the_same_split(tmp_path):
    root, runs, res, log = _sandbox(tmp_path)
    assert _run(root, runs, res, "train", "1", "residual", "attention", STEPS="3", PATCH="64").returncode == 0
    calls = log.read_text().splitlines()
    assert len(calls) == 2
    for call, variant in zip(calls, ("residual", "attention")):
        assert f"--variant {variant} --seed 1 --split-seed 0 --out {runs}/{variant}_s1 --max-steps 3" in call
        assert "--patch-size 64" in call and call.endswith("--resume")


def test_quick_0_measures_every_level(tmp_path):
    """QUICK=1 asks for the crude sweep; QUICK=0 (as AMP=0 elsewhere) is no request: it was taken as one, since
    the script only asked whether QUICK was set, and a run's figures to keep came from two levels."""
    root, runs, res, log = _sandbox(tmp_path)
    assert _run(root, runs, res, "evaluate", QUICK="0").returncode == 0
    calls = log.read_text().splitlines()
    assert calls[1].startswith("python benchmarks/rate_distortion.py") and "--quick" not in calls[1]


def test_train_again_skips_the_runs_already_at_their_steps(tmp_path):
    """sar-train refuses to resume a run whose --max-steps is reached (it trained nothing, exit 0): a rerun of
    `train` after an interruption would stop at the first finished run, so the script leaves those alone."""
    root, runs, res, log = _sandbox(tmp_path)  # the stand-in python says "done" for any last.pth
    (runs / "residual_s1").mkdir()
    (runs / "residual_s1" / "last.pth").write_bytes(b"weights")
    proc = _run(root, runs, res, "train", "1", "residual", "attention", STEPS="3")
    assert proc.returncode == 0, proc.stderr
    assert f"{runs}/residual_s1: already at 3 steps" in proc.stdout
    calls = log.read_text().splitlines()
    assert calls[0].startswith("python -c ") and calls[0].endswith(f"{runs}/residual_s1/last.pth 3")
    assert [c.split()[0] for c in calls] == ["python", "sar-train"] and "--variant attention" in calls[1]
