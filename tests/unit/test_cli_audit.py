"""The three command lines as an archive operator and an analyst meet them: a Ctrl-C that a library swallows,
that comes twice, after the output was written or while the command still loads, standard streams that go
away or fill up, file names that are not UTF-8, a damaged file named by tile and band, a .sarc named like a
GeoTIFF, a bbox in the wrong CRS, and the exit statuses in --help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin import cli
from sar_compress_plugin.core.codec import CompressOptions, compress, read_header
from sar_compress_plugin.core.errors import CancelledError

from codec_fixtures import SIGNAL_IN_IMPORT, compressed_scene, write_geotiff

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scene(tmp_path_factory, tiny_bundle):
    """A 64 x 128 two-band linear raster (UTM 33N, 10 m pixels from x 500000) and its .sarc: 2 tiles of 64."""
    return compressed_scene(tmp_path_factory.mktemp("audit"), tiny_bundle, 64, 128, seed=4)


def _args(which: str, scene, out: Path, bundle) -> list[str]:
    src, sarc = scene
    if which == "compress_main":
        return [str(src), str(out / "o.sarc"), "--model", str(bundle), "--device", "cpu", "--tile", "64", "-q"]
    if which == "reconstruct_main":
        return [str(sarc), str(out / "o.tif"), "--model-dir", str(bundle), "--device", "cpu", "-q"]
    return [str(sarc), "--json"]


def _cli(which: str, args: list[str], prelude: str = "", **kw) -> subprocess.CompletedProcess:
    """One CLI in a fresh process, after `prelude` (Python run first, e.g. a patch); stdout and stderr captured
    unless `kw` says otherwise."""
    code = f"import sys\n{prelude}\nfrom sar_compress_plugin import cli\nsys.exit(cli.{which}(sys.argv[1:]))"
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "env": {**os.environ, "OMP_NUM_THREADS": "1"},
          **kw}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, text=True, timeout=120, **kw)


def _one_line(stderr: str, start: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith(start), stderr
    return lines[0]


# --- Ctrl-C and SIGTERM that a library swallows ------------------------------------------------------------

#: What extension modules do with a KeyboardInterrupt that lands in their import (seen with real signals in
#: the first second of sar-reconstruct): let it through, swallow it (the run went on and wrote its output), or
#: turn it into another error (numpy's "ImportError: ... source directory"). Injected where the CLI loads GDAL.
_SIGNAL_DURING_IMPORT = """
import os, signal
import sar_compress_plugin.core.raster_io as rio
def limit_gdal_cache(*_a):
    {body}
rio.limit_gdal_cache = limit_gdal_cache
"""
_HOW = {
    "raised": "os.kill(os.getpid(), signal.{sig})",
    "swallowed": "try:\n        os.kill(os.getpid(), signal.{sig})\n    except BaseException:\n        pass",
    "converted": "try:\n        os.kill(os.getpid(), signal.{sig})\n    except BaseException:\n"
                 "        raise ImportError('numpy.core.multiarray failed to import')",
}


@pytest.mark.parametrize("how, sig, which", [
    ("swallowed", "SIGINT", "compress_main"), ("swallowed", "SIGTERM", "reconstruct_main"),
    ("swallowed", "SIGINT", "info_main"), ("raised", "SIGINT", "reconstruct_main"),
    ("converted", "SIGTERM", "compress_main")])
def test_a_signal_that_a_library_swallows_still_stops_the_run(scene, tiny_bundle, tmp_path, how, sig, which):
    prelude = _SIGNAL_DURING_IMPORT.format(body=_HOW[how].format(sig=sig))
    r = _cli(which, _args(which, scene, tmp_path, tiny_bundle), prelude)
    status, word = (130, "interrupted") if sig == "SIGINT" else (143, "terminated")
    assert r.returncode == status, r.stderr
    _one_line(r.stderr, f"{word}: no output written")
    assert os.listdir(tmp_path) == []


_SECOND_SIGNAL_DURING_CLEANUP = """
import os, signal
import sar_compress_plugin.core.codec as codec
import sar_compress_plugin.core.raster_io as rio
tick, discard = codec._tick, rio.PartialFile.discard
def _tick(progress, value):
    tick(progress, value)
    if value > 0:
        os.kill(os.getpid(), signal.SIGINT)
