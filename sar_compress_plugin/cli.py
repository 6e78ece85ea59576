"""sar-compress, sar-reconstruct, sar-info: thin command lines over core.codec.

Each `*_main(argv) -> int` can be called in-process by tests. Bad input gives `error: <message>` on stderr and
exit status 2 with no traceback (an unexpected exception too: one line naming it, status 3); Ctrl-C gives exit
status 130 and SIGTERM 143 and, like any failure, leaves no partial file (the core writes under a temporary name
and renames at the end; both signals raise a KeyboardInterrupt where the program is, so the same cleanup runs).
A signal that comes once the output has its name says so instead of "no output written". A reader of standard
output that goes away (`sar-info --json | head -1`) ends the program quietly with 141, as it ends any filter
killed by SIGPIPE.

A Ctrl-C is one line and 130 from this module's first import on (the console scripts import it first, the
batch's and the demo's too), through argparse, to the end of the run. Before that line, while Python itself
starts (about 0.1 s, site-packages and the console script's own first lines), no project code runs, and a
Ctrl-C there is Python's traceback.
"""

from __future__ import annotations


def stop_while_starting(signum: int | None = None) -> None:
    """A Ctrl-C (or, with `signum` SIGTERM, a kill) while a command's modules load: one line and 130 (143)
    (SystemExit), not a KeyboardInterrupt traceback. Used by the entry-point modules around their imports.
    SIGINT is ignored from here: the process only exits now, and a second Ctrl-C would cut this line short with
    a traceback."""
    import signal  # noqa: PLC0415 (here: the Ctrl-C may have cut short this module's import of it)
    import sys  # noqa: PLC0415

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signum = signum or signal.SIGINT
    if sys.stderr is not None:  # as _say writes, which is not defined yet
        try:
            print(f"{'terminated' if signum == signal.SIGTERM else 'interrupted'}: stopped while starting; "
                  "no output written", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
    raise SystemExit(128 + signum)


class SigtermWhileStarting:
    """Around an entry-point module's imports (torch and onnx: seconds), where a SIGTERM (`kill`, a job
    scheduler's stop) killed the command without a word: there it gets a Ctrl-C's line, as "terminated", and
    143. The handler ends the process on the spot (os._exit) rather than raising: an exception landing inside
    an extension module's import can be swallowed by it, and the command would go on after its kill, and no
    output exists yet to tidy up. Only in the main thread, and only where SIGTERM has its default action (an
    ignored one stays ignored, a caller's own handler stays)."""

    def __enter__(self) -> "SigtermWhileStarting":
        self._previous = None
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._previous = signal.signal(signal.SIGTERM, self._stop)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    @staticmethod
    def _stop(signum, _frame) -> None:
        try:
            stop_while_starting(signum)
        except SystemExit as exc:
            os._exit(exc.code)


try:
    import argparse
    import functools
    import json
    import logging
    import math
    import os
    import re
    import signal
    import sys
    import threading
    import time
    from contextlib import contextmanager

    from .core.errors import SarCompressError
except KeyboardInterrupt:
    stop_while_starting()

EXIT_ERROR = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_STDOUT_CLOSED = 128 + signal.SIGPIPE
EXIT_TERMINATED = 128 + signal.SIGTERM

EXIT_STATUS_HELP = ("exit status: 0 done; 2 bad input, output or arguments (one 'error:' line on stderr); 3 "
                    "unexpected error, a bug (one line); 130 interrupted (Ctrl-C); 141 standard output closed by "
                    "its reader; 143 terminated (SIGTERM). No run leaves a partial file under the output's name.")

#: argparse takes "-1e308" or "-inf" for an option (its own pattern knows only "-12" and "-1.5"), so
#: `--bbox -1e308 ...` failed with "expected 4 arguments". None of our options looks like a number. Compiled in
#: `_parser`, inside the run's signal scope: compiled as this module loaded, it took a millisecond in which a
#: Ctrl-C was a traceback.
_NEGATIVE_NUMBER = r"^-(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|infinity|nan)$"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where there is one: an option whose default is None names its real default
    in its help text (it comes from the model, the file or the config), and "(default: None)" after it was
    false. Shared by every command line of the project."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _parser(prog: str, description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                formatter_class=HelpFormatter)
    p._negative_number_matcher = re.compile(_NEGATIVE_NUMBER, re.IGNORECASE)  # argparse 3.11-3.13
    return p


def _say(line: str) -> None:
    """One line on stderr, if there is one to write to: with stderr closed (`2>&-`) print() would fall back
    to stdout, where a script reads results, and with it on a full disk the exit status must still come out."""
    if sys.stderr is not None:
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass


def _note(text: str) -> None:
    _say(f"note: {text}")


class _StdoutClosed(Exception):
    """The reader of standard output went away (`sar-info --json | head -1`)."""


def _out(text: str) -> None:
    """Print to stdout and flush now, so that a failed write surfaces inside _run (a closed pipe, a full disk
    behind `>`), not as Python's "Exception ignored" at exit."""
    if sys.stdout is None:  # closed by the caller (`>&-`): there is nowhere to print
        return
    try:
        try:
            sys.stdout.write(text + "\n")
        except UnicodeEncodeError:  # a file name of non-UTF-8 bytes, stdout strict: escaped as on stderr
            encoding = sys.stdout.encoding or "utf-8"
            sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise _StdoutClosed() from None
    except OSError as exc:
        raise SarCompressError(f"cannot write to standard output ({exc.strerror or exc})") from None


def _discard_stdout() -> None:
    """Point stdout at /dev/null: what is left in its buffer would fail again when Python flushes it at
    exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout file (tests capture it)
        pass


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def _progress_bar(desc: str, quiet: bool):
    """A tqdm bar driven by the core's progress(fraction) callback; silent when tqdm is absent or quiet, and
    when stderr is no terminal: in a log file the bar's redrawn text ("compress:   0%|...") came before the
    run's `error:` line, which is then no longer the one line a script reads.

    A bar that cannot be drawn (stderr closed, or a log file on a full disk) is dropped, not allowed to fail
    the run it decorates."""
    bar = None
    if not quiet and sys.stderr is not None and _is_terminal(sys.stderr):
        try:
            from tqdm import tqdm  # noqa: PLC0415

            bar = tqdm(total=1000, desc=desc, unit="‰", leave=False, file=sys.stderr,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
        except (ImportError, OSError, ValueError):
            bar = None

    def update(frac: float) -> None:
        nonlocal bar
        if bar is not None:
            try:
                bar.n = int(frac * 1000)
                bar.refresh()
            except (OSError, ValueError):
                bar = None

    try:
        yield update
    finally:
        if bar is not None:
            try:
                bar.close()
            except (OSError, ValueError):
                pass


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so the same try/finally cleanup as for Ctrl-C runs."""


class _Signals:
    """Ctrl-C and SIGTERM during one run: each raises KeyboardInterrupt (`_Terminated` for SIGTERM) where the
    program is, and is remembered.

    Remembering is what makes Ctrl-C reliable: a KeyboardInterrupt that lands inside an extension module's
    import (numpy, GDAL, onnxruntime load in the first second of a run) is swallowed by some, and the run went
    on to publish its output, or turned into another error by others (numpy's "ImportError: ... its source
    directory"). So the core's cancel checks ask `cancelled`, and _run reports a remembered signal whatever
    exception it led to. Only the first signal raises. A signal the caller left ignored (nohup, a script's
    background job) stays ignored. Only the main thread may set handlers: elsewhere (a batch run by a test in a
    thread) the defaults stay.

    `last`: the process only exits after this scope (the console script's call), so SIGINT is left ignored
    rather than restored: a Ctrl-C pressed again while Python shuts down (its threading and atexit hooks run
    Python code) printed a traceback after the run's own line.

    A signal that lands in code whose exceptions Python cannot propagate (a weakref callback, such as the one
    the import system runs when a module lock is dropped; a __del__) is printed by sys.unraisablehook as
    "Exception ignored in ..." with a traceback, and the run goes on. Remembered, it still ends the run at the
    next cancel check, so inside this scope that report of our own KeyboardInterrupt is dropped.
    """

    def __init__(self, last: bool = False):
        self.received: int | None = None
        self._previous: dict = {}
        self._held = False
        self._last = last
        self._watched: list[tuple[str, tuple[int, int] | None]] = []

    def _on_signal(self, signum, _frame):
        if self.received is not None:  # a second Ctrl-C would cut short the first one's cleanup (joining the
            return                     # tile networks, removing the partial) and leave the partial behind
        self.received = signum
        if not self._held:
            raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    def cancelled(self) -> bool:
        return self.received is not None

    def _unraisable(self, unraisable) -> None:
        if not (self.received is not None and isinstance(unraisable.exc_value, KeyboardInterrupt)):
            self._previous_unraisablehook(unraisable)

    def watch(self, *outputs: str) -> None:
        """Outputs a signal's line must tell the truth about. Each is published by a rename, so once it is
        there, it is another file than the one there now (or none): a signal that came after the rename, while
        the core tidied up or the summary was printed, said "no output written" of a file written whole."""
        self._watched += [(path, _identity(path)) for path in outputs]

    def stopped(self, exc: BaseException | None = None) -> int:
        """Say that a signal stopped the run, and what of its outputs was written; its exit status. The signal
        remembered wins over `exc`, the exception the run ended with (a library may have turned the
        KeyboardInterrupt into another one)."""
        signum = self.received or (signal.SIGTERM if isinstance(exc, _Terminated) else signal.SIGINT)
        written = [path for path, before in self._watched if _identity(path) not in (None, before)]
        were = "was" if len(written) == 1 else "were"
        what = (f"{' and '.join(written)} {were} written completely before the signal" if written
                else "no output written")
        _say(f"{'terminated' if signum == signal.SIGTERM else 'interrupted'}: {what}")
        return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED

    @contextmanager
    def held(self):
        """Inside, a signal is only remembered (`cancelled()` tells it after), for what an exception must not cut
        short. The batch holds signals while it imports numpy, GDAL and dask (no import can then swallow one or
        turn it into another error), while its dask LocalCluster starts or closes (cut short, the cluster was
        left half-started, and dask's atexit hook failed to close it, with a traceback) and while it writes its
        report. SIGINT is also blocked, which the threads and processes started inside inherit: a Ctrl-C sent to
        the whole process group cannot kill a dask worker mid-import, with a traceback, before
        batch/worker_setup.py makes it ignore SIGINT. (SIGTERM is not: dask's nanny stops a worker over its
        memory limit with it.)"""
        held, self._held = self._held, True
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT} & self._previous.keys())
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a Ctrl-C blocked meanwhile is remembered here
            self._held = held

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        self._previous_unraisablehook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self._last and sig == signal.SIGINT else handler)
        sys.unraisablehook = self._previous_unraisablehook


