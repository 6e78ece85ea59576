"""compress / reconstruct / CompressedRaster: the API the command line and the QGIS plugin both call.

Plain functions of (input path, output path, options) holding no global state, so batch engines (Dask) can map
them over files or windows. Both stream tile by tile: memory is bounded by a tile's context and a small cache of
latent chunks, never by the raster size. Outputs are written under a temporary name and renamed into place at
the end, so a failure or a cancel never leaves a partial file, and the input is only ever opened read-only.

Values are GDAL's physical values, stored * scale + offset for a band with a scale or offset (a quantized
sigma0 product: int16 hundredths of a dB; raster_io.physical_values), so that the domain, the clip range, the
outlier margins and every dB figure (a --target-db-rmse, the reported estimates) are in the units the product
measures. The nodata value, which GDAL compares with the stored values, marks pixels before the scaling; a
reconstruction writes the stored values back under the same scale and offset (`CompressedRaster.scaling`).

What goes through the network and what does not:
* valid pixels inside the band's clip range [lo, hi] dB: encoder -> gain-scaled latents, range-coded under the
  mean-scale hyperprior at the chosen quality (core/hyperprior.py) -> decoder;
* valid pixels more than a margin outside it (ships, buildings, calm water; the margin follows the quality, see
  `outlier_margin_db`): a sparse, losslessly coded list of positions and dB values quantised to
  `outlier_step_db`, pasted over the network output;
* invalid pixels (nodata, NaN, <= 0 in linear domains): a lossless mask plus their exact raw values where they
  differ from the fill value, restored bit for bit.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import container as C
from .blas_threads import single_threaded_blas
from .errors import (DB_DOMAIN_ADVICE, DOMAIN_DOUBT, CancelledError, InputRasterError, ModelBundleError,
                     ModelMismatchError, NoOverlapError, OutputPathError, SarCompressError)
from .header_schema import MAX_ABS_DB
from .hyperprior import HyperpriorCoder, interpolate_lambda
from .overview import OverviewBuilder, read_overview, wants_overview
from .pipeline import ordered_map, thread_pool
from .preprocessing import (DEFAULT_PERCENTILES, DOMAIN_ALIASES, PreprocessingParams, canonical_domain,
                            denormalise, explain_domain, from_db, normalise, percentile_bounds, tagged_domain,
                            to_db)
from .rate_control import RateTarget, choose_quality
from .raster_io import (RECONSTRUCTION_SHA256_TAG, RECONSTRUCTION_TAG, GcpGrid, GeoTiffWriter, PartialFile,
                        RasterReader, band_scaling, check_output_path, remove_stale_partials, same_file,
                        shifted_gcps, source_stamp, zero_scale_error)
from .runtime import (MANIFEST_NAME, OnnxCodecModel, check_manifest_can_encode, check_manifest_quality,
                      default_model_dir, find_file_bundle, load_manifest)
from .tiling import TileGrid, latent_block, read_context, tile_size_error

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]
Progress = Callable[[float], None] | None
Cancelled = Callable[[], bool] | None

#: the geotransform a header holds for a raster that has none (GDAL's default)
NO_GEOTRANSFORM = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
SOFTWARE = "sar-compress 0.1.0"
#: Pixels sampled per band to estimate the clip percentiles (strided, so huge rasters stay streaming).
STATS_SAMPLES = 4_000_000
#: Outliers are coded where that pays at the operating point's own rate-distortion trade-off. Leaving a pixel e dB
#: beyond the clip range clipped costs e^2 of squared error; coding it costs about 16 bits. The model was trained
#: to trade bits against squared error at lambda, so the break-even e grows as 1 / sqrt(lambda):
#: margin = OUTLIER_MARGIN_SCALE_DB / sqrt(255^2 lambda(quality)), never below MIN_OUTLIER_MARGIN_DB (the smallest
#: margin measured). Fitted on 10 training GRD scene-bands (benchmarks/results/outlier_margin: best margins 8, 6,
#: 3, 2 dB at qualities 1-4 give K = 70.2; none at 0, 1 dB at 5). A fixed 2 dB margin had spent 0.035 bpp at
#: every quality there, 16% of quality 0's bits, on errors that quality's own pixels exceed.
OUTLIER_MARGIN_SCALE_DB = 70.0
MIN_OUTLIER_MARGIN_DB = 1.0
#: Max error 0.125 dB on a coded outlier, an order below the decoder's own; 2 bits per outlier cheaper than 0.05.
OUTLIER_STEP_DB = 0.25


@dataclass
class CompressOptions:
    """How to compress. `domain=None` infers it (see `preprocessing.explain_domain`).

    The operating point is one of: `quality` (a float between 0 and the model's top level; higher spends more
    bits), `target_bpp` (bits per pixel per band) or `target_db_rmse`, which the codec meets by a search on
    sample tiles (core/rate_control.py). With none of them, the bundle's default quality.
    """

    model_dir: str | Path | None = None
    device: str = "auto"
    tile_size: int = 512
    quality: float | None = None
    target_bpp: float | None = None
    target_db_rmse: float | None = None
    domain: str | None = None
    band_names: list | None = None
    #: per band, a nodata value that replaces the file's (None: the file's; raster_io.RasterReader)
    nodata: list | None = None
    #: None: from the operating point (`outlier_margin_db`)
    outlier_margin_db: float | None = None
    outlier_step_db: float = OUTLIER_STEP_DB
    #: store the low-resolution overview chunk; None: only for rasters over overview.MIN_OVERVIEW_PIXELS
    overview: bool | None = None
    #: refuse to replace an existing output (default: replace it and log that it did)
    no_clobber: bool = False
    #: choose each latent symbol by rate plus error (core/rd_rounding.py) where the bundle has its decoder's
    #: distortion weights; False rounds to the nearest symbol (the A/B of benchmarks/rate_distortion.py)
    rd_rounding: bool = True
    #: store the input file's size and date in the header (`raster_io.source_stamp`), for a batch rerun to tell
    #: the same source from a replaced one. Only the batch reads it, so only the batch asks for it: 30-40 bytes
    #: are nothing on a scene but 1% of a 512-px chip at the lowest quality (0.25 points of BD-rate on the
    #: held-out chips of benchmarks/rate_distortion.py)
    stamp_source: bool = False


@dataclass
class CompressResult:
    output_path: str
    input_raw_bytes: int
    output_bytes: int
    pixels: int
    bands: int
    bpp: float
    bpp_per_band: float
    ratio: float
    seconds: float
    provider: str
    outlier_pixels: int
    clip_db: list = field(default_factory=list)
    domain: str = ""
    quality: float = math.nan
    domain_reason: str = ""


@dataclass
class ReconstructResult:
    output_path: str
    width: int
    height: int
    bands: int
    seconds: float
    provider: str


def outlier_margin_db(quality: float, lambdas) -> float:
    """The dB margin beyond the clip range past which a pixel is coded as an outlier, at a quality of a model
    trained at `lambdas` per level (log-interpolated between levels, as the gains are)."""
    return max(MIN_OUTLIER_MARGIN_DB,
               OUTLIER_MARGIN_SCALE_DB / math.sqrt(255.0 ** 2 * interpolate_lambda(lambdas, quality)))


def _tick(progress: Progress, value: float) -> None:
    if progress is not None:
        progress(min(1.0, max(0.0, float(value))))


def _check_cancel(is_cancelled: Cancelled, what: str) -> None:
    if is_cancelled is not None and is_cancelled():
        raise CancelledError(f"{what}: cancelled; no output was written")


# --- domain and statistics -------------------------------------------------------------------------------

def _warn_other_domains(input_path, info, samples, domain: str, why: str) -> set[int]:
    """A file has one value domain, inferred from its first band's values (`domain`, `why`): a band whose own
    values say another (one of int16 hundredths of a dB under a scale beside one of plain digital numbers) was
    coded in the wrong one without a word. The bands (1-based) warned of."""
    told: set[int] = set()
    for b in range(1, info.band_count):
        other, other_why = explain_domain(info.dtype, samples[b], info.scaling(b) is not None)
        if other != domain:
            log.warning("%s: band %d looks like %s (%s), but a file has one value domain and band 1 gives %s (%s); "
                        "pass the domain if that is wrong, or compress the bands apart", input_path, b + 1, other,
                        other_why, domain, why)
            told.add(b + 1)
    return told


def _band_samples(reader: RasterReader, band: int, nodata) -> np.ndarray:
    """A strided subsample of one band's pixels other than `nodata` and those its GDAL mask marks invalid, read
    in row blocks (the mask by the same blocks) so memory stays bounded; physical values (`RasterReader.physical`:
    float64 through a scale/offset, where the stored ones are compared with `nodata` first).

    Nodata is dropped here because a fill value such as -9999 on half a linear raster would otherwise make the
    domain inference call it dB; masked pixels for the same reason, and because they must not move the clip
    range."""
    info = reader.info
    stride = max(1, math.ceil(math.sqrt(info.width * info.height / STATS_SAMPLES)))
    rows_per_block = max(stride, (max(1, (8 << 20) // info.width) // stride) * stride)
    parts = []
    for r0 in range(0, info.height, rows_per_block):
        h = min(rows_per_block, info.height - r0)
        part = reader.read(band, 0, r0, info.width, h)[::stride, ::stride].ravel()
        valid = reader.read_valid(band, 0, r0, info.width, h)
        parts.append(part if valid is None else part[valid[::stride, ::stride].ravel()])
    sample = np.concatenate(parts)
    sample = sample if nodata is None or np.isnan(nodata) else sample[sample != nodata]
    return reader.physical(band, sample)[0]


def _true_db(values: np.ndarray, domain: str) -> np.ndarray:
    """dB of valid pixels without the noise-floor clamp (outliers must keep their real value)."""
    v = values.astype(np.float64)
    if domain == "intensity":
        return 10.0 * np.log10(v)
    if domain == "amplitude":
        return 20.0 * np.log10(v)
    return v


def _fill_value(dtype: np.dtype, nodata):
    if nodata is not None:
        return np.array(nodata).astype(dtype)[()] if not (dtype.kind in "iu" and not np.isfinite(nodata)) else 0
    return dtype.type(np.nan) if dtype.kind == "f" else dtype.type(0)


def _same_bits(a: np.ndarray, fill) -> np.ndarray:
    """Element-wise 'equal to fill', treating NaN as equal to NaN."""
    if a.dtype.kind == "f" and np.isnan(fill):
        return np.isnan(a)
    return a == fill


# --- compress ---------------------------------------------------------------------------------------------

def _compress_model_dir(model_dir) -> Path:
    """The bundle to compress with: `model_dir`, else the bundled default, which a plugin package built without
    its models lacks (said so, not "not a model bundle" of a folder the user never named)."""
    d = Path(model_dir) if model_dir is not None else default_model_dir()
    if model_dir is None and not (d / MANIFEST_NAME).is_file():
        raise ModelBundleError(f"the bundled default model is not installed ({d}); pass a model folder")
    return d


def _load_model(model_dir, device: str) -> OnnxCodecModel:
    model = OnnxCodecModel(_compress_model_dir(model_dir), device=device)
    model.check_can_encode()  # before anything is written
    return model


def _checked_options(opts: CompressOptions) -> RateTarget:
    """The options' rate target, once the tile size, the outlier margin and the rate are in range."""
    error = tile_size_error(opts.tile_size)
    if error:
        raise SarCompressError(error)
    if opts.outlier_margin_db is not None and not (math.isfinite(opts.outlier_margin_db)
                                                   and 0 <= opts.outlier_margin_db <= MAX_ABS_DB):
        raise SarCompressError(f"outlier margin {opts.outlier_margin_db} must be a number of dB between 0 and "
                               f"{MAX_ABS_DB:g}")
    return RateTarget.from_options(opts.quality, opts.target_bpp, opts.target_db_rmse)