def _discard(self):
    os.kill(os.getpid(), signal.SIGINT)  # pressed again while the first one's cleanup runs
    discard(self)
codec._tick, rio.PartialFile.discard = _tick, _discard
"""


@pytest.mark.parametrize("which", ["compress_main", "reconstruct_main"])
def test_a_second_ctrl_c_does_not_cut_the_cleanup_short(scene, tiny_bundle, tmp_path, which):
    """Ctrl-C pressed twice (seen on a 3072 x 3072 raster: the partial stayed; sar-reconstruct also ended in
    onnxruntime's "terminate called without an active exception", status 134, its decoder join cut short)."""
    r = _cli(which, _args(which, scene, tmp_path, tiny_bundle), _SECOND_SIGNAL_DURING_CLEANUP)
    assert r.returncode == 130, r.stderr
    _one_line(r.stderr, "interrupted: no output written")
    assert os.listdir(tmp_path) == []


def test_an_exception_while_the_geotiff_is_flushed_still_removes_the_partial(tmp_path):
    from sar_compress_plugin.core.raster_io import GeoTiffWriter  # noqa: PLC0415

    class CutShort:
        """The GDAL dataset, whose flush a second Ctrl-C interrupts."""

        def __init__(self, ds):
            self._ds = ds

        def FlushCache(self):  # noqa: N802 (GDAL's name)
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self._ds, name)

    with pytest.raises(KeyboardInterrupt):
        with GeoTiffWriter(tmp_path / "o.tif", 32, 32, 1, "float32") as wr:
            wr._ds = CutShort(wr._ds)
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_cancel_during_the_last_tile_publishes_nothing(scene, tiny_bundle, tmp_path):
    """The Ctrl-C a library swallowed reaches the core as a cancel; one that comes after the last tile's check
    (while it is encoded, or the header is written) must still stop the rename."""
    calls = []

    def cancel_after_the_tiles():
        calls.append(1)
        return len(calls) > 2  # 2 tiles: one check before each passes

    with pytest.raises(CancelledError):
        compress(scene[0], tmp_path / "o.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64),
                 is_cancelled=cancel_after_the_tiles)
    assert os.listdir(tmp_path) == []


_SIGNAL_AFTER_PUBLISH = """
import os, signal
import sar_compress_plugin.core.raster_io as rio
publish = rio.PartialFile.publish
def _publish(self):
    publish(self)
    os.kill(os.getpid(), signal.{sig})
rio.PartialFile.publish = _publish
"""
#: Later still: after the run, while the command returns (outside _run, in cli.entry_point).
_SIGNAL_AFTER_THE_RUN = """
import os, signal
from sar_compress_plugin import cli
run = cli._run
def _run(*args):
    status = run(*args)
    os.kill(os.getpid(), signal.{sig})
    return status
cli._run = _run
"""


@pytest.mark.parametrize("when, sig, which", [
    ("publish", "SIGINT", "compress_main"), ("publish", "SIGTERM", "reconstruct_main"),
    ("run", "SIGINT", "reconstruct_main"), ("run", "SIGTERM", "compress_main")])
def test_a_signal_after_the_output_is_written_says_so(scene, tiny_bundle, tmp_path, when, sig, which):
    """A signal once the output has its final name, while the core tidies up or the command returns: it said
    "no output written" of a file that is there, whole. The status is still the signal's: the command was
    stopped (its summary may be missing)."""
    prelude = (_SIGNAL_AFTER_PUBLISH if when == "publish" else _SIGNAL_AFTER_THE_RUN).format(sig=sig)
    r = _cli(which, _args(which, scene, tmp_path, tiny_bundle), prelude)
    status, word = (130, "interrupted") if sig == "SIGINT" else (143, "terminated")
    out = tmp_path / ("o.sarc" if which == "compress_main" else "o.tif")
    assert r.returncode == status, r.stderr
    _one_line(r.stderr, f"{word}: {out} was written completely before the signal")
    assert os.listdir(tmp_path) == [out.name]
    if which == "compress_main":
        assert cli.info_main([str(out), "--verify"]) == 0
    else:
        assert _pixels(out).shape == (2, 64, 128)


