"""Local quality maps of a reconstruction, as georeferenced float32 GeoTIFFs aligned with it.

* ENL-ratio map: windowed ENL(reconstruction) / ENL(original) on linear intensity (1 is ideal, >1 means the
  reconstruction smoothed the speckle, <1 that it added texture).
* EPI map: windowed correlation of the Laplacians of original and reconstruction, computed in dB where speckle
  is additive (1 is perfect edge preservation).

Both come from `core.metrics.local_enl_ratio_map` / `local_epi_map` (the project's only implementation). Rasters
are streamed by blocks read with a halo of the local window's radius + 1 pixels, so each block's core is exactly what the
whole-image computation gives, while memory stays bounded by the block size. Outputs are written by
`raster_io.GeoTiffWriter` (a temporary file beside the target, renamed at the end): a failure, a full disk or
a cancel leaves no partial file. No QGIS here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from osgeo import gdal, gdal_array

from . import metrics
from .errors import CancelledError, InputRasterError, OutputPathError
from .preprocessing import DB_NEGATIVE_SHARE, canonical_domain, explain_domain, from_db, to_db
from .raster_io import (GeoTiffWriter, check_output_path, gdal_band_scaling, mask_kind, physical_values,
                        placing_gcps, remove_stale_partials, same_file)

gdal.UseExceptions()
log = logging.getLogger(__name__)

DEFAULT_WINDOW = 15
DEFAULT_BLOCK = 512
#: GDAL metadata keys a raster may carry to say what its values are (checked before guessing).
DOMAIN_METADATA_KEYS = ("SAR_VALUE_DOMAIN", "VALUE_DOMAIN", "value_domain", "sar_compress:domain")
#: How messages name each domain.
DOMAIN_WORDS = {"intensity": "linear intensity", "amplitude": "linear amplitude", "db": "dB"}


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


def _named_domain(ds: gdal.Dataset) -> tuple[str, str] | None:
    """(domain, which tag names it) from the raster's metadata, or None."""
    for domain_name in ("", "SAR"):
        md = ds.GetMetadata(domain_name) or {}
        for key in DOMAIN_METADATA_KEYS:
            if key in md:
                # e.g. "sigma0_db" or "intensity (uncalibrated DN^2, linear)": the first word names it.
                word = str(md[key]).strip().split(" ")[0].split("(")[0]
                try:
                    return canonical_domain(word), f"its {key} tag"
                except InputRasterError:
                    log.debug("unrecognised value domain %r in metadata; guessing from values", md[key])
    return None


def block_sample(band: gdal.Band, min_pixels: int = 1 << 20, min_blocks: int = 64) -> np.ndarray:
    """Whole blocks of the band, on a regular grid over the raster (at least `min_blocks` of them, or enough
    for `min_pixels`), or the whole band when it is that small. A decimated read of a whole compressed scene
    decodes every block (seconds on a Sentinel-1 scene, in the dialog and on QGIS's main thread); percentiles
    and a domain need only a spread sample."""
    width, height = band.XSize, band.YSize
    if width * height <= min_pixels:
        return band.ReadAsArray()
    bx, by = band.GetBlockSize()
    cols, rows = math.ceil(width / bx), math.ceil(height / by)
    wanted = min(cols * rows, max(min_blocks, math.ceil(min_pixels / (bx * by))))
    across = max(1, min(cols, round(math.sqrt(wanted * cols / rows))))
    down = max(1, min(rows, math.ceil(wanted / across)))
    parts = [band.ReadAsArray(c * bx, r * by, min(bx, width - c * bx), min(by, height - r * by)).ravel()
             for r in map(int, np.unique(np.linspace(0, rows - 1, down).round()))
             for c in map(int, np.unique(np.linspace(0, cols - 1, across).round()))]
    return np.concatenate(parts)