def _identity(path: str) -> tuple[int, int] | None:
    """The file at `path` (device, inode), None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def entry_point(signals_type: type[_Signals] = _Signals):
    """Decorator: `main(argv, signals) -> int` as the `main(argv=None) -> int` that pyproject's
    [project.scripts] name and tests call.

    One `signals_type` scope covers the whole call, argparse included, so a signal at any point of it is one
    line and 130 / 143, not a traceback; the run's own handling (_run, the batch's) reports most of them, and
    says more. Called without argv, as the console script calls it, it is the process's last work (`last`)."""

    def wrap(main):
        @functools.wraps(main)
        def entry(argv: list[str] | None = None) -> int:
            with signals_type(last=argv is None) as signals:
                try:
                    return main(argv, signals)
                except (Exception, KeyboardInterrupt) as exc:
                    if signals.cancelled() or isinstance(exc, KeyboardInterrupt):
                        return signals.stopped(exc)
                    raise

        return entry

    return wrap


def _given(*paths: tuple[str, str]) -> None:
    """SarCompressError for a (what, path) whose path is "": Python reads it as the current folder, so
    `sar-compress "$f" out.sarc` with f unset said ".: is a folder"."""
    for what, path in paths:
        if path == "":
            raise SarCompressError(f"{what} is an empty path")


