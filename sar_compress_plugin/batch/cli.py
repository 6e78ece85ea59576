"""sar-compress-batch, sar-reconstruct-batch: many scenes, one command, on dask.distributed.

Exit status: 0 when every input was done or skipped, 1 when any failed (the report says which and why),
2 when the batch could not run at all (bad arguments, output or report folder not writable, bad cluster options,
scheduler) or its report could not be written, 130 on Ctrl-C and 143 on SIGTERM (the report is still written,
unfinished scenes marked cancelled, and no partial file is left under a final name; stopped before its inputs
were listed, it writes none). Each of these ends with one line on stderr, never a traceback.

This module imports no more than the standard library at the top, after the single-file CLIs' module, whose
loading handles a Ctrl-C from its first line on (a Ctrl-C while this one loads is handled as it is there):
numpy, GDAL, the codec and dask are imported while signals are held (`_Signals.held`); a Ctrl-C landing in
one of those imports, in the first second of a batch, was a traceback, and a SIGTERM there ended the batch
without a word.
"""

from __future__ import annotations

from .. import cli

try:
    import argparse
    import logging
    import os
    import signal
    import sys
    import time
    from contextlib import ExitStack, contextmanager, suppress
    from pathlib import Path

    from ..cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, _given, _parser, _tile_help
    from ..core.errors import SarCompressError
    from .inputs import expand_inputs, shown
except KeyboardInterrupt:
    cli.stop_while_starting()

EXIT_SOME_FAILED = 1
RASTER_SUFFIXES = (".tif", ".tiff")
#: The smallest --memory-limit taken; dask reads "" as 1 byte, and a worker cannot even start in a few KB.
MIN_MEMORY = 2**20
_TORNADO = logging.getLogger("tornado.application")


#: The --help epilog: the single-file CLIs' help says their exit statuses; a script driving a batch needs these,
#: 1 above all (some inputs failed, the rest done), which those CLIs do not have.
EXIT_STATUS_HELP = ("exit status: 0 every input done or skipped; 1 some inputs failed (one 'failed:' line each on "
                    "stderr, and the report, say why; the others are done), also an INPUT that names nothing to "
                    "do, even the only one; 2 the batch could not run (bad arguments, output or report folder "
                    "not writable, another batch writing the output folder, cluster or scheduler) or its report "
                    "could not be written (one 'error:' line); 3 unexpected error, a bug (one line); 130 interrupted "
                    "(Ctrl-C), 143 terminated (SIGTERM): the report is written, unfinished inputs marked "
                    "cancelled. No run leaves a partial file under an output's name: rerun the same command to "
                    "finish a batch, and what is done is skipped.")


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
                   help="report path; PATH.json and PATH.csv are written (a .json or .csv suffix is dropped "
                        "first), inside it as <command>-report when it is a folder (default: OUT/<command>-report); "
                        "every input's status, error, bytes, bpp, ratio and seconds, written while the batch runs; "
                        "rows of earlier runs about other inputs are kept")
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster)")
    c.add_argument("--workers", type=_count, default=None,
                   help="LocalCluster worker processes (default: cores // --threads)")
    c.add_argument("--threads", type=_count, default=1, help="onnxruntime and BLAS threads per worker")
    c.add_argument("--memory-limit", type=_memory, default=None,
                   help="LocalCluster memory limit per worker, e.g. 2GB (default: machine memory / workers)")
    c.add_argument("--dashboard-address", default=":8787", help="LocalCluster dashboard address")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress (the bar on a terminal, the lines in a log file)")


class _Signals(cli._Signals):
    """The single-file CLIs' handling of SIGINT and SIGTERM (see there), plus this: an interrupt inside dask's
    sync() makes its loop log a NameError traceback (distributed 2026.8: its cancel callback reads a variable not
    yet set), and what the loop logs once the user asked to stop is noise, so it is quietened first."""

    def __enter__(self) -> "_Signals":
        self._tornado_level = _TORNADO.level
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        _TORNADO.setLevel(self._tornado_level)

    def _on_signal(self, signum, frame):
        _TORNADO.setLevel(logging.CRITICAL)
        super()._on_signal(signum, frame)


