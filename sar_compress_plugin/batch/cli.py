"""sar-compress-batch, sar-reconstruct-batch: many scenes, one command, on dask.distributed.

Exit status: 0 when every input was done or skipped, 1 when any failed (the report says which and why),
2 when the batch could not run at all (output or report folder not writable, bad cluster options, scheduler)
or its report could not be written, 130 on Ctrl-C and 143 on SIGTERM (the report is still written, unfinished
scenes marked cancelled, and no partial file is left under a final name). Each of these ends with one line on
stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from ..cli import EXIT_ERROR, EXIT_INTERRUPTED, _parser, _Terminated
from ..core.codec import CompressOptions
from ..core.errors import OutputPathError
from ..core.raster_io import writable_folder
from .engine import CANCELLED, ClusterError, ClusterOptions, open_client, pending_records, run_jobs
from .inputs import expand_inputs
from .report import summarise, write_report
from .tasks import FAILED, compress_scene, published_late, reconstruct_scene

EXIT_SOME_FAILED = 1
RASTER_SUFFIXES = (".tif", ".tiff")
#: The smallest --memory-limit taken; dask reads "" as 1 byte, and a worker cannot even start in a few KB.
MIN_MEMORY = 2**20


def _count(text: str) -> int:
    """argparse type of --workers and --threads: 0 workers silently meant the default, and 0 threads ran."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def _memory(text: str) -> int:
    """argparse type of --memory-limit, so a typo stops the batch before any work, not as a traceback from
    inside LocalCluster."""
    from dask.utils import parse_bytes  # noqa: PLC0415

    try:
        n = parse_bytes(text)
    except ValueError:
        n = 0
    if n < MIN_MEMORY:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of memory of at least 1MiB, e.g. 2GB")
    return n


