"""Windowed GeoTIFF reading and writing through osgeo.gdal.

GDAL is imported lazily so that the rest of the core (container parsing, runtime) works in processes that never
touch a raster, and so that a missing GDAL gives a clear error at the point of use.

Windows are `(col, row, width, height)` in pixels. The reader *clamps*: a window must lie inside the raster
(callers such as the tiler compute in-raster windows and pad themselves), and a window that does not is a
programming error reported as `InputRasterError` rather than silently padded with invented values.

Validity beyond nodata: a GDAL mask (an internal or .msk mask band, per dataset or per band, or an alpha band;
`GDALRasterBand::GetMaskFlags`) marks pixels invalid just as a nodata value does. The reader reads it by the same
windows as the pixels (`RasterReader.read_valid`), so memory stays bounded by a window. An alpha band is a mask,
not data: it is left out of the bands the reader describes and reads (`RasterInfo.band_count` counts the data
bands; `source_bands` maps them to GDAL's band numbers) and used as the mask of every data band.

Stored and physical values: GDAL's scale and offset (`GetScale`, `GetOffset`) say what a band's stored numbers
mean, physical = stored * scale + offset (a quantized sigma0 product: int16 hundredths of a dB). `read` gives the
stored values, in the raster's dtype; `physical_values` turns them into what they measure, in float64, after
masking the band's nodata value, which GDAL compares with the stored values. The codec codes physical values and
its reconstruction writes them back as stored values under the same scale and offset.

Inputs are local files or GDAL virtual file system paths (`/vsizip/archive.zip/scene.tif`, `/vsigzip/`,
`/vsitar/`, `/vsicurl/`, ...), read through GDAL's own file layer; outputs are always local files.

The writer never leaves a half-written file where the user expects a result: it writes to a temporary name in
the destination folder (`PartialFile`) and renames it into place only when the `with` block ends without an
exception and GDAL reported no write error; a run killed outright (SIGKILL) leaves a partial that the next run to
the same output, or `sar-info` on it, removes (`remove_stale_partials`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import InputRasterError, OutputPathError
from .sarc_magic import MAGIC

#: Dataset metadata of every reconstruction: the name of the .sarc it was decoded from, and that file's body
#: SHA-256 (its identity whatever its name or date: a batch rerun tells a reconstruction of this very file). Here,
#: not in core.codec, whose packages (zstandard, constriction...) telling a reconstruction from its original does
#: not need: the plugin's "SAR quality maps…" reads it in a QGIS without them.
RECONSTRUCTION_TAG = "SAR_COMPRESS_RECONSTRUCTION_OF"
RECONSTRUCTION_SHA256_TAG = "SAR_COMPRESS_RECONSTRUCTION_OF_SHA256"

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]

_SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")


def _gdal():
    try:
        from osgeo import gdal  # noqa: PLC0415  (lazy on purpose)
    except ImportError as exc:  # pragma: no cover - environment problem
        raise InputRasterError(f"GDAL Python bindings (osgeo.gdal) are not available: {exc}") from exc
    return gdal


#: Block cache for command-line and batch processes. GDAL's default (5% of RAM, 1.2 GB on a 24 GB machine) alone
#: breaks a 1.5 GB budget on a 20,000 x 20,000 raster; the codec reads and writes each tile once, so a small
#: cache costs no speed.
DEFAULT_GDAL_CACHE_MB = 256


def limit_gdal_cache(megabytes: int = DEFAULT_GDAL_CACHE_MB) -> None:
    """Cap GDAL's block cache in processes this project owns (CLIs, benchmarks, batch workers).

    Not called inside QGIS: there the cache belongs to the whole application. A user's GDAL_CACHEMAX wins.
    """
    if "GDAL_CACHEMAX" not in os.environ:
        _gdal().SetCacheMax(int(megabytes) * 1024 * 1024)


def _gdal_path(path) -> str | bytes:
    """A file name as GDAL's bindings take it. They encode a str to UTF-8 and refuse one that is not (a name of
    Latin-1 bytes from an old archive, which Python holds as surrogate escapes): such a name goes as its bytes."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def _gdal_text(value) -> str:
    """A string GDAL's bindings accept for metadata, descriptions and WKT: lone surrogates (the name of a .sarc
    of non-UTF-8 bytes, a forged header string) make them raise TypeError; they become "?"."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _last_error(default: str) -> str:
    msg = _gdal().GetLastErrorMsg()
    return msg.strip().splitlines()[0] if msg and msg.strip() else default


@dataclass(frozen=True)
class RasterInfo:
    """What the codec must carry to give the user back a raster that lines up with the original."""

    path: str
    width: int
    height: int
    band_count: int
    dtype: str
    crs_wkt: str = ""
    geotransform: tuple[float, float, float, float, float, float] = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    nodata: tuple[float | None, ...] = ()
    band_names: tuple[str, ...] = ()
    metadata: dict = field(default_factory=dict)
    #: per band: description, metadata (default domain), color_interp name, scale, offset
    bands: tuple[dict, ...] = ()
    #: GDAL band numbers (1-based) of the data bands, in order; empty means 1..band_count
    source_bands: tuple[int, ...] = ()
    #: how GDAL marks invalid pixels beyond the nodata value: "" (it does not), "per_dataset" (one mask band for
    #: all bands: GDAL_TIFF_INTERNAL_MASK, a .msk file), "per_band" (a mask per band) or "alpha" (an alpha band)
    gdal_mask: str = ""
    #: GDAL band number (1-based) of the alpha band used as the mask and left out of the data bands, if any
    alpha_band: int | None = None
    #: ground control points of a raster georeferenced by them alone (no geotransform; a Sentinel-1 GRD or SLC
    #: measurement GeoTIFF): {"crs_wkt": ..., "points": [[pixel, line, x, y, z], ...]}, else None
    gcps: dict | None = None

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def scaling(self, band: int) -> tuple[float, float] | None:
        """(scale, offset) of data band `band` (0-based) when GDAL gives it either, else None: physical values
        are then `stored * scale + offset` (see `physical_values`)."""
        extra = self.bands[band] if band < len(self.bands) else {}
        return band_scaling(extra)

    @property
    def raw_bytes(self) -> int:
        return self.width * self.height * self.band_count * self.itemsize


#: GDAL virtual file systems that cannot be read in several passes (the codec reads each tile at least twice)
_SEQUENTIAL_VSI = ("/vsistdin", "/vsistdout")


def is_gdal_virtual_path(path) -> bool:
    """True for a GDAL virtual file system path (`/vsizip/...`, `/vsigzip/...`, `/vsimem/...`, `/vsicurl/...`):
    a name for GDAL's own file layer, which the local file checks must not judge."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith("/vsi")


