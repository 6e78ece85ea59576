"""Summarise the variant comparison in rate-distortion terms: training curves of every run, and each variant's
BD-rate against JPEG-2000, mean +- std over seeds.

The figures per run come from `benchmarks/rate_distortion.py` (its <out>/<run>/rd_points.json: the exported run
through the real codec, every quality level, against JPEG-2000 on the same scenes), never recomputed here; this
module only groups them by variant, so a difference between two variants can be read against the spread
between seeds. "Does CBAM help, in bits?" is then the attention row against the residual row.

    python -m trainer.compare_runs runs/compare --out benchmarks/results/variant_comparison_rd
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from trainer.reporting import strict_json

#: From each run's RD benchmark (subset "all"): BD-rate against JPEG-2000 in dB RMSE, in percent.
METRICS = ("bd_rate_percent",)


#: What sar-train writes into a run folder as it starts (config.json), within its first epoch (last.pth) and
#: after each validation (history.jsonl).
RUN_FILES = ("config.json", "last.pth", "history.jsonl")


def _history(d: Path) -> list[dict]:
    path = d / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def not_validated(runs_dir: Path) -> list[str]:
    """Run folders without a validated epoch yet (started, or stopped within their first epoch): they have no
    figures to compare, and the table says so rather than leaving them out without a word."""
    return [d.name for d in sorted(p for p in runs_dir.iterdir() if p.is_dir())
            if any((d / name).is_file() for name in RUN_FILES) and not _history(d)]


def load_runs(runs_dir: Path) -> list[dict]:
    """Every run folder with a validated epoch in its history.jsonl: its config, epoch history and time per
    optimiser step."""
    runs = []
    for d in sorted(p for p in runs_dir.iterdir() if (p / "history.jsonl").is_file()):
        cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
        history = _history(d)
        if not history:  # an empty history.jsonl: not validated yet (plot_curves failed on it, IndexError)
            continue
        # seconds per optimiser step of each epoch (the last one may be cut short by max_steps); the first epoch
        # includes start-up, so the median of the rest is the steady cost of a step (plus its validation)
        per_step = [h["seconds"] / (h["step"] - prev) for h, prev in zip(history, [0] + [g["step"] for g in history])
                    if h["step"] > prev]
        steady = per_step[1:] or per_step
        runs.append({"run": d.name, "variant": cfg.get("variant", d.name.rsplit("_s", 1)[0]),
                     "seed": cfg.get("seed"), "history": history,
                     "steps": history[-1]["step"] if history else 0,
                     "patches": history[-1].get("patches_seen") if history else None,
                     "best_val_loss": min((h["val_loss"] for h in history), default=math.nan),
                     "skipped_batches": sum(int(h.get("skipped_batches", 0)) for h in history),
                     "wall_s": round(sum(h["seconds"] for h in history), 1),
                     "step_s_median": round(statistics.median(steady), 2) if steady else None})
    return runs


def eval_by_run(results_dir: Path) -> dict[str, dict]:
    """Per run folder name: {"aggregate": {"bd_rate_percent"}, "params"} from <results_dir>/<run>/rd_points.json
    (runs whose BD-rate is undefined, e.g. no overlap with JPEG-2000's dB RMSE range, are left out)."""
    out = {}
    for f in sorted(results_dir.glob("*/rd_points.json")):
        doc = json.loads(f.read_text())
        bd = doc.get("bd_rate", {}).get("all", {}).get("bd_rate_percent")
        if bd is None:
            continue
        out[f.parent.name] = {"aggregate": {"bd_rate_percent": bd},
                              "params": {"total": doc.get("model", {}).get("parameters") or 0}}
    return out


def seed_statistics(runs: list[dict], evals: dict[str, dict]) -> dict[str, dict]:
    """Per variant: n seeds, mean and sample std of each metric (std None with one seed)."""
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [evals[r["run"]]["aggregate"] for r in runs if r["variant"] == variant and r["run"] in evals]
        if not rows:
            continue
        stats = {"seeds": len(rows), "params": next(evals[r["run"]]["params"]["total"] for r in runs
                                                     if r["variant"] == variant and r["run"] in evals)}
        for m in METRICS:
            vals = [float(a[m]) for a in rows]
            stats[m] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
                        "values": vals}
        out[variant] = stats
    return out


