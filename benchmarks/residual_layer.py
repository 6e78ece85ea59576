"""What a pixel-domain enhancement layer on top of the learned codec would buy, against JPEG-2000 (a measurement
for the design decision of issue 19, not a codec feature).

The latent (128 channels at 1/16, 0.5 numbers per pixel) cannot carry speckle's one independent value per pixel,
which is why the learned curve flattens at high rate (docs/results.md, session 10). A second layer could code
what the latent leaves: the dB residual `original - reconstruction`, quantised per pixel with a uniform step and
entropy-coded. This script measures that layer's rate and error on real files of the learned codec, without
building it:
* each held-out scene-band is compressed and reconstructed through the real codec at every quality (files' bytes);
* the residual of its valid pixels is rounded to `step` dB symbols; the decoder adds each symbol's centroid
  (sent as a float16 per symbol value);
* its rate is the code length of an adaptive (Krichevsky-Trofimov) arithmetic coder in raster order with four
  contexts, the magnitude of the left plus the upper neighbour's symbol (0, 1, 2, 3+). A real adaptive range
  coder lands within a few bytes of this; no better model (a context on the reconstruction, rate-distortion
  choice of symbols) is tried, so the gain is a floor for such a layer.
Each (quality, step) pair is one operating point for all scene-bands, aggregated as benchmarks/rate_distortion.py
does, and JPEG-2000 codes the same bands in the same run. BD-rate against JPEG-2000 of the learned curve alone
and of the lower envelope of the learned and the layered points.

    python benchmarks/residual_layer.py --sigma0 --scenes frankfurt panama india_900498 mekong srilanka_534068 \\
        paraguay_jja10 --out benchmarks/results/residual_layer
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.special import gammaln

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jpeg2000  # noqa: E402
from figures import model_caption, palette_png  # noqa: E402
from rate_distortion import (DATA_DIR, bd_rate, device_info, grd_scenes, lower_envelope,  # noqa: E402
                             model_info, reconstruction_values, resolve_model, scene_bands, trained_qualities,
                             versions, write_report)
from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct  # noqa: E402
from sar_compress_plugin.core.metrics import db_rmse  # noqa: E402
from sar_compress_plugin.core.preprocessing import to_db  # noqa: E402

DEFAULT_STEPS_DB = (0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
CONTEXTS = 4
CENTROID_BITS = 16
#: dB RMSE levels at which the curves' bits are compared (JPEG-2000 spans about 0.5-2.3 dB here)
MATCHED_DB = (2.0, 1.5, 1.0, 0.8, 0.6, 0.55, 0.52)


def adaptive_code_bits(symbols: np.ndarray, contexts: np.ndarray, n_contexts: int) -> float:
    """Code length in bits of `symbols` under an adaptive Krichevsky-Trofimov estimator per context: what an
    adaptive arithmetic coder that starts from half a count per symbol value spends, independent of order."""
    values, idx = np.unique(symbols, return_inverse=True)
    a = len(values)
    if a <= 1:
        return 0.0
    counts = np.zeros((n_contexts, a), dtype=np.int64)
    np.add.at(counts, (contexts, idx), 1)
    n = counts.sum(axis=1)
    nats = (gammaln(n + a / 2) - gammaln(a / 2)).sum() - (gammaln(counts + 0.5) - gammaln(0.5)).sum()
    return float(nats / math.log(2))


def neighbour_contexts(sym: np.ndarray, valid: np.ndarray, n_contexts: int = CONTEXTS) -> np.ndarray:
    """Per pixel: |left symbol| + |upper symbol| (invalid or outside neighbours count 0), capped at n - 1."""
    mag = np.where(valid, np.abs(sym), 0)
    ctx = np.zeros(sym.shape, dtype=np.int64)
    ctx[:, 1:] += mag[:, :-1]
    ctx[1:, :] += mag[:-1, :]
    return np.minimum(ctx, n_contexts - 1)


def layer(ref_db: np.ndarray, rec_db: np.ndarray, valid: np.ndarray, step: float) -> tuple[float, np.ndarray]:
    """(bits, corrected dB) of the enhancement layer at `step` dB on one band."""
    residual = np.where(valid, ref_db.astype(np.float64) - rec_db, 0.0)
    sym = np.rint(residual / step).astype(np.int64)
    ctx = neighbour_contexts(sym, valid)
    bits = adaptive_code_bits(sym[valid], ctx[valid], CONTEXTS)
    values, idx = np.unique(sym[valid], return_inverse=True)
    centroids = np.bincount(idx, weights=residual[valid]) / np.bincount(idx)
    corrected = rec_db.astype(np.float64).copy()
    corrected[valid] += centroids[idx].astype(np.float16).astype(np.float64)
    return bits + CENTROID_BITS * len(values), corrected


def run_scene(scene: dict, qualities, steps, jp2_bpp, model: Path, work: Path, log) -> list[dict]:
    rows = []
    for sb in scene_bands(scene, work):
        base = {"scene": sb.scene, "band": sb.band, "width": sb.info.width, "height": sb.info.height,
                "pixels": int(sb.values.size), "valid_pixels": int(sb.valid.sum())}
        for q in qualities:
            sarc, rec_path = work / "q.sarc", work / "q_rec.tif"
            res = compress(sb.src, sarc, CompressOptions(model_dir=model, device="cpu", quality=float(q),
                                                         domain=sb.domain))
            reconstruct(sarc, rec_path, model_dirs=[model], device="cpu")
            rec_db, _ = to_db(reconstruction_values(sb.src, rec_path), sb.domain, sb.nodata)
            file_bits = 8.0 * res.output_bytes
            sarc.unlink()
            rec_path.unlink()
            rows.append({**base, "codec": "learned", "setting": f"quality={q:g}", "quality": float(q),
                         "step_db": None, "file_bytes": file_bits / 8, "layer_bits": 0.0,
                         "db_rmse": db_rmse(sb.db, rec_db, sb.valid)})
            for s in steps:
                bits, corrected = layer(sb.db, rec_db, sb.valid, s)
                rows.append({**base, "codec": "layered", "setting": f"quality={q:g} step={s:g}",
                             "quality": float(q), "step_db": float(s), "file_bytes": (file_bits + bits) / 8,
                             "layer_bits": bits, "db_rmse": db_rmse(sb.db, corrected, sb.valid)})
            log(f"  {sb.scene:>18} {sb.band} quality {q:g}: {file_bits / sb.values.size:.3f} bpp, "
                f"{rows[-len(steps) - 1]['db_rmse']:.3f} dB; with the layer "
                + ", ".join(f"{r['file_bytes'] * 8 / sb.values.size:.2f}/{r['db_rmse']:.3f}"
                            for r in rows[-len(steps):]))
        for t in jp2_bpp:
            j = sb.jpeg2000(t, work)
            rows.append({**base, "codec": "jpeg2000", "setting": j["setting"], "quality": None,
                         "step_db": None, "file_bytes": j["file_bytes"], "layer_bits": 0.0,
                         "db_rmse": j["db_rmse"]})
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """One point per (codec, setting): bpp from total bits over total pixels, dB RMSE pooled over valid pixels."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["codec"], r["setting"]), []).append(r)
    out = []
    for (codec, setting), rs in groups.items():
        px, vpx = sum(r["pixels"] for r in rs), sum(r["valid_pixels"] for r in rs)
        out.append({"codec": codec, "setting": setting, "quality": rs[0]["quality"], "step_db": rs[0]["step_db"],
                    "scene_bands": len(rs), "bpp": 8.0 * sum(r["file_bytes"] for r in rs) / px,
                    "layer_bpp": sum(r["layer_bits"] for r in rs) / px,
                    "db_rmse": math.sqrt(sum(r["db_rmse"] ** 2 * r["valid_pixels"] for r in rs) / vpx)})
    return sorted(out, key=lambda p: (p["codec"], p["bpp"]))