def vsi_stat(name: str):
    """GDAL's stat of a virtual path (`gdal.VSIStatL`), or None when it names nothing; quiet either way."""
    gdal = _gdal()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return gdal.VSIStatL(name)
    except RuntimeError:  # GDAL with exceptions enabled elsewhere in the process
        return None
    finally:
        gdal.PopErrorHandler()


def _open_virtual(name: str):
    """Check a GDAL virtual path before GDAL opens it: one clear line for what is missing or cannot be read."""
    if name.startswith(_SEQUENTIAL_VSI):
        raise InputRasterError(f"{name}: the codec reads the raster in several passes, which "
                               f"{name.split('/')[1]} cannot give; save the raster to a file first")
    st = vsi_stat(name)
    if st is None:
        raise InputRasterError(f"{name}: not found (a GDAL virtual path: check the archive or URL and the path "
                               f"inside it, e.g. /vsizip/archive.zip/scene.tif)")
    if st.IsDirectory():
        raise InputRasterError(f"{name}: is a folder, not a raster file")


def _open(path: str | os.PathLike):
    if is_gdal_virtual_path(path):  # kept as the string it is: Path() would fold /vsizip//abs/a.zip's "//"
        name = os.fspath(path)
        _open_virtual(name)
        return _open_dataset(name, name)
    p = Path(path)
    if not p.exists():
        raise InputRasterError(f"{p}: file does not exist")
    if p.is_dir():
        raise InputRasterError(f"{p}: is a folder, not a raster file")
    if not stat.S_ISREG(os.stat(p).st_mode):  # a FIFO or device would block GDAL forever or read garbage
        raise InputRasterError(f"{p}: is not a regular file (FIFO, device or socket); copy it to a file first")
    if not os.access(p, os.R_OK):
        raise InputRasterError(f"{p}: file is not readable (permission denied)")
    try:
        return _open_dataset(_gdal_path(p), p)
    except InputRasterError:
        if _is_sarc(p):  # `sar-compress scene.sarc ...`: said "not a readable raster (unknown format)"
            raise InputRasterError(f"{p}: is a compressed .sarc file, not a raster; reconstruct it with "
                                   "sar-reconstruct (or sar-info to describe it)") from None
        raise


