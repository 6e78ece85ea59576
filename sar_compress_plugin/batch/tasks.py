"""One scene per call, run on a dask worker: the core's compress / reconstruct plus what makes a batch safe to
kill and rerun.

* The output is written under a hidden temporary name beside it, checked, then renamed: a final name only ever
  holds a complete file that passed its checks, whatever happens to the worker.
* An output that already exists, passes the same checks and was made with the model and quality asked for now
  from this input (a .sarc: the raster it describes is the input's, and its source stamp is the input's size and
  date; a reconstruction: tagged with its .sarc's SHA-256) is skipped, so a rerun does only what is missing, and
  a rerun with another model or quality, or over changed inputs, redoes them.
* Temporaries left by an earlier attempt at the same output (a worker killed mid-task) are removed first.
* A bad scene returns a failed record with one line saying why; it never raises, so the batch goes on.
* A long scene tells how far it is (`scene_progress`): a full Sentinel-1 scene (~425 MP) takes about 15 minutes
  on one worker, and the operator saw nothing between its start and its end.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core.codec import (CompressedRaster, CompressOptions, coded_scaling, compress, reconstruct,
                          refuse_to_replace_data)
from ..core.errors import SarCompressError
from ..core.raster_io import (RECONSTRUCTION_SHA256_TAG, RasterReader, geotiff_blocks_stored, is_gdal_virtual_path,
                              limit_gdal_cache, pid_alive, read_raster_info, source_stamp, temp_path_for)
from ..core.runtime import default_model_dir, load_manifest
from .inputs import Job

#: The columns of the report, in order (report.py writes them; the CLI counts statuses).
FIELDS = ("input", "output", "status", "error", "bytes_in", "bytes_out", "pixels", "bands", "bpp", "bpp_per_band",
          "ratio", "seconds", "worker")
OK, SKIPPED, FAILED = "ok", "skipped", "failed"
#: Rows read at once when a GeoTIFF output is checked by reading it back (bounded memory on huge scenes).
CHECK_ROWS = 512
#: The scheduler's event topic of a running scene's progress, {"key": its task's key, "fraction": of its tiles,
#: "seconds": since it started}; the client subscribes to it (engine.run_jobs).
PROGRESS_TOPIC = "sar-batch-progress"
#: Least seconds, and least share of a scene's tiles, between two of its progress events: a scene done within
#: half a minute sends none, a long one at most nine, so neither a log file nor the scheduler fills up.
PROGRESS_SECONDS, PROGRESS_STEP = 30.0, 0.1
#: The workers' environment variable that replaces PROGRESS_SECONDS (read by each task; tests set 0).
PROGRESS_SECONDS_VARIABLE = "SAR_BATCH_PROGRESS_SECONDS"


def record(job: Job, **fields) -> dict:
    rec = dict.fromkeys(FIELDS, "")
    rec.update(input=job.input, output=job.output, status=SKIPPED if job.skipped else FAILED, error=job.error)
    rec.update(fields)
    return rec


def one_line(exc: BaseException) -> str:
    """The report's error cell: the core's messages already name the file and the problem; anything else
    (a bug, MemoryError) at least names its type."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, SarCompressError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def _worker() -> str:
    from distributed import get_worker  # noqa: PLC0415

    try:
        return get_worker().address
    except ValueError:  # called in-process, outside any worker
        return "local"