def _tile_help(signals: _Signals) -> str:
    """--tile's help for sar-compress and sar-compress-batch, from the codec's one tile-size rule (the batch's
    said "multiple of 16" and not "at most 1024"). core.tiling imports numpy: held, as `_run` holds it."""
    with signals.held():
        from .core.tiling import MAX_WRITE_TILE, TILE_STEP  # noqa: PLC0415

    return f"tile size in pixels (a multiple of {TILE_STEP}, from {TILE_STEP} to {MAX_WRITE_TILE})"


def _a_file(what: str, path: str) -> None:
    """SarCompressError for an output named with a trailing slash: Path() drops it, so `sar-compress in.tif
    out/`, with no folder out/ there, wrote a file named "out" where the user meant a folder."""
    if path.endswith(tuple(s for s in (os.sep, os.altsep) if s)):
        raise SarCompressError(f"{path}: {what} ends in {path[-1]!r}, so it names a folder; give a file name")


def _mask_note(raster: dict) -> str:
    """What marked the invalid pixels beyond nodata, for sar-info: a reconstruction will carry that mask."""
    kind = raster.get("gdal_mask")
    if not kind:
        return ""
    alpha = raster.get("alpha_band")
    return (f" (GDAL mask: {kind.replace('_', ' ')}" + (f", alpha band {alpha} not coded" if alpha else "")
            + "; the reconstruction carries it)")


