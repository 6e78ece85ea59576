"""Rate-distortion of the learned codec against JPEG-2000, side by side in one run, on the shared Sentinel-1 GRD scenes.

For every scene and band (VV, VH):
* the learned codec at several operating points (`quality`, a float from 0 to the model's top level; by default
  every trained level): the band is
  written as a single-band GeoTIFF, compressed to a real .sarc file with core.codec.compress, reconstructed with
  core.codec.reconstruct; bpp = 8 * .sarc bytes / pixels;
* JPEG-2000 (benchmarks/jpeg2000.py) at settings spanning about 0.1-2 bpp, on the same preprocessed image;
* every point measured with core.evaluation.band_quality, with the band's 0.5/99.5 percentile dB clip bounds:
  bpp, PSNR, SSIM, dB RMSE (all valid pixels, in and out of the clip range), ENL ratio, EPI.

Several model bundles (--model A B ...) are compared as one learned curve (its lower envelope): each bundle at
each quality is an operating point named "<model> quality=<q>".

Then, per codec and operating point, the points are aggregated over scene-bands (bpp from total bytes / total
pixels, metrics with core.evaluation.aggregate), and from those aggregated points:
* BD-rate (Bjontegaard: cubic fit of log-rate against dB RMSE, integrated over the overlapping dB RMSE range) of
  the learned codec against JPEG-2000; negative = the learned codec needs fewer bits for the same dB RMSE. The
  learned curve is its lower envelope (points that no cheaper point beats in dB RMSE), which is the codec a user
  gets by picking the best bundle and quality for a bit budget;
* a paired Wilcoxon signed-rank test across scene-bands of dB RMSE at matched bpp (each scene-band's JPEG-2000
  curve interpolated in log-bpp at the learned codec's bpp), per learned operating point.

Without --out it prints the summary and writes nothing; with --out DIR it writes DIR/rd_points.json,
DIR/rd_summary.md and DIR/rd_plot.png. `--replot DIR...` redraws each DIR's rd_plot.png from its rd_points.json
alone (a figure's captions changed; the measurement did not): nothing is compressed again. `--rebaseline DIR...`
measures JPEG-2000 again with the current settings (benchmarks/jpeg2000.py) and rewrites each report around the
learned codec's rows as they were measured.

    .venv/bin/python benchmarks/rate_distortion.py --model sar_compress_plugin/models/default --out benchmarks/results
    .venv/bin/python benchmarks/rate_distortion.py --model /tmp/tiny --quick
    .venv/bin/python benchmarks/rate_distortion.py --replot benchmarks/results/rd_heldout_grd
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jpeg2000  # noqa: E402
from figures import model_caption, palette_png  # noqa: E402
from results_files import points_file, read_json  # noqa: E402
from sar_compress_plugin.core.codec import (SOFTWARE, CompressOptions, compress, read_header,  # noqa: E402
                                            reconstruct)
from sar_compress_plugin.core.evaluation import aggregate, band_quality, physical_band  # noqa: E402
from sar_compress_plugin.core.preprocessing import canonical_domain, percentile_bounds, to_db  # noqa: E402
from sar_compress_plugin.core.raster_io import GeoTiffWriter, RasterReader  # noqa: E402
from sar_compress_plugin.core.runtime import default_model_dir, load_manifest  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

DATA_DIR = REPO.parent / "shared" / "data" / "sar"
if not DATA_DIR.is_dir():
    DATA_DIR = Path("/work/shared/data/sar")
QUICK_JP2_BPP = (0.1, 0.5, 2.0)
#: The shared Sentinel-1 IW GRD scenes: s1_iw_grd_<city>_<size>.tif (linear intensity, VV + VH).
GRD_PATTERN = re.compile(r"^s1_iw_grd_[a-z_]+_\d+\.tif$")
POLARISATIONS = ("VV", "VH")
ROUNDINGS = ("rate_distortion", "nearest")


# --- environment, shared with throughput.py ---------------------------------------------------------------

def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


#: CPU features that change the speed figures: this project's machines all say "AMD EPYC", some with AVX-512 and
#: bf16 kernels (onnxruntime and torch pick faster paths there), some with AVX2 only.
SPEED_RELEVANT_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def device_info(providers=()) -> dict:
    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count()
    gpu = _cmd(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return {"cpu": cpu or platform.processor(), "cpu_flags": [f for f in SPEED_RELEVANT_CPU_FLAGS if f in flags],
            "cores": cores, "gpu": gpu or None,
            "providers_used": sorted(set(providers))}


def versions() -> dict:
    import onnxruntime  # noqa: PLC0415
    import scipy  # noqa: PLC0415

    commit = _cmd(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    dirty = bool(_cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "sar_compress_plugin", "benchmarks"]))
    return {"python": platform.python_version(), "numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
            "scipy": scipy.__version__, "codec": SOFTWARE, "git_commit": commit or None,
            "git_dirty": dirty, **jpeg2000.versions()}


def model_info(model_dir) -> dict:
    m = load_manifest(model_dir, verify=True)
    training = m.get("training") or {}
    return {"path": str(model_dir), "name": m.get("name"), "variant": m.get("variant"),
            "decoder_sha256": m["files"]["decoder"]["sha256"], "encoder_sha256": m["files"]["encoder"]["sha256"],
            "latent_channels": m.get("latent_channels"),
            "parameters": (training.get("parameters") or {}).get("total"),
            "training": {k: v for k, v in training.items() if not isinstance(v, (list, dict))}}


def resolve_model(arg) -> Path:
    d = Path(arg) if arg else default_model_dir()
    if not (d / "manifest.json").is_file():
        raise SystemExit(f"error: no model bundle at {d} (manifest.json missing); pass --model DIR")
    return d


def grd_scenes(data_dir=DATA_DIR, only=None, sigma0: bool = False) -> list[dict]:
    """The shared GRD scenes from MANIFEST.json (the linear-intensity ones; with `sigma0` also the calibrated
    sigma0 dB chips), optionally restricted to names containing one of `only`."""
    manifest = json.loads((Path(data_dir) / "MANIFEST.json").read_text())
    out = []
    for e in manifest:
        if not e["file"].startswith("s1_iw_grd_"):
            continue
        domain = canonical_domain(e["value_domain"].split()[0])
        if sigma0 and e["file"].startswith("s1_iw_grd_") and e["value_domain"] == "sigma0_db" \
                and e["file"].endswith(".tif"):
            name = e["file"][len("s1_iw_grd_"):-len(".tif")]
            if only and not any(o in e["file"] for o in only):
                continue
            pols = [p.strip() for p in e.get("polarization", "").split("/") if p.strip()]
            out.append({"name": name, "path": str(Path(data_dir) / e["file"]), "domain": domain,
                        "bands": pols or ["band1"]})
            continue
        if not GRD_PATTERN.match(e["file"]) or domain != "intensity":
            continue
        name = e["file"][len("s1_iw_grd_"):-len(".tif")]
        if only and not any(o in e["file"] for o in only):
            continue
        out.append({"name": name, "path": str(Path(data_dir) / e["file"]), "domain": "intensity",
                    "bands": list(POLARISATIONS if "VV/VH" in e.get("polarization", "VV/VH") else ["band1"])})
    return out


# --- one scene-band -----------------------------------------------------------------------------------------

def reconstruction_values(src: Path, rec_path: Path, band: int = 0) -> np.ndarray:
    """Band `band` of `rec_path`, the codec's reconstruction of the raster `src`, read as the original's values
    are scored (`physical_band`): physical values, NaN where `src`'s GDAL mask hides a pixel. Its stored values
    matched them only on an unscaled band (an int16 dB product's are hundredths of a dB)."""
    with RasterReader(src) as a, RasterReader(rec_path) as r:
        return physical_band(r, band, a.read_valid(band, 0, 0, a.info.width, a.info.height))[0]


def learned_point(src: Path, values: np.ndarray, domain: str, clip, nodata, quality: float, model: Path,
                  device: str, work: Path, label: str = "", rd_rounding: bool = True) -> dict:
    """The learned codec on the raster `src` at `quality`: `values` and `nodata`, the band's physical values
    (`physical_band`), are scored against the reconstruction's, read the same way."""
    sarc = work / f"{src.stem}_q{quality:g}.sarc"
    rec_path = work / f"{src.stem}_q{quality:g}_rec.tif"
    res = compress(src, sarc, CompressOptions(model_dir=model, device=device, quality=float(quality),
                                              domain=domain, rd_rounding=rd_rounding))
    rr = reconstruct(sarc, rec_path, model_dirs=[model], device=device)
    header = read_header(sarc)
    chunks = header["chunks"]
    parts = {k: sum(e[1] for e in chunks.get(k, []) if e) for k in ("latent", "outlier", "mask")}
    q = band_quality(values, reconstruction_values(src, rec_path), domain, clip, nodata)
    for p in (sarc, rec_path):
        p.unlink()
    return {"codec": "learned", "setting": f"{label + ' ' if label else ''}quality={quality:g}",
            "model": label or None, "quality": float(quality),
            "latent_coder": header["coders"]["latent"], "rounding": header["rate"].get("rounding"),
            "file_bytes": int(res.output_bytes), "bpp": 8.0 * res.output_bytes / values.size,
            "encode_s": res.seconds, "decode_s": rr.seconds, "provider": res.provider,
            "decode_provider": rr.provider, "coded_outlier_pixels": int(res.outlier_pixels),
            "bytes_latent": parts["latent"], "bytes_outlier": parts["outlier"], "bytes_mask": parts["mask"],
            "bytes_header_index": int(res.output_bytes - sum(parts.values())),
            "codec_clip_db": [float(v) for v in res.clip_db[0]], **q}


@dataclass
class SceneBand:
    """One band of a scene as both codecs get it: its physical values, dB, validity, clip bounds, and `src`, the
    band written alone as a GeoTIFF with the scene's georeferencing (what the learned codec compresses)."""

    scene: str
    band: str
    domain: str
    values: np.ndarray
    nodata: float | None
    db: np.ndarray
    valid: np.ndarray
    clip: tuple[float, float]
    src: Path
    info: object

    def jpeg2000(self, target_bpp: float, work: Path, resolutions: int | None = jpeg2000.RESOLUTIONS) -> dict:
        """JPEG-2000 at `target_bpp` on this band, measured (benchmarks/jpeg2000.py)."""
        return jpeg2000.run_band(self.values, self.domain, target_bpp, work, f"{self.scene}_{self.band}",
                                 nodata=self.nodata, clip_db=self.clip, geotransform=self.info.geotransform,
                                 crs_wkt=self.info.crs_wkt, resolutions=resolutions)


def scene_bands(scene: dict, work: Path):
    """Each band of `scene` as a SceneBand; its single-band GeoTIFF is removed once the caller moves on.

    The values both codecs are measured on are physical (`physical_band`), as the demo's and sar-eval's are: a
    scaled product's stored numbers would be scored as what they are not. The learned codec gets the band as the
    scene holds it, stored values under its scale and offset and its GDAL mask, and so codes what it would code
    for a user."""
    with RasterReader(scene["path"]) as r:
        info = r.info
        for b, pol in enumerate(scene["bands"]):
            mask = r.read_valid(b, 0, 0, info.width, info.height)
            values, nodata = physical_band(r, b, mask)
            db, valid = to_db(values, scene["domain"], nodata)
            src = work / f"{scene['name']}_{pol}.tif"
            scaling = {k: info.bands[b][k] for k in ("scale", "offset")}
            with GeoTiffWriter(src, info.width, info.height, 1, info.dtype, crs_wkt=info.crs_wkt,
                               geotransform=info.geotransform, nodata=[info.nodata[b]], band_names=[pol],
                               bands=[scaling], mask=mask is not None) as w:
                w.write(0, 0, 0, r.read(b, 0, 0, info.width, info.height))
                if mask is not None:
                    w.write_mask(0, 0, mask)
            try:
                yield SceneBand(scene["name"], pol, scene["domain"], values, nodata, db, valid,
                                percentile_bounds(db, valid), src, info)
            finally:
                src.unlink()


def trained_qualities(bundle: Path) -> list[float]:
    """Every trained level of a bundle, as codec qualities (0 to the top level)."""
    return [float(q) for q in range(int(load_manifest(bundle, verify=False)["rate"]["levels"]))]


def run_scene(scene: dict, qualities, jp2_bpp, models: dict[str, tuple[Path, bool]], device: str, work: Path,
              log=print) -> list[dict]:
    """`models`: label -> (bundle, rate-distortion rounding); a single one is labelled "" so its settings read
    "quality=<q>"."""
    rows = []
    for sb in scene_bands(scene, work):
        base = {"scene": sb.scene, "band": sb.band, "width": sb.info.width, "height": sb.info.height}
        for label, (model, rd_rounding) in models.items():
            for qv in qualities:
                row = {**base, **learned_point(sb.src, sb.values, sb.domain, sb.clip, sb.nodata, qv, model, device,
                                               work, label, rd_rounding)}
                rows.append(row)
                log(f"  {sb.scene:>18} {sb.band} learned  {row['setting']:>14}  bpp {row['bpp']:.3f}  "
                    f"dB RMSE {row['db_rmse']:.3f}")
        for t in jp2_bpp:
            row = {**base, **sb.jpeg2000(t, work)}
            rows.append(row)
            log(f"  {sb.scene:>18} {sb.band} jpeg2000 {row['setting']:>14}  bpp {row['bpp']:.3f}  "
                f"dB RMSE {row['db_rmse']:.3f}")
    return rows


# --- aggregation and statistics -----------------------------------------------------------------------------

def aggregate_points(rows: list[dict], subset: str = "all") -> list[dict]:
    """One point per (codec, setting) over the scene-bands of `subset` ('all' or a polarisation)."""
    groups: dict = {}
    for r in rows:
        if subset == "all" or r["band"] == subset:
            groups.setdefault((r["codec"], r["setting"]), []).append(r)
    out = []
    for (codec, setting), rs in groups.items():
        pixels = sum(r["pixels"] for r in rs)
        seconds_e = sum(r["encode_s"] for r in rs)
        seconds_d = sum(r["decode_s"] for r in rs)
        if codec == "learned":
            extra = {f"bpp_{k}": 8.0 * sum(r[f"bytes_{k}"] for r in rs) / pixels
                     for k in ("latent", "outlier", "mask", "header_index")}
        else:
            extra = {}
        out.append({"codec": codec, "setting": setting, "model": rs[0].get("model"), "subset": subset,
                    "scene_bands": len(rs),
                    "bpp": 8.0 * sum(r["file_bytes"] for r in rs) / pixels, **aggregate(rs),
                    # the pixel-weighted mean ENL ratio can be dominated by one scene-band whose homogeneous
                    # windows the codec flattened (ratio -> inf); the median over scene-bands is robust
                    "enl_ratio_median": float(np.median([r["enl_ratio"] for r in rs])),
                    "encode_mp_s": pixels / 1e6 / seconds_e if seconds_e else None,
                    "decode_mp_s": pixels / 1e6 / seconds_d if seconds_d else None, **extra})
    out.sort(key=lambda p: (p["codec"], p["bpp"]))
    return out


def lower_envelope(points: list[dict], key: str = "db_rmse") -> list[dict]:
    """The points, by rising bpp, that beat every cheaper point's `key` (lower is better)."""
    out: list[dict] = []
    for p in sorted(points, key=lambda p: p["bpp"]):
        if p[key] is not None and np.isfinite(p[key]) and (not out or p[key] < out[-1][key]):
            out.append(p)
    return out


def bd_rate(rate_ref, dist_ref, rate_test, dist_test, max_degree: int = 3) -> dict:
    """Bjontegaard delta rate of `test` against `ref` (percent; negative = test needs fewer bits).

    log(rate) is fitted as a polynomial (cubic when both curves have >= 4 points) of the distortion (here dB
    RMSE), and the mean log-rate difference is integrated over the distortion range both curves cover.
    """
    r1, d1 = np.asarray(rate_ref, float), np.asarray(dist_ref, float)
    r2, d2 = np.asarray(rate_test, float), np.asarray(dist_test, float)
    ok1 = np.isfinite(r1) & np.isfinite(d1) & (r1 > 0)
    ok2 = np.isfinite(r2) & np.isfinite(d2) & (r2 > 0)
    r1, d1, r2, d2 = r1[ok1], d1[ok1], r2[ok2], d2[ok2]
    res = {"bd_rate_percent": None, "distortion": "db_rmse", "points": [int(r1.size), int(r2.size)],
           "ref_range": [float(d1.min()), float(d1.max())] if d1.size else None,
           "test_range": [float(d2.min()), float(d2.max())] if d2.size else None}
    if r1.size < 2 or r2.size < 2:
        res["note"] = "fewer than 2 points on a curve: no BD-rate"
        return res
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if not hi > lo:
        res["note"] = (f"no overlap in dB RMSE (reference {d1.min():.3f}-{d1.max():.3f}, "
                       f"test {d2.min():.3f}-{d2.max():.3f}): no BD-rate")
        return res
    deg = int(min(max_degree, r1.size - 1, r2.size - 1))
    p1, p2 = np.polyfit(d1, np.log(r1), deg), np.polyfit(d2, np.log(r2), deg)
    i1, i2 = np.polyint(p1), np.polyint(p2)
    avg = ((np.polyval(i2, hi) - np.polyval(i2, lo)) - (np.polyval(i1, hi) - np.polyval(i1, lo))) / (hi - lo)
    res.update({"bd_rate_percent": float((np.exp(avg) - 1.0) * 100.0), "overlap": [float(lo), float(hi)],
                "fit_degree": deg})
    if deg < 3:
        res["note"] = f"only {min(r1.size, r2.size)} points on a curve: degree-{deg} fit instead of cubic"
    return res


def jpeg2000_points(pts: list[dict]) -> list[dict]:
    return [pt for pt in pts if pt["codec"] == "jpeg2000"]


def learned_envelope(pts: list[dict]) -> list[dict]:
    return lower_envelope([pt for pt in pts if pt["codec"] == "learned"])


def write_report(out_dir, json_name: str, md_name: str, doc: dict, md: str,
                 figures: dict[str, Callable[[Path], None]] | None = None) -> Path:
    """The benchmarks' JSON and markdown files, and `figures` ({file name: its writer from
    `figures.palette_png`}), into `out_dir` (created), published together.

    The JSON is written one top-level entry and one point per line, floats to 6 significant digits (far finer
    than any figure quoted from it): three dozen committed reports must leave room in the 64 MiB a GPU call
    carries with the checkout."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # whole or not at all, and all together: a Ctrl-C or a full disk mid-write left a cut-off report in place
    # of the last one (compare_runs then failed on it, or read half a rerun beside the old table or figure)
    publish_files({out / json_name: compact_json(doc), out / md_name: md,
                   **{out / name: writer for name, writer in (figures or {}).items()}})
    return out


def curve_bd_rates(aggs: list[dict], subsets: list[str], ref_of, test_of) -> dict:
    """{subset: bd_rate(ref curve, test curve)}; `ref_of` / `test_of` pick a subset's points from `aggs`."""
    out = {}
    for sub in subsets:
        pts = [pt for pt in aggs if pt["subset"] == sub]
        ref, test = ref_of(pts), test_of(pts)
        out[sub] = bd_rate([pt["bpp"] for pt in ref], [pt["db_rmse"] for pt in ref],
                           [pt["bpp"] for pt in test], [pt["db_rmse"] for pt in test])
        out[sub]["test_settings"] = [pt["setting"] for pt in test]
    return out


def model_comparison(aggs: list[dict], subsets: list[str], names: list[str]) -> dict:
    """Several models in one run (same scenes, same JPEG-2000 points): each model's own BD-rate against
    JPEG-2000, and against the first model (an A/B of two checkpoints at equal steps, or a new default against
    the last)."""
    def learned(name):
        return lambda pts: learned_envelope([pt for pt in pts if pt["model"] == name])

    return {name: {"vs_jpeg2000": curve_bd_rates(aggs, subsets, jpeg2000_points, learned(name)),
                   "vs_first_model": curve_bd_rates(aggs, subsets, learned(names[0]), learned(name))}
            for name in names}


def matched_bpp_pairs(rows: list[dict], key: str = "db_rmse") -> dict:
    """Per learned setting: (scene-band, learned value, JPEG-2000 value interpolated at the learned bpp)."""
    by_sb: dict = {}
    for r in rows:
        by_sb.setdefault((r["scene"], r["band"]), []).append(r)
    pairs: dict = {}
    for sb, rs in sorted(by_sb.items()):
        j = sorted((r for r in rs if r["codec"] == "jpeg2000"), key=lambda r: r["bpp"])
        if len(j) < 2:
            continue
        lb, lv = np.log([r["bpp"] for r in j]), np.array([r[key] for r in j], float)
        for r in rs:
            if r["codec"] != "learned":
                continue
            p = pairs.setdefault(r["setting"], {"pairs": [], "outside": 0, "bpp": []})
            x = np.log(r["bpp"])
            if lb[0] <= x <= lb[-1]:
                p["pairs"].append((f"{sb[0]}/{sb[1]}", float(r[key]), float(np.interp(x, lb, lv))))
                p["bpp"].append(r["bpp"])
            else:
                p["outside"] += 1
    return pairs


def wilcoxon_matched(rows: list[dict], key: str = "db_rmse") -> list[dict]:
    from scipy.stats import wilcoxon  # noqa: PLC0415

    out = []
    for setting, p in matched_bpp_pairs(rows, key).items():
        n = len(p["pairs"])
        entry = {"setting": setting, "metric": key, "n_pairs": n, "outside_jpeg2000_bpp_range": p["outside"],
                 "statistic": None, "p_value": None}
        if n:
            learned = np.array([v for _, v, _ in p["pairs"]])
            j2k = np.array([v for _, _, v in p["pairs"]])
            entry.update({"median_bpp": float(np.median(p["bpp"])), "median_learned": float(np.median(learned)),
                          "median_jpeg2000_at_matched_bpp": float(np.median(j2k)),
                          "median_difference": float(np.median(learned - j2k)),
                          "learned_better": int((learned < j2k).sum())})
            if n >= 2 and np.any(learned != j2k):
                try:
                    t = wilcoxon(learned, j2k, alternative="two-sided")
                    entry.update({"statistic": float(t.statistic), "p_value": float(t.pvalue)})
                except ValueError as exc:
                    entry["note"] = str(exc)
            else:
                entry["note"] = "fewer than 2 pairs (or all equal): no test"
        else:
            entry["note"] = "the learned codec's bpp lies outside every JPEG-2000 curve: no matched pairs"
        out.append(entry)
    return out


# --- outputs -----------------------------------------------------------------------------------------------

def rounded_finite(obj):
    """Floats to 6 significant digits, and non-finite ones as null (JSON has no Infinity / NaN)."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}") if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: rounded_finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded_finite(v) for v in obj]
    return obj


def compact_json(doc: dict) -> str:
    """`doc` rounded, each top-level entry on its own line and, for lists of dicts, each item on its own line."""
    lines = []
    for key, value in rounded_finite(doc).items():
        head = json.dumps(key) + ": "
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = ",\n ".join(json.dumps(v, separators=(",", ":"), allow_nan=False) for v in value)
            lines.append(head + "[\n " + items + "\n]")
        else:
            lines.append(head + json.dumps(value, separators=(",", ":"), allow_nan=False))
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _f(v, fmt=".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _ratio(v) -> str:
    """An ENL ratio: a codec that flattens homogeneous windows sends it towards infinity (1e29 at 0.04 bpp)."""
    return "-" if v is None else format(v, ".2e" if abs(v) >= 1e4 else ".3f")


def bd_text(percent) -> str:
    """A BD-rate as printed; None where the two curves share no range of error (a barely trained model)."""
    return "n/a (no overlap)" if percent is None else f"{percent:+.2f}%"


def summary_markdown(doc: dict) -> str:
    d = doc["device"]
    lines = [f"# Rate-distortion: learned codec vs JPEG-2000 ({doc['date']})", ""]
    lines += [f"Model: `{m['name']}` ({m['variant']}), decoder SHA-256 `{m['decoder_sha256'][:16]}...`, "
              f"from `{m['path']}`.  " for m in doc["models"]]
    lines += [f"Scenes: {', '.join(doc['settings']['scenes'])} ({doc['settings']['scene_bands']} scene-bands, "
              f"{doc['settings']['megapixels']:.2f} MP).  ",
              f"Device: {d['cpu']} ({d['cores']} cores), GPU: {d['gpu'] or 'none'}, "
              f"onnxruntime providers that ran: {', '.join(d['providers_used']) or '-'}.  ",
              "Clip bounds: per band, 0.5 / 99.5 percentiles of the valid dB values (PSNR and SSIM on the [0,1] "
              "image within these bounds; each scene-band's bounds are in rd_points.json). ENL ratio: pixel-weighted "
              "mean over scene-bands (finite values), median in brackets.  ",
              f"JPEG-2000: {doc['settings']['jpeg2000']}.  ",
              *[f"JPEG-2000 measured again on {r['date']} (`--rebaseline`; the learned rows are this report's own): "
                f"before, with {r['previous']['jpeg2000']}, the BD-rate was "
                f"{bd_text(r['previous']['bd_rate_percent'])}.  " for r in doc.get("rebaselined", [])],
              "Learned codec: bpp from the .sarc file's bytes (header, tile index, outlier and mask chunks "
              "included); pixels outside the clip range are coded as sparse corrections.", ""]
    if doc.get("timing_note"):
        lines += [f"Timings: {doc['timing_note']}", ""]
    for subset in doc["settings"]["subsets"]:
        pts = [p for p in doc["aggregates"] if p["subset"] == subset]
        lines += [f"## {subset} ({pts[0]['scene_bands'] if pts else 0} scene-bands)", "",
                  "| codec | setting | bpp | dB RMSE | in range | out of range | PSNR | SSIM | ENL ratio (median) | EPI |"
                  " enc MP/s | dec MP/s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in pts:
            lines.append(f"| {p['codec']} | {p['setting']} | {p['bpp']:.3f} | {_f(p['db_rmse'])} | "
                         f"{_f(p['db_rmse_in_range'])} | {_f(p['db_rmse_out_of_range'])} | {_f(p['psnr'], '.2f')} | "
                         f"{_f(p['ssim'])} | {_ratio(p['enl_ratio'])} ({_ratio(p['enl_ratio_median'])}) | {_f(p['epi'])} | {_f(p['encode_mp_s'], '.2f')} | "
                         f"{_f(p['decode_mp_s'], '.2f')} |")
        lp = [p for p in pts if p["codec"] == "learned"]
        if lp:
            lines += ["", "Learned codec's bits by part (bpp): " + "; ".join(
                f"{p['setting']}: latents {p['bpp_latent']:.3f}, outliers {p['bpp_outlier']:.3f}, "
                f"mask {p['bpp_mask']:.3f}, header+index {p['bpp_header_index']:.3f}" for p in lp) + "."]
        bd = doc["bd_rate"][subset]
        if len(doc["models"]) > 1 and bd.get("test_settings"):
            lines += ["", "Learned curve for the BD-rate (lower envelope): " + ", ".join(bd["test_settings"]) + "."]
        if bd["bd_rate_percent"] is not None:
            lines += ["", f"BD-rate of the learned codec vs JPEG-2000 (dB RMSE, over {bd['overlap'][0]:.3f}-"
                          f"{bd['overlap'][1]:.3f} dB, degree-{bd['fit_degree']} fit): "
                          f"**{bd['bd_rate_percent']:+.1f}%** (negative = fewer bits than JPEG-2000)."]
        else:
            lines += ["", f"BD-rate of the learned codec vs JPEG-2000: not computed: {bd.get('note', '')}."]
        lines.append("")
    if doc.get("model_comparison"):
        first = doc["models"][0]["name"]
        subsets = doc["settings"]["subsets"]
        lines += ["## The models compared (the same scenes and JPEG-2000 points)", "",
                  "| model | " + " | ".join(f"BD-rate (%) vs JPEG-2000, {s}" for s in subsets) + " | "
                  + " | ".join(f"BD-rate (%) vs `{first}`, {s}" for s in subsets) + " |",
                  "|---|" + "---:|" * (2 * len(subsets))]
        for name, c in doc["model_comparison"].items():
            cells = [_f(c[k][s]["bd_rate_percent"], "+.2f") for k in ("vs_jpeg2000", "vs_first_model")
                     for s in subsets]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Paired test at matched bpp (all scene-bands)", "",
              "Wilcoxon signed-rank, two-sided, across scene-bands: the learned codec's dB RMSE against the "
              "JPEG-2000 dB RMSE interpolated (in log bpp) on the same scene-band's curve at the learned bpp.", "",
              "| setting | pairs | outside J2K range | median bpp | median dB RMSE learned | median J2K at that bpp"
              " | median diff | learned better | p |", "|---|---|---|---|---|---|---|---|---|"]
    for w in doc["wilcoxon"]:
        lines.append(f"| {w['setting']} | {w['n_pairs']} | {w['outside_jpeg2000_bpp_range']} | "
                     f"{_f(w.get('median_bpp'))} | {_f(w.get('median_learned'))} | "
                     f"{_f(w.get('median_jpeg2000_at_matched_bpp'))} | {_f(w.get('median_difference'), '+.3f')} | "
                     f"{w.get('learned_better', '-')} | {_f(w['p_value'], '.2g')} |")
    lines.append("")
    return "\n".join(lines)


def plot(doc: dict) -> Callable[[Path], None]:
    """rd_plot.png, drawn now, as the writer `publish_files` takes."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"learned": "tab:red", "jpeg2000": "tab:blue"}
    labels = {"learned": "learned (" + ", ".join(m["name"] for m in doc["models"]) + ")", "jpeg2000": "JPEG-2000"}
    for ax, key, ylabel in ((axes[0], "db_rmse", "dB RMSE (valid pixels)"),
                            (axes[1], "psnr", "PSNR [dB] on clipped [0,1] dB image")):
        for codec in ("jpeg2000", "learned"):
            raw = [r for r in doc["results"] if r["codec"] == codec]
            ax.scatter([r["bpp"] for r in raw], [r[key] for r in raw], s=8, alpha=0.25, color=colours[codec])
            pts = [p for p in doc["aggregates"] if p["codec"] == codec and p["subset"] == "all"]
            if codec == "learned" and len(doc["models"]) > 1:
                ax.scatter([p["bpp"] for p in pts], [p[key] for p in pts], s=14, marker="x", color=colours[codec])
                pts = lower_envelope(pts)
            ax.plot([p["bpp"] for p in pts], [p[key] for p in pts], "o-", color=colours[codec],
                    label=labels[codec] + " (aggregate)")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel (from file bytes)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    bd = doc["bd_rate"]["all"]["bd_rate_percent"]
    axes[0].set_title("BD-rate vs JPEG-2000: " + ("n/a (no overlap)" if bd is None else f"{bd:+.1f}%"))
    axes[1].set_title(f"{doc['settings']['scene_bands']} scene-bands; dots = single scene-bands")
    axes[0].legend(fontsize=8)
    fig.suptitle("learned: " + "; ".join(model_caption(m) for m in doc["models"]), fontsize=10)
    fig.tight_layout()
    writer = palette_png(fig, dpi=120)
    plt.close(fig)
    return writer


def statistics(rows: list[dict], subsets: list[str], labels: list[str]) -> dict:
    """Everything a report derives from its measured rows: the aggregated points, the BD-rates against
    JPEG-2000, the models against each other (several `labels`), and the matched-bpp Wilcoxon tests."""
    aggs = [pt for sub in subsets for pt in aggregate_points(rows, sub)]
    return {"results": rows, "aggregates": aggs,
            "bd_rate": curve_bd_rates(aggs, subsets, jpeg2000_points, learned_envelope),
            "model_comparison": model_comparison(aggs, subsets, labels) if len(labels) > 1 else None,
            "wilcoxon": wilcoxon_matched(rows)}


def rebaseline(folders: list[Path], data_dir) -> int:
    """JPEG-2000 measured again, with this module's settings, on each folder's scenes and rates; the learned
    codec's rows kept as measured (they do not depend on the baseline). For a baseline whose settings changed:
    each report is what a full rerun would give, without compressing everything again. A folder's earlier
    JPEG-2000 settings and BD-rate are kept in the report's `rebaselined` record."""
    docs = {}
    for folder in folders:
        try:
            docs[folder] = json.loads((folder / "rd_points.json").read_text())
        except (OSError, ValueError) as exc:
            print(f"error: {folder / 'rd_points.json'}: {exc}", file=sys.stderr)
            return 2
    scenes = {s["name"]: s for s in grd_scenes(data_dir, None, sigma0=True)}
    for folder, doc in docs.items():  # every folder checked before one is rewritten
        for name in doc["settings"]["scenes"]:
            if name not in scenes:
                print(f"error: {folder}: scene {name} is not in {data_dir}", file=sys.stderr)
                return 2
    measured: dict = {}  # (scene, band, target) -> row: the same scene-band and rate in several folders
    with tempfile.TemporaryDirectory(prefix="sarc_rebaseline_") as tmp:
        for folder, doc in docs.items():
            settings = doc["settings"]
            targets = [float(t) for t in settings["jpeg2000_target_bpp"]]
            for name in settings["scenes"]:
                if all((name, b, t) in measured for b in scenes[name]["bands"] for t in targets):
                    continue
                for sb in scene_bands(scenes[name], Path(tmp)):
                    base = {"scene": sb.scene, "band": sb.band, "width": sb.info.width, "height": sb.info.height}
                    for t in targets:
                        measured[(name, sb.band, t)] = {**base, **sb.jpeg2000(t, Path(tmp))}
            learned = [r for r in doc["results"] if r["codec"] == "learned"]
            jp2 = [measured[(r["scene"], r["band"], t)] for r in _scene_band_rows(learned) for t in targets]
            previous = {"date": doc.get("date"), "jpeg2000": settings.get("jpeg2000"),
                        "bd_rate_percent": doc["bd_rate"]["all"]["bd_rate_percent"]}
            labels = list(dict.fromkeys(r.get("model") for r in learned))  # the run's models, in its order
            doc.update(statistics(learned + jp2, settings["subsets"], labels))
            settings["jpeg2000"] = jpeg2000.NOTE
            doc.setdefault("rebaselined", []).append(
                {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "jpeg2000_versions": jpeg2000.versions(), "previous": previous})
            md = summary_markdown(doc)
            write_report(folder, "rd_points.json", "rd_summary.md", doc, md, {"rd_plot.png": plot(doc)})
            print(f"{folder}: BD-rate {bd_text(previous['bd_rate_percent'])} -> "
                  f"{bd_text(doc['bd_rate']['all']['bd_rate_percent'])}", file=sys.stderr)
    return 0


def _scene_band_rows(rows: list[dict]) -> list[dict]:
    """One row per scene-band, in the rows' order."""
    return list({(r["scene"], r["band"]): r for r in rows}.values())


def replot(folders: list[Path]) -> int:
    """Redraw each folder's figure from its committed points (plain or archived); every folder is checked before
    one is drawn."""
    missing = [str(f / "rd_points.json") for f in folders if not points_file(f).is_file()]
    if missing:
        print(f"error: no rd_points.json: {', '.join(missing)}", file=sys.stderr)
        return 2
    for folder in folders:
        publish_files({folder / "rd_plot.png": plot(read_json(points_file(folder)))})
        print(f"wrote {folder / 'rd_plot.png'}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", default=None,
                   help="model bundle folder(s); several are points of one learned curve, e.g. one per lambda "
                        f"(default: the bundled default model, {default_model_dir()})")
    p.add_argument("--data", default=str(DATA_DIR), help="shared SAR data folder (default: %(default)s)")
    p.add_argument("--scenes", nargs="+", default=None,
                   help="restrict to scenes whose file name contains one of these (e.g. berlin panama)")
    p.add_argument("--qualities", type=float, nargs="+", default=None,
                   help="learned codec operating points (default: every trained level of the first model)")
    p.add_argument("--jp2-bpp", type=float, nargs="+", default=None,
                   help=f"JPEG-2000 target bpp (default: {' '.join(map(str, jpeg2000.DEFAULT_TARGET_BPP))})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: %(default)s")
    p.add_argument("--sigma0", action="store_true",
                   help="also the calibrated sigma0 dB GRD chips (Sen1Floods11, STAC Overflow), domain db")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny run: first scene only (unless --scenes), the lowest and the top quality, "
                        f"JPEG-2000 targets {QUICK_JP2_BPP}")
    p.add_argument("--out", default=None, help="write rd_points.json, rd_summary.md, rd_plot.png here")
    p.add_argument("--rounding", nargs="+", default=["rate_distortion"], choices=ROUNDINGS,
                   help="how the encoder picks latent symbols (core/rd_rounding.py); both give an A/B of the two "
                        "(default: %(default)s)")
    p.add_argument("--timing-note", default="", help="free text recorded with the timings (e.g. 'machine busy')")
    redo = p.add_mutually_exclusive_group()
    redo.add_argument("--replot", nargs="+", type=Path, default=None, metavar="DIR",
                      help="only redraw DIR/rd_plot.png from DIR/rd_points.json, for each DIR")
    redo.add_argument("--rebaseline", nargs="+", type=Path, default=None, metavar="DIR",
                      help="measure JPEG-2000 again (its settings changed) on each DIR's scenes and rates, keep "
                           "the learned codec's rows, and rewrite DIR's report")
    a = p.parse_args(argv)
    if a.replot:
        return replot(a.replot)
    if a.rebaseline:
        return rebaseline(a.rebaseline, a.data)

    bundles = [resolve_model(m) for m in (a.model or [None])]
    infos = [model_info(b) for b in bundles]
    names = [i["name"] or b.name for i, b in zip(infos, bundles)]
    if len(set(names)) != len(names):
        names = [b.name for b in bundles]
    roundings = list(dict.fromkeys(a.rounding))
    labels = [f"{n} {r}" if len(roundings) > 1 else n for n in names for r in roundings]
    configs = [(b, r == "rate_distortion") for b in bundles for r in roundings]
    models = {"": configs[0]} if len(configs) == 1 else dict(zip(labels, configs))
    levels = trained_qualities(bundles[0])
    qualities = a.qualities or ((levels[0], levels[-1]) if a.quick else tuple(levels))
    jp2_bpp = a.jp2_bpp or (QUICK_JP2_BPP if a.quick else jpeg2000.DEFAULT_TARGET_BPP)
    scenes = grd_scenes(a.data, a.scenes, a.sigma0)
    if a.quick and not a.scenes:
        scenes = scenes[:1]
    if not scenes:
        print(f"error: no shared GRD scene matches {a.scenes} in {a.data}", file=sys.stderr)
        return 2
    log = (lambda s: print(s, file=sys.stderr))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sarc_rd_") as tmp:
        for s in scenes:
            log(f"{s['name']}")
            rows += run_scene(s, qualities, jp2_bpp, models, a.device, Path(tmp), log)

    subsets = ["all"] + [pol for pol in POLARISATIONS if any(r["band"] == pol for r in rows)]
    providers = [r["provider"] for r in rows if r["codec"] == "learned"]
    doc = {
        "name": "rate_distortion",
        "description": "learned codec vs JPEG-2000 on the shared Sentinel-1 GRD scenes; bpp from file bytes; "
                       "metrics from core.evaluation.band_quality; BD-rate on dB RMSE; null = not finite "
                       "(e.g. an ENL ratio whose homogeneous windows the codec flattened to zero variance)",
        "device": device_info(providers),
        "versions": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": infos[0],
        "models": infos,
        "timing_note": a.timing_note,
        "settings": {"scenes": [s["name"] for s in scenes], "scene_bands": len({(r["scene"], r["band"])
                                                                                 for r in rows}),
                     "megapixels": sum({(r["scene"], r["band"]): r["pixels"] for r in rows}.values()) / 1e6,
                     "qualities": list(qualities), "jpeg2000_target_bpp": list(jp2_bpp), "rounding": roundings,
                     "clip_percentiles": [0.5, 99.5], "subsets": subsets, "device_requested": a.device,
                     "jpeg2000": jpeg2000.NOTE},
        **statistics(rows, subsets, labels),
    }
    md = summary_markdown(doc)
    print(md)
    if a.out:
        out = write_report(a.out, "rd_points.json", "rd_summary.md", doc, md, {"rd_plot.png": plot(doc)})
        log(f"wrote {out / 'rd_points.json'}, {out / 'rd_summary.md'}, {out / 'rd_plot.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
