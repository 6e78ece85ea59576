"""Local quality maps of a reconstruction, as georeferenced float32 GeoTIFFs aligned with it.

* ENL-ratio map: windowed ENL(reconstruction) / ENL(original) on linear intensity (1 is ideal, >1 means the
  reconstruction smoothed the speckle, <1 that it added texture).
* EPI map: windowed correlation of the Laplacians of original and reconstruction, computed in dB where speckle
  is additive (1 is perfect edge preservation).

Both come from `core.metrics.local_enl_ratio_map` / `local_epi_map` (the project's only implementation). Rasters
are streamed by blocks read with a halo of the local window's radius + 1 pixels, so each block's core is exactly what the
whole-image computation gives, while memory stays bounded by the block size. Outputs are written to a temporary
file next to the target and renamed at the end: a failure or a cancel leaves no partial file. No QGIS here.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal

from . import metrics
from .errors import CancelledError, InputRasterError, OutputPathError
from .preprocessing import canonical_domain, from_db, to_db

gdal.UseExceptions()
log = logging.getLogger(__name__)

DEFAULT_WINDOW = 15
DEFAULT_BLOCK = 512
#: GDAL metadata keys a raster may carry to say what its values are (checked before guessing).
DOMAIN_METADATA_KEYS = ("SAR_VALUE_DOMAIN", "VALUE_DOMAIN", "value_domain", "sar_compress:domain")


@dataclass(frozen=True)
class QualityMapsResult:
    enl_ratio_path: str
    epi_path: str
    width: int
    height: int
    bands: int
    domain: str
    window: int
    #: Per band: median of the ENL-ratio map and of the EPI map over valid pixels.
    enl_ratio_median: tuple[float, ...]
    epi_median: tuple[float, ...]
    seconds: float


def _open(path: str | os.PathLike, what: str) -> gdal.Dataset:
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise InputRasterError(f"{what} {path}: cannot be read as a raster ({exc})") from None
    if ds is None or ds.RasterCount == 0:
        raise InputRasterError(f"{what} {path}: cannot be read as a raster")
    return ds


def guess_domain(ds: gdal.Dataset, band: int = 1) -> str:
    """The value domain of a raster: from its metadata if it says, else guessed from its values ('db' when
    negative or within a narrow range, else 'intensity'; amplitude cannot be told from intensity by values,
    pass it explicitly)."""
    for domain_name in ("", "SAR"):
        md = ds.GetMetadata(domain_name) or {}
        for key in DOMAIN_METADATA_KEYS:
            if key in md:
                # e.g. "sigma0_db" or "intensity (uncalibrated DN^2, linear)": the first word names it.
                word = str(md[key]).strip().split(" ")[0].split("(")[0]
                try:
                    return canonical_domain(word)
                except InputRasterError:
                    log.debug("unrecognised value domain %r in metadata; guessing from values", md[key])
    b = ds.GetRasterBand(band)
    step = max(1, int(math.ceil(max(ds.RasterXSize, ds.RasterYSize) / 256)))
    sample = b.ReadAsArray(0, 0, ds.RasterXSize, ds.RasterYSize,
                           buf_xsize=max(1, ds.RasterXSize // step), buf_ysize=max(1, ds.RasterYSize // step))
    sample = np.asarray(sample, dtype=np.float64)
    nodata = b.GetNoDataValue()
    ok = np.isfinite(sample)
    if nodata is not None and np.isfinite(nodata):
        ok &= sample != nodata
    v = sample[ok]
    if v.size == 0 or np.any(v < 0):
        return "db"
    # Linear SAR intensity spans decades (speckle alone puts p99/p1 in the hundreds); dB values, even
    # uncalibrated positive ones, stay within a factor of a few.
    lo, hi = np.percentile(v, (1, 99))
    return "intensity" if lo <= 0 or hi / lo > 20 else "db"


def _offset_of(ref: gdal.Dataset, test: gdal.Dataset, ref_path, test_path) -> tuple[int, int]:
    """Pixel offset (col, row) of `test` inside `ref`; both must share CRS and pixel grid."""
    gr, gt = ref.GetGeoTransform(), test.GetGeoTransform()
    pr, pt = ref.GetProjection(), test.GetProjection()
    if pr and pt:
        from osgeo import osr

        sr, st = osr.SpatialReference(wkt=pr), osr.SpatialReference(wkt=pt)
        if not sr.IsSame(st):
            raise InputRasterError(f"reconstruction {test_path}: its CRS differs from the original {ref_path}")
    px = abs(gr[1]) or 1.0
    py = abs(gr[5]) or 1.0
    if gr[2] or gr[4] or gt[2] or gt[4] or not math.isclose(gr[1], gt[1], rel_tol=1e-6) \
            or not math.isclose(gr[5], gt[5], rel_tol=1e-6):
        raise InputRasterError(
            f"reconstruction {test_path}: its pixel grid differs from the original {ref_path}")
    col = (gt[0] - gr[0]) / gr[1]
    row = (gt[3] - gr[3]) / gr[5]
    if abs(col - round(col)) * px > 1e-3 * px or abs(row - round(row)) * py > 1e-3 * py:
        raise InputRasterError(f"reconstruction {test_path}: not aligned on the pixel grid of {ref_path}")
    col, row = int(round(col)), int(round(row))
    if col < 0 or row < 0 or col + test.RasterXSize > ref.RasterXSize or row + test.RasterYSize > ref.RasterYSize:
        raise InputRasterError(f"reconstruction {test_path}: its extent is not inside the original {ref_path}")
    return col, row


def _blocks(width: int, height: int, block: int):
    for y in range(0, height, block):
        for x in range(0, width, block):
            yield x, y, min(block, width - x), min(block, height - y)


def _create(path: Path, like: gdal.Dataset, bands: int, descriptions: list[str]) -> gdal.Dataset:
    drv = gdal.GetDriverByName("GTiff")
    opts = ["COMPRESS=DEFLATE", "PREDICTOR=3", "TILED=YES", "BIGTIFF=IF_SAFER"]
    try:
        ds = drv.Create(str(path), like.RasterXSize, like.RasterYSize, bands, gdal.GDT_Float32, options=opts)
    except RuntimeError as exc:
        raise OutputPathError(f"{path}: cannot be written ({exc})") from None
    ds.SetGeoTransform(like.GetGeoTransform())
    ds.SetProjection(like.GetProjection())
    for i, desc in enumerate(descriptions, start=1):
        b = ds.GetRasterBand(i)
        b.SetNoDataValue(float("nan"))
        b.SetDescription(desc)
    return ds


def _tmp_path(path: Path) -> Path:
    """A temporary name beside `path` that no other run shares: two runs of one process (two QGIS tasks) must not
    write into, or delete, each other's file."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def compute_quality_maps(original_path: str | os.PathLike, reconstruction_path: str | os.PathLike,
                         enl_ratio_path: str | os.PathLike, epi_path: str | os.PathLike, *,
                         domain: str | None = None, window: int = DEFAULT_WINDOW, bands: list[int] | None = None,
                         block_size: int = DEFAULT_BLOCK,
                         progress: Callable[[float], None] | None = None,
                         is_cancelled: Callable[[], bool] | None = None) -> QualityMapsResult:
    """Write the local ENL-ratio and EPI maps of `reconstruction_path` against `original_path`.

    The maps take the reconstruction's grid (size, geotransform, CRS); the reconstruction may be a window of
    the original on the same pixel grid. `domain` is the value domain of both rasters (None: guessed, see
    `guess_domain`). `bands` are 1-based band numbers (None: all); each gives one band in each output.
    """
    t0 = time.perf_counter()
    if window < 3:
        raise InputRasterError(f"quality-map window must be at least 3 pixels, got {window}")
    if block_size < window:
        raise InputRasterError(f"block size {block_size} must be at least the window ({window})")
    enl_ratio_path, epi_path = Path(enl_ratio_path), Path(epi_path)
    for p in (enl_ratio_path, epi_path):
        if Path(p).resolve() in (Path(original_path).resolve(), Path(reconstruction_path).resolve()):
            raise OutputPathError(f"{p}: a quality map may not overwrite its input")
        if not p.parent.is_dir():
            raise OutputPathError(f"{p}: folder {p.parent} does not exist")
    ref = _open(original_path, "original")
    test = _open(reconstruction_path, "reconstruction")
    x0, y0 = _offset_of(ref, test, original_path, reconstruction_path)
    if bands is None:
        bands = list(range(1, min(ref.RasterCount, test.RasterCount) + 1))
    for b in bands:
        if not (1 <= b <= ref.RasterCount and 1 <= b <= test.RasterCount):
            raise InputRasterError(f"band {b} is not in both {original_path} and {reconstruction_path}")
    domain = canonical_domain(domain) if domain else guess_domain(ref, bands[0])
    width, height = test.RasterXSize, test.RasterYSize
    halo = metrics.local_map_radius(window) + 1  # Gaussian window + the Laplacian's one-pixel reach
    names = [test.GetRasterBand(b).GetDescription() or ref.GetRasterBand(b).GetDescription() or f"band {b}"
             for b in bands]

    tmp_enl, tmp_epi = _tmp_path(enl_ratio_path), _tmp_path(epi_path)
    out_enl = out_epi = None
    blocks = list(_blocks(width, height, block_size))
    n_steps = len(blocks) * len(bands)
    step = 0
    enl_samples: list[list[np.ndarray]] = [[] for _ in bands]
    epi_samples: list[list[np.ndarray]] = [[] for _ in bands]
    try:
        out_enl = _create(tmp_enl, test, len(bands), [f"{n} local ENL ratio (window {window})" for n in names])
        out_epi = _create(tmp_epi, test, len(bands), [f"{n} local EPI (window {window})" for n in names])
        for bi, b in enumerate(bands):
            rb, tb = ref.GetRasterBand(b), test.GetRasterBand(b)
            ref_nodata, test_nodata = rb.GetNoDataValue(), tb.GetNoDataValue()
            for x, y, w, h in blocks:
                if is_cancelled is not None and is_cancelled():
                    raise CancelledError("quality maps cancelled; no file written")
                # Window with halo, clamped to the reconstruction's extent (edges are reflected like the
                # whole-image computation does).
                hx0, hy0 = max(0, x - halo), max(0, y - halo)
                hx1, hy1 = min(width, x + w + halo), min(height, y + h + halo)
                t = tb.ReadAsArray(hx0, hy0, hx1 - hx0, hy1 - hy0)
                r = rb.ReadAsArray(x0 + hx0, y0 + hy0, hx1 - hx0, hy1 - hy0)
                r_db, r_ok = to_db(r, domain, ref_nodata)
                t_db, t_ok = to_db(t, domain, test_nodata)
                valid = r_ok & t_ok
                r_int, t_int = from_db(r_db, "intensity"), from_db(t_db, "intensity")
                enl_map = metrics.local_enl_ratio_map(r_int, t_int, window=window, mask=valid)
                epi_map = metrics.local_epi_map(r_db, t_db, window=window, mask=valid)
                core = (slice(y - hy0, y - hy0 + h), slice(x - hx0, x - hx0 + w))
                enl_core, epi_core = enl_map[core], epi_map[core]
                out_enl.GetRasterBand(bi + 1).WriteArray(enl_core, x, y)
                out_epi.GetRasterBand(bi + 1).WriteArray(epi_core, x, y)
                enl_samples[bi].append(enl_core[::4, ::4][np.isfinite(enl_core[::4, ::4])])
                epi_samples[bi].append(epi_core[::4, ::4][np.isfinite(epi_core[::4, ::4])])
                step += 1
                if progress is not None:
                    progress(step / n_steps)
        for ds in (out_enl, out_epi):
            ds.FlushCache()
        out_enl = out_epi = None  # close before renaming
        os.replace(tmp_enl, enl_ratio_path)
        os.replace(tmp_epi, epi_path)
    except BaseException:
        out_enl = out_epi = None
        for p in (tmp_enl, tmp_epi):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        raise

    def _median(parts: list[np.ndarray]) -> float:
        v = np.concatenate(parts) if parts else np.empty(0)
        return float(np.median(v)) if v.size else float("nan")

    result = QualityMapsResult(
        enl_ratio_path=str(enl_ratio_path), epi_path=str(epi_path), width=width, height=height,
        bands=len(bands), domain=domain, window=window,
        enl_ratio_median=tuple(_median(s) for s in enl_samples),
        epi_median=tuple(_median(s) for s in epi_samples),
        seconds=time.perf_counter() - t0)
    log.info("quality maps of %s: ENL-ratio median %s, EPI median %s (%.1f s)", reconstruction_path,
             [round(v, 3) for v in result.enl_ratio_median], [round(v, 3) for v in result.epi_median],
             result.seconds)
    return result