def bd(ref: list[dict], test: list[dict]) -> dict:
    return bd_rate([p["bpp"] for p in ref], [p["db_rmse"] for p in ref],
                   [p["bpp"] for p in test], [p["db_rmse"] for p in test])


def bits_at(curve: list[dict], db: float) -> float | None:
    """bpp of a lower envelope at dB RMSE `db`, interpolated in log bpp; None outside its range."""
    c = sorted(curve, key=lambda p: p["db_rmse"])
    if not c[0]["db_rmse"] <= db <= c[-1]["db_rmse"]:
        return None
    return float(np.exp(np.interp(db, [p["db_rmse"] for p in c], [np.log(p["bpp"]) for p in c])))


def matched(j2k: list[dict], curves: dict[str, list[dict]]) -> list[dict]:
    out = []
    for db in MATCHED_DB:
        ref = bits_at(j2k, db)
        row = {"db_rmse": db, "jpeg2000_bpp": ref}
        for name, curve in curves.items():
            b = bits_at(curve, db)
            row[f"{name}_bpp"] = b
            row[f"{name}_vs_jpeg2000_percent"] = None if b is None or ref is None else (b / ref - 1) * 100
        out.append(row)
    return out


def summary(doc: dict) -> str:
    b = doc["bd_rate"]
    lines = ["| curve | BD-rate vs JPEG-2000 | over |", "|---|---:|---|"]
    for name in ("learned", "learned_with_layer"):
        r = b[name]
        pct = "-" if r["bd_rate_percent"] is None else f"{r['bd_rate_percent']:+.2f}%"
        span = "-" if r.get("overlap") is None else "{:.3f}-{:.3f} dB".format(*r["overlap"])
        lines.append(f"| {name} | {pct} | {span} |")
    lines += ["", "Bits at the same dB RMSE (log-bpp interpolation on each lower envelope):", "",
              "| dB RMSE | JPEG-2000 bpp | learned bpp | vs JPEG-2000 | learned + layer bpp | vs JPEG-2000 |",
              "|---:|---:|---:|---:|---:|---:|"]
    fmt = (lambda v, f: "-" if v is None else format(v, f))
    lines += [f"| {r['db_rmse']:.2f} | {fmt(r['jpeg2000_bpp'], '.3f')} | {fmt(r['learned_bpp'], '.3f')} | "
              f"{fmt(r['learned_vs_jpeg2000_percent'], '+.1f')}% | {fmt(r['learned_with_layer_bpp'], '.3f')} | "
              f"{fmt(r['learned_with_layer_vs_jpeg2000_percent'], '+.1f')}% |" for r in doc["matched"]]
    lines += ["", "Lower envelope of the learned and layered points (bpp / dB RMSE):", ""]
    lines += [f"* {p['codec']} {p['setting']}: {p['bpp']:.3f} / {p['db_rmse']:.3f}"
              + (f" (layer {p['layer_bpp']:.3f} bpp)" if p["codec"] == "layered" else "")
              for p in doc["envelope"]]
    return "\n".join(lines) + "\n"