def check_compress_options(opts: CompressOptions) -> None:
    """Raise SarCompressError for options `compress` would refuse whatever the input: the tile size, the outlier
    margin, the rate (a finite quality within the model's levels, a finite positive target), and a model folder
    that is no bundle or one kept only to decode. Reads the bundle's manifest only (no ONNX session), so a batch
    can refuse them in one line before it starts a cluster: every scene failed alike, with a report whose JSON
    held NaN for `--quality nan`."""
    target = _checked_options(opts)
    d = _compress_model_dir(opts.model_dir)
    m = load_manifest(d, verify=False)
    check_manifest_can_encode(m, d)
    check_manifest_quality(m, target.quality)


def compress(input_path, output_path, options: CompressOptions | None = None, progress: Progress = None,
             is_cancelled: Cancelled = None) -> CompressResult:
    """Compress a raster into a .sarc file; see the module docstring for what is stored how."""
    t0 = time.perf_counter()
    started = time.time()
    opts = options or CompressOptions()
    out = check_output_path(output_path, inputs=(input_path,), no_clobber=opts.no_clobber)
    remove_stale_partials(out, older_than=started)
    if out.suffix.lower() in (".tif", ".tiff"):  # a loop `sar-compress $f out/$f` over *.tif would fill an
        # archive with .sarc files that every GIS takes for GeoTIFFs and then fails to open
        raise OutputPathError(f"{out}: a .sarc file named {out.suffix} would pass for a GeoTIFF; name it .sarc")
    target = _checked_options(opts)
    # before the first read: a source changed while it is read looks changed
    source = source_stamp(input_path) if opts.stamp_source else None
    with RasterReader(input_path, opts.nodata) as reader, single_threaded_blas():
        info = reader.info
        if info.band_count > C.MAX_BANDS:
            raise InputRasterError(f"{input_path}: {info.band_count} bands; a .sarc file holds at most "
                                   f"{C.MAX_BANDS}")
        names = list(opts.band_names) if opts.band_names else list(info.band_names)
        if len(names) != info.band_count:
            raise InputRasterError(f"{input_path}: {len(names)} band names given for {info.band_count} bands")
        error = zero_scale_error(input_path, [info.scaling(b) for b in range(info.band_count)])
        if error:
            raise InputRasterError(error)
        samples = [_band_samples(reader, b, info.nodata[b]) for b in range(info.band_count)]
        # the user's domain or a tag speaks for every band; one inferred from band 1's values may not
        stated = ((canonical_domain(opts.domain), "given by the user") if opts.domain
                  else tagged_domain(info.metadata))
        if stated is not None:
            (domain, why), told = stated, set()
        else:
            domain, why = explain_domain(info.dtype, samples[0], info.scaling(0) is not None)
            told = _warn_other_domains(input_path, info, samples, domain, why)
        log.info("%s: value domain %s (%s)", input_path, domain, why)
        unscaled = [b + 1 for b in range(info.band_count) if info.scaling(b) is None and b + 1 not in told]
        if np.dtype(info.dtype).kind in "iu" and domain == "db" and unscaled:
            log.warning("%s: integer raster treated as dB%s", input_path, "" if len(unscaled) == info.band_count
                        else f" (band {', '.join(map(str, unscaled))} without a scale or offset)")
        model = _load_model(opts.model_dir, opts.device)
        pp = replace(model.preprocessing, input_domain=domain)
        percentiles = tuple(pp.clip_percentiles) or DEFAULT_PERCENTILES
        bounds = []
        for b, s in enumerate(samples):
            db, valid = to_db(s, domain, None, pp.noise_floor_db)  # the nodata pixels are out of the sample
            if not valid.any():
                hint = ""
                if domain != "db" and (np.nan_to_num(s, nan=0.0) < 0).any():
                    hint = f"; its values are negative: if they are dB, {DB_DOMAIN_ADVICE} (domain was {domain})"
                raise InputRasterError(f"{input_path}: band {b + 1} has no valid pixels (all nodata, masked or "
                                       f"invalid){hint}")
            lo, hi = percentile_bounds(db, valid, percentiles)
            # the reader's schema bound: float32 must still resolve the clip range (a constant 1e20 "dB" band
            # would give lo == hi in float32 and a file nobody can read). Checked on the dB before the noise
            # floor's clamp too, which would flatten a band of -1e7 "dB" to -100 dB without a word.
            t_lo, t_hi = (float(v) for v in np.percentile(_true_db(s[valid], domain), percentiles))
            if not (max(abs(lo), abs(hi), abs(t_lo), abs(t_hi)) <= MAX_ABS_DB and np.float32(hi) > np.float32(lo)):
                raise InputRasterError(f"{input_path}: band {b + 1} spans {min(lo, t_lo):.4g}..{max(hi, t_hi):.4g} "
                                       f"dB in domain {domain}, beyond the +-{MAX_ABS_DB:g} dB a .sarc file holds; "
                                       f"{DOMAIN_DOUBT}")
            bounds.append((lo, hi))
        del samples
        grid = TileGrid(info.width, info.height, opts.tile_size, model.halo, model.factor)
        rate = choose_quality(target, model, reader, grid, domain, bounds, pp, opts.rd_rounding,
                              lambda: _check_cancel(is_cancelled, str(input_path)))
        rate["rounding"] = ("rate_distortion" if opts.rd_rounding and model.distortion_weights is not None
                            else "nearest")
        partial = PartialFile(out, no_clobber=opts.no_clobber)
        try:
            with C.open_for_write(partial.path) as f:
                stats = _write_tiles(f, reader, model, grid, rate, pp, domain, bounds, names, opts, progress,
                                     is_cancelled, str(input_path), source)
                f.flush()
                os.fsync(f.fileno())
            _check_cancel(is_cancelled, str(input_path))  # a cancel during the last tile or the header
            partial.publish()
        except OSError as exc:  # a full disk (ENOSPC), a quota, a vanished folder: one error line, no traceback
            raise OutputPathError(f"{out}: cannot write ({exc.strerror or exc}); nothing written") from None
        finally:
            partial.discard()
            partial.close()
    size = out.stat().st_size
    pixels = info.width * info.height
    bpp = 8.0 * size / pixels
    return CompressResult(output_path=str(out), input_raw_bytes=info.raw_bytes, output_bytes=size, pixels=pixels,
                          bands=info.band_count, bpp=bpp, bpp_per_band=bpp / info.band_count,
                          ratio=info.raw_bytes / size, seconds=time.perf_counter() - t0, provider=model.provider,
                          outlier_pixels=stats["outlier_pixels"], clip_db=[list(b) for b in bounds], domain=domain,
                          quality=rate["quality"], domain_reason=why)


