"""BD-rate against JPEG-2000 as training went on: one point per rate_distortion.py run of the same benchmark.

Each run is a folder (or its rd_points.json, plain or archived as .json.gz: `results_files.py`) of
`benchmarks/rate_distortion.py` on the same scenes; the steps come from the model's export record
(`training.steps_total`), or, for runs exported before it was recorded, from a folder named `stepN`. Prints the
table, and with `--out` writes rd_trend.json and rd_trend.png (BD-rate against steps on a log axis, all
scene-bands and per polarisation), so a researcher can see how much each doubling of the steps bought. Every
point is of one rounding of the latents (`rounding`): the nearest curve of a run that coded both ways, else the
run's own.

    python benchmarks/rd_trend.py benchmarks/results/rd_heldout_grd_trend_format4/step* \\
        --out benchmarks/results/rd_trend
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
from results_files import points_file, read_json  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402


def trend_point(path: Path) -> dict:
    f = points_file(path)
    d = read_json(f)
    training = d.get("model", {}).get("training") or {}
    steps = training.get("steps_total")
    if steps is None:
        m = re.fullmatch(r"step(\d+)", f.parent.name)
        if m is None:
            raise ValueError(f"{f}: no training.steps_total in the model record and no stepN folder name")
        steps = int(m.group(1))
    # one rounding along the whole trend: a run that coded both ways (--rounding nearest rate_distortion) gives
    # its nearest curve; a run of one rounding gives its own (runs before the setting existed rounded to nearest)
    roundings = (d.get("settings") or {}).get("rounding") or ["nearest"]
    both = {k.rsplit(" ", 1)[-1]: v for k, v in (d.get("model_comparison") or {}).items()} if len(roundings) > 1 else {}
    if "nearest" in both:
        rounding, curves = "nearest", both["nearest"]["vs_jpeg2000"]
    else:
        rounding, curves = roundings[0], d["bd_rate"]
    bd = {k: v.get("bd_rate_percent") for k, v in curves.items()}
    return {"run": str(f), "model": d.get("model", {}).get("name"), "steps": int(steps),
            "patches": training.get("patches_seen_total"), "rounding": rounding, "bd_rate_percent": bd}


def _tick_labels(steps: list[int], min_ratio: float = 1.3) -> list[str]:
    """A label for each checkpoint's step where it does not crowd the one labelled before it (the last always
    labelled): the late checkpoints lie a few percent apart and their labels ran into one another."""
    labels, last = [""] * len(steps), None
    for i in reversed(range(len(steps))):
        if last is None or last / steps[i] >= min_ratio:
            k = steps[i] / 1000
            labels[i], last = (f"{k:.0f}k" if k >= 10 else f"{k:g}k"), steps[i]
    return labels


def plot(points: list[dict]) -> Callable[[Path], None]:
    """rd_trend.png, drawn now, as the writer `publish_files` takes."""
    import matplotlib  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [p["steps"] for p in points]
    for subset, style in (("all", "o-"), ("VV", "s--"), ("VH", "^--")):
        ax.plot(steps, [p["bd_rate_percent"].get(subset) for p in points], style, label=subset)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(-30, color="red", lw=0.8, ls=":", label="target -30%")
    ax.set_xscale("log")
    ax.set_xticks(steps, _tick_labels(steps), fontsize=8)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("training steps (log)")
    ax.set_ylabel("BD-rate vs JPEG-2000 (%, dB RMSE)")
    last = points[-1]
    ax.set_title(f"Learned codec vs JPEG-2000 on the held-out GRD scene-bands\nlast: {last['model']}, "
                 f"{last['steps']:,} steps" + (f", {last['patches']:,} patches" if last["patches"] else ""), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    writer = palette_png(fig, dpi=110)
    plt.close(fig)
    return writer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+",
                    help="rate_distortion.py output folders (or their rd_points.json(.gz))")
    ap.add_argument("--out", type=Path, help="write rd_trend.json and rd_trend.png here")
    a = ap.parse_args(argv)
    try:
        points = sorted((trend_point(p) for p in a.runs), key=lambda p: p["steps"])
    except (OSError, ValueError, KeyError, EOFError) as exc:  # a cut .gz: EOFError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'steps':>8} {'patches':>9} {'all':>8} {'VV':>8} {'VH':>8}  {'rounding':<15}  model")
    for p in points:
        bd = p["bd_rate_percent"]
        print(f"{p['steps']:>8,} {p['patches'] or '':>9} " + " ".join(
            f"{bd.get(k):+7.1f}%" if bd.get(k) is not None else f"{'n/a':>8}" for k in ("all", "VV", "VH"))
            + f"  {p['rounding']:<15}  {p['model']}")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        doc = json.dumps({"name": "rd_trend", "points": points}, indent=1) + "\n"
        publish_files({a.out / "rd_trend.json": doc, a.out / "rd_trend.png": plot(points)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