def _georeferencing(raster: dict) -> str:
    """Where a file's raster lies on the map, for sar-info: whether a reconstruction will land where the
    original did is the first thing an archive operator checks, and the header's WKT is pages long."""
    from .core.codec import NO_GEOTRANSFORM, crs_name, geotransform_extent, map_crs_wkt  # noqa: PLC0415

    crs = f"CRS {crs_name(map_crs_wkt(raster))}"
    gcps = (raster.get("gcps") or {}).get("points")
    if gcps:
        xs, ys = [p[2] for p in gcps], [p[3] for p in gcps]
        return (f"{crs}; {len(gcps)} ground control points, extent about x {min(xs):.10g}..{max(xs):.10g}, "
                f"y {min(ys):.10g}..{max(ys):.10g}")
    g = [float(v) for v in raster["geotransform"]]
    if g == list(NO_GEOTRANSFORM):
        return f"{crs}; no geotransform (pixel coordinates)"
    x0, y0, x1, y1 = geotransform_extent(g, raster["width"], raster["height"])
    turned = " (rotated)" if g[2] or g[4] else ""
    return (f"{crs}; pixel {math.hypot(g[1], g[4]):.6g} x {math.hypot(g[2], g[5]):.6g}{turned}, extent "
            f"x {x0:.10g}..{x1:.10g}, y {y0:.10g}..{y1:.10g}")


def _band_labels(raster: dict) -> list[str]:
    """Each band's name for sar-info's per-band figures, "band N" for an unnamed one: a raster without band
    descriptions printed its clip ranges as " 40.00..61.20,  34.57..56.52"."""
    names = list(raster.get("band_names") or [])
    return [str(names[b]) if b < len(names) and str(names[b]).strip() else f"band {b + 1}"
            for b in range(raster["band_count"])]


