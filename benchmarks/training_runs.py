"""Warm-started model experiments against the run they branched from, at equal training steps.

An experiment (`sar-train --init CHECKPOINT ...`: a wider latent, a channel context) starts its step count at
0, from a checkpoint at step S of a reference run that goes on training beside it. This compares them where
both have validated: the experiment's step s against the reference's step S + s, on the same validation tiles
(same split seed), by validation loss and by the BD-rate between the two per-level (bpp, PSNR) curves of the
validation (negative = the experiment needs fewer bits). It reads only the runs' history.jsonl and train.log,
so it can run while they train; the codec-level figures come from benchmarks/rate_distortion.py once a model is
exported.

    python benchmarks/training_runs.py runs/vr_baseline runs/widen256 runs/context4 \
        --out benchmarks/results/warm_start_experiments

Session 6's runs are committed (histories, logs, configs), so its table can be rebuilt without the run folders:

    python benchmarks/training_runs.py benchmarks/results/default_model_training \
        benchmarks/results/warm_start_experiments/runs/widen256 benchmarks/results/warm_start_experiments/runs/context4 \
        --out benchmarks/results/warm_start_experiments
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from figures import palette_png  # noqa: E402
from rate_distortion import bd_rate  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

INIT_LINE = re.compile(r"initialised from .* \(step (\d+) of that run\)(.*)$")


def read_run(folder: Path) -> dict:
    hist = folder / "history.jsonl"  # absent until the first validation
    history = [json.loads(line) for line in hist.read_text().splitlines() if line.strip()] if hist.is_file() else []
    config = json.loads((folder / "config.json").read_text())
    offset, change = 0, ""
    log = folder / "train.log"
    if log.is_file():  # the run's first init line: a run resumed later has no --init in its last config
        for line in log.read_text().splitlines():
            m = INIT_LINE.search(line)
            if m:
                offset, change = int(m.group(1)), m.group(2).strip(", ")
                break
    return {"run": folder.name, "offset": offset, "change": change or "same model", "config": config,
            "history": {h["step"] + offset: h for h in history}}


def _shift(run: dict, steps: int) -> dict:
    return {**run, "offset": run["offset"] + steps, "history": {k + steps: h for k, h in run["history"].items()}}


def curve_bd_rate(ref: dict, test: dict) -> float | None:
    """BD-rate of test's per-level validation curve against ref's; distortion = RMSE on the [0, 1] image
    (10^(-PSNR/20)), which is the dB RMSE up to the fixed clip range of the training's validation tiles."""
    def points(h):
        return [p["bpp"] for p in h["val_levels"]], [10 ** (-p["psnr"] / 20) for p in h["val_levels"]]

    r1, d1 = points(ref)
    r2, d2 = points(test)
    return bd_rate(r1, d1, r2, d2)["bd_rate_percent"]


def _patches(run: dict, step: int, record: dict, reference: dict) -> int:
    """Patches the weights had seen at `step` (on the common axis): the run's own count, which holds across
    resumes with another batch or world size, plus what the reference had seen at the branch point (its record
    there and, for a reference that branched itself, its steps before that at its batch size; without a
    record, the steps before the branch at this run's batch size)."""
    own = record.get("patches_seen", (step - run["offset"]) * run["config"]["batch_size"])
    at_branch = reference["history"].get(run["offset"], {}).get("patches_seen")
    if at_branch is None:
        return int(own) + run["offset"] * run["config"]["batch_size"]
    # a reference that is itself a branch records only its own patches: add what it started from
    return int(own) + int(at_branch) + reference["offset"] * reference["config"]["batch_size"]


def compare(reference: dict, runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        for step in sorted(run["history"]):
            ref = reference["history"].get(step)
            if ref is None:
                continue
            h = run["history"][step]
            rows.append({"run": run["run"], "change": run["change"], "step": step,
                         "steps_since_branch": step - run["offset"], "patches_seen": _patches(run, step, h, reference),
                         "val_loss": h["val_loss"], "reference_val_loss": ref["val_loss"],
                         "bd_rate_vs_reference_percent": curve_bd_rate(ref, h),
                         "levels": [{"bpp": p["bpp"], "psnr": p["psnr"], "ref_bpp": q["bpp"], "ref_psnr": q["psnr"]}
                                    for p, q in zip(h["val_levels"], ref["val_levels"])]})
    return rows


def markdown(reference: dict, rows: list[dict]) -> str:
    lines = [f"# Warm-started experiments against `{reference['run']}` at equal steps", "",
             "Validation tiles of the training split (the same for every run). BD-rate: the experiment's per-level "
             "validation curve (bpp, PSNR on the [0,1] dB image) against the reference's at the same step; "
             "negative = fewer bits.", "",
             "| run | change | step (since branch) | patches seen | val loss | reference val loss | BD-rate vs reference |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        bd = r["bd_rate_vs_reference_percent"]
        lines.append(f"| {r['run']} | {r['change']} | {r['step']:,} ({r['steps_since_branch']:,}) | "
                     f"{r['patches_seen']:,} | {r['val_loss']:.4f} | {r['reference_val_loss']:.4f} | "
                     f"{'n/a' if bd is None else f'{bd:+.2f}%'} |")
    last = {}
    for r in rows:
        last[r["run"]] = r
    for r in last.values():
        lines += ["", f"Per level at step {r['step']:,} ({r['run']} / reference): "
                  + "; ".join(f"{p['bpp']:.3f} bpp {p['psnr']:.2f} dB / {p['ref_bpp']:.3f} bpp {p['ref_psnr']:.2f} dB"
                              for p in r["levels"])]
    return "\n".join(lines) + "\n"


def plot(reference: dict, rows: list[dict]) -> Callable[[Path], None]:
    """BD-rate against the reference at equal steps, one line per experiment, drawn now, as the writer
    `publish_files` takes; the x axis is steps in all, and each line's legend says how many steps and patches
    its last point had seen: the experiments stop at different steps and may train more patches a step (DDP),
    so one count for the figure would be wrong for all but one of them."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run and r["bd_rate_vs_reference_percent"] is not None]
        if mine:
            last = mine[-1]
            seen = f"{last['step']:,} steps, {last['patches_seen']:,} patches"
            label = f"{run}: {last['change']}\n(last: {seen})"
            ax.plot([r["step"] for r in mine], [r["bd_rate_vs_reference_percent"] for r in mine], marker="o",
                    label=label)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xlabel("optimiser steps the weights have seen in all")
    ax.set_ylabel(f"BD-rate vs {reference['run']} (%)")
    ax.set_title("validation curves at equal steps", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    writer = palette_png(fig, dpi=110)
    plt.close(fig)
    return writer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reference", type=Path, help="the run the experiments branched from (it kept training)")
    p.add_argument("runs", type=Path, nargs="+", help="experiment runs started with sar-train --init")
    p.add_argument("--out", type=Path, help="write experiments.json, experiments.md and experiments.png here")
    a = p.parse_args(argv)
    try:
        reference = read_run(a.reference)
        # an experiment's offset counts the reference's own steps; a reference that is itself a branch counts
        # from where it branched, so both go on the same axis: steps the weights have seen in all
        runs = [_shift(read_run(r), reference["offset"]) for r in a.runs]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read a run ({exc})", file=sys.stderr)
        return 2
    rows = compare(reference, runs)
    md = markdown(reference, rows)
    print(md)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        doc = json.dumps({"reference": reference["run"], "rows": rows}, indent=1)
        publish_files({a.out / "experiments.json": doc, a.out / "experiments.md": md,
                       a.out / "experiments.png": plot(reference, rows)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