def band_values(band: gdal.Band, raw: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(values, nodata) of pixels read from `band`, in what its domain tag describes: GDAL's scale and offset
    say how the stored integers of a quantized product turn back into the measurement, so they are applied
    (nodata then becomes NaN, as a scaled fill value means nothing): raster_io.physical_values, as the codec
    reads a band."""
    return physical_values(raw, band.GetNoDataValue(), gdal_band_scaling(band))


def _mask_valid(band: gdal.Band, x: int, y: int, w: int, h: int) -> np.ndarray | bool:
    """Where `band`'s GDAL mask (a mask band, per dataset or per band, or an alpha band) marks the window valid,
    or True when it has none beyond its nodata value. The codec restores masked pixels bit for bit and marks
    them in the reconstruction's mask: read as data, they entered the maps as perfectly kept speckle."""
    if not mask_kind(band.GetMaskFlags()):
        return True
    return band.GetMaskBand().ReadAsArray(x, y, w, h) != 0


def _other_than(values: np.ndarray, extra: float | None) -> np.ndarray | None:
    """Where `values` (as `band_values` gives them) differ from `extra`, a no-data value set beyond the file's
    (a QGIS layer's, which QGIS compares with the values after scale and offset); None when there is none."""
    return None if extra is None else values != extra


def _valid_sample(ds: gdal.Dataset, band: int, extra: float | None = None) -> np.ndarray:
    """The band's finite values other than nodata (the file's and `extra`), in a block sample."""
    b = ds.GetRasterBand(band)
    values, nodata = band_values(b, block_sample(b))
    sample = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(sample)
    for value in (nodata, extra):
        if value is not None and np.isfinite(value):
            ok &= sample != value
    return sample[ok]


def stated_domain(ds: gdal.Dataset, band: int = 1, extra: float | None = None) -> tuple[str, str] | None:
    """(domain, what says so) when the raster names its value domain in its metadata or its data implies one,
    else None. Implied, as the codec reads a raster without a tag (preprocessing.explain_domain): integers are
    amplitude, except those with a scale or offset, which the codec's rule decides from their physical values (an int16
    sigma0 product in hundredths of a dB is dB); and a share of negative values only dB can hold. A float raster
    of positive values states nothing: linear intensity and uncalibrated dB both look so, and the range they
    span (see `guess_domain`) narrows when a reconstruction smooths the speckle. `extra`: a no-data value beyond
    the file's, whose fill (a -9999 border) would read as the negative values of dB."""
    named = _named_domain(ds)
    if named is not None:
        return named
    b = ds.GetRasterBand(band)
    dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(b.DataType))
    if dtype.kind in "iu" and gdal_band_scaling(b) is not None:
        return explain_domain(dtype.name, _valid_sample(ds, band, extra), scaled=True)
    if dtype.kind in "iu":
        return "amplitude", f"its {gdal.GetDataTypeName(b.DataType)} integers"
    values = _valid_sample(ds, band, extra)
    if values.size and np.mean(values < 0) >= DB_NEGATIVE_SHARE:
        return "db", "its negative values"
    return None


def guess_domain(ds: gdal.Dataset, band: int = 1, extra: float | None = None) -> str:
    """The value domain of a raster: the one it states (`stated_domain`), else guessed from its values ('db'
    when negative or within a narrow range, else 'intensity'; float amplitude cannot be told from intensity by
    values, pass it explicitly); `extra` as for `stated_domain`."""
    stated = stated_domain(ds, band, extra)
    if stated is not None:
        return stated[0]
    v = _valid_sample(ds, band, extra)
    if v.size == 0 or np.any(v < 0):
        return "db"
    # Linear SAR intensity spans decades (speckle alone puts p99/p1 in the hundreds); dB values, even
    # uncalibrated positive ones, stay within a factor of a few.
    lo, hi = np.percentile(v, (1, 99))
    return "intensity" if lo <= 0 or hi / lo > 20 else "db"


def _refuse_a_display_stretch(ds: gdal.Dataset, band: int, what: str, path) -> None:
    """Refuse an 8-bit band whose tag says dB or linear intensity without a scale or offset back to them.

    Eight bits hold neither as measured (dB is mostly negative and needs fractions of a dB, intensity spans
    decades), so such a band is a display stretch whose tag survived the conversion (gdal_translate -ot Byte
    -scale copies it). Amplitude is let through, as the codec reads integers, so its reconstructions of 8-bit
    amplitude scenes (same data type, same tag) still compare; a quantized product with a scale and offset is
    read through them (`band_values`)."""
    named = _named_domain(ds)
    b = ds.GetRasterBand(band)
    dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(b.DataType))
    if named is None or named[0] == "amplitude" or dtype.kind not in "iu" or dtype.itemsize != 1 \
            or gdal_band_scaling(b) is not None:
        return
    words = DOMAIN_WORDS[named[0]]
    raise InputRasterError(
        f"{what} {path}: {named[1]} says {words}, but band {band} holds 8-bit integers "
        f"({gdal.GetDataTypeName(b.DataType)}) with no scale or offset back to {words}, as a display copy "
        "does (gdal_translate -ot Byte -scale); compare the raster it was made from (or choose the value "
        "domain if the tag is wrong)")