def _scaling_line(raster: dict, scaling: list) -> str | None:
    """What sar-info says of bands with a GDAL scale or offset, None when none has one: a band coded as its
    physical values (format 5, `scaling` from codec.coded_scaling) has its clip range and outlier figures in dB
    of stored * scale + offset, and its reconstruction comes back as stored values under the same scale and
    offset; a band of a file from before (coded as its stored values) has them in the stored numbers' units."""
    from .core.raster_io import band_scaling  # noqa: PLC0415

    bands = list(raster.get("bands") or [])
    physical, stored = [], []
    for b, label in enumerate(_band_labels(raster)):
        given = band_scaling(bands[b]) if b < len(bands) and isinstance(bands[b], dict) else None
        if given is not None:
            scale, offset = given
            (physical if scaling[b] is not None else stored).append(
                f"{label} = stored * {scale:.10g} {'-' if offset < 0 else '+'} {abs(offset):.10g}")
    parts = []
    if physical:
        parts.append(", ".join(physical) + f" coded as physical values (the dB figures are theirs; reconstructed "
                                           f"as stored {raster['dtype']} under the same scale and offset)")
    if stored:
        parts.append(", ".join(stored) + " coded as stored values (written before format 5: the dB figures are "
                                         "of the stored numbers)")
    return "  scaling  " + "; ".join(parts) if parts else None


def _db(value) -> str:
    """A dB figure of the header for sar-info: 2.74509819772315 printed as it is stored said nothing more."""
    return f"{value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "?"


def _overview_chunks(header: dict, size: int) -> list:
    """The index entries of the overview chunks (one per band) inside a file of `size` bytes, [] for a file
    without an overview. They are chunks like the tiles' and must be counted and checked as theirs are:
    sar-info put their bytes under "header+index" and --verify named no band for a damaged one. (The reader's
    consistency check does not cover this optional index, so an entry past the file is left out here.)"""
    overview = header.get("overview")
    chunks = overview.get("chunks") if isinstance(overview, dict) else None
    if not isinstance(chunks, list):
        return []
    return [e for e in chunks if isinstance(e, list) and len(e) == 3 and all(type(v) is int for v in e)
            and 16 <= e[0] and 1 <= e[1] and e[0] + e[1] <= size]


def _run(fn, signals: _Signals) -> int:
    """fn(cancelled) -> exit status, with every way it can end turned into one line and a status."""
    try:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        # Held: a KeyboardInterrupt landing in numpy's first import, made by GDAL's array module (numpy's
        # import_array), is printed there with a traceback before it becomes an ImportError.
        with signals.held():
            from .core import codec  # noqa: F401, PLC0415  (numpy and GDAL)
            from .core.raster_io import limit_gdal_cache  # noqa: PLC0415
        if signals.cancelled():
            raise KeyboardInterrupt
        limit_gdal_cache()
        status = fn(signals.cancelled)
        return signals.stopped() if signals.cancelled() else status
    except _StdoutClosed:
        _discard_stdout()
        return EXIT_STDOUT_CLOSED
    except (Exception, KeyboardInterrupt) as exc:
        if signals.cancelled() or isinstance(exc, KeyboardInterrupt):
            return signals.stopped(exc)
        if isinstance(exc, SarCompressError):
            _say(f"error: {exc}")
            return EXIT_ERROR
        # a bug: still one line (outputs were cleaned up by the core's finally blocks)
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        _say(f"error: unexpected {type(exc).__name__}: {str(exc)[:200]} (a bug; please report it)")
        return EXIT_BUG