def scene_progress():
    """The core's progress callback for the scene this task runs, or None outside a dask worker (a task called
    in-process). It sends PROGRESS_TOPIC events through the scheduler, so the client sees them from a remote
    cluster (`--scheduler`) as from its own; the task's key tells its batch which scene it is, and another
    batch's events on a shared scheduler from its own. Called in the task's thread, where the key is known."""
    from distributed import get_worker  # noqa: PLC0415

    try:
        worker = get_worker()
    except ValueError:
        return None
    key = worker.get_current_task()
    try:
        every = float(os.environ.get(PROGRESS_SECONDS_VARIABLE, PROGRESS_SECONDS))
    except ValueError:
        every = PROGRESS_SECONDS
    started = sent_at = time.monotonic()
    sent = 0.0

    def progress(fraction: float) -> None:
        nonlocal sent, sent_at
        now = time.monotonic()
        if fraction >= 1.0 or fraction - sent < PROGRESS_STEP or now - sent_at < every:
            return  # at 1.0 the scene's own line follows
        sent, sent_at = fraction, now
        worker.log_event(PROGRESS_TOPIC, {"key": key, "fraction": round(fraction, 3),
                                          "seconds": round(now - started, 1)})

    return progress


def _prepare_worker(threads: int) -> None:
    """Workers of a cluster we did not start (`--scheduler`) get the same onnxruntime thread count and GDAL
    cache cap as our own LocalCluster's, read by the core when it builds each model."""
    os.environ["SAR_COMPRESS_THREADS"] = str(int(threads))
    limit_gdal_cache()


#: A temporary of an output NAME: ours .NAME.partial-PID-HEX.SUFFIX, the core's of those ..NAME.partial-PID-...;
#: names without a PID are from earlier versions.
_LEFTOVER = re.compile(r"\.\.?(.+?)\.partial-(?:(\d+)-)?")


def remove_leftovers(outputs) -> None:
    """Remove what earlier attempts at `outputs` left, listing each folder once (the CLI passes every scene an
    interrupt cancelled). Not those whose writer (its PID, the first in the name) is still running: a second
    batch started over the same --out while the first ran (an overlapping cron job, a rerun of a batch thought
    dead) deleted the first's files mid-write, and its scenes failed."""
    names: dict[Path, set[str]] = {}
    for out in map(Path, outputs):
        names.setdefault(out.parent, set()).add(out.name)
    for folder, wanted in names.items():
        try:
            with os.scandir(folder) as it:
                entries = [e.path for e in it if (m := _LEFTOVER.match(e.name)) and m.group(1) in wanted
                           and (m.group(2) is None or not pid_alive(int(m.group(2))))]
        except OSError:  # not made yet, or gone
            continue
        for path in entries:
            Path(path).unlink(missing_ok=True)