def pair_domain(ref: gdal.Dataset, test: gdal.Dataset, band: int, ref_path, test_path,
                extra: tuple[float | None, float | None] = (None, None)) -> str:
    """The one value domain both rasters are read in: the one either states, else guessed from the original.

    Two rasters that state different domains are refused rather than each read in its own: reading each in its
    own would be as simple (the maps go through dB either way) but is not correct for the copies that state
    another domain, such as an 8-bit display copy of an intensity scene, which states amplitude only because
    it holds integers, while its values are a display stretch that no domain turns back into backscatter.
    `extra`: the no-data values of the band beyond the files' (original's, reconstruction's), see `stated_domain`.
    """
    for ds, what, path in ((ref, "original", ref_path), (test, "reconstruction", test_path)):
        _refuse_a_display_stretch(ds, band, what, path)
    ref_says, test_says = stated_domain(ref, band, extra[0]), stated_domain(test, band, extra[1])
    if ref_says and test_says and ref_says[0] != test_says[0]:
        raise InputRasterError(
            f"reconstruction {test_path}: it holds {DOMAIN_WORDS[test_says[0]]} ({test_says[1]}), the original "
            f"{ref_path} holds {DOMAIN_WORDS[ref_says[0]]} ({ref_says[1]}); the maps need both in one value "
            "domain (choose it if one of them is mislabelled)")
    return (ref_says or test_says or (guess_domain(ref, band, extra[0]),))[0]


def _offset_of(ref: gdal.Dataset, test: gdal.Dataset, ref_path, test_path) -> tuple[int, int]:
    """Pixel offset (col, row) of `test` inside `ref`; both must share CRS and pixel grid, that of a geotransform
    or of ground control points (a window's are the original's moved by its offset, as a reconstruction or
    gdal_translate -srcwin writes them: GDAL's placeholder geotransform of both would put every window at the
    original's corner). Neither having a CRS is a pair in pixel coordinates; one without, against one with, is
    not known to be the same place."""
    ref_gcps, test_gcps = placing_gcps(ref), placing_gcps(test)
    if bool(ref_gcps) != bool(test_gcps):
        why = f"it is placed by ground control points, the original {ref_path} is not" if test_gcps \
            else f"it is not placed by ground control points, the original {ref_path} is"
        raise InputRasterError(f"reconstruction {test_path}: {why}")
    if ref_gcps:
        pr, pt = ref_gcps["crs_wkt"], test_gcps["crs_wkt"]
    else:
        pr, pt = ref.GetProjection(), test.GetProjection()
    if bool(pr) != bool(pt):
        why = f"it has no CRS, the original {ref_path} has one" if pr else \
            f"it has a CRS, the original {ref_path} has none"
        raise InputRasterError(f"reconstruction {test_path}: {why}")
    if pr:
        from osgeo import osr

        sr, st = osr.SpatialReference(wkt=pr), osr.SpatialReference(wkt=pt)
        if not sr.IsSame(st):
            raise InputRasterError(f"reconstruction {test_path}: its CRS differs from the original {ref_path}")
    if ref_gcps:
        col, row = _gcp_offset(ref_gcps, test_gcps, ref_path, test_path)
    else:
        # a rotated or sheared grid too (a scene in its satellite's geometry): same pixel axes, origin moved
        gr, gt = ref.GetGeoTransform(), test.GetGeoTransform()
        size = math.hypot(gr[1], gr[4]) + math.hypot(gr[2], gr[5])
        inverse = gdal.InvGeoTransform(gr)  # None for a degenerate grid
        if inverse is None or any(abs(gr[i] - gt[i]) > 1e-6 * size for i in (1, 2, 4, 5)):
            raise InputRasterError(
                f"reconstruction {test_path}: its pixel grid differs from the original {ref_path}")
        col, row = gdal.ApplyGeoTransform(inverse, gt[0], gt[3])
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        raise InputRasterError(f"reconstruction {test_path}: not aligned on the pixel grid of {ref_path}")
    col, row = int(round(col)), int(round(row))
    if col < 0 or row < 0 or col + test.RasterXSize > ref.RasterXSize or row + test.RasterYSize > ref.RasterYSize:
        raise InputRasterError(f"reconstruction {test_path}: its extent is not inside the original {ref_path}")
    return col, row