def _is_sarc(path: Path) -> bool:
    """Whether a local file starts with the .sarc magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _open_dataset(name, p):
    gdal = _gdal()
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        try:
            ds = gdal.OpenEx(name, gdal.OF_RASTER | gdal.OF_READONLY)
        except RuntimeError as exc:  # GDAL with exceptions enabled elsewhere in the process
            raise InputRasterError(f"{p}: not a readable raster ({str(exc).splitlines()[0]})") from None
        if ds is None:
            raise InputRasterError(f"{p}: not a readable raster ({_last_error('unknown format')})")
    finally:
        gdal.PopErrorHandler()
    return ds


def open_raster_quietly(path):
    """The GDAL dataset of a local file opened read-only, or None when GDAL reads no raster there."""
    try:
        return _open_dataset(_gdal_path(Path(path)), path)
    except InputRasterError:
        return None


def _info_from_dataset(ds, path: str) -> RasterInfo:
    from osgeo import gdal_array  # noqa: PLC0415

    gdal = _gdal()
    w, h, n = ds.RasterXSize, ds.RasterYSize, ds.RasterCount
    if w <= 0 or h <= 0 or n <= 0:
        raise InputRasterError(f"{path}: raster is empty ({w} x {h} pixels, {n} bands)")
    alphas = [i for i in range(1, n + 1) if ds.GetRasterBand(i).GetColorInterpretation() == gdal.GCI_AlphaBand]
    if len(alphas) > 1:
        raise InputRasterError(f"{path}: has {len(alphas)} alpha bands ({', '.join(map(str, alphas))}); at most one "
                               "is supported (it becomes the mask of the data bands)")
    if alphas and n == 1:
        raise InputRasterError(f"{path}: its only band is an alpha band (a mask); there is no data to compress")
    alpha = alphas[0] if alphas else None
    source_bands = tuple(i for i in range(1, n + 1) if i != alpha)
    kinds = {mask_kind(ds.GetRasterBand(i).GetMaskFlags()) for i in source_bands} - {""}
    gdal_mask = "alpha" if alpha else "per_dataset" if "per_dataset" in kinds else "per_band" if kinds else ""
    if alpha:
        log.info("%s: band %d is an alpha band: used as the mask of the data bands, not compressed", path, alpha)
    dtypes = set()
    nodata, names, bands = [], [], []
    for i in range(1, n + 1):
        b = ds.GetRasterBand(i)
        code = gdal_array.GDALTypeCodeToNumericTypeCode(b.DataType)
        # complex types by GDAL's name: numpy calls a CInt16 SLC "complex64", a type it never was
        dt = (np.dtype(code).name if code is not None and np.dtype(code).kind != "c"
              else _gdal().GetDataTypeName(b.DataType))
        dtypes.add(dt)
        if i == alpha:
            continue
        nodata.append(b.GetNoDataValue())
        names.append(b.GetDescription() or "")
        bands.append({"description": b.GetDescription() or "", "metadata": _str_map(b.GetMetadata()),
                      "color_interp": _gdal().GetColorInterpretationName(b.GetColorInterpretation()),
                      "scale": _finite_or_none(b.GetScale(), identity=1.0),
                      "offset": _finite_or_none(b.GetOffset(), identity=0.0)})
    if len(dtypes) != 1:
        raise InputRasterError(f"{path}: bands have different data types {sorted(dtypes)}; not supported")
    dtype = dtypes.pop()
    if dtype.startswith("C"):  # CInt16, CInt32, CFloat32, CFloat64
        raise InputRasterError(
            f"{path}: data type {dtype} is complex, not supported (a single-look complex product?); the codec "
            "takes detected SAR data: convert it to intensity (|z|^2), amplitude (|z|) or dB first, e.g. with gdal_translate "
            "and a VRT pixel function (intensity or mod)")
    if dtype not in _SUPPORTED_DTYPES:
        raise InputRasterError(
            f"{path}: data type {dtype} is not supported (need a real numeric type; complex or other data "
            "must be converted to intensity, amplitude or dB first)")
    gt = ds.GetGeoTransform(can_return_null=True)
    return RasterInfo(path=str(path), width=w, height=h, band_count=len(source_bands), dtype=dtype,
                      crs_wkt=ds.GetProjection() or "",
                      geotransform=tuple(float(v) for v in (gt or (0.0, 1.0, 0.0, 0.0, 0.0, 1.0))),
                      nodata=tuple(nodata), band_names=tuple(names), metadata=_str_map(ds.GetMetadata()),
                      bands=tuple(bands), source_bands=source_bands, gdal_mask=gdal_mask, alpha_band=alpha,
                      gcps=placing_gcps(ds))


def placing_gcps(ds) -> dict | None:
    """The ground control points of a dataset without a geotransform, as plain numbers, or None. A GeoTIFF holds
    either a geotransform or GCPs, so they are carried only where they are the georeferencing: otherwise a
    Sentinel-1 GRD measurement GeoTIFF (GCPs only) came back as a raster at pixel coordinates."""
    if ds.GetGeoTransform(can_return_null=True):
        return None
    points = [[float(g.GCPPixel), float(g.GCPLine), float(g.GCPX), float(g.GCPY), float(g.GCPZ)]
              for g in (ds.GetGCPs() or ())]
    points = [p for p in points if all(np.isfinite(p))]
    return {"crs_wkt": ds.GetGCPProjection() or "", "points": points} if points else None


def set_georeferencing(ds, crs_wkt: str = "", geotransform=None, gcps: dict | None = None) -> None:
    """Place a new dataset as its source was: by `gcps` (RasterInfo.gcps) where it had them, since a GeoTIFF holds
    either GCPs or a geotransform, else by the geotransform and CRS."""
    if gcps:
        points = [_gdal().GCP(x, y, z, p, ln) for p, ln, x, y, z in gcps["points"]]
        ds.SetGCPs(points, _gdal_text(gcps.get("crs_wkt") or crs_wkt or ""))
        return
    if geotransform is not None:
        ds.SetGeoTransform(tuple(float(v) for v in geotransform))
    if crs_wkt:
        ds.SetProjection(_gdal_text(crs_wkt))


def shifted_gcps(gcps: dict | None, col: int, row: int) -> dict | None:
    """`gcps` for the window of a raster that starts at pixel (col, row)."""
    if not gcps:
        return None
    return {"crs_wkt": gcps.get("crs_wkt") or "",
            "points": [[p - col, ln - row, x, y, z] for p, ln, x, y, z in gcps["points"]]}


class GcpGrid:
    """Where a raster placed by ground control points lies on the map: the map positions of a grid of pixel
    positions over it (at most 257 x 257), through GDAL's GCP transformer, the transform of the warped VRT QGIS
    shows such a raster through. A map box is mapped to pixels through these forward positions, not the inverse
    polynomial, which GDAL fits separately and which far from the GCPs may fold back into the raster."""

    def __init__(self, gcps: dict, width: int, height: int, path=""):
        gdal = _gdal()
        ds = gdal.GetDriverByName("MEM").Create("", width, height, 0)  # no band: no pixel is allocated
        set_georeferencing(ds, "", None, gcps)
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            transformer = gdal.Transformer(ds, None, [])
        except RuntimeError:  # GDAL with exceptions enabled elsewhere in the process
            transformer = None
        finally:
            gdal.PopErrorHandler()
        if transformer is None:  # under 3 GCPs, or all on a line: QGIS would show it at pixel coordinates
            raise InputRasterError(f"{path}: its ground control points cannot place it on the map "
                                   f"({_last_error('no transform fits them')})")
        step = max(16, math.ceil(max(width, height) / 256))
        self.cols = np.unique(np.r_[np.arange(0, width, step), width])
        self.rows = np.unique(np.r_[np.arange(0, height, step), height])
        points, _ok = transformer.TransformPoints(0, [(float(c), float(r)) for r in self.rows for c in self.cols])
        #: map (x, y) of each grid position, by row and column
        self.xy = np.array(points)[:, :2].reshape(len(self.rows), len(self.cols), 2)
        self.width, self.height = width, height

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the raster on the map."""
        points = self.xy.reshape(-1, 2)
        (xmin, ymin), (xmax, ymax) = points.min(axis=0), points.max(axis=0)
        return float(xmin), float(ymin), float(xmax), float(ymax)

    def window(self, bbox) -> Window | None:
        """Pixel window of a map box (xmin, ymin, xmax, ymax), to within the grid's cells; None when it misses
        the raster or only touches it (no pixel lies under it, as for a raster placed by a geotransform). An
        overlap under a millionth of a pixel is the GCP fit's rounding: a box ending on the GCPs' own west edge
        touches the raster, though the fit puts that edge 1e-15 degrees further west."""
        corners = np.stack([self.xy[:-1, :-1], self.xy[:-1, 1:], self.xy[1:, :-1], self.xy[1:, 1:]])  # per cell
        low, high = corners.min(axis=0) + 1e-6 * self.pixel_size, corners.max(axis=0) - 1e-6 * self.pixel_size
        xmin, ymin, xmax, ymax = bbox
        hit = (low[..., 0] < xmax) & (high[..., 0] > xmin) & (low[..., 1] < ymax) & (high[..., 1] > ymin)
        r, c = np.nonzero(hit)
        if not r.size:
            return None
        c0, r0, c1, r1 = self.cols[c.min()], self.rows[r.min()], self.cols[c.max() + 1], self.rows[r.max() + 1]
        return int(c0), int(r0), int(c1 - c0), int(r1 - r0)

    @property
    def pixel_size(self) -> float:
        """Map units per pixel: the raster's diagonal in map units over its diagonal in pixels, as GDAL sizes
        the warped VRT's pixels."""
        return math.dist(self.xy[0, 0], self.xy[-1, -1]) / math.hypot(self.width, self.height)


