"""The JPEG-2000 baseline: GDAL's JP2OpenJPEG (irreversible 9/7 wavelet) on the image the learned codec sees.

One band, its physical values (stored * GDAL scale + offset, as the codec codes them), goes through exactly the
codec's preprocessing (core.preprocessing): original domain -> dB -> per-band percentile clip (0.5 / 99.5) ->
[0,1] -> uint16 (0..65535, JPEG-2000 cannot code float32). The uint16 image is written to a real .jp2 file,
whose size in bytes (headers and GeoJP2 box included) gives the rate; it is read back, mapped to dB and to the
original domain, and measured with core.evaluation.band_quality against the original with the same clip bounds,
as every figure in the project is.

Two things JPEG-2000 is *not* charged for, both stated in every result:
* pixels outside the clip range come back clipped to the bound (no correction is coded), whereas the learned
  codec codes them beside the latents; `db_rmse_in_range` is the like-for-like figure;
* invalid (nodata) pixels are copied from the original (a mask would have to be sent beside the .jp2).

Wavelet levels: 4 resolutions (three 9/7 decompositions), the best of GDAL's choice and 3-7 on the held-out
scenes (benchmarks/jpeg2000_settings.py: -1.9% BD-rate against GDAL's choice, which is 3 resolutions for the
512-px chips and 4 for panama's 700 px, all of it at the lowest rates). Until session 18 the baseline ran with
GDAL's choice.

Rate control: GDAL's `QUALITY=q` asks OpenJPEG for a compression ratio of 100/q over the raw 16-bit image, i.e.
about 16 q / 100 bits per pixel; the bpp reported is always the one measured from the file.

    .venv/bin/python benchmarks/jpeg2000.py FILE.tif [--bpp 0.25 0.5 1 2]   # prints bpp and dB RMSE per band
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sar_compress_plugin.core.evaluation import band_quality, physical_band  # noqa: E402
from sar_compress_plugin.core.preprocessing import (DEFAULT_PERCENTILES, denormalise, from_db,  # noqa: E402
                                                    normalise, percentile_bounds, to_db)
from sar_compress_plugin.core.raster_io import RasterReader  # noqa: E402

#: The operating points the benchmarks sweep (targets; the measured bpp is what is reported).
DEFAULT_TARGET_BPP = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0)
#: wavelet resolutions (levels + 1); see the module docstring
RESOLUTIONS = 4
UINT16_MAX = 65535
BITS = 16
NOTE = (f"JPEG-2000 (GDAL JP2OpenJPEG, 9/7 irreversible, {RESOLUTIONS} resolutions) on the same dB, per-band "
        "0.5-99.5 percentile clipped, "
        "[0,1] image scaled to uint16; out-of-range pixels come back clipped (not coded), nodata pixels are "
        "copied from the original (mask not charged); bpp from the .jp2 file's bytes incl. headers")


def _gdal():
    from osgeo import gdal  # noqa: PLC0415

    gdal.UseExceptions()
    if gdal.GetDriverByName("JP2OpenJPEG") is None:
        raise RuntimeError("this GDAL has no JP2OpenJPEG driver")
    return gdal


def versions() -> dict:
    gdal = _gdal()
    drv = gdal.GetDriverByName("JP2OpenJPEG")
    return {"gdal": gdal.__version__, "jp2_driver": drv.GetDescription()}


def quality_for_bpp(target_bpp: float, bits: int = BITS) -> float:
    """GDAL JP2OpenJPEG QUALITY value that asks for about `target_bpp` on a `bits`-bit image."""
    return 100.0 * float(target_bpp) / bits


def to_uint16(values: np.ndarray, domain: str, nodata=None, clip_db=None,
              percentiles=DEFAULT_PERCENTILES) -> tuple[np.ndarray, tuple[float, float], np.ndarray]:
    """The codec's preprocessing, then [0,1] -> 0..65535. Returns (uint16 image, (lo, hi) dB, valid mask)."""
    db, valid = to_db(values, domain, nodata)
    lo, hi = clip_db if clip_db is not None else percentile_bounds(db, valid, tuple(percentiles))
    u16 = np.rint(normalise(db, lo, hi) * UINT16_MAX).astype(np.uint16)
    return u16, (float(lo), float(hi)), valid


