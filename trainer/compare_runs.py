"""Summarise the variant comparison in rate-distortion terms: training curves of every run, and each variant's
BD-rate against JPEG-2000, mean +- std over seeds.

The figures per run come from `benchmarks/rate_distortion.py` (its <out>/<run>/rd_points.json: the exported run
through the real codec, every quality level, against JPEG-2000 on the same scenes), never recomputed here; this
module only groups them by variant, so a difference between two variants can be read against the spread
between seeds. "Does CBAM help, in bits?" is then the attention row against the residual row.

    python -m trainer.compare_runs runs/compare --out benchmarks/results/variant_comparison_rd

The BD-rate of a run is that of the checkpoint its bundle was exported from (compare_variants.sh exports
best.pth, the lowest validation loss, which may be an earlier epoch than the run's last): the table states the
steps and patches of every evaluated checkpoint, says when they differ, and leaves out (naming them) runs without
a current BD-rate: not evaluated, no overlap with JPEG-2000's range, or evaluated before their best.pth changed.

With the run folders gone (a committed comparison), `runs` may be an earlier runs.json: its runs' rows are kept as
recorded and the BD-rates read again from <out>/<run>/rd_points.json (after `rate_distortion.py --rebaseline`);
training_curves.png, which needs the histories, is left as it was.

    python -m trainer.compare_runs benchmarks/results/variant_comparison_rd/runs.json \
        --out benchmarks/results/variant_comparison_rd
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from sar_compress_plugin.core.errors import SarCompressError
from sar_compress_plugin.core.raster_io import writable_folder
from trainer.reporting import publish_files, strict_json

#: From each run's RD benchmark (subset "all"): BD-rate against JPEG-2000 in dB RMSE, in percent.
METRICS = ("bd_rate_percent",)


#: The settings of a run's RD benchmark that its BD-rate depends on: runs measured otherwise (a --quick run, a
#: report not yet --rebaseline'd) are not comparable, and the table says so.
EVAL_SETTINGS = ("scenes", "qualities", "jpeg2000_target_bpp", "rounding", "jpeg2000")


#: The settings of a run's config that fix its validation tiles: runs trained otherwise validate on other pixels
#: (other scenes, or tiles of another size), so their validation losses do not compare, and the table says so.
VALIDATION_SETTINGS = ("data", "domain", "val_fraction", "split_seed", "data_fraction", "patch_size",
                       "val_tiles_per_plane")

#: How a run gets its rd_points.json, said where there is none, in --help and under an empty table.
RD_POINTS_HOWTO = ("`benchmarks/rate_distortion.py --model BUNDLE --out <out>/<run>` writes a run's from its exported "
                   "bundle; `bash scripts/compare_variants.sh evaluate` exports and measures every run, then runs this")


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


def _best(history: list[dict]) -> dict:
    """The record of the weights best.pth holds: sar-train saves it on a strictly lower finite validation loss,
    so the first of the lowest."""
    finite = [h for h in history if math.isfinite(h["val_loss"])]
    return min(finite, key=lambda h: h["val_loss"]) if finite else history[0]


def runs_from_json(path: Path) -> tuple[list[dict], list[str]]:
    """The runs' rows and not-validated names of an earlier runs.json (its run folders gone): no histories."""
    doc = json.loads(path.read_text())
    runs = [{"patches": None, "best_step": None, **r, "history": []} for r in doc["runs"]]
    return runs, doc.get("not_validated", [])


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
        best = _best(history)
        runs.append({"run": d.name, "variant": cfg.get("variant", d.name.rsplit("_s", 1)[0]),
                     "seed": cfg.get("seed"), "history": history,
                     "validation": {k: cfg[k] for k in VALIDATION_SETTINGS if k in cfg},
                     "steps": history[-1]["step"] if history else 0,
                     "patches": history[-1].get("patches_seen") if history else None,
                     "best_val_loss": best["val_loss"], "best_step": best["step"],
                     "skipped_batches": sum(int(h.get("skipped_batches", 0)) for h in history),
                     "wall_s": round(sum(h["seconds"] for h in history), 1),
                     "step_s_median": round(statistics.median(steady), 2) if steady else None})
    return runs


def eval_by_run(results_dir: Path) -> dict[str, dict]:
    """Per run folder name, from <results_dir>/<run>/rd_points.json: "bd_rate_percent" (None where undefined,
    e.g. no overlap with JPEG-2000's dB RMSE range, with the benchmark's "note"), "params", and the evaluated
    checkpoint's "step" (its run's own step count), "steps" and "patches" (in all, from the bundle's manifest)."""
    out = {}
    for f in sorted(results_dir.glob("*/rd_points.json")):
        doc = json.loads(f.read_text())
        bd = doc.get("bd_rate", {}).get("all", {})
        training = doc.get("model", {}).get("training") or {}
        out[f.parent.name] = {"bd_rate_percent": bd.get("bd_rate_percent"), "note": bd.get("note"),
                              "params": doc.get("model", {}).get("parameters") or 0,
                              "step": training.get("steps"),
                              "steps": training.get("steps_total", training.get("steps")),
                              "patches": training.get("patches_seen_total"),
                              "settings": {k: (doc.get("settings") or {}).get(k) for k in EVAL_SETTINGS}}
    return out