def _common(p, what: str) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help=f"{what} files, folders (searched recursively), glob patterns (quote them), or STAC "
                        "item / item collection / catalog JSON files whose assets are local files")
    p.add_argument("--out", required=True, help="output folder (created); folder inputs keep their sub-folders")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime device")
    p.add_argument("--verify", action="store_true",
                   help="decode every new output before it gets its final name (and when deciding to skip one)")
    p.add_argument("--report", default=None,
                   help="report path without suffix (default: OUT/<command>-report); .json and .csv are written")
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster)")
    c.add_argument("--workers", type=_count, default=None,
                   help="LocalCluster worker processes (default: cores // --threads)")
    c.add_argument("--threads", type=_count, default=1, help="onnxruntime and BLAS threads per worker")
    c.add_argument("--memory-limit", type=_memory, default=None,
                   help="LocalCluster memory limit per worker, e.g. 2GB (default: machine memory / workers)")
    c.add_argument("--dashboard-address", default=":8787", help="LocalCluster dashboard address")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _on_signal(signum, _frame):
    """Ctrl-C or SIGTERM: KeyboardInterrupt (or its SIGTERM kind) in the main thread, wherever it waits. Inside
    dask's sync() that makes the loop log a NameError traceback (distributed 2026.8: its cancel callback reads a
    variable not yet set); what the loop logs once the user asked to stop is noise, so it is quietened first."""
    logging.getLogger("tornado.application").setLevel(logging.CRITICAL)
    raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def _signals_as_interrupt():
    """SIGINT and SIGTERM (kill, a job scheduler's stop) both end the batch the same way: cancelled scenes, a
    report, one line; SIGTERM used to end the client silently with no report. Only the main thread may set
    handlers, so a batch run in another thread (tests) keeps the defaults."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    tornado = logging.getLogger("tornado.application")
    level = tornado.level
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}  # `batch &` in a script: SIGINT stays ignored
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        tornado.setLevel(level)


def _execute(name: str, a, jobs, fn, kwargs: dict, checkpoint):
    """(records, workers, interrupt or None) of running `jobs` on the cluster; checkpoint(records, workers)
    writes the report so far (`run_jobs` says when). An interrupt while the cluster starts or closes still
    leaves a record per job, so what finished is reported; no cluster is started when no input could be
    resolved."""
    started = time.time()
    records, workers, interrupt = pending_records(jobs), 0, None
    if all(j.error for j in jobs):
        return records, workers, interrupt
    cluster = ClusterOptions(scheduler=a.scheduler, workers=a.workers, threads=a.threads,
                             memory_limit=a.memory_limit, dashboard_address=a.dashboard_address)
    try:
        with open_client(cluster) as client:
            workers = len(client.scheduler_info()["workers"])
            print(f"{name}: {len(jobs)} inputs on {workers} workers ({cluster.threads} threads each); "
                  f"dashboard {client.dashboard_link}", file=sys.stderr)
            records, interrupt = run_jobs(client, fn, jobs, kwargs, quiet=a.quiet,
                                          checkpoint=lambda done: checkpoint(done, workers))
    except KeyboardInterrupt as exc:
        interrupt = exc
    if interrupt is not None:  # the workers are stopped now: nothing more can be published
        records = [published_late(r, started) if r["status"] == CANCELLED else r for r in records]
    return records, workers, interrupt


def _finish(name: str, a, report: Path, records: list[dict], seconds: float, workers: int,
            interrupt) -> int:
    """Write the report, print the failures and one summary line; the exit status."""
    summary = summarise(records, seconds)
    counts = ", ".join(f"{summary[s]} {s}" for s in ("ok", "skipped", "failed", "cancelled") if s in summary)
    try:
        paths = write_report(report, name, records, summary, {"workers": workers, "arguments": vars(a)})
    except OSError as exc:
        print(f"error: cannot write the report {report.with_suffix('.json')} and .csv ({exc.strerror or exc}); "
              f"inputs: {counts} of {len(records)}", file=sys.stderr)
        return EXIT_ERROR
    for r in records:
        if r["status"] == FAILED:
            err = r["error"]
            print(f"failed: {err}" if err.startswith(r["input"]) else f"failed: {r['input']}: {err}", file=sys.stderr)
    line = f"{name}: {counts} of {len(records)} inputs in {seconds:.1f} s; report {paths[0]} and {paths[1]}"
    if interrupt is None:
        print(line)
        return EXIT_SOME_FAILED if any(r["status"] == FAILED for r in records) else 0
    terminated = isinstance(interrupt, _Terminated)
    print(f"{'terminated' if terminated else 'interrupted'}: {line}", file=sys.stderr)
    return 128 + signal.SIGTERM if terminated else EXIT_INTERRUPTED


def _run_batch(name: str, a, suffixes, out_suffix: str, fn, kwargs: dict) -> int:
    out = Path(a.out)
    report = Path(a.report) if a.report else out / f"{name}-report"
    try:
        for folder in (out, report.parent):
            writable_folder(folder)  # the report used to fail only after every scene had run
    except OutputPathError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    jobs = expand_inputs(a.inputs, out, suffixes, out_suffix)
    t0 = time.perf_counter()

    def checkpoint(records: list[dict], workers: int) -> None:
        """The report while the batch runs; one that cannot be written is reported by the final write."""
        with suppress(OSError):
            write_report(report, name, records, summarise(records, time.perf_counter() - t0),
                         {"workers": workers, "arguments": vars(a)})

    with _signals_as_interrupt():
        try:
            records, workers, interrupt = _execute(name, a, jobs, fn, kwargs, checkpoint)
        except ClusterError as exc:  # nothing ran, nothing to report
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return _finish(name, a, report, records, time.perf_counter() - t0, workers, interrupt)


def compress_batch_main(argv=None) -> int:
    p = _parser("sar-compress-batch", "Compress many SAR rasters into .sarc files on dask.distributed, "
                                      "resumably: a rerun skips outputs that exist and check out.")
    _common(p, "raster (.tif/.tiff in folders)")
    p.add_argument("--model", default=None, help="model bundle folder (default: the bundled model)")
    p.add_argument("--tile", type=int, default=512, help="tile size in pixels (multiple of 16)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, default=None,
                      help="operating point from 0 to the model's top level (see sar-compress) [model's default]")
    rate.add_argument("--bpp", type=float, default=None, dest="target_bpp",
                      help="target bits per pixel per band, searched per scene (see sar-compress)")
    rate.add_argument("--target-db-rmse", type=float, default=None,
                      help="target error in dB, searched per scene (see sar-compress)")
    p.add_argument("--domain", default=None, choices=["intensity", "amplitude", "db"],
                   help="value domain of every input (default: inferred per scene, see sar-compress)")
    a = p.parse_args(argv)
    opts = CompressOptions(model_dir=a.model, device=a.device, tile_size=a.tile, quality=a.quality,
                           target_bpp=a.target_bpp, target_db_rmse=a.target_db_rmse, domain=a.domain)
    return _run_batch("sar-compress-batch", a, RASTER_SUFFIXES, ".sarc", compress_scene,
                      {"options": opts, "verify": a.verify, "threads": a.threads})


def reconstruct_batch_main(argv=None) -> int:
    p = _parser("sar-reconstruct-batch", "Reconstruct many .sarc files into GeoTIFFs on dask.distributed, "
                                         "resumably: a rerun skips outputs that exist and check out.")
    _common(p, ".sarc")
    p.add_argument("--model-dir", action="append", default=[],
                   help="extra folder searched for decoders (by SHA-256); repeatable")
    a = p.parse_args(argv)
    return _run_batch("sar-reconstruct-batch", a, (".sarc",), ".tif", reconstruct_scene,
                      {"model_dirs": a.model_dir, "device": a.device, "verify": a.verify, "threads": a.threads})