@entry_point()
def compress_main(argv, signals) -> int:
    p = _parser("sar-compress", "Compress a SAR raster (GeoTIFF or any GDAL raster) into a .sarc file.",
                EXIT_STATUS_HELP)
    p.add_argument("input", help="input raster: a file, or a GDAL virtual path such as "
                                 "/vsizip/archive.zip/scene.tif or /vsigzip/scene.tif.gz")
    p.add_argument("output", help="output .sarc file (a local path)")
    p.add_argument("--model", default=None, help="model bundle folder (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime device")
    p.add_argument("--tile", type=int, default=512, help=_tile_help(signals))
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, default=None,
                      help="operating point, a float from 0 (fewest bits) to the model's top level (most bits) "
                           "[the model's default]")
    rate.add_argument("--bpp", type=float, default=None, dest="target_bpp",
                      help="target bits per pixel per band; the quality is searched on sample tiles")
    rate.add_argument("--target-db-rmse", type=float, default=None,
                      help="target error in dB (RMSE); the lowest quality that meets it on sample tiles")
    p.add_argument("--domain", default=None, choices=["intensity", "amplitude", "db"],
                   help="value domain (default: VALUE_DOMAIN tag, else integer -> amplitude, "
                        "float with negatives -> db, else intensity)")
    p.add_argument("--outlier-margin", type=float, default=None, metavar="DB", dest="outlier_margin_db",
                   help="code pixels more than DB beyond the clip range exactly (to 0.125 dB); default: follows "
                        "the quality (about 17 dB at quality 0, 3 at 3, 1 at 5). Use e.g. 2 to keep every bright "
                        "target's value at low quality")
    p.add_argument("--no-clobber", action="store_true", help="refuse to replace an existing output")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    signals.watch(a.output)

    def go(cancelled) -> int:
        from .core.codec import (CompressOptions, coded_scaling, compress, read_header,  # noqa: PLC0415
                                 refuse_to_replace_data)

        _given(("the input", a.input), ("the output", a.output))
        _a_file("the output", a.output)
        refuse_to_replace_data(a.output, replacing="sarc")
        opts = CompressOptions(model_dir=a.model, device=a.device, tile_size=a.tile, quality=a.quality,
                               target_bpp=a.target_bpp, target_db_rmse=a.target_db_rmse, domain=a.domain,
                               outlier_margin_db=a.outlier_margin_db, no_clobber=a.no_clobber)
        with _progress_bar("compress", a.quiet) as bar:
            r = compress(a.input, a.output, opts, progress=bar, is_cancelled=cancelled)
        if a.json:  # plus what only the header says: a target met or not, and what an older reader can read
            h = read_header(r.output_path)
            _out(json.dumps({**r.__dict__, "format_version": h["format_version"], "rate": h["rate"],
                             "coded_physical": [s is not None for s in coded_scaling(h)]},
                            indent=1, default=str))
        else:
            mp_s = r.pixels * r.bands / 1e6 / max(r.seconds, 1e-9)
            _out(f"{r.output_path}: {r.output_bytes} bytes, {r.bpp:.4f} bpp ({r.bpp_per_band:.4f} per band), "
                 f"ratio {r.ratio:.1f}:1, quality {r.quality:.3f}, {r.outlier_pixels} out-of-range pixels, "
                 f"{r.seconds:.2f} s ({mp_s:.1f} MP/s), provider {r.provider}\n"
                 f"  domain {r.domain} ({r.domain_reason})")
        return 0

    return _run(go, signals)