#: A signal landing in a weakref callback (the import system drops a module lock through one): Python cannot
#: raise from there and prints the KeyboardInterrupt as "Exception ignored in ..." with a traceback.
_SIGNAL_IN_A_WEAKREF_CALLBACK = """
import os, signal, sys, weakref
from sar_compress_plugin import cli

def go(cancelled):
    class Held:
        pass
    held = Held()
    def callback(_):
        os.kill(os.getpid(), signal.{sig})
        for _ in range(10000):  # the handler runs at the next check of the loop
            pass
    ref = weakref.ref(held, callback)
    del held
    return 0

signals = cli._Signals()
with signals:
    status = cli._run(go, signals)
sys.exit(status)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_python_reports_as_unraisable_is_still_one_line(sig):
    """Seen, rarely and under load, in the Ctrl-C-again-and-again test below: the Ctrl-C landed in importlib's
    module-lock weakref callback, and its "Exception ignored in ... KeyboardInterrupt" traceback came before
    the run's line. The signal is remembered and stops the run; that report of it is noise, and dropped."""
    r = subprocess.run([sys.executable, "-c", _SIGNAL_IN_A_WEAKREF_CALLBACK.format(sig=sig)], cwd=REPO, text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == (130 if sig == "SIGINT" else 143), r.stderr
    _one_line(r.stderr, "interrupted: " if sig == "SIGINT" else "terminated: ")


def test_an_unraisable_exception_that_is_not_our_signal_is_still_reported():
    """Only our own KeyboardInterrupt is dropped: any other exception Python cannot raise keeps its report."""
    code = _SIGNAL_IN_A_WEAKREF_CALLBACK.replace("os.kill(os.getpid(), signal.{sig})", "1 / 0")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, text=True, capture_output=True, timeout=60)
    assert r.returncode == 0 and "Exception ignored in" in r.stderr and "ZeroDivisionError" in r.stderr, r.stderr


# --- a Ctrl-C while the command still loads -----------------------------------------------------------------

def _console_script(module: str, main: str, args: list, prelude: str = "") -> subprocess.CompletedProcess:
    """`main` of `module` run as its console script runs it (pyproject's [project.scripts]: import, then
    call it without arguments), after `prelude`."""
    code = f"import sys\n{prelude}\nfrom {module} import {main}\nsys.exit({main}())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, text=True, timeout=120, check=False,
                          capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})




@pytest.mark.parametrize("module, main, imported, line", [
    ("sar_compress_plugin.cli", "compress_main", "argparse", "stopped while starting; no output written"),
    ("sar_compress_plugin.cli", "info_main", "sar_compress_plugin.core.errors",
     "stopped while starting; no output written"),
    ("sar_compress_plugin.batch.cli", "compress_batch_main", "sar_compress_plugin.batch.inputs",
     "stopped while starting; no output written"),
    ("sar_compress_plugin.demo", "main", "sar_compress_plugin.core.codec", "no output written")])
def test_a_ctrl_c_while_the_command_loads_is_one_line(scene, tiny_bundle, tmp_path, module, main, imported,
                                                      line):
    """A Ctrl-C before the run's handler was in place, while the entry point's module imported what it needs
    (sar-demo imported the codec, numpy and GDAL there too), was a KeyboardInterrupt traceback."""
    args = {"compress_main": _args("compress_main", scene, tmp_path, tiny_bundle),
            "info_main": _args("info_main", scene, tmp_path, tiny_bundle),
            "compress_batch_main": [str(scene[0]), "--out", str(tmp_path / "out")],
            "main": ["--out", str(tmp_path / "demo"), "--model", str(tiny_bundle), "--device", "cpu"]}[main]
    r = _console_script(module, main, args, SIGNAL_IN_IMPORT.format(module=imported))
    assert r.returncode == 130, r.stderr
    _one_line(r.stderr, f"interrupted: {line}")
    assert os.listdir(tmp_path) == []