def _pm(s: dict, digits: int) -> str:
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def markdown(runs: list[dict], stats: dict[str, dict], pending: tuple[str, ...] | list[str] = ()) -> str:
    # patches beside steps, as in every figure: runs of one comparison may differ in batch and world size
    lines = ["| Run | Variant | Seed | Steps | Patches | Best val loss | Skipped batches | Median s/step "
             "| Wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        patches = "?" if r["patches"] is None else r["patches"]
        lines.append(f"| {r['run']} | {r['variant']} | {r['seed']} | {r['steps']} | {patches} | "
                     f"{r['best_val_loss']:.4f} | "
                     f"{r['skipped_batches']} | {r['step_s_median']} | {r['wall_s']} |")
    if pending:
        lines += ["", f"Not validated yet (no epoch ended), so not in the table: {', '.join(pending)}"]
    lines += ["", "BD-rate against JPEG-2000 (dB RMSE; negative = fewer bits), through the real codec, mean ± "
              "sample std over seeds:", "",
              "| Variant | Seeds | Params | BD-rate (%) |",
              "|---|---:|---:|---:|"]
    for v, s in stats.items():
        lines.append(f"| {v} | {s['seeds']} | {s['params'] / 1e6:.2f}M | {_pm(s['bd_rate_percent'], 1)} |")
    return "\n".join(lines) + "\n"


def _seen(last: dict) -> str:
    """Each run's own training, in its legend entry: runs of a comparison may stop at different steps, and a
    step's patches depend on the batch and world size."""
    patches = last.get("patches_seen")
    return f"{last['step']:,} steps, " + ("patches not recorded" if patches is None else f"{patches:,} patches")


def plot_curves(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    colours = {v: f"C{i}" for i, v in enumerate(dict.fromkeys(r["variant"] for r in runs))}
    for r in runs:
        steps = [h["step"] for h in r["history"]]
        style = "-" if r["seed"] in (0, None) else ":"
        axes[0].plot(steps, [h["val_loss"] for h in r["history"]], style, color=colours[r["variant"]],
                     label=f"{r['variant']} s{r['seed']} ({_seen(r['history'][-1])})")
        axes[1].plot(steps, [h["val_psnr"] for h in r["history"]], style, color=colours[r["variant"]])
    axes[0].set_title("validation loss (mean over levels of lambda 255^2 MSE + bpp)")
    axes[1].set_title("validation PSNR (dB, normalised, mean over levels)")
    for ax in axes:
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="folder of run folders (<variant>_s<seed>)")
    p.add_argument("--out", required=True, help="results folder; reads <out>/<run>/rd_points.json")
    a = p.parse_args(argv)
    runs = load_runs(Path(a.runs)) if Path(a.runs).is_dir() else []
    pending = not_validated(Path(a.runs)) if Path(a.runs).is_dir() else []
    if not runs:  # said before --out is made, so a typo leaves no empty results folder
        print(f"no runs with history.jsonl under {a.runs}"
              + (f" (not validated yet: {', '.join(pending)})" if pending else ""), file=sys.stderr)
        return 1
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stats = seed_statistics(runs, eval_by_run(out))
    plot_curves(runs, out / "training_curves.png")
    doc = {"runs": [{k: v for k, v in r.items() if k != "history"} for r in runs], "by_variant": stats,
           "not_validated": pending}
    (out / "runs.json").write_text(strict_json(doc))
    (out / "runs.md").write_text(markdown(runs, stats, pending))
    print(markdown(runs, stats, pending))
    return 0


if __name__ == "__main__":
    sys.exit(main())
