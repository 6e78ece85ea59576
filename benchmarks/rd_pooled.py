"""The learned codec's dB RMSE minus JPEG-2000's at the same bpp, on the pooled curves of a rate-distortion run.

rate_distortion.py aggregates every scene-band's errors per setting (its `aggregates`, per polarisation subset
and `all`); this interpolates JPEG-2000's pooled curve in log bpp at each learned point's bpp (None outside
JPEG-2000's range). Negative = the learned codec has the lower error: the issue's "lower dB RMSE than JPEG-2000
at every operating point", read off a committed run without rerunning it.

    python benchmarks/rd_pooled.py benchmarks/results/rd_heldout_grd/rd_points.json [--from-bpp 0.45]

With --from-bpp R it also gives the BD-rate over the part of the range at or above R bpp (both codecs' points
there; the learned curve is the lower envelope, as in rate_distortion.py's headline): where on the curve the
lead is, for a target stated over part of the range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rate_distortion import bd_rate, lower_envelope  # noqa: E402
from results_files import points_file, read_json  # noqa: E402


def pooled_gaps(aggregates: list[dict]) -> dict[str, list[dict]]:
    out = {}
    for subset in sorted({a["subset"] for a in aggregates}):
        rows = [a for a in aggregates if a["subset"] == subset]
        j2k = sorted((a["bpp"], a["db_rmse"]) for a in rows if a["codec"] == "jpeg2000")
        log_bpp, err = np.log([b for b, _ in j2k]), [e for _, e in j2k]
        out[subset] = []
        for a in (r for r in rows if r["codec"] == "learned"):
            x = float(np.log(a["bpp"]))
            gap = a["db_rmse"] - float(np.interp(x, log_bpp, err)) if log_bpp[0] <= x <= log_bpp[-1] else None
            out[subset].append({"setting": a["setting"], "bpp": a["bpp"], "db_rmse": a["db_rmse"], "gap_db": gap})
    return out


def bd_rate_from(aggregates: list[dict], min_bpp: float) -> dict[str, float | None]:
    """Per subset, the BD-rate (%) of the learned codec against JPEG-2000 over their points at or above
    `min_bpp`; None where fewer than two points of either curve are left or the curves do not overlap."""
    out = {}
    for subset in sorted({a["subset"] for a in aggregates}):
        rows = [a for a in aggregates if a["subset"] == subset and a["bpp"] >= min_bpp]
        j2k = sorted((a for a in rows if a["codec"] == "jpeg2000"), key=lambda a: a["bpp"])
        learned = lower_envelope([a for a in rows if a["codec"] == "learned"])
        if len(j2k) < 2 or len(learned) < 2:
            out[subset] = None
            continue
        res = bd_rate(np.array([a["bpp"] for a in j2k]), np.array([a["db_rmse"] for a in j2k]),
                      np.array([a["bpp"] for a in learned]), np.array([a["db_rmse"] for a in learned]))
        out[subset] = res.get("bd_rate_percent")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rd_points", help="a rate_distortion.py run's folder or its rd_points.json(.gz)")
    ap.add_argument("--from-bpp", type=float, default=None, metavar="R",
                    help="also the BD-rate over the points at or above R bpp")
    a = ap.parse_args(argv)
    try:
        aggregates = read_json(points_file(a.rd_points))["aggregates"]
    except (OSError, ValueError, KeyError, EOFError) as exc:  # a cut .gz: EOFError
        print(f"error: {a.rd_points}: not a rate_distortion.py result ({exc})", file=sys.stderr)
        return 2
    for subset, rows in pooled_gaps(aggregates).items():
        print(f"{subset}: " + ", ".join(f"{r['setting']} {r['bpp']:.3f} bpp "
                                        + ("n/a" if r["gap_db"] is None else f"{r['gap_db']:+.3f} dB") for r in rows))
    if a.from_bpp is not None:
        bd = bd_rate_from(aggregates, a.from_bpp)
        print(f"BD-rate vs JPEG-2000 over the points at or above {a.from_bpp:g} bpp: "
              + ", ".join(f"{k} " + ("n/a" if v is None else f"{v:+.2f}%") for k, v in bd.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