#: Why a run without its rd_points.json is not in the BD-rate table.
NOT_EVALUATED = "not evaluated (no rd_points.json)"


def left_out(runs: list[dict], evals: dict[str, dict]) -> dict[str, str]:
    """Runs without a current BD-rate, and why: they are named under the table rather than dropped silently."""
    out = {}
    for r in runs:
        e = evals.get(r["run"])
        if e is None:
            out[r["run"]] = NOT_EVALUATED
        elif r.get("best_step") is not None and e["step"] is not None and e["step"] != r["best_step"]:
            out[r["run"]] = (f"evaluated at step {e['step']}, its best.pth is now step {r['best_step']}'s "
                             f"(evaluate again)")
        elif e["bd_rate_percent"] is None:
            out[r["run"]] = e.get("note") or "no BD-rate"  # the benchmark's reason, e.g. no overlap
    return out


def seed_statistics(runs: list[dict], evals: dict[str, dict]) -> dict[str, dict]:
    """Per variant: n seeds, mean and sample std of each metric (std None with one seed), and the runs and the
    steps and patches of the checkpoints they were measured on; runs in `left_out` are not counted."""
    skip = left_out(runs, evals)
    out: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        names = [r["run"] for r in runs if r["variant"] == variant and r["run"] not in skip]
        if not names:
            continue
        stats = {"seeds": len(names), "params": evals[names[0]]["params"], "runs": names,
                 "steps": [evals[n]["steps"] for n in names], "patches": [evals[n]["patches"] for n in names]}
        for m in METRICS:
            vals = [float(evals[n][m]) for n in names]
            stats[m] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
                        "values": vals}
        out[variant] = stats
    return out


def _pm(s: dict, digits: int) -> str:
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["std"] is not None else "")


def _count(v) -> str:
    return "?" if v is None else f"{v:,}"


def _budget(steps, patches) -> str:
    return f"{_count(steps)} steps, " + ("patches not recorded" if patches is None else f"{patches:,} patches")


def _per_seed(values: list) -> str:
    return " / ".join(_count(v) for v in values) if len(set(values)) > 1 else _count(values[0])


def settings_differ(stats: dict[str, dict], evals: dict[str, dict]) -> dict[str, list[str]]:
    """{setting: the runs of the table measured otherwise than the first}, for the settings that differ."""
    names = [n for s in stats.values() for n in s["runs"]]
    first = evals[names[0]]["settings"] if names else {}
    return {k: [n for n in names if evals[n]["settings"].get(k) != first[k]] for k in EVAL_SETTINGS
            if any(evals[n]["settings"].get(k) != first[k] for n in names)}


def validation_differ(runs: list[dict]) -> dict[str, list[str]]:
    """{setting: the runs validated otherwise than the first}, for the VALIDATION_SETTINGS that differ; a setting
    a run did not record (a runs.json of before) is not compared."""
    first = runs[0].get("validation") or {}
    out = {}
    for k in VALIDATION_SETTINGS:
        names = [r["run"] for r in runs[1:] if k in first and k in (r.get("validation") or {})
                 and r["validation"][k] != first[k]]
        if names:
            out[k] = names
    return out