def plot(doc: dict) -> Callable[[Path], None]:
    """residual_layer.png, drawn now, as the writer `publish_files` takes."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts = doc["aggregates"]
    for codec, style in (("jpeg2000", "s-"), ("learned", "o-")):
        c = [p for p in pts if p["codec"] == codec]
        ax.plot([p["bpp"] for p in c], [p["db_rmse"] for p in c], style, label=codec)
    lay = [p for p in pts if p["codec"] == "layered"]
    ax.scatter([p["bpp"] for p in lay], [p["db_rmse"] for p in lay], s=8, c="grey", label="learned + layer")
    env = doc["envelope"]
    ax.plot([p["bpp"] for p in env], [p["db_rmse"] for p in env], "k--", lw=1, label="envelope")
    ax.set_xscale("log")
    ax.set_xlabel("bpp (files' bytes + layer code length)")
    ax.set_ylabel("dB RMSE")
    ax.set_title(f"{model_caption(doc['model'])}, {doc['settings']['scene_bands']} held-out scene-bands",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    writer = palette_png(fig, dpi=120)
    plt.close(fig)
    return writer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model bundle (default: the bundled default model)")
    p.add_argument("--data", default=str(DATA_DIR))
    p.add_argument("--scenes", nargs="+", default=None)
    p.add_argument("--sigma0", action="store_true", help="also the calibrated sigma0 dB GRD chips")
    p.add_argument("--qualities", type=float, nargs="+", default=None, help="default: every trained level")
    p.add_argument("--steps", type=float, nargs="+", default=list(DEFAULT_STEPS_DB), help="layer steps in dB")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    model = resolve_model(a.model)
    info = model_info(model)
    qualities = a.qualities or trained_qualities(model)
    scenes = grd_scenes(a.data, a.scenes, a.sigma0)
    if not scenes:
        print(f"error: no shared GRD scene matches {a.scenes} in {a.data}", file=sys.stderr)
        return 2
    log = (lambda s: print(s, file=sys.stderr))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sarc_layer_") as tmp:
        for s in scenes:
            log(s["name"])
            rows += run_scene(s, qualities, a.steps, jpeg2000.DEFAULT_TARGET_BPP, model, Path(tmp), log)
    aggs = aggregate(rows)
    j2k = lower_envelope([x for x in aggs if x["codec"] == "jpeg2000"])
    learned = lower_envelope([x for x in aggs if x["codec"] == "learned"])
    envelope = lower_envelope([x for x in aggs if x["codec"] != "jpeg2000"])
    doc = {"name": "residual_layer", "description": __doc__.split("\n\n")[0], "device": device_info(),
           "versions": versions(), "model": info,
           "settings": {"scenes": [s["name"] for s in scenes], "scene_bands": len({(r["scene"], r["band"])
                                                                                 for r in rows}),
                        "qualities": qualities, "steps_db": a.steps, "contexts": CONTEXTS,
                        "centroid_bits": CENTROID_BITS, "jpeg2000": jpeg2000.NOTE},
           "results": rows, "aggregates": aggs, "envelope": envelope,
           "bd_rate": {"learned": bd(j2k, learned), "learned_with_layer": bd(j2k, envelope)},
           "matched": matched(j2k, {"learned": learned, "learned_with_layer": envelope})}
    md = summary(doc)
    print(md)
    if a.out:
        write_report(a.out, "residual_layer.json", "residual_layer.md", doc, md,
                     {"residual_layer.png": plot(doc)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