def mask_kind(flags: int) -> str:
    """What a band's GDAL mask flags add to its nodata value: "" when nothing (GMF_ALL_VALID, or a mask that is
    only the band's own nodata value, GMF_NODATA alone, which `preprocessing.validity_mask` already applies),
    else "per_dataset" or "per_band". A multi-band NODATA_VALUES mask (GMF_NODATA | GMF_PER_DATASET) counts: its
    pixels are nodata only where every band holds its value, which no single band's nodata says."""
    gdal = _gdal()
    if flags & gdal.GMF_ALL_VALID or flags == gdal.GMF_NODATA:
        return ""
    return "per_dataset" if flags & gdal.GMF_PER_DATASET else "per_band"


def _str_map(md) -> dict:
    """GDAL metadata as stored in a .sarc header, without GDAL's STATISTICS_* items: they describe the pixels
    of the original, are wrong for the reconstruction, and appear whenever a viewer (QGIS) computed them, so the
    same raster would compress to different files depending on who looked at it first."""
    return {str(k): str(v) for k, v in (md or {}).items() if not str(k).startswith("STATISTICS_")}


def _finite_or_none(v, identity: float):
    """Scale/offset as JSON can hold them: None when unset, or when it is the identity (GDAL reports 1.0 / 0.0
    once a viewer has written a .aux.xml beside the raster: the same raster must give the same file)."""
    return float(v) if v is not None and np.isfinite(v) and v != identity else None


def band_scaling(band: dict) -> tuple[float, float] | None:
    """(scale, offset) from a band's description (`RasterInfo.bands`, a header's `raster.bands`), or None when
    it has neither (both are stored as None when they are GDAL's identity, 1 and 0)."""
    scale, offset = band.get("scale"), band.get("offset")
    if scale is None and offset is None:
        return None
    return (1.0 if scale is None else float(scale)), (0.0 if offset is None else float(offset))


def scaling_of(scale, offset) -> tuple[float, float] | None:
    """`band_scaling` of a band's scale and offset as a raster library reports them (GDAL's GetScale and
    GetOffset, rasterio's `scales` and `offsets`), as RasterInfo describes them: a non-finite one is none, so
    every reader (the codec, the trainer, the scene cache's check, the quality maps) takes the same values as
    physical. A scale of 0 is passed on as it is, for `zero_scale_error` to refuse."""
    return band_scaling({"scale": _finite_or_none(scale, identity=1.0),
                         "offset": _finite_or_none(offset, identity=0.0)})


def zero_scale_error(path, scalings) -> str:
    """Why the raster at `path` cannot be taken as physical values ("" when it can), from its bands' `scaling_of`:
    a band of GDAL scale 0 means its offset alone at every pixel. The codec refuses to compress such a file and
    the trainer skips it, both with this message, which names every such band."""
    zero = [b + 1 for b, scaling in enumerate(scalings) if scaling is not None and scaling[0] == 0]
    if not zero:
        return ""
    bands = f"band {zero[0]} has" if len(zero) == 1 else f"bands {', '.join(map(str, zero))} have"
    return f"{path}: {bands} GDAL scale 0, so every pixel would mean its offset alone; fix the band's scale first"


def gdal_band_scaling(band) -> tuple[float, float] | None:
    """`scaling_of` an open GDAL band."""
    return scaling_of(band.GetScale(), band.GetOffset())


def physical_values(stored: np.ndarray, nodata,
                    scaling: tuple[float, float] | None) -> tuple[np.ndarray, float | None]:
    """(values, nodata) of pixels read from a band with `scaling` (`RasterInfo.scaling`): without one, `stored`
    and `nodata` as they are; with one, GDAL's physical values `stored * scale + offset` in float64, the pixels
    equal to `nodata` (which GDAL compares with the stored values) as NaN, and no nodata value, as a scaled fill
    value means nothing. What the codec measures, codes and reports in dB."""
    if scaling is None:
        return stored, nodata
    values = np.asarray(stored, dtype=np.float64) * scaling[0] + scaling[1]
    if nodata is not None and not np.isnan(nodata):
        values[stored == nodata] = np.nan
    return values, None


