"""Where the learned codec's edge over JPEG-2000 comes from: a scene's structure, or its speckle.

Why: the codec-model issue asks for a BD-rate of -30% against JPEG-2000 in dB RMSE, and training has given
about 2.4 points per doubling of the steps since 20,000 steps. At 1-2 bpp most of a GRD scene's bits go to
speckle, which in dB is close to noise: any transform coder that quantises with a scalar step and entropy-codes
the result pays about the same for noise, so a better transform can only win on what is not noise. This
measures that directly. Each held-out scene-band is split, in linear intensity, into
* structure: the local mean intensity (a --window x --window box over the valid pixels), roughly what a
  despeckling filter keeps;
* speckle: the intensity divided by that local mean, times the band's median intensity: the scene's own
  speckle, with its spatial correlation and its distribution, and (nearly) no structure;
and both codecs run on the original and on each part, exactly as in rate_distortion.py (real .sarc and .jp2
files, bpp from their bytes, dB RMSE within the same percentile clip). The BD-rate per part says how much of
the learned codec's edge each kind of content allows; the two parts do not add up to the original's bits.

    python benchmarks/speckle_share.py --sigma0 --scenes frankfurt panama india_900498 mekong srilanka_534068 \
        paraguay_jja10 --out benchmarks/results/speckle_share
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jpeg2000  # noqa: E402
from rate_distortion import (DATA_DIR, aggregate_points, curve_bd_rates, grd_scenes, jpeg2000_points,  # noqa: E402
                             learned_envelope, learned_point, resolve_model, trained_qualities, versions,
                             write_report)
from sar_compress_plugin.core.evaluation import physical_band  # noqa: E402
from sar_compress_plugin.core.preprocessing import percentile_bounds, to_db  # noqa: E402
from sar_compress_plugin.core.raster_io import GeoTiffWriter, RasterReader  # noqa: E402
from sar_compress_plugin.core.runtime import load_manifest  # noqa: E402

PARTS = ("original", "structure", "speckle")


def split_band(intensity: np.ndarray, valid: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """{part: float32 linear intensity}; invalid pixels stay NaN in every part (the codecs' nodata path)."""
    x = np.where(valid, intensity, 0.0).astype(np.float64)
    weight = uniform_filter(valid.astype(np.float64), window, mode="reflect")
    local = uniform_filter(x, window, mode="reflect") / np.maximum(weight, 1e-12)
    ok = valid & (local > 0)
    median = float(np.median(intensity[ok]))
    parts = {"original": np.where(valid, intensity, np.nan),
             "structure": np.where(ok, local, np.nan),
             "speckle": np.where(ok, intensity / np.where(ok, local, 1.0) * median, np.nan)}
    return {k: v.astype(np.float32) for k, v in parts.items()}


def run_part(values: np.ndarray, name: str, part: str, qualities, jp2_bpp, model: Path, device: str,
             work: Path, log, geotransform=None, crs_wkt: str = "") -> list[dict]:
    """Both codecs on one part, georeferenced as the scene is: each file then carries its georeferencing (a few
    hundred bytes, as in rate_distortion.py), which weighs on small chips at low rates."""
    src = work / f"{name}_{part}.tif"
    with GeoTiffWriter(src, values.shape[1], values.shape[0], 1, "float32", crs_wkt=crs_wkt,
                       geotransform=geotransform, nodata=[float("nan")], band_names=[part]) as w:
        w.write(0, 0, 0, values)
    db, valid = to_db(values, "intensity", float("nan"))
    clip = percentile_bounds(db, valid)
    rows = []
    base = {"scene": name, "band": part, "width": values.shape[1], "height": values.shape[0]}
    for q in qualities:
        rows.append({**base, **learned_point(src, values, "intensity", clip, float("nan"), q, model, device, work)})
        log(f"  {name:>24} {part:>9} learned  {rows[-1]['setting']:>14}  bpp {rows[-1]['bpp']:.3f}  "
            f"dB RMSE {rows[-1]['db_rmse']:.3f}")
    for t in jp2_bpp:
        rows.append({**base, **jpeg2000.run_band(values, "intensity", t, work, f"{name}_{part}",
                                                 nodata=float("nan"), clip_db=clip, geotransform=geotransform,
                                                 crs_wkt=crs_wkt)})
        log(f"  {name:>24} {part:>9} jpeg2000 {rows[-1]['setting']:>14}  bpp {rows[-1]['bpp']:.3f}  "
            f"dB RMSE {rows[-1]['db_rmse']:.3f}")
    src.unlink()
    return rows


def summary_markdown(doc: dict) -> str:
    s = doc["settings"]
    lines = [f"# Where the learned codec's edge comes from: structure or speckle ({doc['date']})", "",
             f"Model: `{doc['model']['name']}`; scenes: {', '.join(s['scenes'])} ({s['scene_bands']} scene-bands); "
             f"structure = {s['window']} x {s['window']} local mean intensity, speckle = intensity / local mean "
             "x the band's median. Both codecs as in rate_distortion.py (file bytes, dB RMSE within the "
             "part's own 0.5/99.5 percentile clip).", "",
             "| part | BD-rate vs JPEG-2000 | dB RMSE range compared | learned bpp at qualities 0..top | "
             "learned dB RMSE | JPEG-2000 dB RMSE at about 1 bpp |", "|---|---:|---|---|---|---:|"]
    for part in s["parts"]:
        bd = doc["bd_rate"][part]
        pts = [p for p in doc["aggregates"] if p["subset"] == part]
        learned = sorted((p for p in pts if p["codec"] == "learned"), key=lambda p: p["bpp"])
        jp2 = min((p for p in pts if p["codec"] == "jpeg2000"), key=lambda p: abs(p["bpp"] - 1.0))
        rng = f"{bd['overlap'][0]:.3f}-{bd['overlap'][1]:.3f} dB" if bd.get("overlap") else bd.get("note", "-")
        value = "-" if bd["bd_rate_percent"] is None else f"**{bd['bd_rate_percent']:+.1f}%**"
        bpps = " / ".join(format(p["bpp"], ".3f") for p in learned)
        errors = " / ".join(format(p["db_rmse"], ".3f") for p in learned)
        lines.append(f"| {part} | {value} | {rng} | {bpps} | {errors} | {jp2['db_rmse']:.3f} ({jp2['bpp']:.2f} bpp) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model bundle (default: the bundled default model)")
    p.add_argument("--data", default=str(DATA_DIR), help="shared SAR data folder (default: %(default)s)")
    p.add_argument("--scenes", nargs="+", default=None, help="names (substrings) of the GRD scenes to use")
    p.add_argument("--sigma0", action="store_true", help="include the calibrated sigma0 dB chips")
    p.add_argument("--window", type=int, default=7, help="box of the local mean, px (default %(default)s)")
    p.add_argument("--qualities", type=float, nargs="+", default=None, help="default: every trained level")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None, help="write speckle_share.json and speckle_share.md here")
    a = p.parse_args(argv)
    if a.window < 3 or a.window % 2 == 0:
        print("error: --window must be an odd number of at least 3", file=sys.stderr)
        return 2
    model = resolve_model(a.model)
    manifest = load_manifest(model, verify=False)
    qualities = a.qualities or trained_qualities(model)
    scenes = grd_scenes(a.data, a.scenes, a.sigma0)
    if not scenes:
        print(f"error: no shared GRD scene matches {a.scenes} in {a.data}", file=sys.stderr)
        return 2
    log = (lambda s: print(s, file=sys.stderr))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sarc_speckle_") as tmp:
        for scene in scenes:
            log(scene["name"])
            with RasterReader(scene["path"]) as r:
                for b, pol in enumerate(scene["bands"]):
                    # physical values, as rate_distortion.py's: a scaled product's stored ones (an int16 dB
                    # product's hundredths of a dB) would be split and coded as what they are not
                    values, nodata = physical_band(r, b, r.read_valid(b, 0, 0, r.info.width, r.info.height))
                    db, valid = to_db(values, scene["domain"], nodata)
                    intensity = np.power(10.0, db.astype(np.float64) / 10.0)
                    for part, v in split_band(intensity, valid, a.window).items():
                        rows += run_part(v, f"{scene['name']}_{pol}", part, qualities, jpeg2000.DEFAULT_TARGET_BPP,
                                         model, a.device, Path(tmp), log, r.info.geotransform, r.info.crs_wkt)
    aggs = [pt for part in PARTS for pt in aggregate_points(rows, part)]
    bd = curve_bd_rates(aggs, list(PARTS), jpeg2000_points, learned_envelope)
    doc = {"name": "speckle_share", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "versions": versions(), "model": {"name": manifest.get("name"), "path": str(model),
                                             "steps_total": manifest.get("training", {}).get("steps_total")},
           "settings": {"scenes": [s["name"] for s in scenes], "parts": list(PARTS), "window": a.window,
                        "scene_bands": len({(r["scene"]) for r in rows}), "qualities": qualities,
                        "jpeg2000_target_bpp": list(jpeg2000.DEFAULT_TARGET_BPP)},
           "results": rows, "aggregates": aggs, "bd_rate": bd}
    md = summary_markdown(doc)
    print(md)
    if a.out:
        write_report(a.out, "speckle_share.json", "speckle_share.md", doc, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