def from_uint16(u16: np.ndarray, clip_db, domain: str) -> np.ndarray:
    """Decoded uint16 -> [0,1] -> dB -> original domain (float64)."""
    lo, hi = clip_db
    return from_db(denormalise(u16.astype(np.float32) / UINT16_MAX, lo, hi), domain)


def encode(u16: np.ndarray, path, quality: float, geotransform=None, crs_wkt: str = "",
           resolutions: int | None = RESOLUTIONS) -> int:
    """Write `u16` (h, w) to a .jp2 file with the 9/7 irreversible wavelet; returns the file's bytes.
    `resolutions`: wavelet levels + 1 (None: GDAL's choice)."""
    gdal = _gdal()
    h, w = u16.shape
    mem = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_UInt16)
    if geotransform is not None:
        mem.SetGeoTransform(tuple(geotransform))
    if crs_wkt:
        mem.SetProjection(crs_wkt)
    mem.GetRasterBand(1).WriteArray(u16)
    opts = ["CODEC=JP2", "REVERSIBLE=NO", f"QUALITY={quality:.6g}", "GMLJP2=NO",
            f"GeoJP2={'YES' if geotransform is not None else 'NO'}"]
    if resolutions is not None:  # on an image too small for them GDAL warns and codes 1
        opts.append(f"RESOLUTIONS={int(resolutions)}")
    out = gdal.GetDriverByName("JP2OpenJPEG").CreateCopy(str(path), mem, strict=0, options=opts)
    if out is None:
        raise RuntimeError(f"{path}: JP2OpenJPEG could not write the file")
    out.FlushCache()
    out = None
    return os.path.getsize(path)


def decode(path) -> np.ndarray:
    gdal = _gdal()
    ds = gdal.Open(str(path))
    try:
        return ds.GetRasterBand(1).ReadAsArray()
    finally:
        ds = None


def run_band(values: np.ndarray, domain: str, target_bpp: float, workdir, name: str = "band", nodata=None,
             clip_db=None, geotransform=None, crs_wkt: str = "", keep: bool = False,
             resolutions: int | None = RESOLUTIONS) -> dict:
    """Encode one band at one operating point, decode it and measure it. Returns bpp, timings and metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{name}_{target_bpp:g}bpp.jp2"
    t0 = time.perf_counter()
    u16, clip, valid = to_uint16(values, domain, nodata, clip_db)
    quality = quality_for_bpp(target_bpp)
    nbytes = encode(u16, path, quality, geotransform, crs_wkt, resolutions)
    t1 = time.perf_counter()
    rec = from_uint16(decode(path), clip, domain)
    t2 = time.perf_counter()
    if not valid.all():
        rec[~valid] = values[~valid]
    rec = rec.astype(values.dtype) if values.dtype.kind == "f" else rec
    q = band_quality(values, rec, domain, clip, nodata)
    if not keep:
        path.unlink()
    pixels = values.size
    return {"codec": "jpeg2000", "setting": f"QUALITY={quality:.6g}", "target_bpp": float(target_bpp),
            "file_bytes": int(nbytes), "bpp": 8.0 * nbytes / pixels, "encode_s": t1 - t0, "decode_s": t2 - t1,
            **q}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raster", help="GeoTIFF to code band by band")
    p.add_argument("--domain", default="intensity", help="value domain of the raster (default: %(default)s)")
    p.add_argument("--bpp", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0], help="target bpp")
    a = p.parse_args(argv)
    import tempfile  # noqa: PLC0415

    with RasterReader(a.raster) as reader, tempfile.TemporaryDirectory() as tmp:
        info = reader.info
        for b in range(info.band_count):
            # physical values, as the learned codec codes them and as sar-eval and the demo measure them
            values, nodata = physical_band(reader, b, reader.read_valid(b, 0, 0, info.width, info.height))
            for t in a.bpp:
                r = run_band(values, a.domain, t, tmp, nodata=nodata)
                print(f"band {b + 1}  target {t:5.2f}  bpp {r['bpp']:.3f}  dB RMSE {r['db_rmse']:.3f} "
                      f"(in range {r['db_rmse_in_range']:.3f})  PSNR {r['psnr']:.2f}  SSIM {r['ssim']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