def markdown(runs: list[dict], stats: dict[str, dict], pending: tuple[str, ...] | list[str] = (),
             skipped: dict[str, str] | None = None, differ: dict[str, list[str]] | None = None,
             validated_otherwise: dict[str, list[str]] | None = None) -> str:
    # patches beside steps, as in every figure: runs of one comparison may differ in batch and world size
    lines = ["| Run | Variant | Seed | Steps | Patches | Best val loss | Best at step | Skipped batches "
             "| Median s/step | Wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        # a diverged run's NaN, which runs.json records as null: the same row when rebuilt from it
        best_loss = math.nan if r["best_val_loss"] is None else r["best_val_loss"]
        lines.append(f"| {r['run']} | {r['variant']} | {r['seed']} | {_count(r['steps'])} | "
                     f"{_count(r.get('patches'))} | {best_loss:.4f} | {_count(r.get('best_step'))} | "
                     f"{r['skipped_batches']} | {r['step_s_median']} | {r['wall_s']} |")
    if pending:
        lines += ["", f"Not validated yet (no epoch ended), so not in the table: {', '.join(pending)}"]
    if validated_otherwise:
        lines += ["", "**Validated differently** (best validation losses not comparable): "
                  + "; ".join(f"{k} of {', '.join(names)} differs from {runs[0]['run']}'s"
                              for k, names in validated_otherwise.items())]
    if not stats and all(why == NOT_EVALUATED for why in (skipped or {}).values()):
        lines += ["", f"No BD-rates yet: no run has its <out>/<run>/rd_points.json ({RD_POINTS_HOWTO})."]
        return "\n".join(lines) + "\n"
    lines += ["", "BD-rate against JPEG-2000 (dB RMSE; negative = fewer bits), through the real codec, mean ± "
              "sample std over seeds, of the checkpoint each run was exported from (steps and patches in all, per "
              "seed):", "",
              "| Variant | Seeds | Params | Steps (evaluated) | Patches (evaluated) | BD-rate (%) |",
              "|---|---:|---:|---:|---:|---:|"]
    for v, s in stats.items():
        lines.append(f"| {v} | {s['seeds']} | {s['params'] / 1e6:.2f}M | {_per_seed(s['steps'])} | "
                     f"{_per_seed(s['patches'])} | {_pm(s['bd_rate_percent'], 1)} |")
    budgets: dict[tuple, list[str]] = {}
    for s in stats.values():
        for n, st, p in zip(s["runs"], s["steps"], s["patches"]):
            budgets.setdefault((st, p), []).append(n)
    if len(budgets) > 1:
        lines += ["", "**Budgets differ**: the evaluated checkpoints did not all see the same training: "
                  + "; ".join(f"{_budget(*b)}: {', '.join(names)}" for b, names in budgets.items())]
    elif budgets and next(iter(budgets))[0] is not None:
        lines += ["", f"One budget: every evaluated checkpoint saw {_budget(*next(iter(budgets)))}."]
    if differ:
        first = next(n for s in stats.values() for n in s["runs"])
        lines += ["", "**Measured differently** (BD-rates not comparable): "
                  + "; ".join(f"{k} of {', '.join(names)} differ from {first}'s" for k, names in differ.items())]
    if skipped:
        lines += ["", "Not in the BD-rate table: " + "; ".join(f"{n}: {why}" for n, why in skipped.items())]
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
    styles = ("-", ":", "--", "-.")
    drawn: dict[str, int] = {}
    for r in runs:
        steps = [h["step"] for h in r["history"]]
        # each seed of a variant its own line style (every seed but 0 was dotted: seeds 1 and 2 looked alike)
        nth = drawn[r["variant"]] = drawn.get(r["variant"], -1) + 1
        # marked points: a run validated once is a point, and a line of one point is not drawn
        style = dict(color=colours[r["variant"]], linestyle=styles[nth % len(styles)], marker=".")
        axes[0].plot(steps, [h["val_loss"] for h in r["history"]], **style,
                     label=f"{r['variant']} s{r['seed']} ({_seen(r['history'][-1])})")
        axes[1].plot(steps, [h["val_psnr"] for h in r["history"]], **style)
        best = _best(r["history"])  # the checkpoint compare_variants.sh exports and measures
        axes[0].plot([best["step"]], [best["val_loss"]], "o", color=colours[r["variant"]])
    axes[0].set_title("validation loss (mean over levels of lambda 255^2 MSE + bpp); o = best.pth", fontsize=9)
    axes[1].set_title("validation PSNR (dB, normalised, mean over levels)", fontsize=9)
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("PSNR (dB)")
    for ax in axes:
        ax.set_xlabel("optimiser step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.compare_runs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="folder of run folders (<variant>_s<seed>), or an earlier runs.json whose run "
                                "folders are gone")
    p.add_argument("--out", required=True, help="results folder; reads <out>/<run>/rd_points.json: "
                   + RD_POINTS_HOWTO)
    a = p.parse_args(argv)
    source = Path(a.runs)
    if source.is_file():
        runs, pending = runs_from_json(source)
    else:
        runs = load_runs(source) if source.is_dir() else []
        pending = not_validated(source) if source.is_dir() else []
    if not runs:  # said before --out is made, so a typo leaves no empty results folder
        print(f"no runs with history.jsonl under {a.runs}"
              + (f" (not validated yet: {', '.join(pending)})" if pending else ""), file=sys.stderr)
        return 1
    try:
        out = writable_folder(a.out)
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evals = eval_by_run(out)
    stats, skipped = seed_statistics(runs, evals), left_out(runs, evals)
    differ, validated_otherwise = settings_differ(stats, evals), validation_differ(runs)
    doc = {"runs": [{k: v for k, v in r.items() if k != "history"} for r in runs], "by_variant": stats,
           "left_out": skipped, "settings_differ": differ, "validation_differs": validated_otherwise,
           "not_validated": pending}
    md = markdown(runs, stats, pending, skipped, differ, validated_otherwise)
    with_history = [r for r in runs if r["history"]]
    # whole or not at all: a full disk or a Ctrl-C mid-write left a cut-off table where the last comparison's had
    # been; nothing is renamed until everything is written
    publish_files({out / "runs.json": strict_json(doc), out / "runs.md": md,
                   **({out / "training_curves.png": lambda path: plot_curves(with_history, path)}
                      if with_history else {})})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
