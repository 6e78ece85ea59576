"""The learned codec's dB RMSE minus JPEG-2000's at the same bpp, on the pooled curves of a rate-distortion run.

rate_distortion.py aggregates every scene-band's errors per setting (its `aggregates`, per polarisation subset
and `all`); this interpolates JPEG-2000's pooled curve in log bpp at each learned point's bpp (None outside
JPEG-2000's range). Negative = the learned codec has the lower error: the issue's "lower dB RMSE than JPEG-2000
at every operating point", read off a committed run without rerunning it.

    python benchmarks/rd_pooled.py benchmarks/results/rd_heldout_grd/rd_points.json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rd_points", help="rd_points.json of a rate_distortion.py run")
    a = ap.parse_args(argv)
    try:
        aggregates = json.loads(open(a.rd_points).read())["aggregates"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {a.rd_points}: not a rate_distortion.py result ({exc})", file=sys.stderr)
        return 2
    for subset, rows in pooled_gaps(aggregates).items():
        print(f"{subset}: " + ", ".join(f"{r['setting']} {r['bpp']:.3f} bpp "
                                        + ("n/a" if r["gap_db"] is None else f"{r['gap_db']:+.3f} dB") for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