def _gcp_offset(ref_gcps: dict, test_gcps: dict, ref_path, test_path) -> tuple[float, float]:
    """How far (col, row) every ground control point of `test` is moved from the same point of `ref`."""
    at = {tuple(p[2:]): p[:2] for p in ref_gcps["points"]}
    moves = {(round(at[tuple(q[2:])][0] - q[0], 6), round(at[tuple(q[2:])][1] - q[1], 6))
             if tuple(q[2:]) in at else None for q in test_gcps["points"]}
    if len(moves) != 1 or None in moves:
        raise InputRasterError(f"reconstruction {test_path}: its ground control points are not those of the "
                               f"original {ref_path} moved by one offset")
    return moves.pop()


def _blocks(width: int, height: int, block: int):
    for y in range(0, height, block):
        for x in range(0, width, block):
            yield x, y, min(block, width - x), min(block, height - y)


class Pair(NamedTuple):
    """An original and a reconstruction that can be compared, as `open_pair` opened them."""

    original: gdal.Dataset
    reconstruction: gdal.Dataset
    #: Pixel (col, row) of the reconstruction's top-left corner in the original.
    offset: tuple[int, int]
    bands: list[int]
    #: The value domain both are read in.
    domain: str


def open_pair(original_path: str | os.PathLike, reconstruction_path: str | os.PathLike,
              bands: list[int] | None = None, domain: str | None = None, *,
              original_nodata: Mapping[int, float] | None = None,
              reconstruction_nodata: Mapping[int, float] | None = None) -> Pair:
    """The pair, if it can be compared, else InputRasterError in one line. The quality-maps dialog calls it on
    OK, so that a pair that cannot be compared is refused there, not by a task after the dialog has closed.
    `bands`: None for all bands of both. `domain`: the domain of both as the user gives it (taken unchecked: it
    is how a wrong tag is overridden), None to take the one they state (`pair_domain`), which the no-data values
    beyond the files' (as in `compute_quality_maps`) keep out of its sample."""
    ref = _open(original_path, "original")
    test = _open(reconstruction_path, "reconstruction")
    offset = _offset_of(ref, test, original_path, reconstruction_path)
    if bands is None:
        bands = list(range(1, min(ref.RasterCount, test.RasterCount) + 1))
    for b in bands:
        for ds, what, path in ((ref, "original", original_path),
                               (test, "reconstruction", reconstruction_path)):
            if not 1 <= b <= ds.RasterCount:
                raise InputRasterError(f"band {b}: the {what} {path} has only {ds.RasterCount} band(s)")
    extra = ((original_nodata or {}).get(bands[0]), (reconstruction_nodata or {}).get(bands[0]))
    domain = canonical_domain(domain) if domain else pair_domain(ref, test, bands[0], original_path,
                                                                   reconstruction_path, extra)
    return Pair(ref, test, offset, bands, domain)


