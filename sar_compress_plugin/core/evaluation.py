"""One band of an original raster against its reconstruction: every figure the project reports, in one place.

The demo, `sar-eval` through the codec, and the benchmarks all call `band_quality`, on the values `physical_band`
reads, so a figure in the README and one in a benchmark JSON are computed the same way. Domains follow
core.preprocessing:
* PSNR / SSIM on the normalised [0,1] dB image with the band's clip bounds (reported alongside);
* dB RMSE over valid pixels, and separately inside and outside the clip range (bright targets, dark water);
* ENL ratio on linear intensity over the original's most homogeneous windows;
* EPI on the dB image (on linear intensity a handful of bright scatterers would dominate the Laplacian).
"""

from __future__ import annotations

import os

import numpy as np

from . import metrics
from .preprocessing import normalise, to_db
from .raster_io import RasterReader


def raster_quality(original: str | os.PathLike, reconstruction: str | os.PathLike, domain: str,
                   clip_db: list) -> list[dict]:
    """`band_quality` of every band of a raster file against its reconstruction's, as the codec coded them: in
    `domain`, the codec's clip range `clip_db` per band (a CompressResult's `domain` and `clip_db`, the domain
    the file was coded in, in whose dB the clip range is), on physical values (`physical_band`), and leaving
    out the pixels the original's GDAL mask hides, in both: they come back bit for bit, and counted they made
    the figures of a half-masked scene look far better than those of its valid pixels."""
    rows = []
    with RasterReader(original) as a, RasterReader(reconstruction) as b:
        info = a.info
        for band in range(info.band_count):
            valid = a.read_valid(band, 0, 0, info.width, info.height)
            orig, nodata = physical_band(a, band, valid)
            rec, _ = physical_band(b, band, valid)
            row = band_quality(orig, rec, domain, tuple(clip_db[band]), nodata)
            rows.append(dict(row, band=info.band_names[band] or f"band {band + 1}"))
    return rows


def physical_band(reader: RasterReader, band: int, valid: np.ndarray | None) -> tuple[np.ndarray, float | None]:
    """(values, nodata) of a whole band as the codec codes it and as every figure is measured: its physical
    values (`RasterReader.physical`; an int16 sigma0 product's stored hundredths of a dB, taken for dB, all sat
    at the noise floor and scored as kept perfectly), NaN (in float64) where `valid`, a GDAL mask of the
    original (`RasterReader.read_valid`), is False."""
    info = reader.info
    values, nodata = reader.physical(band, reader.read(band, 0, 0, info.width, info.height))
    if valid is not None:
        values = values.astype(np.float64)
        values[~valid] = np.nan
    return values, nodata


def band_quality(original: np.ndarray, reconstruction: np.ndarray, domain: str, clip_db: tuple[float, float],
                 nodata: float | None = None) -> dict:
    """Figures for one band given in its own value domain (what a user's file holds)."""
    ref_db, valid = to_db(original, domain, nodata)
    rec_db, rec_valid = to_db(reconstruction, domain, nodata)
    out = db_quality(ref_db, rec_db, valid, clip_db)
    out["validity_mask_identical"] = bool(np.array_equal(valid, rec_valid))
    return out


def db_quality(ref_db: np.ndarray, rec_db: np.ndarray, valid: np.ndarray, clip_db: tuple[float, float]) -> dict:
    """Figures for one band given in dB with its validity mask (what the trainer holds)."""
    lo, hi = clip_db
    in_range = valid & (ref_db >= lo) & (ref_db <= hi)
    out_range = valid & ~in_range
    ref_n, rec_n = normalise(ref_db, lo, hi), normalise(rec_db, lo, hi)
    ref_int = np.power(10.0, ref_db.astype(np.float64) / 10.0)
    rec_int = np.power(10.0, rec_db.astype(np.float64) / 10.0)
    return {
        "pixels": int(valid.size),
        "valid_pixels": int(valid.sum()),
        "clip_db": [float(lo), float(hi)],
        "psnr": metrics.psnr(ref_n, rec_n, 1.0, valid),
        "ssim": metrics.ssim(ref_n, rec_n, 1.0, valid),
        "db_rmse": metrics.db_rmse(ref_db, rec_db, valid),
        "db_rmse_in_range": metrics.db_rmse(ref_db, rec_db, in_range),
        "db_rmse_out_of_range": metrics.db_rmse(ref_db, rec_db, out_range) if out_range.any() else None,
        "out_of_range_pixels": int(out_range.sum()),
        "enl_ratio": metrics.enl_ratio(ref_int, rec_int, mask=valid),
        "epi": metrics.epi(ref_db, rec_db, valid),
    }


def aggregate(rows: list[dict]) -> dict:
    """Pixel-weighted means (RMSEs combined as root of weighted mean squares)."""
    if not rows:
        return {}
    w = np.array([r["valid_pixels"] for r in rows], dtype=np.float64)
    out: dict = {"bands": len(rows), "valid_pixels": int(w.sum())}
    for key in ("psnr", "ssim", "enl_ratio", "epi"):
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        ok = np.isfinite(vals)
        out[key] = float(np.average(vals[ok], weights=w[ok])) if ok.any() else None
    for key in ("db_rmse", "db_rmse_in_range"):
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = float(np.sqrt(np.average(vals**2, weights=w)))
    oor = [(r["db_rmse_out_of_range"], r["out_of_range_pixels"]) for r in rows if r["out_of_range_pixels"]]
    out["out_of_range_pixels"] = int(sum(n for _, n in oor))
    out["db_rmse_out_of_range"] = (float(np.sqrt(sum(v * v * n for v, n in oor) / sum(n for _, n in oor)))
                                   if oor else None)
    return out