def _stopped(signum: int | None, line: str) -> int:
    """`interrupted: line` (or `terminated: line`) on stderr; the exit status of `signum`."""
    terminated = signum == signal.SIGTERM
    print(f"{'terminated' if terminated else 'interrupted'}: {line}", file=sys.stderr)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _execute(name: str, a, jobs, fn, kwargs: dict, checkpoint, signals: _Signals) -> tuple[list[dict], int]:
    """(records, workers) of running `jobs` on the cluster; checkpoint(records, workers) writes the report so far
    (`run_jobs` says when). A signal, whatever exception it led to, still leaves a record per job, so what
    finished is reported. The temporaries of the scenes a signal cut short, or whose workers died (the memory
    limit), are removed once our workers are stopped: a hidden partial stayed on disk until a rerun that might
    never come. No cluster is started when no input could be resolved."""
    from .engine import CANCELLED, ClusterOptions, open_client, pending_records, run_jobs  # noqa: PLC0415
    from .tasks import FAILED, published_late, remove_leftovers  # noqa: PLC0415

    started = time.time()
    records, workers = pending_records(jobs), 0
    if all(j.error for j in jobs):
        return records, workers
    cluster = ClusterOptions(scheduler=a.scheduler, workers=a.workers, threads=a.threads,
                             memory_limit=a.memory_limit, dashboard_address=a.dashboard_address)
    try:
        with open_client(cluster, held=signals.held) as client:
            workers = len(client.scheduler_info()["workers"])
            print(f"{name}: {_counted(jobs)} on {workers} workers ({cluster.threads} threads each); "
                  f"dashboard {client.dashboard_link}", file=sys.stderr)
            records, _ = run_jobs(client, fn, jobs, kwargs, quiet=a.quiet, cancelled=signals.cancelled,
                                  checkpoint=lambda done: checkpoint(done, workers))
    except (Exception, KeyboardInterrupt):
        if not signals.cancelled():  # a cluster that could not start (ClusterError), or a bug
            raise
    if signals.cancelled():  # the workers are stopped now: nothing more can be published
        records = [published_late(r, started) if r["status"] == CANCELLED else r for r in records]
    if not a.scheduler:  # our own workers are stopped, so no writer is left; a remote one's PID means nothing here
        remove_leftovers(r["output"] for r in records if r["status"] in (CANCELLED, FAILED) and r["output"])
    return records, workers


def _counted(jobs) -> str:
    """`4 inputs, 2 to run (1 failed, 1 skipped before running)`: the header said "4 inputs" where the progress
    counted to 2, the scenes it runs; both are said, and the progress is labelled "to run"."""
    to_run = sum(not j.error for j in jobs)
    skipped = sum(j.skipped for j in jobs)
    failed = len(jobs) - to_run - skipped
    before = ", ".join(f"{n} {what}" for n, what in ((failed, "failed"), (skipped, "skipped")) if n)
    return f"{len(jobs)} inputs, {to_run} to run" + (f" ({before} before running)" if before else "")


def _finish(name: str, report: Path, records: list[dict], seconds: float, workers: int, write,
            signals: _Signals, interim: bool = False) -> int:
    """Print the failures, write the report (write(records, seconds, workers)) and one summary line; the exit
    status. `interim`: this run wrote the report while it ran (`checkpoint`)."""
    from .report import report_paths, summarise  # noqa: PLC0415
    from .tasks import FAILED  # noqa: PLC0415

    summary = summarise(records, seconds)
    counts = ", ".join(f"{summary[s]} {s}" for s in ("ok", "skipped", "failed", "cancelled") if s in summary)
    for r in records:  # before the report: these lines are all a run whose report cannot be written leaves
        if r["status"] == FAILED:
            err = r["error"]
            print(f"failed: {err}" if err.startswith(r["input"]) else f"failed: {r['input']}: {err}", file=sys.stderr)
    try:
        paths = _final_report(report, lambda: write(records, seconds, workers), interim)
    except OSError as exc:
        print(f"error: cannot write the report {report_paths(report)[0]} and .csv ({exc.strerror or exc}); "
              f"inputs: {counts} of {summary['inputs']}", file=sys.stderr)
        return EXIT_ERROR
    line = f"{name}: {counts} of {summary['inputs']} inputs in {seconds:.1f} s; report {paths[0]} and {paths[1]}"
    if signals.cancelled():
        return _stopped(signals.received, line)
    print(line)
    return EXIT_SOME_FAILED if any(r["status"] == FAILED for r in records) else 0