def _publish(out: Path, write, check) -> None:
    """write(tmp) then check(tmp) then rename to `out`; the temporary is gone whatever fails.

    The core's message names the file it was given, the temporary: a full disk read "failed: a.tif:
    /archive/.a.sarc.partial-12347-e352ee8c.sarc: cannot write (No space left on device)", a name that no
    longer exists when the operator reads it. It names the output instead."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers([out])
    tmp = temp_path_for(out, suffix=out.suffix)
    try:
        write(tmp)
        check(tmp)
        os.replace(tmp, out)
    except SarCompressError as exc:
        if str(tmp) not in str(exc):
            raise
        raise SarCompressError(str(exc).replace(str(tmp), str(out))) from None
    finally:
        tmp.unlink(missing_ok=True)


def check_sarc(path, decode: bool, model_dirs=(), device: str = "auto") -> dict:
    """The file's SHA-256 against its footer; with `decode`, also every chunk's CRC and every tile through the
    decoder. Returns the header."""
    with CompressedRaster(path, model_dirs=list(model_dirs), device=device, verify=True) as cr:
        if decode:
            for _ in cr.iter_tiles():
                pass
        return cr.info


def _blocks_inside(path) -> None:
    """Every block the GeoTIFF's index names ends inside the file. A truncated copy under the output's name (an
    interrupted cp or rsync, a full disk) still opens with the right shape when its index comes first, and was
    skipped as done unless --verify read every pixel; this costs a fraction of a second on a full scene."""
    from osgeo import gdal  # noqa: PLC0415  (RasterReader has opened it already: GDAL is there)

    size = Path(path).stat().st_size
    ds = gdal.Open(str(path))
    bands = [(f"band {b}", ds.GetRasterBand(b)) for b in range(1, ds.RasterCount + 1)]
    if _internal_mask(ds):  # a masked reconstruction's mask blocks come last: a cut copy loses them first
        bands.append(("mask band", ds.GetRasterBand(1).GetMaskBand()))
    for what, band in bands:
        try:
            geotiff_blocks_stored(band, (0, 0, ds.RasterXSize, ds.RasterYSize), size)
        except ValueError as exc:
            raise SarCompressError(f"{path}: {what} {exc}") from None


def _internal_mask(ds) -> bool:
    """Whether a GeoTIFF has a per-dataset mask band inside the file (not a .msk beside it), as a
    reconstruction of a masked source has."""
    from osgeo import gdal  # noqa: PLC0415

    flags = ds.GetRasterBand(1).GetMaskFlags()
    other = gdal.GMF_ALL_VALID | gdal.GMF_NODATA | gdal.GMF_ALPHA
    per_dataset = flags & gdal.GMF_PER_DATASET and not flags & other
    return bool(per_dataset) and not any(f.lower().endswith(".msk") for f in ds.GetFileList() or [])


def check_geotiff(path, raster: dict, decode: bool) -> None:
    """The GeoTIFF has the shape and type the .sarc header promises, the mask band it promises (`gdal_mask`),
    and is not truncated (mask blocks included); with `decode`, every pixel and its mask read back."""
    with RasterReader(path) as r:
        i = r.info
        got = (i.width, i.height, i.band_count, i.dtype)
        want = (raster["width"], raster["height"], raster["band_count"], raster["dtype"])
        if got != want:
            raise SarCompressError(f"{path}: is {got[0]} x {got[1]} x {got[2]} {got[3]}, "
                                   f"expected {want[0]} x {want[1]} x {want[2]} {want[3]}")
        if raster.get("gdal_mask") and i.gdal_mask != "per_dataset":  # the reconstruction carries the mask
            raise SarCompressError(f"{path}: has no per-dataset mask band, but the source's invalid pixels "
                                   f"were marked by a GDAL mask ({raster['gdal_mask']})")
        if decode:
            for b in range(i.band_count):
                for row in range(0, i.height, CHECK_ROWS):
                    r.read(b, 0, row, i.width, min(CHECK_ROWS, i.height - row))
            if r.has_mask(0):  # a per-dataset mask: band 1's is every band's
                for row in range(0, i.height, CHECK_ROWS):
                    r.read_valid(0, 0, row, i.width, min(CHECK_ROWS, i.height - row))
    _blocks_inside(path)


def _sized(rec: dict, header: dict, sarc_bytes: int) -> dict:
    """Pixels, bands, bpp, bpp_per_band and the compression ratio as sar-compress prints it (the raster's raw
    bytes over the .sarc's): the report had no ratio, and bytes_in, the GeoTIFF file's size, is no raw size when
    that file is itself compressed. `bpp` counts the bits of all bands per pixel; `bpp_per_band` is what --bpp
    asks for (`--bpp 0.5` on a VV+VH scene read "bpp 1.03" in the report)."""
    ra = header["raster"]
    pixels, bands = ra["width"] * ra["height"], ra["band_count"]
    raw = pixels * bands * np.dtype(ra["dtype"]).itemsize
    bpp = 8.0 * sarc_bytes / pixels
    rec.update(pixels=pixels, bands=bands, bpp=round(bpp, 6), bpp_per_band=round(bpp / bands, 6),
               ratio=round(raw / sarc_bytes, 2))
    return rec


def _same_recipe(header: dict, options: CompressOptions) -> bool:
    """Same model and tile size, the rate asked for the same way (a quality, a bpp target, a dB target, or the
    default), and the value domain when one is given: a rerun with `--domain` to correct an inferred domain, or
    with another `--tile`, used to skip every scene. Without `--domain` the file's domain stands (inferring it
    again means reading the whole input; `_same_source` already holds the input unchanged)."""
    m = load_manifest(options.model_dir or default_model_dir(), verify=False)
    rate = header["rate"]
    if options.target_bpp is not None:
        asked = rate.get("chosen_by") == "bpp" and rate.get("target") == float(options.target_bpp)
    elif options.target_db_rmse is not None:
        asked = rate.get("chosen_by") == "db_rmse" and rate.get("target") == float(options.target_db_rmse)
    elif options.quality is not None:
        asked = rate.get("chosen_by") == "quality" and float(rate["quality"]) == float(options.quality)
    else:
        asked = rate.get("chosen_by") == "default" and float(rate["quality"]) == float(m["rate"]["default_quality"])
    return (header["model"]["decoder_sha256"] == str(m["files"]["decoder"]["sha256"]).lower() and asked
            and header["tiling"]["tile_size"] == options.tile_size
            and options.domain in (None, header["domain"]))


def _same_source(header: dict, out: Path, src: str) -> bool:
    """The .sarc `out` was made from `src` as far as its header can tell: the same size, bands, type, grid, CRS
    and dataset metadata, and `src` the very file it read: the same byte count and modification time to the
    nanosecond (its `source` stamp, as rsync's quick check). A different scene under the same name, even an
    equal-looking twin copied with its older date kept (cp -p, rsync -a), is compressed again instead of
    "skipped". Files from before the stamp can only ask that `src` is not newer than them. Its bands with a GDAL
    scale or offset must have been coded as their physical values, through the scale and offset `src` has
    now."""
    with RasterReader(src) as r:
        i = r.info
    ra = header["raster"]
    made = (ra["width"], ra["height"], ra["band_count"], ra["dtype"], ra["crs_wkt"], list(ra["geotransform"]),
            ra.get("metadata", dict(i.metadata)))  # files from before raster.metadata: not compared
    if made != (i.width, i.height, i.band_count, i.dtype, i.crs_wkt, list(i.geotransform), dict(i.metadata)):
        return False
    if coded_scaling(header) != [i.scaling(b) for b in range(i.band_count)]:
        # a band with a GDAL scale or offset coded as its stored values, by a codec from before format 5 (an
        # int16 sigma0 product in hundredths of a dB: 8.8 dB RMSE where 0.4 is due), was skipped for good; and
        # so was one coded through a scale since changed beside the file (a .aux.xml), its stamp unchanged
        return False
    if "source" in header:
        return header["source"] == source_stamp(src)
    if is_gdal_virtual_path(src):  # no date of its own to hold against the file's: made again
        return False
    return Path(src).stat().st_mtime <= out.stat().st_mtime


def input_bytes(src: str) -> int:
    """The input's size: a file inside an archive (`/vsizip/a.zip/s.tif`) as the archive lists it."""
    stamp = source_stamp(src) if is_gdal_virtual_path(src) else None
    if stamp is not None:
        return stamp["bytes"]
    return Path(src).stat().st_size


def published_late(rec: dict, since: float) -> dict:
    """The record of a scene an interrupt cancelled, or "ok" with its figures when its task (which cannot be
    stopped mid-way) still published the output, after `since` (time.time()), while the workers were stopping:
    the report must not call a file that is there cancelled. The file is complete, as anything under a final
    name is."""
    out = Path(rec["output"])
    sarc = out if out.suffix == ".sarc" else Path(rec["input"])
    try:
        if out.stat().st_mtime < since:
            return rec
        with CompressedRaster(sarc) as cr:  # header only
            header = cr.info
        done = {**rec, "status": OK, "error": "", "bytes_in": input_bytes(rec["input"]),
                "bytes_out": out.stat().st_size}
        return _sized(done, header, sarc.stat().st_size)
    except (OSError, SarCompressError):
        return rec


def compress_scene(job: Job, options: CompressOptions, verify: bool = False, threads: int = 1) -> dict:
    """Compress `job.input` to `job.output` (.sarc); `verify` decodes the new file before it is published."""
    t0 = time.perf_counter()
    rec = record(job, worker=_worker())
    try:
        _prepare_worker(threads)
        out = Path(job.output)
        model_dirs = [options.model_dir] if options.model_dir else []
        rec["bytes_in"] = input_bytes(job.input)
        if out.is_file():
            try:
                header = check_sarc(out, verify, model_dirs, options.device)
                if _same_recipe(header, options) and _same_source(header, out, job.input):
                    rec.update(status=SKIPPED, bytes_out=out.stat().st_size)
                    return _sized(rec, header, rec["bytes_out"])
            except SarCompressError:
                pass  # damaged or foreign file under our name: compress again and replace it
        headers = []
        stamped = replace(options, stamp_source=True)  # what _same_source compares on the next run
        progress = scene_progress()
        _publish(out, lambda tmp: compress(job.input, tmp, stamped, progress=progress),
                 lambda tmp: headers.append(check_sarc(tmp, verify, model_dirs, options.device)))
        rec.update(status=OK, bytes_out=out.stat().st_size)
        return _sized(rec, headers[0], rec["bytes_out"])
    except Exception as exc:  # noqa: BLE001  (one bad scene must not stop the batch; the report says why)
        rec.update(status=FAILED, error=one_line(exc))
        return rec
    finally:
        rec["seconds"] = round(time.perf_counter() - t0, 3)


def _reconstruction_of(path: Path) -> str | None:
    """The body SHA-256 of the .sarc a GeoTIFF was reconstructed from (its RECONSTRUCTION_SHA256_TAG), or None.
    Dates could not tell: a .sarc replaced by an older-dated copy (cp -p, rsync -a) left its stale
    reconstruction skipped, and a fresh copy of the same file had a whole scene decoded again."""
    try:
        return read_raster_info(path).metadata.get(RECONSTRUCTION_SHA256_TAG)
    except SarCompressError:  # unreadable: not a reconstruction to keep
        return None


def reconstruct_scene(job: Job, model_dirs=(), device: str = "auto", verify: bool = False,
                      threads: int = 1) -> dict:
    """Reconstruct `job.input` (.sarc, whose SHA-256 the core checks) to `job.output` (GeoTIFF); `verify`
    reads every pixel of the new GeoTIFF back before it is published."""
    t0 = time.perf_counter()
    rec = record(job, worker=_worker())
    try:
        _prepare_worker(threads)
        out = Path(job.output)
        rec["bytes_in"] = Path(job.input).stat().st_size
        with CompressedRaster(job.input) as cr:  # header only: what the output must look like
            header, sarc_sha256 = cr.info, cr.body_sha256
        _sized(rec, header, rec["bytes_in"])
        if out.is_file() and _reconstruction_of(out) == sarc_sha256:
            try:
                check_geotiff(out, header["raster"], verify)
                rec.update(status=SKIPPED, bytes_out=out.stat().st_size)
                return rec
            except SarCompressError:
                pass
        # `--out` the folder of the .sarc files, where the rasters they were compressed from sit beside them
        # (what `sar-compress-batch DIR --out DIR` leaves), had every original replaced by its reconstruction
        refuse_to_replace_data(out, remedy="choose another --out")
        progress = scene_progress()
        _publish(out, lambda tmp: reconstruct(job.input, tmp, model_dirs=list(model_dirs), device=device,
                                              progress=progress),
                 lambda tmp: check_geotiff(tmp, header["raster"], verify))
        rec.update(status=OK, bytes_out=out.stat().st_size)
        return rec
    except Exception as exc:  # noqa: BLE001
        rec.update(status=FAILED, error=one_line(exc))
        return rec
    finally:
        rec["seconds"] = round(time.perf_counter() - t0, 3)
