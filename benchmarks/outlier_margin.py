"""How far beyond the clip range a pixel must be before coding it as an outlier pays, per quality.

Each scene-band is compressed through the real codec at every quality level and every --margins value, as
rate_distortion.py gives it to the codec (`scene_bands`: georeferenced, under its scale and mask); bits are
the .sarc file's bytes, distortion the dB squared error of its physical values over valid pixels. Per quality,
the best margin is the one minimising SSE + slope * bits, where slope is the local dB^2-per-bpp slope of the
codec's own RD curve (at the smallest margin): the same trade-off the quality's other bits make. The fit
margin = K / sqrt(255^2 lambda) over the qualities whose best margin is finite gives K
(core.codec.OUTLIER_MARGIN_SCALE_DB).

The scenes are the shared GRD scenes the default model did NOT hold out for validation (rate_distortion.py
measures on those), so the rule is not fitted on the pixels it is judged on.

    .venv/bin/python benchmarks/outlier_margin.py --max-scene-bands 12 --out benchmarks/results/outlier_margin
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import itertools
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from rate_distortion import (DATA_DIR, SceneBand, grd_scenes, model_info, reconstruction_values,  # noqa: E402
                             resolve_model, scene_bands, versions)
from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct  # noqa: E402
from sar_compress_plugin.core.hyperprior import interpolate_levels  # noqa: E402
from sar_compress_plugin.core.preprocessing import to_db  # noqa: E402
from sar_compress_plugin.core.runtime import load_manifest  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

#: the validation scenes of the default model's run (rate_distortion.py's held-out set)
HELD_OUT = ("frankfurt", "panama", "india_900498", "mekong", "srilanka_534068", "paraguay_jja10")
NO_OUTLIERS = 1000.0


def measure(sb: SceneBand, quality: float, margin: float, model: Path, work: Path) -> dict:
    """The codec on one scene-band at `quality` and `margin`, its physical values against the reconstruction's
    (`reconstruction_values`), as rate_distortion.py scores them."""
    out, rec_path = work / "m.sarc", work / "m_rec.tif"
    res = compress(sb.src, out, CompressOptions(model_dir=model, device="cpu", quality=quality, domain=sb.domain,
                                                outlier_margin_db=margin))
    reconstruct(out, rec_path, model_dirs=[model], device="cpu")
    rdb, rvalid = to_db(reconstruction_values(sb.src, rec_path), sb.domain, sb.nodata)
    out.unlink()
    rec_path.unlink()
    ok = sb.valid & rvalid
    err = (rdb - sb.db)[ok].astype(np.float64)
    return {"quality": quality, "margin_db": margin, "bytes": int(res.output_bytes), "pixels": int(sb.values.size),
            "valid": int(ok.sum()), "sse_db2": float(err @ err), "outlier_pixels": int(res.outlier_pixels)}


def aggregate(rows: list[dict]) -> dict:
    """(quality, margin) -> pooled bpp and dB RMSE."""
    acc: dict = {}
    for r in rows:
        a = acc.setdefault((r["quality"], r["margin_db"]), [0, 0, 0.0, 0, 0])
        a[0] += 8 * r["bytes"]; a[1] += r["pixels"]; a[2] += r["sse_db2"]; a[3] += r["valid"]
        a[4] += r["outlier_pixels"]
    return {k: {"bpp": a[0] / a[1], "db_rmse": math.sqrt(a[2] / a[3]), "outlier_fraction": a[4] / a[3]}
            for k, a in acc.items()}


def best_margins(points: dict, qualities, margins, lambdas) -> list[dict]:
    base = [points[(q, margins[0])] for q in qualities]
    out = []
    for i, q in enumerate(qualities):
        lo, hi = max(i - 1, 0), min(i + 1, len(qualities) - 1)
        slope = (base[lo]["db_rmse"] ** 2 - base[hi]["db_rmse"] ** 2) / (base[hi]["bpp"] - base[lo]["bpp"])
        cost = {m: points[(q, m)]["db_rmse"] ** 2 + slope * points[(q, m)]["bpp"] for m in margins}
        best = min(cost, key=cost.get)
        lam = float(interpolate_levels(np.log(np.asarray(lambdas, dtype=np.float32))[:, None], q)[0])
        out.append({"quality": q, "lambda": lam, "slope_db2_per_bpp": slope, "best_margin_db": best,
                    "cost": {str(m): c for m, c in cost.items()}})
    return out


def fit_scale(best: list[dict], margins) -> float | None:
    """K of margin = K / sqrt(255^2 lambda), least squares in log space over qualities with a finite, interior
    best margin (the smallest margin tried is a floor, not a measurement)."""
    pts = [(b["best_margin_db"], b["lambda"]) for b in best if margins[0] < b["best_margin_db"] < NO_OUTLIERS]
    if not pts:
        return None
    return float(math.exp(np.mean([math.log(m) + 0.5 * math.log(255.0 ** 2 * lam) for m, lam in pts])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model bundle (default: the bundled default model)")
    p.add_argument("--data", default=str(DATA_DIR))
    p.add_argument("--margins", type=float, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16, NO_OUTLIERS],
                   help=f"dB margins to try, ascending ({NO_OUTLIERS:g} = no outliers in practice)")
    p.add_argument("--max-scene-bands", type=int, default=12)
    p.add_argument("--out", default=None, help="write outlier_margin.json and .md here")
    a = p.parse_args(argv)

    model = resolve_model(a.model)
    lambdas = load_manifest(model, verify=False)["rate"]["lambdas"]
    qualities = [float(q) for q in range(len(lambdas))]
    margins = sorted(a.margins)
    scenes = [s for s in grd_scenes(a.data, sigma0=True) if not any(h in s["path"] for h in HELD_OUT)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sarc_margin_") as tmp:
        work = Path(tmp)
        # closed inside the folder's lifetime: a scene_bands generator left open at --max-scene-bands was
        # finalised after the folder was gone, and printed a FileNotFoundError traceback at exit
        with contextlib.closing(sb for s in scenes for sb in scene_bands(s, work)) as bands:
            for done, sb in enumerate(itertools.islice(bands, a.max_scene_bands), 1):
                for q in qualities:
                    for m in margins:
                        rows.append({"scene": sb.scene, "band": sb.band, **measure(sb, q, m, model, work)})
                print(f"{sb.scene} {sb.band}: {done} scene-bands", file=sys.stderr)
    points = aggregate(rows)
    best = best_margins(points, qualities, margins, lambdas)
    k = fit_scale(best, margins)
    doc = {"name": "outlier_margin", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "command": "benchmarks/outlier_margin.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "versions": versions(), "model": model_info(model), "held_out_excluded": list(HELD_OUT),
           "scene_bands": sorted({f"{r['scene']}:{r['band']}" for r in rows}), "margins_db": margins,
           "points": [{"quality": q, "margin_db": m, **v} for (q, m), v in sorted(points.items())],
           "best": best, "fitted_scale_db": k, "rows": rows}
    lines = [f"# Outlier margin per quality ({doc['date']})", "",
             f"Model `{doc['model']['name']}`; {len(doc['scene_bands'])} training scene-bands (held-out scenes "
             f"excluded); bpp from .sarc bytes, dB RMSE over valid pixels.", "",
             "| quality | " + " | ".join(f"margin {m:g} dB" for m in margins) + " | best |",
             "|---|" + "---|" * (len(margins) + 1)]
    for b in best:
        q = b["quality"]
        cells = [f"{points[(q, m)]['bpp']:.3f} / {points[(q, m)]['db_rmse']:.3f}" for m in margins]
        lines.append(f"| {q:g} | " + " | ".join(cells) + f" | {b['best_margin_db']:g} |")
    lines += ["", "Cells: bpp / dB RMSE. Best: minimum of dB RMSE^2 + slope x bpp, slope from the smallest "
              "margin's curve at the neighbouring qualities.", "",
              f"Fit margin = K / sqrt(255^2 lambda): K = {k:.1f} dB" if k else "No interior best margin to fit."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        publish_files({out / "outlier_margin.json": json.dumps(doc, indent=1) + "\n",
                       out / "outlier_margin.md": text})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