def _final_report(report: Path, write, interim: bool) -> tuple[Path, Path]:
    """write(), once more after removing the report this run wrote while it ran when that fails. On a
    full disk the outcome did not fit beside the interim report, which was left saying every scene was
    "cancelled ... batch interrupted" (and the failed inputs were not printed): the interim one is not the
    outcome, and its room is often all the outcome needs. Raises OSError when the report cannot be written."""
    from .report import report_paths  # noqa: PLC0415

    try:
        return write()
    except OSError:
        if not interim:
            raise
    for path in report_paths(report):
        with suppress(OSError):
            path.unlink(missing_ok=True)
    return write()


def _utf8_options(a) -> None:
    """SarCompressError for an option whose value is not valid UTF-8 (`--out /archive/caf\\xe9`): it names every
    output, the report or what every scene's error names, none of which a batch can carry (inputs.py says why).
    An INPUT is not refused: each file so named is a failed row of its own, and the others run."""
    options = {dest: value for dest, value in vars(a).items() if dest != "inputs"}
    for dest, value in options.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and shown(text) != text:
                raise SarCompressError(f"--{dest.replace('_', '-')} {shown(text)}: not valid UTF-8 (the bytes that "
                                       "are not shown as \\xNN); rename it, e.g. with convmv -f latin1 -t utf8")


def _report_base(given: str | None, out: Path, name: str) -> Path:
    """The report's path without suffix: OUT/<name>-report by default, and inside `--report` when that is a
    folder (one that exists, or a path ending in a separator): `--report reports/` wrote `reports.json` beside
    the folder instead of in it.

    Raises SarCompressError for a file that is not a report's own .json or .csv: `--report s1/small_0.tif`, an
    input raster, wrote `s1/small_0.tif.json` and `.csv` into the archive's folder."""
    if not given:
        return out / f"{name}-report"
    if given.endswith(("/", os.sep)) or Path(given).is_dir():
        return Path(given) / f"{name}-report"
    if Path(given).is_file() and Path(given).suffix.lower() not in (".json", ".csv"):
        raise SarCompressError(f"--report {given}: is a file, not a report (PATH.json and PATH.csv are written); "
                               "give the report a name of its own")
    return Path(given)


@contextmanager
def _sole_writer(out: Path, name: str):
    """Hold OUT/.<name>.lock (flock, exclusive) for the whole batch. Two batches started over one --out at once
    (an overlapping cron job, a rerun of a batch thought dead) both compressed every scene, the last rename
    winning, and the last report dropped the other's rows; the second one now stops before any work. The file
    holds its holder's PID and host for that message and is removed on the way out, while still locked; one
    that a killed batch left is taken over (the kernel released its lock with the process).

    Raises SarCompressError when another batch holds it, or it cannot be made or locked."""
    import fcntl  # noqa: PLC0415
    import socket  # noqa: PLC0415

    path = out / f".{name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SarCompressError(f"{path}: cannot make the batch's lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise SarCompressError(f"another {name}{f' ({holder})' if holder else ''} is writing {out}; wait "
                                       "for it to end, or choose another --out") from None
            raise SarCompressError(f"{path}: cannot lock the batch's lock file ({exc.strerror or exc})") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the batch that held it removed it between our open and our lock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        with suppress(OSError):
            path.unlink()
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _run_batch(name: str, p: argparse.ArgumentParser, argv, suffixes, out_suffix: str, task,
               signals: _Signals) -> int:
    """Parse `argv` and run the batch; `task(args)` -> (the scene function, its keyword arguments) imports the
    codec. The batch holds its output folder (`_sole_writer`) from before it lists its inputs to its report."""
    with ExitStack() as sole:
        try:
            with signals.held():  # the parse imports dask (--memory-limit); these, numpy, GDAL and onnxruntime
                a = p.parse_args(argv)
                _utf8_options(a)
                fn, kwargs = task(a)
                from ..core.raster_io import writable_folder  # noqa: PLC0415
                from .engine import ClusterError  # noqa: PLC0415
                from .report import earlier_rows, now, summarise, write_report  # noqa: PLC0415
            if signals.cancelled():  # a signal held during the imports
                raise KeyboardInterrupt
            _given(("--out", a.out), ("--report", a.report),
                   *((f"INPUT {i}", spec) for i, spec in enumerate(a.inputs, 1)))
            out = Path(a.out)
            report = _report_base(a.report, out, name)
            for folder in (out, report.parent):
                writable_folder(folder)  # the report used to fail only after every scene had run
            sole.enter_context(_sole_writer(out, name))
            earlier = earlier_rows(report, name)
            jobs = expand_inputs(a.inputs, out, suffixes, out_suffix)
        except SarCompressError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return _stopped(signals.received, f"{name}: stopped before it listed its inputs; no report written")
        t0, started = time.perf_counter(), now("milliseconds")  # what tells two runs' rows apart
        interim = []

        def write(records: list[dict], seconds: float, workers: int):
            return write_report(report, name, records, summarise(records, seconds),
                                {"started": started, "workers": workers,
                                 "arguments": {**vars(a), "inputs": [shown(i) for i in a.inputs]}}, earlier)

        def checkpoint(records: list[dict], workers: int) -> None:
            """The report while the batch runs; one that cannot be written is reported by the final write."""
            with suppress(OSError):
                write(records, time.perf_counter() - t0, workers)
                interim.append(True)

        try:
            records, workers = _execute(name, a, jobs, fn, kwargs, checkpoint, signals)
        except ClusterError as exc:  # nothing ran, nothing to report
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        with signals.held():  # a report cut short by a signal would be neither this run's nor the last one's
            status = _finish(name, report, records, time.perf_counter() - t0, workers, write, signals,
                             bool(interim))
            sole.close()  # and a signal while the lock goes would add a line after the summary
        return status