def compute_quality_maps(original_path: str | os.PathLike, reconstruction_path: str | os.PathLike,
                         enl_ratio_path: str | os.PathLike, epi_path: str | os.PathLike, *,
                         domain: str | None = None, window: int = DEFAULT_WINDOW, bands: list[int] | None = None,
                         block_size: int = DEFAULT_BLOCK,
                         original_nodata: Mapping[int, float] | None = None,
                         reconstruction_nodata: Mapping[int, float] | None = None,
                         progress: Callable[[float], None] | None = None,
                         is_cancelled: Callable[[], bool] | None = None) -> QualityMapsResult:
    """Write the local ENL-ratio and EPI maps of `reconstruction_path` against `original_path`.

    The maps take the reconstruction's grid (size, geotransform or ground control points, CRS); the
    reconstruction may be a window of the original on the same pixel grid. `domain` is the value domain of both
    rasters (None: the one they state, see `pair_domain`). `bands` are 1-based band numbers (None: all); each
    gives one band in each output. `original_nodata`, `reconstruction_nodata`: band number -> a no-data value
    beyond the file's (qgis_io.layer_band_nodata: one set on the layer in QGIS, which GDAL never sees), masked
    as the file's is: its fill (a -9999 border) entered the windows as backscatter.
    """
    t0, started = time.perf_counter(), time.time()
    if window < 3:
        raise InputRasterError(f"quality-map window must be at least 3 pixels, got {window}")
    if block_size < window:
        raise InputRasterError(f"block size {block_size} must be at least the window ({window})")
    enl_ratio_path, epi_path = Path(enl_ratio_path), Path(epi_path)
    if same_file(enl_ratio_path, epi_path):
        raise OutputPathError(f"{epi_path}: the ENL-ratio and EPI maps need two files, not one for both maps")
    for p in (enl_ratio_path, epi_path):
        check_output_path(p, inputs=(original_path, reconstruction_path))
        remove_stale_partials(p, older_than=started)  # the plugin reruns onto the names a killed run had
    original_nodata, reconstruction_nodata = original_nodata or {}, reconstruction_nodata or {}
    ref, test, (x0, y0), bands, domain = open_pair(original_path, reconstruction_path, bands, domain,
                                                   original_nodata=original_nodata,
                                                   reconstruction_nodata=reconstruction_nodata)
    width, height = test.RasterXSize, test.RasterYSize
    halo = metrics.local_map_radius(window) + 1  # Gaussian window + the Laplacian's one-pixel reach
    names = [test.GetRasterBand(b).GetDescription() or ref.GetRasterBand(b).GetDescription() or f"band {b}"
             for b in bands]

    blocks = list(_blocks(width, height, block_size))
    n_steps = len(blocks) * len(bands)
    step = 0
    enl_samples: list[list[np.ndarray]] = [[] for _ in bands]
    epi_samples: list[list[np.ndarray]] = [[] for _ in bands]
    like = {"width": width, "height": height, "band_count": len(bands), "dtype": "float32",
            "crs_wkt": test.GetProjection(), "geotransform": test.GetGeoTransform(), "gcps": placing_gcps(test),
            "nodata": [float("nan")] * len(bands)}
    with ExitStack() as outputs:
        out_enl = outputs.enter_context(GeoTiffWriter(
            enl_ratio_path, band_names=[f"{n} local ENL ratio (window {window})" for n in names], **like))
        out_epi = outputs.enter_context(GeoTiffWriter(
            epi_path, band_names=[f"{n} local EPI (window {window})" for n in names], **like))
        for bi, b in enumerate(bands):
            rb, tb = ref.GetRasterBand(b), test.GetRasterBand(b)
            r_extra, t_extra = original_nodata.get(b), reconstruction_nodata.get(b)
            any_valid = False
            for x, y, w, h in blocks:
                if is_cancelled is not None and is_cancelled():
                    raise CancelledError("quality maps cancelled; no file written")
                # Window with halo, clamped to the reconstruction's extent (edges are reflected like the
                # whole-image computation does).
                hx0, hy0 = max(0, x - halo), max(0, y - halo)
                hx1, hy1 = min(width, x + w + halo), min(height, y + h + halo)
                t, t_nodata = band_values(tb, tb.ReadAsArray(hx0, hy0, hx1 - hx0, hy1 - hy0))
                r, r_nodata = band_values(rb, rb.ReadAsArray(x0 + hx0, y0 + hy0, hx1 - hx0, hy1 - hy0))
                r_db, r_ok = to_db(r, domain, r_nodata, mask=_other_than(r, r_extra))
                t_db, t_ok = to_db(t, domain, t_nodata, mask=_other_than(t, t_extra))
                valid = (r_ok & t_ok & _mask_valid(rb, x0 + hx0, y0 + hy0, hx1 - hx0, hy1 - hy0)
                         & _mask_valid(tb, hx0, hy0, hx1 - hx0, hy1 - hy0))
                core = (slice(y - hy0, y - hy0 + h), slice(x - hx0, x - hx0 + w))
                if valid[core].any():  # nodata margins of geocoded scenes: nothing to compute
                    any_valid = True
                    r_int, t_int = from_db(r_db, "intensity"), from_db(t_db, "intensity")
                    enl_core = metrics.local_enl_ratio_map(r_int, t_int, window=window, mask=valid)[core]
                    epi_core = metrics.local_epi_map(r_db, t_db, window=window, mask=valid)[core]
                else:
                    enl_core = epi_core = np.full((h, w), np.nan, np.float32)
                out_enl.write(bi, x, y, enl_core)
                out_epi.write(bi, x, y, epi_core)
                enl_samples[bi].append(enl_core[::4, ::4][np.isfinite(enl_core[::4, ::4])])
                epi_samples[bi].append(epi_core[::4, ::4][np.isfinite(epi_core[::4, ::4])])
                step += 1
                if progress is not None:
                    progress(step / n_steps)
            if not any_valid:  # maps without a single value would be added as layers that show nothing
                raise InputRasterError(f"band {b}: no pixel is valid in both the original {original_path} "
                                       f"and the reconstruction {reconstruction_path} (all NaN, nodata or masked)")

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