#: sar-compress's console script after Python's own start-up, which no project code can cover (site-packages,
#: and the import system finding the package): the marker line says that is over.
_AFTER_START_UP = """
import sar_compress_plugin
print("started", flush=True)
"""


def test_ctrl_c_pressed_again_and_again_from_the_start_is_one_line_and_130(scene, tiny_bundle, tmp_path):
    """Real Ctrl-Cs, every 20 ms from a moment after start-up until the process ends: while cli.py imports,
    while argparse runs, while numpy and GDAL load, while tiles are coded, after the output is written and
    while Python shuts down. Each run ends in one line and 130 (or, when they all come as it exits, in 0 and
    silence), never a traceback, and leaves no partial file.

    Bytecode is cached (in tmp_path) as an installed package's is: compiling cli.py from source, as it is
    here under PYTHONDONTWRITEBYTECODE, takes milliseconds in the import system before its first line runs,
    out of the project's reach like Python's start-up. The first run, without signals, fills the cache; the
    second times a whole run, which places the later Ctrl-Cs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = (f"import sys\n{_AFTER_START_UP}\nfrom sar_compress_plugin.cli import compress_main\n"
            "sys.exit(compress_main())")

    def run(out: Path, delay: float | None) -> tuple[int, str, float]:
        """(exit status, stderr, seconds from the marker to the exit), Ctrl-C every 20 ms from `delay` on."""
        out.mkdir()
        args = _args("compress_main", scene, out, tiny_bundle)
        proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline() == "started\n"
        t0 = time.monotonic()
        if delay is not None:
            time.sleep(delay)
            while proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                time.sleep(0.02)
        err = proc.communicate(timeout=60)[1]
        return proc.returncode, err, time.monotonic() - t0

    run(tmp_path / "cache", None)
    status, err, seconds = run(tmp_path / "timed", None)
    assert status == 0, err
    interrupted = 0
    for k, delay in enumerate((0.003, 0.008, *(f * seconds for f in (0.1, 0.3, 0.5, 0.7, 0.9)))):
        out = tmp_path / str(k)
        status, err, _ = run(out, delay)
        if status == 0:  # every Ctrl-C came as it exited, and is ignored
            assert "Traceback" not in err and os.listdir(out) == ["o.sarc"], (delay, err)
            continue
        interrupted += 1
        assert status == 130, (delay, err)
        line = _one_line(err, "interrupted: ")
        assert os.listdir(out) == (["o.sarc"] if "was written completely" in line else []), (delay, line)
    assert interrupted >= 5


# --- standard streams ---------------------------------------------------------------------------------------

def test_stdout_closed_by_its_reader_ends_quietly_with_141(scene, tiny_bundle, tmp_path):
    """`sar-info --json | head -1`: a filter whose reader went away ends as SIGPIPE would end it, silently."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = _cli("info_main", _args("info_main", scene, tmp_path, tiny_bundle), stdout=write_end,
                 stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (141, "")