@entry_point()
def reconstruct_main(argv, signals) -> int:
    p = _parser("sar-reconstruct", "Reconstruct a GeoTIFF (or a window of it) from a .sarc file.",
                EXIT_STATUS_HELP)
    p.add_argument("input", help="input .sarc file")
    p.add_argument("output", help="output GeoTIFF")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--window", type=int, nargs=4, metavar=("COL", "ROW", "W", "H"),
                   help="pixel window; one reaching past the raster's edge is clipped to it, with a note on "
                        "stderr (one with nothing inside is an error giving the raster's size)")
    g.add_argument("--bbox", type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="window in the raster's map coordinates (its CRS; for one placed by ground control points, "
                        "theirs): the pixels under the box, also for a rotated geotransform, clipped to the raster "
                        "as --window is")
    p.add_argument("--model-dir", action="append", default=[],
                   help="extra folder searched for the decoder (by SHA-256); repeatable; must exist; the "
                        "bundled default model is always searched")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime device")
    p.add_argument("--no-clobber", action="store_true", help="refuse to replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    signals.watch(a.output)

    def go(cancelled) -> int:
        from .core.codec import (clip_window, read_header, reconstruct, refuse_to_replace_data,  # noqa: PLC0415
                                 window_from_bbox)
        from .core.runtime import check_model_dirs  # noqa: PLC0415

        _given(("the input", a.input), ("the output", a.output))
        _a_file("the output", a.output)
        refuse_to_replace_data(a.output)
        check_model_dirs(a.model_dir)
        window = None
        if a.bbox:
            window = window_from_bbox(read_header(a.input), a.bbox, a.input, note=_note)
        elif a.window:
            window = clip_window(read_header(a.input), a.window, a.input, note=_note)
        with _progress_bar("reconstruct", a.quiet) as bar:
            r = reconstruct(a.input, a.output, window=window, model_dirs=a.model_dir, device=a.device,
                            progress=bar, is_cancelled=cancelled, no_clobber=a.no_clobber)
        mp_s = r.width * r.height * r.bands / 1e6 / max(r.seconds, 1e-9)
        _out(f"{r.output_path}: {r.width} x {r.height} x {r.bands}, {r.seconds:.2f} s ({mp_s:.1f} MP/s), "
             f"provider {r.provider}")
        return 0

    return _run(go, signals)


def _inspect(path: str, verify: bool, started: float, cancelled) -> tuple[dict, list, int]:
    """(header, coded scaling, file size) of the .sarc `path`, for sar-info. With `verify` its integrity is
    checked first: every chunk's CRC (a damaged one named by tile and band, as the decoder names it), the stored
    overview decoded as a viewer reads it, and the SHA-256 of the whole file; no tile goes through the decoder
    network. Raises SarCompressError for a file that fails."""
    from .core.codec import coded_scaling  # noqa: PLC0415
    from .core.container import ContainerFormatError, ContainerReader  # noqa: PLC0415
    from .core.raster_io import remove_stale_partials  # noqa: PLC0415

    _given(("the input", path))
    remove_stale_partials(path, older_than=started)  # a killed sar-compress of this file left them
    with ContainerReader(path) as r:
        h = r.header
        try:  # what the reconstruction refuses, sar-info must not describe (nor --verify call OK)
            scaling = coded_scaling(h)
        except ValueError as exc:
            raise ContainerFormatError(f"{path}: header field is invalid ({exc})") from None
        if verify:
            tiles = h["tiling"]["cols"] * h["tiling"]["rows"]
            for kind, entries in h["chunks"].items():
                for k, e in enumerate(entries):
                    if cancelled():  # a signal a library swallowed; _run reports it
                        raise KeyboardInterrupt
                    if e is not None:
                        r.read_chunk(e, f"{path}: tile {k % tiles} band {k // tiles + 1} ({kind} chunk)")
            if h.get("overview"):
                from .core.overview import read_overview  # noqa: PLC0415

                for b in range(h["raster"]["band_count"]):
                    read_overview(r, b)
            r.verify()
        return h, scaling, r.size


def _verify_each(paths: list[str], started: float, cancelled) -> int:
    """`sar-info --verify` of several files (`sar-info --verify o1/*.sarc` was "unrecognized arguments"): one
    line each on stdout, `FILE: OK` or `FILE: FAILED: why`, every file checked whatever the others gave; 0 when
    all verify, 2 (what one bad file gives alone) when any does not."""
    failed = 0
    for path in paths:
        try:
            _inspect(path, True, started, cancelled)
        except SarCompressError as exc:
            failed += 1
            why = str(exc)
            _out(f"{path}: FAILED: {why[len(path) + 2:] if why.startswith(f'{path}: ') else why}")
        else:
            _out(f"{path}: OK")
    return EXIT_ERROR if failed else 0


@entry_point()
def info_main(argv, signals) -> int:
    p = _parser("sar-info", "Describe a .sarc file: raster, model, coders, sizes; or check the integrity of "
                            "several (--verify).", EXIT_STATUS_HELP)
    p.add_argument("files", nargs="+", metavar="FILE",
                   help=".sarc file; several with --verify (one line each: FILE: OK, or FILE: FAILED: why; exit "
                        "status 0 only when every file verifies)")
    p.add_argument("--json", action="store_true", help="print the whole header as JSON")
    p.add_argument("--verify", action="store_true",
                   help="check integrity only: every chunk's CRC (a damaged one is named by tile and band), the "
                        "stored overview and the SHA-256 of the whole file; no tile is decoded by the model "
                        "(sar-reconstruct does that)")
    a = p.parse_args(argv)
    if len(a.files) > 1 and (a.json or not a.verify):
        p.error("several files are taken with --verify only, without --json")

    started = time.time()

    def go(cancelled) -> int:
        if len(a.files) > 1:
            return _verify_each(a.files, started, cancelled)
        path = a.files[0]
        h, scaling, size = _inspect(path, a.verify, started, cancelled)
        if a.json:
            lines = [json.dumps(h, indent=1)]
        else:
            ra, m, t = h["raster"], h["model"], h["tiling"]
            px = ra["width"] * ra["height"]
            raw = px * ra["band_count"] * __import__("numpy").dtype(ra["dtype"]).itemsize
            rate, o = h["rate"], h.get("outliers", {})
            clip = ", ".join(f"{n} {lo:.2f}..{hi:.2f}" for n, (lo, hi) in zip(_band_labels(ra), h["clip_db"]))
            parts = {kind: sum(e[1] for e in entries if e) for kind, entries in h["chunks"].items()}
            if _overview_chunks(h, size):
                parts["overview"] = sum(e[1] for e in _overview_chunks(h, size))
            parts["header+index"] = size - sum(parts.values())
            lines = [
                f"{path}: sarc format {h['format_version']}, {size} bytes",
                f"  raster   {ra['width']} x {ra['height']} x {ra['band_count']} {ra['dtype']} "
                f"bands {ra['band_names']} domain {h['domain']}",
                f"  georef   {_georeferencing(ra)}",
                f"  rate     {8 * size / px:.4f} bpp, ratio {raw / size:.1f}:1",
                f"  model    {m['name']} ({m.get('variant', '?')}) decoder sha256 {m['decoder_sha256']}",
                f"  clip dB  {clip}",
                *filter(None, [_scaling_line(ra, scaling)]),
                f"  quality  {rate['quality']} of 0..{rate.get('levels', 0) - 1} (chosen by "
                f"{rate.get('chosen_by', '?')}" + (f", target {rate['target']}" if "target" in rate else "") + ")",
                f"  tiles    {t['cols']} x {t['rows']} of {t['tile_size']} px, halo {t['halo']}; "
                f"coders {h['coders']}",
                f"  entropy  hyperprior sha256 {h['hyperprior']['sha256'][:16]}..., from the model bundle",
                f"  outliers {o.get('pixels', '?')} px beyond the clip range by > {_db(o.get('margin_db'))} dB, "
                f"coded in {_db(o.get('step_db'))} dB steps; invalid {h.get('invalid_pixels', '?')} px over "
                f"all bands"
                + _mask_note(ra),
                "  bytes    " + ", ".join(f"{k} {v} ({100 * v / size:.1f}%)" for k, v in parts.items()),
            ]
        if a.verify:
            lines.append("verify: OK")
        _out("\n".join(lines))
        return 0

    return _run(go, signals)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(compress_main())