def read_raster_info(path: str | os.PathLike) -> RasterInfo:
    """Open, describe and close a raster; raises InputRasterError with the reason when it cannot be used."""
    ds = _open(path)
    try:
        return _info_from_dataset(ds, str(path))
    finally:
        ds = None  # noqa: F841  (closes the GDAL dataset)


class RasterReader:
    """Windowed reads from one raster; keeps the GDAL dataset open between reads (GDAL caches blocks)."""

    def __init__(self, path: str | os.PathLike, nodata=None):
        """`nodata`: per data band, a value read as that band's nodata instead of the file's (None keeps the
        file's): the no-data value a QGIS layer sets on top of its file, which GDAL never sees."""
        self.path = str(path)
        self._ds = _open(path)
        self.info = _info_from_dataset(self._ds, self.path)
        if nodata is not None:
            if len(nodata) != self.info.band_count:
                raise InputRasterError(f"{self.path}: {len(nodata)} no-data values given for "
                                       f"{self.info.band_count} bands")
            self.info = replace(self.info, nodata=tuple(
                own if given is None else float(given) for own, given in zip(self.info.nodata, nodata)))
        self._bands = [self._ds.GetRasterBand(i) for i in self.info.source_bands]
        self._masks = [self._mask_bands(b) for b in self._bands]

    def _mask_bands(self, band) -> list:
        """The GDAL bands whose zeros mark `band`'s invalid pixels beyond its nodata value (see `mask_kind`)."""
        gdal = _gdal()
        flags = band.GetMaskFlags()
        alpha = self.info.alpha_band
        masks = []
        if mask_kind(flags) and not (alpha and flags & gdal.GMF_ALPHA):  # GMF_ALPHA: GetMaskBand() is the alpha
            masks.append(band.GetMaskBand())
        if alpha:
            masks.append(self._ds.GetRasterBand(alpha))
        return masks

    def has_mask(self, band: int) -> bool:
        """Whether a GDAL mask (mask band or alpha band) marks pixels of `band` (0-based) invalid."""
        return bool(self._masks[band])

    def _check_window(self, band: int, col: int, row: int, width: int, height: int) -> None:
        i = self.info
        if not (0 <= band < i.band_count):
            raise InputRasterError(f"{self.path}: band {band} does not exist ({i.band_count} bands)")
        if width <= 0 or height <= 0 or col < 0 or row < 0 or col + width > i.width or row + height > i.height:
            raise InputRasterError(
                f"{self.path}: window (col={col}, row={row}, width={width}, height={height}) is outside the "
                f"{i.width} x {i.height} raster")

    def _read_band(self, gdal_band, what: str, col: int, row: int, width: int, height: int) -> np.ndarray:
        gdal = _gdal()
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            arr = gdal_band.ReadAsArray(int(col), int(row), int(width), int(height))
        except RuntimeError as exc:
            raise InputRasterError(f"{self.path}: {what} failed ({str(exc).splitlines()[0]})") from None
        finally:
            gdal.PopErrorHandler()
        if arr is None:
            raise InputRasterError(f"{self.path}: {what} failed ({_last_error('I/O error')})")
        return arr

    def read(self, band: int, col: int, row: int, width: int, height: int) -> np.ndarray:
        """Stored pixels of data band `band` (0-based; an alpha band is not one) in a window that must lie inside
        the raster, in the raster's dtype (no scale or offset applied: `physical`)."""
        self._check_window(band, col, row, width, height)
        return self._read_band(self._bands[band], "read", col, row, width, height)

    def physical(self, band: int, stored: np.ndarray) -> tuple[np.ndarray, float | None]:
        """(values, nodata) of pixels `read` from data band `band`: `physical_values` with the band's nodata and
        scale/offset (nodata as `RasterInfo.nodata` has it, a value given to the constructor included)."""
        return physical_values(stored, self.info.nodata[band], self.info.scaling(band))

    def read_valid(self, band: int, col: int, row: int, width: int, height: int) -> np.ndarray | None:
        """Where the GDAL mask of `band` (0-based) marks the pixels of a window valid (bool, non-zero mask or
        alpha), or None when no mask beyond the nodata value applies. Read by the window, as the pixels are."""
        self._check_window(band, col, row, width, height)
        valid = None
        for m in self._masks[band]:
            v = self._read_band(m, "reading the mask", col, row, width, height) != 0
            valid = v if valid is None else valid & v
        return valid

    def close(self) -> None:
        self._ds = None

    def __enter__(self) -> "RasterReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def geotiff_blocks_stored(band, window, file_size: int) -> bool:
    """Whether any block of a GDAL GeoTIFF band within `window` (col, row, width, height) is written in the file;
    ValueError when one ends past the file's `file_size` bytes. A truncated GeoTIFF (an interrupted copy, a full
    disk) opens with its full shape when its index comes first and fails only where such a block is read; the
    index alone tells, at about 2 us a block."""
    bx, by = band.GetBlockSize()
    c, r, w, h = window
    stored = False
    for j in range(r // by, (r + h - 1) // by + 1):
        for i in range(c // bx, (c + w - 1) // bx + 1):
            offset = band.GetMetadataItem(f"BLOCK_OFFSET_{i}_{j}", "TIFF")
            if offset:  # None or empty: a sparse block, never written
                end = int(offset) + int(band.GetMetadataItem(f"BLOCK_SIZE_{i}_{j}", "TIFF"))
                if end > file_size:
                    raise ValueError(f"truncated: block {i},{j} ends at byte {end} of a {file_size}-byte file")
                stored = True
    return stored


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name the same file (resolving links; also when neither exists yet)."""
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    except OSError:
        pass
    return pa.resolve() == pb.resolve()


def check_output_path(output: str | os.PathLike, inputs: tuple = (), no_clobber: bool = False) -> Path:
    """Fail early, before any work, when `output` cannot be written (`write_refusal`), would overwrite an
    input, or exists while `no_clobber` is set. GDAL virtual paths (/vsizip/, /vsimem/, ...) are for inputs only:
    outputs are published by an atomic rename beside them, which only a local folder gives."""
    if is_gdal_virtual_path(output):
        raise OutputPathError(f"{os.fspath(output)}: GDAL virtual paths (/vsi...) can be read but not written; "
                              "give a local file as the output")
    out = Path(output)
    for src in inputs:
        if src is not None and same_file(out, src):
            raise OutputPathError(f"{out}: output is the same file as the input")
        archive = local_archive(os.fspath(src)) if is_gdal_virtual_path(src) else None
        if archive is not None and same_file(out, archive):
            raise OutputPathError(f"{out}: output is the archive the input {os.fspath(src)} is read from")
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and out.is_dir():
        raise OutputPathError(f"{out}: output is an existing folder")
    if out.exists() and not out.is_file():  # the final rename would replace a device or FIFO with a file
        raise OutputPathError(f"{out}: output exists and is not a regular file (a device, FIFO or socket); "
                              f"nothing written")
    if no_clobber and os.path.lexists(out):
        raise OutputPathError(f"{out}: exists and --no-clobber was given; nothing written")
    if not parent.is_dir():
        raise OutputPathError(f"{out}: output folder {parent} does not exist")
    why = write_refusal(parent)
    if why:
        raise OutputPathError(f"{out}: cannot write in folder {parent} ({why})")
    return out


def write_refusal(folder: Path, size: int = 0) -> str:
    """Why no file (of `size` bytes) can be made in the existing `folder`, or "". Tried with a real file rather
    than os.access: as root (tests, containers) os.access says yes to everything, while a read-only mount, an
    immutable folder or /proc still refuse the write. Only bytes written find a full disk or a quota; random
    ones, because a compressing file system stores zeros in no room at all."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-probe-") as f:
            if size:
                f.write(os.urandom(size))
                f.flush()
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def writable_folder(folder: str | os.PathLike) -> Path:
    """`folder`, created with its parents when missing, once a file could be made in it: the CLIs refuse an
    unusable output folder in one line before their work, not with a traceback after it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
    why = write_refusal(folder)
    if why:
        raise OutputPathError(f"{folder}: cannot write there ({why})")
    return folder


def temp_path_for(output: str | os.PathLike, suffix: str = "") -> Path:
    """A hidden temporary name beside the final output, so the final rename is atomic on one filesystem.

    It carries the writer's PID so that `remove_stale_partials` can tell a killed run's leftover from the live
    partial of a concurrent run.
    """
    out = Path(output)
    return out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_partials(output: str | os.PathLike, older_than: float) -> list[Path]:
    """Remove the partials of `output` a killed run left (SIGKILL cannot be caught); returns what was removed.

    Only names of this module's own pattern (`.NAME.partial-PID-HEX[.tif[.aux.xml]]`, or the PID-less pattern of
    earlier versions) that were last modified before `older_than` (the current run's start) and whose PID is not
    running: a concurrent run's live partial is left alone.
    """
    out = Path(output)
    parent = out.parent if str(out.parent) else Path(".")
    prefix = f".{out.name}.partial-"
    pattern = re.compile(r"(?:(\d+)-)?[0-9a-f]{8}(?:\.tif)?(?:\.aux\.xml)?")
    removed = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name[len(prefix):])
        if m is None or (m.group(1) and pid_alive(int(m.group(1)))):
            continue
        p = parent / name
        try:
            if not stat.S_ISREG(p.lstat().st_mode) or p.lstat().st_mtime >= older_than:
                continue
            p.unlink()
        except OSError:
            continue
        log.warning("removed stale partial file %s (left by an interrupted run)", p)
        removed.append(p)
    return removed


class PartialFile:
    """A temporary file beside `output`, published by one rename at the end and removed on every other exit.

    It holds a descriptor of the output folder, so that renaming or removing the folder mid-run neither
    publishes into the moved folder nor leaves the partial behind there: `publish` refuses and `discard` still
    finds the partial through the descriptor. With `no_clobber`, an output that appeared meanwhile is kept.
    """

    def __init__(self, output: str | os.PathLike, suffix: str = "", no_clobber: bool = False):
        self.output = Path(output)
        self.path = temp_path_for(self.output, suffix)
        self.no_clobber = no_clobber
        parent = self.output.parent if str(self.output.parent) else Path(".")
        self._parent = parent
        try:
            self._dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise OutputPathError(f"{self.output}: cannot open output folder {parent} ({exc.strerror})") from None
        self._dir_stat = os.fstat(self._dir_fd)

    def _folder_moved(self) -> bool:
        try:
            now = os.stat(self._parent)
        except OSError:
            return True
        return (now.st_dev, now.st_ino) != (self._dir_stat.st_dev, self._dir_stat.st_ino)

    def publish(self) -> None:
        """Rename the finished partial onto the output (atomic); log when an existing file was replaced."""
        fd, tmp, name = self._dir_fd, self.path.name, self.output.name
        if self._folder_moved():
            raise OutputPathError(f"{self.output}: output folder {self._parent} was moved or removed during the "
                                  "run; nothing written")
        try:
            if self.no_clobber:
                os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                os.unlink(tmp, dir_fd=fd)
                return
            existed = os.path.lexists(self.output)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except FileExistsError:
            raise OutputPathError(f"{self.output}: exists and --no-clobber was given; nothing written") from None
        except OSError as exc:
            raise OutputPathError(f"{self.output}: cannot move the finished file into place "
                                  f"({exc.strerror or exc})") from None
        if existed:
            log.warning("replaced existing %s", self.output)

    def discard(self) -> None:
        """Remove the partial (and a GDAL .aux.xml beside it); never raises."""
        for n in (self.path.name, self.path.name + ".aux.xml"):
            try:
                os.unlink(n, dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass
            except OSError as err:  # pragma: no cover
                log.warning("could not remove temporary file %s: %s", self._parent / n, err)

    def close(self) -> None:
        fd, self._dir_fd = self._dir_fd, -1
        if fd >= 0:
            os.close(fd)


_COLOR_INTERP = None


def _color_interp_code(name: str) -> int | None:
    """GDAL's colour interpretation constant for its name (GDAL 3.6 has no GetColorInterpretationByName)."""
    global _COLOR_INTERP
    if _COLOR_INTERP is None:
        gdal = _gdal()
        _COLOR_INTERP = {gdal.GetColorInterpretationName(i): i for i in range(0, 64)}
    return _COLOR_INTERP.get(name)


class GeoTiffWriter:
    """Tiled, DEFLATE-compressed GeoTIFF written under a temporary name and renamed into place on success.

    Use as a context manager; an exception (including CancelledError) inside the block, or any error GDAL
    reports while writing, flushing or closing (a full disk shows up only there, as GDAL writes blocks lazily),
    deletes the temporary file and leaves any existing file at `path` untouched.

    `metadata` is the dataset metadata; `bands` per band dicts as `RasterInfo.bands` (description, metadata,
    color_interp, scale, offset), so a reconstruction carries the tags of the original.

    `mask=True` adds an internal per-dataset mask band (GMF_PER_DATASET), every block of which must then be
    written with `write_mask` (an unwritten block reads as invalid).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, band_count: int, dtype: str,
                 crs_wkt: str = "", geotransform=None, nodata=None, band_names=None, metadata=None,
                 block_size: int = 256, bands=None, no_clobber: bool = False, mask: bool = False,
                 gcps: dict | None = None):
        self.path = Path(path)
        self.mask = bool(mask)
        self.width, self.height, self.band_count = int(width), int(height), int(band_count)
        self.dtype = np.dtype(dtype)
        self._no_clobber = no_clobber
        self._partial: PartialFile | None = None
        self._ds = None
        self._errors: list[str] = []
        self._args = (crs_wkt, geotransform, nodata, band_names, metadata, block_size, bands)
        self._gcps = gcps

    def _record(self, err_class, _err_no, msg) -> None:
        """GDAL error handler for the writer's lifetime: failures are kept and fail the run."""
        if err_class >= _gdal().CE_Failure:
            self._errors.append(str(msg).strip().splitlines()[0] if str(msg).strip() else "I/O error")

    def _check(self, what: str) -> None:
        if self._errors:
            raise OutputPathError(f"{self.path}: {what} failed ({self._errors[0]})")

    def __enter__(self) -> "GeoTiffWriter":
        self._partial = PartialFile(self.path, ".tif", self._no_clobber)
        _gdal().PushErrorHandler(self._record)
        try:
            self._create()
        except BaseException:
            self._close(success=False)
            raise
        return self

    def _create(self) -> None:
        from osgeo import gdal_array  # noqa: PLC0415

        gdal = _gdal()
        crs_wkt, gt, nodata, names, metadata, block, bands = self._args
        drv = gdal.GetDriverByName("GTiff")
        gtype = gdal_array.NumericTypeCodeToGDALTypeCode(self.dtype.type)
        block = max(16, min(block, 1 << 12))
        # DEFLATE stays (every GeoTIFF reader has it); level 1 on all cores because a reconstruction's float
        # noise barely compresses: on a 2048^2 float32 tile set level 1 is 0.3% larger than level 6 and the
        # final flush went from 0.21 s to 0.11 s on 2 cores, 9% of a whole reconstruct.
        opts = ["TILED=YES", f"BLOCKXSIZE={block}", f"BLOCKYSIZE={block}", "COMPRESS=DEFLATE", "ZLEVEL=1",
                "NUM_THREADS=ALL_CPUS", "BIGTIFF=IF_SAFER"]
        if self.band_count > 1:
            opts.append("INTERLEAVE=BAND")
        try:
            ds = drv.Create(_gdal_path(self._partial.path), self.width, self.height, self.band_count, gtype,
                            opts)
        except RuntimeError as exc:  # GDAL with exceptions enabled elsewhere in the process
            raise OutputPathError(f"{self.path}: cannot create output GeoTIFF ({str(exc).splitlines()[0]})") from None
        if ds is None:
            raise OutputPathError(f"{self.path}: cannot create output GeoTIFF "
                                  f"({self._errors[0] if self._errors else 'unknown error'})")
        self._ds = ds
        set_georeferencing(ds, crs_wkt, gt, self._gcps)
        if metadata:
            ds.SetMetadata({_gdal_text(k): _gdal_text(v) for k, v in metadata.items()})
        for i in range(self.band_count):
            b = ds.GetRasterBand(i + 1)
            nd = None if nodata is None or i >= len(nodata) else nodata[i]
            if nd is not None:
                b.SetNoDataValue(float(nd))
            if names and i < len(names) and names[i]:
                b.SetDescription(_gdal_text(names[i]))
            extra = bands[i] if bands and i < len(bands) else {}
            if extra.get("metadata"):
                b.SetMetadata({_gdal_text(k): _gdal_text(v) for k, v in extra["metadata"].items()})
            code = _color_interp_code(extra.get("color_interp") or "")
            if code:  # 0 = Undefined, GDAL's default
                b.SetColorInterpretation(code)
            if extra.get("scale") is not None:
                b.SetScale(float(extra["scale"]))
            if extra.get("offset") is not None:
                b.SetOffset(float(extra["offset"]))
        if self.mask:  # inside the .tif (GDAL before 3.9 writes a .msk beside it by default), so one rename
            # publishes both
            old = gdal.GetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
            gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
            try:
                err = ds.CreateMaskBand(gdal.GMF_PER_DATASET)
            except RuntimeError as exc:
                self._errors.append(str(exc).splitlines()[0])
            else:
                if err not in (0, None):
                    self._errors.append(_last_error("cannot create the mask band"))
            finally:
                gdal.SetThreadLocalConfigOption("GDAL_TIFF_INTERNAL_MASK", old)
        self._check("setting up the GeoTIFF")

    def write(self, band: int, col: int, row: int, data: np.ndarray) -> None:
        """Write a 2-D block at (col, row) of `band` (0-based); the block is cast to the file's dtype."""
        arr = np.ascontiguousarray(data, dtype=self.dtype)
        h, w = arr.shape
        if col < 0 or row < 0 or col + w > self.width or row + h > self.height:
            raise OutputPathError(f"{self.path}: block at ({col},{row}) of {w}x{h} is outside the output raster")
        try:
            err = self._ds.GetRasterBand(band + 1).WriteArray(arr, int(col), int(row))
        except RuntimeError as exc:
            raise OutputPathError(f"{self.path}: write failed ({str(exc).splitlines()[0]})") from None
        if err not in (0, None):
            self._errors.append(_last_error("I/O error, disk full?"))
        self._check("write")

    def write_mask(self, col: int, row: int, valid: np.ndarray) -> None:
        """Write a 2-D block of the per-dataset mask at (col, row): True/non-zero = valid (stored as 255)."""
        if not self.mask:
            raise OutputPathError(f"{self.path}: the GeoTIFF was created without a mask band")
        arr = np.where(np.asarray(valid, dtype=bool), np.uint8(255), np.uint8(0))
        h, w = arr.shape
        if col < 0 or row < 0 or col + w > self.width or row + h > self.height:
            raise OutputPathError(f"{self.path}: mask block at ({col},{row}) of {w}x{h} is outside the output raster")
        try:
            err = self._ds.GetRasterBand(1).GetMaskBand().WriteArray(arr, int(col), int(row))
        except RuntimeError as exc:
            raise OutputPathError(f"{self.path}: writing the mask failed ({str(exc).splitlines()[0]})") from None
        if err not in (0, None):
            self._errors.append(_last_error("I/O error, disk full?"))
        self._check("writing the mask")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close(success=exc_type is None)

    def _close(self, success: bool) -> None:
        """Flush and close the dataset, then publish the partial only if nothing failed; discard it otherwise."""
        ds, self._ds = self._ds, None
        partial, self._partial = self._partial, None
        try:  # one finally for the flush too: an exception there (a second Ctrl-C) must not keep the partial
            try:
                if ds is not None:
                    try:
                        ds.FlushCache()
                    except RuntimeError as exc:
                        self._errors.append(str(exc).splitlines()[0])
                    ds = None  # noqa: F841 (closing writes the last blocks; its errors reach the handler)
            finally:
                _gdal().PopErrorHandler()
            if success:
                self._check("writing the GeoTIFF")
                partial.publish()
        finally:
            partial.discard()  # after a publish only a stray .aux.xml of the temporary name can be left
            partial.close()


def source_stamp(path) -> dict | None:
    """The input file's size and modification time, to the nanosecond, as the filesystem gave them when
    compression began: what a batch rerun compares (as rsync's quick check does) to tell the same source from a
    replaced one. A copy that keeps the date (cp -p, rsync -a) of a different file with the same size, grid and
    metadata passes every other check the header allows; its nanosecond date will not be this one. A file inside
    a local archive (`/vsizip/archive.zip/scene.tif`) is stamped by `_archived_stamp`. None for inputs that are
    not one plain file (a GDAL connection string, other /vsi paths), whose parts have no one date."""
    if is_gdal_virtual_path(path):
        return _archived_stamp(os.fspath(path))
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns} if stat.S_ISREG(st.st_mode) else None