def test_stdout_on_a_full_disk_is_one_error_line(scene, tiny_bundle, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        r = _cli("info_main", _args("info_main", scene, tmp_path, tiny_bundle), stdout=full, stderr=subprocess.PIPE)
    assert r.returncode == 2
    assert "standard output" in _one_line(r.stderr, "error: ")


@pytest.mark.parametrize("stderr", ["closed", "/dev/full", "a terminal gone"])
def test_an_unusable_stderr_does_not_fail_the_run(scene, tiny_bundle, tmp_path, stderr):
    """The progress bar (on: no -q, stderr a terminal) writes to stderr; stderr closed (`2>&-`), a log on a full
    disk or a terminal whose window was closed (writes fail with EIO) must cost the bar, not the compression. A
    failure still gives its status, and no error line on stdout."""
    if stderr == "/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    args = _args("compress_main", scene, tmp_path, tiny_bundle)[:-1]
    master, tty = os.openpty()
    os.close(master)  # the terminal is gone: the bar is drawn (isatty) and every write to it fails
    try:
        with open(os.devnull if stderr == "closed" else "/dev/full" if stderr == "/dev/full" else os.devnull,
                  "w") as f:
            kw = ({"preexec_fn": lambda: os.close(2)} if stderr == "closed" else
                  {"stderr": f} if stderr == "/dev/full" else {"stderr": tty})
            r = _cli("compress_main", args, **kw)
            assert r.returncode == 0 and (tmp_path / "o.sarc").is_file()
            r = _cli("compress_main", [str(tmp_path / "missing.tif"), *args[1:]], **kw)
    finally:
        os.close(tty)
    assert (r.returncode, r.stdout) == (2, "")


def test_without_q_a_log_file_gets_no_progress_bar_before_the_error_line(scene, tiny_bundle, tmp_path):
    """stderr in a log file, no -q: the bar's text ("compress:   0%|...") came before the `error:` line."""
    args = _args("compress_main", scene, tmp_path, tiny_bundle)[:-1]
    assert "-q" not in args
    r = _cli("compress_main", [str(tmp_path / "missing.tif"), *args[1:]])
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "%|" not in r.stderr, r.stderr


# --- file names and strings GDAL's bindings refuse ----------------------------------------------------------

def test_file_names_that_are_not_utf8_work_end_to_end(scene, tiny_bundle, tmp_path):
    """A name of Latin-1 bytes (an old archive on Linux) reaches Python as surrogate escapes, which GDAL's
    bindings refused ("not a string") as an input, as an output, and in the reconstruction's tag."""
    from osgeo import gdal  # noqa: PLC0415

    from sar_compress_plugin.core.raster_io import RECONSTRUCTION_TAG  # noqa: PLC0415

    src = os.fsdecode(os.fsencode(tmp_path) + b"/Stra\xdfe.tif")
    try:
        Path(src).write_bytes(scene[0].read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this filesystem takes only UTF-8 names")
    sarc, rec = src[:-4] + ".sarc", src[:-4] + "_rec.tif"
    assert cli.compress_main([src, sarc, "--model", str(tiny_bundle), "--device", "cpu", "--tile", "64",
                              "-q"]) == 0
    assert cli.reconstruct_main([sarc, rec, "--model-dir", str(tiny_bundle), "--device", "cpu", "-q"]) == 0
    ds = gdal.OpenEx(os.fsencode(rec))
    assert ds.RasterXSize == 128 and ds.GetMetadataItem(RECONSTRUCTION_TAG) == "Stra?e.sarc"
    ds = None
    # stdout of a UTF-8 locale is strict: the name is printed escaped, as Python prints it on stderr
    r = _cli("info_main", [sarc], env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert r.returncode == 0 and "Stra\\udcdfe.sarc: sarc format" in r.stdout, r.stderr


def test_header_text_gdal_refuses_is_written_not_a_bug(scene, tiny_bundle, tmp_path):
    """JSON lets a header hold a lone surrogate ("\\udcff"); GDAL's bindings raised TypeError on it (exit 3)."""
    lone = tmp_path / "lone.sarc"
    compress(scene[0], lone, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64,
                                             band_names=["V\udcffV", "VH"]))
    assert cli.reconstruct_main([str(lone), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                 "--device", "cpu", "-q"]) == 0
    from osgeo import gdal  # noqa: PLC0415

    assert gdal.Open(str(tmp_path / "r.tif")).GetRasterBand(1).GetDescription() == "V?V"


# --- what the user is told ----------------------------------------------------------------------------------

def test_verify_names_the_damaged_tile_and_band(scene, tmp_path, capsys):
    _, sarc = scene
    raw = bytearray(sarc.read_bytes())
    entry = read_header(sarc)["chunks"]["latent"][3]  # band 2 (0-based 1) of 2 tiles: tile 1
    raw[entry[0] + 1] ^= 0x10
    bad = tmp_path / "bad.sarc"
    bad.write_bytes(bytes(raw))
    assert cli.info_main([str(bad), "--verify"]) == 2
    line = _one_line(capsys.readouterr().err, "error: ")
    assert "tile 1 band 2 (latent chunk)" in line and "checksum" in line


@pytest.mark.parametrize("name", ["o.tif", "o.TIFF"])
def test_compress_refuses_a_geotiff_name(scene, tiny_bundle, tmp_path, name, capsys):
    assert cli.compress_main([str(scene[0]), str(tmp_path / name), "--model", str(tiny_bundle), "--device", "cpu",
                              "-q"]) == 2
    assert "GeoTIFF" in _one_line(capsys.readouterr().err, "error: ")
    assert os.listdir(tmp_path) == []


def test_a_bbox_in_another_crs_is_told_the_rasters_extent(scene, tiny_bundle, tmp_path, capsys):
    """Degrees for a UTM raster: the error says which coordinates the raster uses."""
    assert cli.reconstruct_main([str(scene[1]), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle), "-q",
                                 "--bbox", "15.0", "52.3", "15.1", "52.4"]) == 2
    line = _one_line(capsys.readouterr().err, "error: ")
    assert "x 500000..501280, y 5799360..5800000" in line and "UTM zone 33N" in line


@pytest.mark.parametrize("main", [cli.compress_main, cli.reconstruct_main, cli.info_main])
def test_exit_statuses_are_in_the_help(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for status in ("0 done", "2 bad input", "3 unexpected", "130 interrupted", "141 standard output",
                   "143 terminated"):
        assert status in text


def _pixels(path) -> np.ndarray:
    from osgeo import gdal  # noqa: PLC0415

    return gdal.Open(str(path)).ReadAsArray()


def test_a_window_or_bbox_past_the_rasters_edge_is_clipped_with_a_note(scene, tiny_bundle, tmp_path, capsys):
    """An area at the edge of the 128 x 64 raster, given as a pixel window or as a box: both give its part
    inside, 28 x 32 pixels from (100, 0), and one note saying so. The window used to be refused, and the box
    clipped without a word."""
    _, sarc = scene
    g = read_header(sarc)["raster"]["geotransform"]
    box = (g[0] + 100 * g[1], g[3] + 32 * g[5], g[0] + 150 * g[1], g[3] - 8 * g[5])  # cols 100..150, rows -8..32
    common = [str(sarc), "--model-dir", str(tiny_bundle), "--device", "cpu", "-q"]
    assert cli.reconstruct_main([*common[:1], str(tmp_path / "inside.tif"), *common[1:],
                                 "--window", "100", "0", "28", "32"]) == 0
    assert capsys.readouterr().err == ""
    for name, where in (("window", ["--window", "100", "-8", "50", "40"]), ("bbox", ["--bbox", *map(str, box)])):
        out = tmp_path / f"{name}.tif"
        assert cli.reconstruct_main([*common[:1], str(out), *common[1:], *where]) == 0
        note = _one_line(capsys.readouterr().err, f"note: {name} ")
        assert "reaches past the" in note and "clipped to" in note
        assert note.endswith("(col=100, row=0, width=28, height=32)")
        inside = _pixels(tmp_path / "inside.tif")
        assert inside.shape == (2, 32, 28) and np.array_equal(_pixels(out), inside)


@pytest.mark.parametrize("window", [("200", "0", "10", "10"), ("0", "-20", "10", "10")])
def test_a_window_with_nothing_inside_is_told_the_rasters_size(scene, tiny_bundle, tmp_path, window, capsys):
    assert cli.reconstruct_main([str(scene[1]), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle), "-q",
                                 "--window", *window]) == 2
    assert "is outside the 128 x 64 raster" in _one_line(capsys.readouterr().err, "error: ")
    assert os.listdir(tmp_path) == []


def test_a_model_folder_that_is_not_there_is_an_error_before_any_work(scene, tiny_bundle, tmp_path, capsys):
    """A mistyped --model-dir beside one that has the decoder (or the bundled model having it) was skipped
    without a word."""
    (tmp_path / "a-file").write_text("")
    for bad, why in ((tmp_path / "no-such", "no such folder"), (tmp_path / "a-file", "not a folder")):
        assert cli.reconstruct_main([str(scene[1]), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                     "--model-dir", str(bad), "--device", "cpu", "-q"]) == 2
        assert _one_line(capsys.readouterr().err, "error: ") == f"error: {bad}: {why} (given as a model folder)"
    assert not (tmp_path / "r.tif").exists()
    assert cli.reconstruct_main([str(scene[1]), str(tmp_path / "r.tif"), "--model-dir", "", "-q"]) == 2
    assert "empty" in _one_line(capsys.readouterr().err, "error: ")


@pytest.mark.parametrize("which, args, what", [
    ("compress_main", ["", "{tmp}/o.sarc"], "the input"), ("compress_main", ["{src}", ""], "the output"),
    ("reconstruct_main", ["", "{tmp}/o.tif"], "the input"), ("reconstruct_main", ["{sarc}", ""], "the output"),
    ("info_main", [""], "the input")])
def test_an_empty_path_is_called_empty(scene, tiny_bundle, tmp_path, monkeypatch, which, args, what, capsys):
    """`sar-compress "$f" out.sarc` with f unset said ".: is a folder" (Python reads "" as the current
    folder)."""
    monkeypatch.chdir(tmp_path)
    fill = {"tmp": tmp_path, "src": scene[0], "sarc": scene[1]}
    assert getattr(cli, which)([a.format(**fill) for a in args] + (["-q"] if which != "info_main" else [])) == 2
    assert _one_line(capsys.readouterr().err, "error: ") == f"error: {what} is an empty path"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("which, args, exists", [
    ("compress_main", ["{src}", "{tmp}/out/"], False), ("compress_main", ["{src}", "{tmp}/o.sarc/"], False),
    ("reconstruct_main", ["{sarc}", "{tmp}/out/"], False), ("reconstruct_main", ["{sarc}", "{tmp}/o.tif/"], True)])
def test_an_output_ending_in_a_slash_is_refused(scene, tmp_path, which, args, exists, capsys):
    """Path() drops a trailing slash: `sar-compress in.tif out/` with no folder out/ wrote a file named "out",
    and `sar-reconstruct a.sarc o.tif/` replaced the file o.tif, where the user named a folder."""
    if exists:
        (tmp_path / "o.tif").write_bytes(b"keep")
    fill = {"tmp": tmp_path, "src": scene[0], "sarc": scene[1]}
    assert getattr(cli, which)([a.format(**fill) for a in args] + ["-q"]) == 2
    assert "names a folder" in _one_line(capsys.readouterr().err, "error: ")
    assert sorted(os.listdir(tmp_path)) == (["o.tif"] if exists else [])
    if exists:
        assert (tmp_path / "o.tif").read_bytes() == b"keep"


@pytest.mark.parametrize("target", [["--bpp", "0.5"], ["--target-db-rmse", "3"]])
def test_a_rate_target_is_searched_where_the_data_is(tiny_bundle, tmp_path, target, capsys):
    """The quality search samples 4 tiles spread over the raster; a scene whose only data lay in other tiles
    (here one 32 x 32 tile of 64, the rest no-data) was refused with "no valid pixels in the sample tiles",
    though it compresses at any --quality."""
    data = np.zeros((256, 256), np.float32)
    data[:32, 32:64] = np.random.default_rng(7).gamma(1.0, 100.0, (32, 32))  # tile 1; the samples: 0, 21, 42, 63
    src = write_geotiff(tmp_path / "sparse.tif", data, nodata=0.0)
    out = tmp_path / "sparse.sarc"
    rc = cli.compress_main([str(src), str(out), "--model", str(tiny_bundle), "--device", "cpu", "--tile", "32",
                            "-q", *target])
    assert rc == 0, capsys.readouterr().err
    rate = read_header(out)["rate"]
    assert rate["chosen_by"] == ("bpp" if target[0] == "--bpp" else "db_rmse") and rate["sample_estimate"] > 0


def test_sar_info_rounds_its_db_figures_and_says_what_the_invalid_count_covers(capsys):
    """It printed the outlier margin as stored ("by > 2.74509819772315 dB") and a count over all bands as if
    it were per band (10240 px for 5120 per band of a 2-band file)."""
    chip = Path(__file__).parent / "data" / "frankfurt_chip_sar-baseline-ctx4-cpu-v8.sarc"
    assert cli.info_main([str(chip)]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("outliers")][0]
    margin = line.split("by > ")[1].split(" dB")[0]
    assert len(margin.replace(".", "").lstrip("0")) <= 3 and line.endswith("px over all bands"), line