@cli.entry_point(_Signals)
def compress_batch_main(argv, signals) -> int:
    p = _parser("sar-compress-batch", "Compress many SAR rasters into .sarc files on dask.distributed, "
                                      "resumably: a rerun skips outputs that exist and check out.",
                EXIT_STATUS_HELP)
    _common(p, "raster (.tif/.tiff in folders)")
    p.add_argument("--model", default=None, help="model bundle folder (default: the bundled model)")
    p.add_argument("--tile", type=int, default=512, help=_tile_help(signals))
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, default=None,
                      help="operating point from 0 to the model's top level (see sar-compress) [model's default]")
    rate.add_argument("--bpp", type=float, default=None, dest="target_bpp",
                      help="target bits per pixel per band, searched per scene (see sar-compress)")
    rate.add_argument("--target-db-rmse", type=float, default=None,
                      help="target error in dB, searched per scene (see sar-compress)")
    p.add_argument("--domain", default=None, choices=["intensity", "amplitude", "db"],
                   help="value domain of every input (default: inferred per scene, see sar-compress)")

    def task(a):
        from ..core.codec import CompressOptions, check_compress_options  # noqa: PLC0415
        from .tasks import compress_scene  # noqa: PLC0415

        opts = CompressOptions(model_dir=a.model, device=a.device, tile_size=a.tile, quality=a.quality,
                               target_bpp=a.target_bpp, target_db_rmse=a.target_db_rmse, domain=a.domain)
        check_compress_options(opts)  # before the cluster starts: every scene would fail alike
        return compress_scene, {"options": opts, "verify": a.verify, "threads": a.threads}

    return _run_batch("sar-compress-batch", p, argv, RASTER_SUFFIXES, ".sarc", task, signals)


@cli.entry_point(_Signals)
def reconstruct_batch_main(argv, signals) -> int:
    p = _parser("sar-reconstruct-batch", "Reconstruct many .sarc files into GeoTIFFs on dask.distributed, "
                                         "resumably: a rerun skips outputs that exist and check out.",
                EXIT_STATUS_HELP)
    _common(p, ".sarc")
    p.add_argument("--model-dir", action="append", default=[],
                   help="extra folder searched for decoders (by SHA-256); repeatable; must exist")

    def task(a):
        from ..core.runtime import check_model_dirs  # noqa: PLC0415
        from .tasks import reconstruct_scene  # noqa: PLC0415

        check_model_dirs(a.model_dir)
        return reconstruct_scene, {"model_dirs": a.model_dir, "device": a.device, "verify": a.verify,
                                   "threads": a.threads}

    return _run_batch("sar-reconstruct-batch", p, argv, (".sarc",), ".tif", task, signals)