#: GDAL's archive readers: a path under one of them names a file inside an archive, which may be a local file.
ARCHIVE_VSI = ("/vsizip/", "/vsitar/", "/vsigzip/", "/vsi7z/", "/vsirar/")


def local_archive(name: str) -> str | None:
    """The local archive file a GDAL virtual path reads (`/vsizip//data/a.zip/s.tif` -> `/data/a.zip`), or None
    when it reads none: another handler (/vsicurl/, /vsis3/, /vsimem/) or an archive inside another /vsi path."""
    if not name.startswith(ARCHIVE_VSI):
        return None
    rest = name.split("/", 2)[2]
    if rest.startswith("{"):  # /vsizip/{/data/a.zip}/s.tif: GDAL's braces around the archive's name
        inner = rest[1:].split("}", 1)[0]
        return inner if os.path.isfile(inner) else None
    if rest.startswith("/vsi"):
        return None
    parts = rest.split("/")
    for i in range(1, len(parts) + 1):
        candidate = "/".join(parts[:i])
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def _archived_stamp(name: str) -> dict | None:
    """A file inside a local archive: its size and date as the archive lists them, and the archive's own size and
    nanosecond date. A member's date is what the archive recorded (a zip keeps it to 2 seconds), so alone it
    would pass a replaced archive whose scene kept its date; the archive's stamp does not: once the archive is
    rewritten in any way, its scenes are compressed again. None when no local archive lies under the path."""
    archive = local_archive(name)
    if archive is None:
        return None
    st = vsi_stat(name)
    try:
        a = os.stat(archive)
    except OSError:
        return None
    if st is None or not stat.S_ISREG(st.mode):
        return None
    return {"bytes": int(st.size), "mtime_ns": int(st.mtime) * 1_000_000_000,
            "archive": {"bytes": a.st_size, "mtime_ns": a.st_mtime_ns}}