def _write_tiles(f, reader, model, grid, rate, pp, domain, bounds, names, opts, progress, is_cancelled, src,
                 source):
    info = reader.info
    coder: HyperpriorCoder = model.hyperprior
    gain = coder.gain(rate["quality"])
    rounding = model.rounding_weights(rate["quality"]) if rate["rounding"] == "rate_distortion" else None
    nb, dtype = info.band_count, np.dtype(info.dtype)
    version = C.version_for(any(info.scaling(b) is not None for b in range(nb)))
    writer = C.ContainerWriter(f, version)
    n_entries = grid.count * nb
    index = {"latent": [None] * n_entries, "mask": [None] * n_entries, "outlier": [None] * n_entries}
    outlier_pixels = invalid_pixels = 0
    margin = (outlier_margin_db(rate["quality"], model.lambdas)
              if opts.outlier_margin_db is None else float(opts.outlier_margin_db))
    ostep = float(opts.outlier_step_db)
    with_overview = wants_overview(info.width, info.height) if opts.overview is None else bool(opts.overview)
    overview = OverviewBuilder(info.width, info.height, nb, bounds) if with_overview else None
    f16 = grid.factor

    def tile_inputs():  # this thread reads the raster, in tile order
        for i in grid:
            _check_cancel(is_cancelled, src)
            cc0, cr0, cw, ch = grid.core_in_raster(i)
            xs, cores = [], []
            ctx = None
            for b in range(nb):
                raw, ctx = read_context(lambda c, r, w, h, b=b: reader.read(b, c, r, w, h), grid, i)
                mask = (read_context(lambda c, r, w, h, b=b: reader.read_valid(b, c, r, w, h), grid, i)[0]
                        if reader.has_mask(b) else None)
                values, nodata = reader.physical(b, raw)
                db, valid = to_db(values, domain, nodata, pp.noise_floor_db, mask)
                xs.append(normalise(db, *bounds[b]))
                core = (slice(cr0 - ctx[1], cr0 - ctx[1] + ch), slice(cc0 - ctx[0], cc0 - ctx[0] + cw))
                cores.append((raw[core], values[core], db[core], valid[core]))
            yield i, np.stack(xs)[:, None], ctx, cores

    def analyse(item):  # on a network worker: the latents and side information of every band of one tile
        i, x, ctx, cores = item
        pc0, pr0, pw, ph = grid.core(i)
        y = model.encode(x)
        ly0, lx0 = (pr0 - ctx[1]) // f16, (pc0 - ctx[0]) // f16
        ys = [y[b, :, ly0:ly0 + ph // f16, lx0:lx0 + pw // f16] * gain for b in range(nb)]
        return i, cores, [(v, model.hyper_encode(v)) for v in ys]

    _tick(progress, 0.0)
    with thread_pool(model.workers, "sarc-encoder") as networks:
        for i, cores, latents in ordered_map(networks, analyse, tile_inputs(), ahead=model.workers + 1):
            cc0, cr0, _, _ = grid.core_in_raster(i)
            for b, (ys, z) in enumerate(latents):
                k = b * grid.count + i
                index["latent"][k] = writer.add_chunk(coder.encode(ys, z, rounding)[0])
                raw, values, db, valid = cores[b]
                if overview is not None:
                    overview.add(b, cc0, cr0, db, valid)
                if not valid.all():
                    fill = _fill_value(dtype, info.nodata[b])
                    exc = np.flatnonzero(~valid & ~_same_bits(raw, fill))
                    index["mask"][k] = writer.add_chunk(C.encode_mask(valid, exc, raw.ravel()[exc]))
                    invalid_pixels += int((~valid).sum())
                lo, hi = bounds[b]
                dbf = db.ravel()
                pos = np.flatnonzero(((dbf < lo - margin) | (dbf > hi + margin)) & valid.ravel())
                if pos.size:
                    tdb = dbf[pos].astype(np.float64)
                    floor = tdb <= pp.noise_floor_db  # to_db clamps there; outliers keep their true value
                    if floor.any():
                        tdb[floor] = _true_db(values.ravel()[pos[floor]], domain)
                    vals = np.clip(np.rint(tdb / ostep), -2**31 + 1, 2**31 - 1).astype(np.int32)
                    index["outlier"][k] = writer.add_chunk(C.encode_outliers(pos, vals))
                    outlier_pixels += int(pos.size)
            _tick(progress, (i + 1) / grid.count)
    header = {
        "format": "sarc",
        "format_version": version,
        "software": SOFTWARE,
        "coders": {"latent": C.LATENT_CODER, "mask": C.MASK_CODER, "outlier": C.OUTLIER_CODER},
        "model": {"name": model.name, "variant": model.variant, "decoder_sha256": model.decoder_sha256,
                  "encoder_sha256": model.encoder_sha256, "latent_channels": model.latent_channels,
                  "downsampling_factor": model.factor, "halo": model.halo},
        "preprocessing": pp.to_dict(),
        "domain": domain,
        "clip_db": [[float(lo), float(hi)] for lo, hi in bounds],
        "outliers": {"margin_db": margin, "step_db": ostep, "pixels": outlier_pixels},
        "invalid_pixels": invalid_pixels,
        "rate": rate,
        "hyperprior": {"sha256": coder.sha256},
        "raster": {"width": info.width, "height": info.height, "band_count": nb, "dtype": info.dtype,
                   "band_names": [str(n) for n in names], "crs_wkt": info.crs_wkt,
                   "geotransform": list(info.geotransform), "nodata": [C.encode_nodata(v) for v in info.nodata],
                   "metadata": dict(info.metadata),
                   "bands": [{**band, **({"coded": "physical"} if info.scaling(b) is not None else {})}
                             for b, band in enumerate(info.bands)],
                   **({"gdal_mask": info.gdal_mask} if info.gdal_mask else {}),
                   **({"alpha_band": info.alpha_band} if info.alpha_band else {}),
                   **({"gcps": info.gcps} if info.gcps else {})},
        "tiling": {"tile_size": grid.tile_size, "halo": grid.halo, "factor": grid.factor,
                   "cols": grid.cols, "rows": grid.rows, "method": "latent-overlap"},
        "chunks": index,
    }
    if source is not None:
        header["source"] = source
    if overview is not None:
        header["overview"] = overview.finish(writer)
    writer.finish(header, src)
    return {"outlier_pixels": outlier_pixels, "invalid_pixels": invalid_pixels}


# --- reading ----------------------------------------------------------------------------------------------

def read_header(path) -> dict:
    """The header of a .sarc file (checked: magic, version, footer, header CRC, index bounds)."""
    with C.ContainerReader(path) as r:
        return r.header


def _window_integers(window, path) -> Window:
    try:
        c, r, w, h = (int(v) for v in window)
        if any(int(v) != v for v in window):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InputRasterError(f"{path}: window {window!r} must be four integers (col, row, width, height)") from None
    return c, r, w, h


def _describe(window: Window) -> str:
    c, r, w, h = window
    return f"(col={c}, row={r}, width={w}, height={h})"


def _check_window(window, width: int, height: int, path) -> Window:
    c, r, w, h = _window_integers(window, path)
    if w <= 0 or h <= 0 or c < 0 or r < 0 or c + w > width or r + h > height:
        raise InputRasterError(f"{path}: window {_describe((c, r, w, h))} is outside the {width} x {height} "
                               f"raster")
    return c, r, w, h


def clip_window(header: dict, window, path="", note=None) -> Window:
    """The part of a pixel window (col, row, width, height) inside the raster, as `window_from_bbox` gives for a
    box: an analyst asking for an area at a scene's edge wants the part of the scene that is there, and asking by
    pixels or by map coordinates must not decide whether that is refused. `note(text)` is told what was cut off,
    so that a window shifted by a typo does not pass unnoticed; a window with nothing inside is an error giving
    the raster's size. (`reconstruct` and `CompressedRaster.read` take only windows inside the raster: a
    program asking for pixels that are not there has a bug.)"""
    width, height = header["raster"]["width"], header["raster"]["height"]
    c, r, w, h = _window_integers(window, path)
    if w <= 0 or h <= 0:
        raise InputRasterError(f"{path}: window {_describe((c, r, w, h))} must have a positive width and height")
    c0, r0, c1, r1 = max(0, c), max(0, r), min(width, c + w), min(height, r + h)
    if c1 <= c0 or r1 <= r0:
        raise InputRasterError(f"{path}: window {_describe((c, r, w, h))} is outside the {width} x {height} "
                               f"raster")
    inside = (c0, r0, c1 - c0, r1 - r0)
    if note is not None and inside != (c, r, w, h):
        note(f"window {_describe((c, r, w, h))} reaches past the {width} x {height} raster; clipped to "
             f"{_describe(inside)}")
    return inside


def map_crs_wkt(raster: dict) -> str:
    """The CRS of a header's `raster` on the map, in which `window_from_bbox` takes a box: that of its ground
    control points where they place it (its own is then empty)."""
    return (raster.get("gcps") or {}).get("crs_wkt") or raster.get("crs_wkt") or ""


def crs_name(wkt: str) -> str:
    """A CRS as a person names it ("WGS 84 / UTM zone 33N": the first quoted string of WKT 1 or 2): a box in
    the wrong CRS is the usual reason a box misses a raster, and the whole WKT is too long for one line."""
    if not wkt.strip():
        return "none"
    name = re.match(r'\s*\w+\[\s*"([^"]*)"', wkt)
    return name.group(1) if name else "unnamed"


def geotransform_extent(geotransform, width: int, height: int) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a raster's four corners on the map, rotated or sheared as it may be."""
    g0, g1, g2, g3, g4, g5 = geotransform
    xs = [g0 + c * g1 + r * g2 for c in (0, width) for r in (0, height)]
    ys = [g3 + c * g4 + r * g5 for c in (0, width) for r in (0, height)]
    return min(xs), min(ys), max(xs), max(ys)


def _on_pixel_edge(v: float) -> float:
    """A pixel coordinate within rounding of a pixel edge taken as that edge: a box drawn on pixel edges (or
    touching the raster's side) must not take in the next pixel row because the inverse geotransform rounded
    it to 99.9999999 or 0.000000001."""
    return round(v) if abs(v - round(v)) < 1e-6 else v


def _inside_part(polygon: list, width: int, height: int) -> list:
    """The part of a convex polygon in pixel coordinates inside the raster's rectangle (Sutherland-Hodgman):
    with a rotated geotransform the pixels under a box are those of this part, not of the box's whole pixel
    rectangle, whose corners may lie on the raster while the box misses it."""
    for axis, edge, side in ((0, 0, 1), (0, width, -1), (1, 0, 1), (1, height, -1)):
        kept = []
        for a, b in zip(polygon, polygon[1:] + polygon[:1]):
            da, db = side * (a[axis] - edge), side * (b[axis] - edge)
            if da >= 0:
                kept.append(a)
            if da * db < 0:
                t = da / (da - db)
                kept.append(tuple(edge if i == axis else a[i] + t * (b[i] - a[i]) for i in (0, 1)))
        polygon = kept
    return polygon


def window_from_bbox(header: dict, bbox, path="", note=None) -> Window:
    """Pixel window covering a map-coordinate box (xmin, ymin, xmax, ymax) in `map_crs_wkt`, clipped to the
    raster as `clip_window` clips (why: there); `note(text)` is told what was cut off. A box that only touches
    the raster has no pixel under it: it does not overlap. A rotated or sheared geotransform is inverted
    exactly, as GDAL places the pixels. A raster placed by ground control points is mapped through them as
    QGIS places it (`GcpGrid`, to within its grid's cells): its geotransform is then GDAL's placeholder, pixel
    coordinates."""
    r = header["raster"]
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InputRasterError(f"{path}: bbox {bbox!r} must be four numbers") from None
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise InputRasterError(f"{path}: bbox {tuple(bbox)} must be four finite numbers")
    xmin, xmax, ymin, ymax = *sorted((xmin, xmax)), *sorted((ymin, ymax))
    if r.get("gcps"):
        grid = GcpGrid(r["gcps"], r["width"], r["height"], path)
        inside = grid.window((xmin, ymin, xmax, ymax))
        x0, y0, x1, y1 = grid.bounds
        clipped = not (x0 <= xmin and xmax <= x1 and y0 <= ymin and ymax <= y1)
    else:
        g0, g1, g2, g3, g4, g5 = r["geotransform"]
        det = g1 * g5 - g2 * g4
        if not det or not math.isfinite(det):
            raise InputRasterError(f"{path}: its geotransform {tuple(r['geotransform'])} is degenerate (it puts "
                                   f"every pixel on one line), so no map box can be placed on its pixels")
        i1, i2, i4, i5 = g5 / det, -g2 / det, -g4 / det, g1 / det  # the inverse's terms: 1e308 boxes stay finite
        box = [(i1 * (x - g0) + i2 * (y - g3), i4 * (x - g0) + i5 * (y - g3))
               for x, y in ((xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax))]
        if not all(math.isfinite(v) for p in box for v in p):  # e.g. -1e308 - xmin overflows
            raise InputRasterError(f"{path}: bbox {tuple(bbox)} is too far from the raster to map to pixels")
        box = [(_on_pixel_edge(c), _on_pixel_edge(row)) for c, row in box]
        part = list(zip(*_inside_part(box, r["width"], r["height"]))) or [(0.0,), (0.0,)]  # cols, rows
        c0, r0 = (math.floor(_on_pixel_edge(min(v))) for v in part)
        c1, r1 = (math.ceil(_on_pixel_edge(max(v))) for v in part)
        inside = (c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None
        x0, y0, x1, y1 = geotransform_extent(r["geotransform"], r["width"], r["height"])
        clipped = not all(0 <= c <= r["width"] and 0 <= row <= r["height"] for c, row in box)
    extent = f"x {x0:.10g}..{x1:.10g}, y {y0:.10g}..{y1:.10g}"
    if inside is None:  # most often a box in another CRS (degrees for a UTM raster): say which one
        raise NoOverlapError(f"{path}: bbox {tuple(bbox)} does not overlap the raster, which spans {extent} in "
                             f"its CRS ({crs_name(map_crs_wkt(r))}); give the box in that CRS")
    if note is not None and clipped:
        note(f"bbox {tuple(bbox)} reaches past the raster ({extent}); clipped to the pixel window "
             f"{_describe(inside)}")
    return inside


class CompressedRaster:
    """Random access to a .sarc file: reconstructs only the tiles a window needs.

    Holds one open file handle and, once the first pixels are read, the decoder session. Picklable: a copy
    reopens the file (and reloads the model) in its own process, so windows can be farmed out to workers.
    """

    def __init__(self, path, model_dirs=None, device: str = "auto", verify: bool = False):
        self.path = Path(path)
        self._model_dirs = [Path(d) for d in (model_dirs or [])]
        self._device = device
        self._verify = verify
        self._open()

    def _open(self) -> None:
        self._reader = C.ContainerReader(self.path)
        if self._verify:
            try:
                self._reader.verify()
            except BaseException:  # a damaged body: the reader's file handle must not outlive the error
                self.close()
                raise
        h = self.info = self._reader.header
        r = h["raster"]
        try:
            self.width, self.height, self.bands = r["width"], r["height"], r["band_count"]
            self.dtype = np.dtype(r["dtype"])
            self.domain = canonical_domain(h["domain"])
            self.nodata = [C.decode_nodata(v) for v in r["nodata"]]
            #: per band, (scale, offset) when the band was coded as physical values (raster_io.physical_values:
            #: header `raster.bands[b].coded` is "physical"), else None: decoded values are turned back into
            #: stored ones, (v - offset) / scale, which a reconstruction writes under that scale and offset.
            #: Files written before the codec read scale and offset coded the stored values: None, as they were.
            self.scaling = coded_scaling(h)
            #: how the source marked invalid pixels beyond nodata (raster_io.RasterInfo.gdal_mask); "" for none
            self.gdal_mask = str(r.get("gdal_mask") or "")
            self.quality = float(h["rate"]["quality"])
            self.pp = PreprocessingParams.from_dict(h.get("preprocessing") or {})
            t = h["tiling"]
            self.grid = TileGrid(self.width, self.height, t["tile_size"], t["halo"], t.get("factor", 16))
            self.channels = int(h["model"]["latent_channels"])
            self._hyperprior_sha256 = str(h["hyperprior"]["sha256"]).lower()
            self.outlier_step = float(h.get("outliers", {}).get("step_db", OUTLIER_STEP_DB))
            if not (math.isfinite(self.outlier_step) and self.outlier_step > 0):
                raise ValueError("outlier step")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
                SarCompressError) as exc:
            self.close()
            raise C.ContainerFormatError(f"{self.path}: header field is invalid ({exc})") from None
        self._model: OnnxCodecModel | None = None
        self._inverse_gain: np.ndarray | None = None
        self._cache: OrderedDict = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = 3 * (self.grid.cols + 2)

    # pickling: reopen in the receiving process
    def __getstate__(self):
        return {"path": self.path, "model_dirs": self._model_dirs, "device": self._device, "verify": self._verify}

    def __setstate__(self, state):
        self.path, self._model_dirs = state["path"], state["model_dirs"]
        self._device, self._verify = state["device"], state["verify"]
        self._open()

    @property
    def body_sha256(self) -> str:
        """The SHA-256 of the file's body as its footer records it (hex; no read of the body): the file's
        identity, which a copy keeps and a rewrite changes."""
        return self._reader.body_sha256.hex()

    @property
    def bytes_read(self) -> int:
        """Bytes read from the file so far (header included): what random access costs."""
        return self._reader.bytes_read

    @property
    def model(self) -> OnnxCodecModel:
        if self._model is None:
            self._model = OnnxCodecModel(find_file_bundle(self.info, self._model_dirs), device=self._device)
        return self._model

    @property
    def provider(self) -> str:
        return self.model.provider

    def _check_bundle_file(self, what: str, wanted_sha256: str, have) -> None:
        """The decoder's bundle must hold the very file (by SHA-256) this file was coded with."""
        if have is None or have.sha256 != wanted_sha256:
            raise ModelMismatchError(f"{self.path}: needs {what} with SHA-256 {wanted_sha256} "
                                     f"beside decoder {self.info['model']['decoder_sha256'][:12]}..., but bundle "
                                     f"{self.model.bundle_dir} has "
                                     f"{'none' if have is None else have.sha256[:12] + '...'}")

    def _hyperprior(self) -> HyperpriorCoder:
        """The integer hyper-decoder and tables this file was coded with: from the decoder's bundle, by SHA-256."""
        hp = self.model.hyperprior
        self._check_bundle_file("a hyperprior", self._hyperprior_sha256, hp)
        if self._inverse_gain is None:
            try:
                hp.check_quality(self.quality)
            except SarCompressError:
                raise ModelMismatchError(f"{self.path}: quality {self.quality} is outside the range of the "
                                         f"model's {hp.levels} levels") from None
            self._inverse_gain = hp.inverse_gain(self.quality)
        return hp

    def verify(self) -> None:
        self._reader.verify()

    def overview(self, band: int) -> np.ndarray | None:
        """The stored low-resolution overview of one band (float32 dB, NaN = no valid pixel; factor in
        `info["overview"]`), or None for a file written without one."""
        return read_overview(self._reader, band)

    def to_raster_values(self, db: np.ndarray, band: int) -> np.ndarray:
        """dB values (NaN = invalid) in the file's domain and dtype (as stored: `scaling`), invalid as the band's
        fill value."""
        out = self._cast(from_db(np.nan_to_num(db, nan=0.0).astype(np.float64), self.domain), band)
        out[np.isnan(db)] = _fill_value(self.dtype, self.nodata[band])
        return out

    def latents(self, band: int, tile: int) -> np.ndarray:
        """The decoder network's input for one tile (channels, rows, cols) float32: the decoded symbols plus the
        hyperprior's means, times the quality's inverse gains."""
        key = (band, tile)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        what = f"{self.path}: tile {tile} band {band + 1}"
        data = self._reader.read_chunk(self.info["chunks"]["latent"][band * self.grid.count + tile], what)
        shape = (self.channels, *self.grid.latent_shape(tile))
        q = self._hyperprior().decode(data, shape, what) * self._inverse_gain
        with self._cache_lock:
            self._cache[key] = q
            if len(self._cache) > self._cache_size * self.bands:
                self._cache.popitem(last=False)
        return q

    def _prefetch(self, tile: int, bands) -> None:
        """Entropy-decode every latent chunk the decoder network needs for `tile` into the cache."""
        for b in bands:
            for t in latent_block(self.grid, tile, self.model.decoder_reach)[1]:
                self.latents(b, t)

    def decode_tile(self, band: int, tile: int) -> np.ndarray:
        """One tile's core (real pixels only), in the original domain and dtype, as stored (`scaling`)."""
        g, f = self.grid, self.grid.factor
        (lc0, lr0, lw, lh), tiles = latent_block(g, tile, self.model.decoder_reach)
        block = np.zeros((self.channels, lh, lw), dtype=np.float32)
        for t in tiles:
            pc, pr, pw, ph = g.core(t)
            tc, tr = pc // f, pr // f
            q = self.latents(band, t)
            x0, y0 = max(lc0, tc), max(lr0, tr)
            x1, y1 = min(lc0 + lw, tc + pw // f), min(lr0 + lh, tr + ph // f)
            block[:, y0 - lr0:y1 - lr0, x0 - lc0:x1 - lc0] = q[:, y0 - tr:y1 - tr, x0 - tc:x1 - tc]
        x = np.clip(self.model.decode(block[None])[0, 0], 0.0, 1.0)
        c0, r0, w, h = g.core_in_raster(tile)
        xc = x[r0 - lr0 * f:r0 - lr0 * f + h, c0 - lc0 * f:c0 - lc0 * f + w]
        lo, hi = self.info["clip_db"][band]
        work = self._work_dtype(band)
        db = denormalise(xc, lo, hi).astype(work)
        k = band * g.count + tile
        what = f"{self.path}: tile {tile} band {band + 1}"
        entry = self.info["chunks"]["outlier"][k]
        if entry is not None:
            pos, vals = C.decode_outliers(self._reader.read_chunk(entry, what), w * h, what)
            db.ravel()[pos] = vals.astype(np.float64) * self.outlier_step
        values = from_db(db, self.domain, work)
        out = self._cast(values, band)
        entry = self.info["chunks"]["mask"][k]
        if entry is not None:
            valid, pos, vals = C.decode_mask(self._reader.read_chunk(entry, what), (h, w), self.dtype, what)
            out[~valid] = _fill_value(self.dtype, self.nodata[band])
            out.ravel()[pos] = vals
        return out

    def dataset_valid(self, tile: int) -> np.ndarray:
        """Where a tile's core (real pixels only) holds a valid pixel in at least one band (bool): the
        per-dataset mask a reconstruction writes for a source whose invalid pixels a GDAL mask marked."""
        _, _, w, h = self.grid.core_in_raster(tile)
        valid = np.zeros((h, w), dtype=bool)
        what = f"{self.path}: tile {tile}"
        for band in range(self.bands):
            entry = self.info["chunks"]["mask"][band * self.grid.count + tile]
            if entry is None:  # this band is valid over the whole tile
                return np.ones((h, w), dtype=bool)
            valid |= C.decode_mask(self._reader.read_chunk(entry, what), (h, w), self.dtype, what)[0]
        return valid

    def _work_dtype(self, band: int) -> np.dtype:
        """The float precision a tile's dB and values are computed in: float32 when the output holds no more
        (float32, 8- and 16-bit integers), float64 for float64 and 32-bit integer outputs and for a band coded
        through a scale and offset (an offset may hold most of a value's digits)."""
        dt = self.dtype
        return np.dtype(np.float32) if self.scaling[band] is None and (
            dt == np.float32 or (dt.kind in "iu" and dt.itemsize <= 2)) else np.dtype(np.float64)

    def _cast(self, values: np.ndarray, band: int) -> np.ndarray:
        """Decoded values of `band` in the file's dtype: through its `scaling` back to stored values, then for
        integers rounded and clipped so that a valid pixel stays valid (> 0 in a linear domain, after the
        scaling; and, through a scaling, off the band's nodata value)."""
        dt, scaling = self.dtype, self.scaling[band]
        if scaling is not None:  # (an extreme scale overflows to inf, clipped below: no RuntimeWarning lines)
            with np.errstate(over="ignore", invalid="ignore"):
                values = (np.asarray(values, dtype=np.float64) - scaling[1]) / scaling[0]
        if dt.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                out = values.astype(dt)
            return out if scaling is None or self.domain == "db" else _keep_positive(out, scaling)
        ii = np.iinfo(dt)
        lo, hi = ii.min, ii.max
        if self.domain != "db":  # a valid linear pixel must stay > 0
            lo, hi = _positive_stored_range(lo, hi, scaling)
        out = np.clip(np.rint(values), lo, hi).astype(dt)
        nodata = self.nodata[band]
        if scaling is not None and nodata is not None and np.isfinite(nodata) and lo <= nodata <= hi:
            # a pixel rounded onto the nodata value would read as nodata: the next stored value towards its own
            hit = out == nodata
            if hit.any():
                up = values[hit] > nodata
                up = np.where(nodata + 1 > hi, False, np.where(nodata - 1 < lo, True, up))
                out[hit] = np.where(up, nodata + 1, nodata - 1).astype(dt)
        return out

    def iter_tiles(self, window: Window | None = None, bands=None):
        """(band, tile, core window in raster, pixels) for each tile overlapping `window`, streaming."""
        win = (0, 0, self.width, self.height) if window is None else _check_window(window, self.width,
                                                                                   self.height, self.path)
        bands = list(range(self.bands) if bands is None else bands)
        for t, pixels in self.decode_tiles(self.grid.tiles_overlapping(win), bands):
            for b, px in zip(bands, pixels):
                yield b, t, self.grid.core_in_raster(t), px

    def decode_tiles(self, tiles, bands):
        """(tile, [pixels of each of `bands`]) for each of `tiles`, in their order, streaming.

        One thread entropy-decodes the latents (numpy and the range coder) tile after tile, while the
        decoder network runs on the tiles already decoded, on the model's workers (core/pipeline.py): on 2
        cores the two overlap instead of adding up, provided numpy's BLAS stays on one thread
        (core/blas_threads.py). Closing the generator early drops the tiles not started.
        """
        self._hyperprior()  # resolve the bundle (and its errors) in this thread
        model = self.model

        def decode(item):
            tile, latents_ready = item
            latents_ready.result()
            return tile, [self.decode_tile(b, tile) for b in bands]

        with single_threaded_blas(), thread_pool(1, "sarc-entropy") as entropy, \
                thread_pool(model.workers, "sarc-decoder") as networks:
            queued = ((t, entropy.submit(self._prefetch, t, bands)) for t in tiles)
            yield from ordered_map(networks, decode, queued, ahead=model.workers + 1)

    def read(self, window: Window | None = None, band: int | None = None) -> np.ndarray:
        """Pixels of `window` (col, row, width, height): (bands, h, w), or (h, w) for one 0-based band."""
        win = (0, 0, self.width, self.height) if window is None else _check_window(window, self.width,
                                                                                   self.height, self.path)
        if band is not None and not (isinstance(band, (int, np.integer)) and 0 <= band < self.bands):
            raise InputRasterError(f"{self.path}: band {band} does not exist ({self.bands} bands, 0-based)")
        bands = list(range(self.bands)) if band is None else [int(band)]
        c, r, w, h = win
        out = np.empty((len(bands), h, w), dtype=self.dtype)
        for b, _t, (tc, tr, tw, th), px in self.iter_tiles(win, bands):
            x0, y0, x1, y1 = max(c, tc), max(r, tr), min(c + w, tc + tw), min(r + h, tr + th)
            out[bands.index(b), y0 - r:y1 - r, x0 - c:x1 - c] = px[y0 - tr:y1 - tr, x0 - tc:x1 - tc]
        return out[0] if band is not None else out

    def close(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()
        self._model = None
        self._cache = OrderedDict()

    def __enter__(self) -> "CompressedRaster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def coded_scaling(header: dict) -> list[tuple[float, float] | None]:
    """Per band of a .sarc header, (scale, offset) when the band was coded as physical values (`raster.bands[b]`
    `coded` is "physical"), else None (no scale or offset, or a file from before the codec read them, which
    coded the stored values). Raises ValueError naming the band for a `coded` this codec does not know (a
    reader that took it for stored values would write wrong pixels without a word) and for a scale of 0 (no
    value comes back through it), as the reconstruction and sar-info both refuse such a file."""
    r = header["raster"]
    bands = list(r.get("bands") or [])
    return [_coded_scaling(bands[b], b) if b < len(bands) else None for b in range(r["band_count"])]


def _coded_scaling(band: dict, index: int) -> tuple[float, float] | None:
    """(scale, offset) of a header's `raster.bands` entry whose values were coded physical, else None."""
    coded = band.get("coded") if isinstance(band, dict) else None
    if coded is None:
        return None
    if coded != "physical":
        raise ValueError(f"band {index + 1} is coded {coded!r}, which this codec does not know (only 'physical')")
    scaling = band_scaling(band)
    if scaling is not None and not (scaling[0] != 0 and all(math.isfinite(v) for v in scaling)):
        raise ValueError(f"band {index + 1} is coded physical with scale {scaling[0]:g} and offset "
                         f"{scaling[1]:g}, through which no stored value comes back")
    return scaling


def _positive_stored_range(lo: int, hi: int, scaling) -> tuple[int, int]:
    """The stored integers within lo..hi whose physical value is > 0: from 1 without a scaling; through one,
    those above (scale > 0) or below (scale < 0) -offset / scale. Left at lo..hi when none is.

    The steps from the edge only correct its rounding (within its float64 precision). An edge beyond float64 (a
    tiny scale under a large offset) means the offset alone decides every value's sign: all are positive or none
    is, lo..hi either way; stepping towards it walked the 2^32 values of an int32 band one by one."""
    if scaling is None:
        return max(lo, 1), hi
    scale, offset = scaling
    edge = -offset / scale
    if not math.isfinite(edge):
        return lo, hi
    if scale > 0:
        first = math.floor(edge) + 1 if edge > lo else lo
        while first <= hi and first * scale + offset <= 0:  # rounding of -offset / scale
            first += 1
        return (first, hi) if first <= hi else (lo, hi)
    last = math.ceil(edge) - 1 if edge < hi else hi
    while last >= lo and last * scale + offset <= 0:
        last -= 1
    return (lo, last) if last >= lo else (lo, hi)


def _keep_positive(out: np.ndarray, scaling) -> np.ndarray:
    """Float stored values whose physical value (`stored * scale + offset`, float64) is <= 0, moved by ulps
    towards a positive one: a large offset may leave a small linear value no room in the stored float."""
    scale, offset = scaling
    towards = np.array(math.copysign(np.inf, scale), dtype=out.dtype)
    for _ in range(64):
        bad = ~(out.astype(np.float64) * scale + offset > 0) & np.isfinite(out)
        if not bad.any():
            break
        out[bad] = np.nextafter(out[bad], towards)
    return out


def _warn_per_band_nodata(nodata, out) -> None:
    """A GeoTIFF holds one nodata value for all its bands (GDAL writes the last one set for every band), so a
    source whose bands had different ones (a VRT, an ENVI or HDF product) came back with every band claiming the
    last band's value: pixels of another band that happen to hold it turn into nodata, and that band's own
    nodata pixels into data, without a word. The pixel values are restored exactly either way; the warning
    tells which tag the file could not keep."""
    kinds = [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in nodata]
    if len(set(kinds)) <= 1:
        return
    last = next((v for v in reversed(kinds) if v is not None), None)
    lost = ", ".join(f"band {i + 1} {'none' if v is None else v}" for i, v in enumerate(kinds) if v != last)
    log.warning("%s: the bands had different nodata values, which a GeoTIFF cannot hold: every band is tagged "
                "nodata %s (was: %s); the pixel values themselves are restored as they were", out, last, lost)


def refuse_to_replace_data(output_path, replacing: str = "reconstruction",
                           remedy: str = "choose another output name") -> None:
    """OutputPathError when `output_path` is a raster GDAL reads that the output would destroy: for a
    `replacing="reconstruction"`, one that carries neither reconstruction tag; for a `replacing="sarc"` (a
    .sarc file, which GDAL never reads), any. Such a raster is someone's data, most often the very original
    the .sarc was made from (`sar-reconstruct scene.sarc scene.tif` beside it), and a run replaced it by its
    lossy copy with only a log line. The command lines and the batch call it (`remedy`: what the message
    advises instead); a file GDAL cannot read (an earlier .sarc, a reconstruction cut short) is replaced as
    before. GDAL opening it is the test, not whether the codec could take it as input: a complex SLC or a
    raster of mixed band types is data too."""
    from .raster_io import is_gdal_virtual_path, open_raster_quietly  # noqa: PLC0415

    if is_gdal_virtual_path(output_path) or not Path(output_path).is_file():
        return
    ds = open_raster_quietly(output_path)
    if ds is None:
        return
    try:
        metadata = ds.GetMetadata() or {}
    finally:
        ds = None  # noqa: F841  (closes it)
    if replacing == "sarc":
        raise OutputPathError(f"{output_path}: exists and is a raster, not a .sarc file (an original?), so it is "
                              f"not replaced; move it away or {remedy}; nothing written")
    if RECONSTRUCTION_TAG in metadata or RECONSTRUCTION_SHA256_TAG in metadata:
        return
    raise OutputPathError(f"{output_path}: exists and is not a reconstruction (a raster without the "
                          f"{RECONSTRUCTION_TAG} tag: an original?), so it is not replaced; move it away or "
                          f"{remedy}; nothing written")


def reconstruct(input_path, output_path, window: Window | None = None, model_dirs=None, device: str = "auto",
                progress: Progress = None, is_cancelled: Cancelled = None,
                no_clobber: bool = False) -> ReconstructResult:
    """Write a GeoTIFF reconstruction of a .sarc file (or of a window of it), tile by tile.

    The GeoTIFF carries the original's dataset and band metadata, descriptions, colour interpretation and
    scale/offset (the pixels of a band coded through them written back as stored values: GDAL reads them as the
    original's physical values, `CompressedRaster.scaling`), plus a `VALUE_DOMAIN` tag naming the file's domain, so that recompressing it needs no flags,
    and a RECONSTRUCTION_TAG naming the .sarc, so that a reconstruction is told from its original (the plugin's
    quality maps put each in its role).

    When the source marked invalid pixels with a GDAL mask (a mask band, a .msk file or an alpha band; header
    `raster.gdal_mask`) rather than only a nodata value, the GeoTIFF gets an internal per-dataset mask band
    (GMF_PER_DATASET, 0 = invalid, 255 = valid; a pixel is valid where any band is): GDAL's GetMaskBand() and
    rasterio read it, and QGIS shows it as an alpha band that its default renderer uses, so the pixels are
    transparent. That is what the source had, and it works for every data type: a nodata value chosen for an
    integer band could collide with real data, and NaN would serve float bands only. The pixels under the mask
    keep their original values bit for bit, as nodata pixels do (the .sarc stores them), and a band's nodata
    value, if it had one, is written too. An alpha band comes back as this mask, not as a band (it was not coded).
    """
    t0 = time.perf_counter()
    started = time.time()
    out = check_output_path(output_path, inputs=(input_path,), no_clobber=no_clobber)
    remove_stale_partials(out, older_than=started)
    if Path(out).suffix.lower() not in ("", ".tif", ".tiff"):  # a .png or .jp2 name would hold a GeoTIFF
        raise OutputPathError(f"{out}: the reconstruction is written as a GeoTIFF; name it .tif, not "
                              f"{Path(out).suffix}")
    with CompressedRaster(input_path, model_dirs=model_dirs, device=device, verify=window is None) as cr:
        h = cr.info["raster"]
        win = (0, 0, cr.width, cr.height) if window is None else _check_window(window, cr.width, cr.height,
                                                                                input_path)
        c, r, w, hh = win
        g = h["geotransform"]
        gt = (g[0] + c * g[1] + r * g[2], g[1], g[2], g[3] + c * g[4] + r * g[5], g[4], g[5])
        if [float(v) for v in g] == list(NO_GEOTRANSFORM):  # GDAL's stand-in for a raster without one: written,
            gt = None  # it made an unreferenced raster look georeferenced (at pixel coordinates, south up)
        model = cr.model  # resolve the decoder before creating any output
        total = max(1, len(cr.grid.tiles_overlapping(win)) * cr.bands)
        _tick(progress, 0.0)
        metadata = dict(h.get("metadata", {}))
        tag = metadata.get("VALUE_DOMAIN", "")
        if DOMAIN_ALIASES.get(tag.strip().lower()) != cr.domain:  # the values are in the file's domain
            metadata["VALUE_DOMAIN"] = cr.domain
        _warn_per_band_nodata(cr.nodata, out)
        metadata[RECONSTRUCTION_TAG] = Path(input_path).name
        metadata[RECONSTRUCTION_SHA256_TAG] = cr.body_sha256
        with GeoTiffWriter(out, w, hh, cr.bands, cr.dtype.name, crs_wkt=h.get("crs_wkt", ""), geotransform=gt,
                           nodata=cr.nodata, band_names=h.get("band_names"), metadata=metadata,
                           bands=h.get("bands"), block_size=min(256, cr.grid.tile_size), no_clobber=no_clobber,
                           mask=bool(cr.gdal_mask), gcps=shifted_gcps(h.get("gcps"), c, r)) as wr:
            done = 0
            _check_cancel(is_cancelled, str(input_path))
            for b, t, (tc, tr, tw, th), px in cr.iter_tiles(win):
                x0, y0, x1, y1 = max(c, tc), max(r, tr), min(c + w, tc + tw), min(r + hh, tr + th)
                wr.write(b, x0 - c, y0 - r, px[y0 - tr:y1 - tr, x0 - tc:x1 - tc])
                if cr.gdal_mask and b == cr.bands - 1:  # a tile's bands come together, in order
                    wr.write_mask(x0 - c, y0 - r, cr.dataset_valid(t)[y0 - tr:y1 - tr, x0 - tc:x1 - tc])
                done += 1
                _tick(progress, done / total)
                _check_cancel(is_cancelled, str(input_path))
        return ReconstructResult(output_path=str(out), width=w, height=hh, bands=cr.bands,
                                 seconds=time.perf_counter() - t0, provider=model.provider)


__all__ = ["outlier_margin_db", "CompressOptions",
           "CompressResult", "ReconstructResult", "CompressedRaster", "compress", "reconstruct", "read_header",
           "map_crs_wkt", "crs_name", "geotransform_extent", "window_from_bbox",
           "clip_window", "same_file", "refuse_to_replace_data", "coded_scaling", "check_compress_options"]
