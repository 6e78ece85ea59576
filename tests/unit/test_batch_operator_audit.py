"""An archive operator's audit of sar-compress-batch / sar-reconstruct-batch and sar-info: one batch per output
folder, a scene that kills its workers told in the batch's own line with nothing left behind, an interrupted
rerun that keeps what earlier runs finished, a report that says what --bpp meant and names files one way, and
sar-info --verify over many files."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sar_compress_plugin.batch.cli import compress_batch_main, reconstruct_batch_main
from sar_compress_plugin.batch.report import write_report
from sar_compress_plugin.batch.tasks import check_sarc
from sar_compress_plugin.cli import compress_main, info_main
from sar_compress_plugin.core.tiling import MAX_WRITE_TILE, TILE_STEP

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sar_compress_plugin" / "sample_data" / "s1_iw_grd_frankfurt_512.tif"
#: a scheduler nobody listens on: the batches that use it have no scene to run, so none is started or reached
NO_SCHEDULER = "tcp://127.0.0.1:1"
BATCH = "import sys; from sar_compress_plugin.batch.cli import compress_batch_main as m; sys.exit(m())"


def _small(sar_data: Path, n: int) -> list[Path]:
    """Real Sentinel-1 scenes of 120 x 120 pixels, VV and VH (BigEarthNet patches, dB)."""
    found = sorted(sar_data.glob("bigearthnet_s1_*.tif"))[:n]
    assert len(found) == n
    return found


def _scene(path: Path, size: int) -> Path:
    """A real Sentinel-1 scene from the repository's sample, resampled by GDAL to `size` x `size`."""
    from osgeo import gdal

    path.parent.mkdir(parents=True, exist_ok=True)
    gdal.Translate(str(path), str(SAMPLE), width=size, height=size)
    return path


def _batch(args: list[str]) -> subprocess.Popen:
    """sar-compress-batch with the bundled model in a process and session of its own, stderr a pipe (a log)."""
    return subprocess.Popen([sys.executable, "-c", BATCH, *args, "--workers", "1", "--dashboard-address", ":0"],
                            cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _scenes(report: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in json.loads(report.read_text())["scenes"]}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_second_batch_over_the_same_output_folder_stops_at_once(sar_data, tmp_path):
    """Two batches started at once over one --out (an overlapping cron job) both said "ok" for every scene: each
    scene was compressed twice, the last rename won and the last report dropped the other's rows. The second
    now stops before any work, in one line naming the first one's PID, with exit status 2."""
    d = tmp_path / "in"
    d.mkdir()
    for p in _small(sar_data, 2):
        shutil.copy(p, d)
    out = tmp_path / "out"
    procs = [_batch([str(d), "--out", str(out), "-q"]) for _ in range(2)]
    results = sorted((*p.communicate(timeout=150), p.returncode, p.pid) for p in procs)  # (stdout, stderr, ...)
    assert sorted(r[2] for r in results) == [0, 2], results
    (_, err, _, _), (said, _, _, winner) = sorted(results, key=lambda r: -r[2])
    line = _lines(err)
    assert len(line) == 1 and "Traceback" not in err, err
    m = re.fullmatch(rf"error: another sar-compress-batch(?: \(pid (\d+) on \S+\))? is writing {re.escape(str(out))}; "
                     r"wait for it to end, or choose another --out", line[0])
    assert m, line[0]
    assert m.group(1) in (None, str(winner))  # None: it looked in the moment between the first one's lock and PID
    assert "2 ok of 2 inputs" in said
    scenes = json.loads((out / "sar-compress-batch-report.json").read_text())["scenes"]
    assert sorted(r["status"] for r in scenes) == ["ok", "ok"]
    assert not (out / ".sar-compress-batch.lock").exists()  # removed with the batch that held it


def test_a_reconstruct_batch_stops_too_while_its_output_folder_is_held(tmp_path, capsys):
    """sar-reconstruct-batch holds OUT/.sar-reconstruct-batch.lock alike; held elsewhere (here by this test's own
    open file), the batch stops in one line naming the holder, before it lists its inputs or writes a report."""
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".sar-reconstruct-batch.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on host-a\n")
        held.flush()
        code = reconstruct_batch_main([str(tmp_path / "a.sarc"), "--out", str(out), "--scheduler", NO_SCHEDULER,
                                       "-q"])
    assert code == 2 and _lines(capsys.readouterr().err) == [
        f"error: another sar-reconstruct-batch (pid 4242 on host-a) is writing {out}; wait for it to end, or "
        "choose another --out"]
    assert [p.name for p in out.iterdir()] == [".sar-reconstruct-batch.lock"]  # the holder's, left as it was


def test_a_lock_file_a_killed_batch_left_does_not_stop_the_next(tmp_path):
    """The lock is the kernel's (flock), released with its process: the file a SIGKILLed batch left (its PID in it)
    is taken over, and removed at the end like a lock this batch made."""
    out = tmp_path / "out"
    out.mkdir()
    (out / ".sar-compress-batch.lock").write_text("pid 999999 on gone-host\n")
    assert compress_batch_main([str(tmp_path / "missing.tif"), "--out", str(out), "--scheduler", NO_SCHEDULER,
                                "-q"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["sar-compress-batch-report.csv",
                                                     "sar-compress-batch-report.json"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_scene_over_the_memory_limit_is_one_line_with_its_time_and_leaves_nothing(tmp_path):
    """A 2048 x 2048 scene on a worker limited to 260 MB: dask's nanny stops the worker on each of 4 tries. The
    scheduler's own ERROR line came on stderr, the progress line read "(  s)", the last try's hidden partial
    stayed after the batch, and the error sent the operator to worker logs that are never saved. Now: the
    batch's lines only, the seconds, nothing left, and the cause as dask recorded it."""
    d = tmp_path / "in"
    src = _scene(d / "big.tif", 2048)
    out = tmp_path / "out"
    proc = _batch([str(d), "--out", str(out), "--memory-limit", "260MB"])
    _, err = proc.communicate(timeout=150)
    rows = _scenes(out / "sar-compress-batch-report.json")
    if rows["big.tif"]["status"] == "ok":
        pytest.skip("the scene fitted in 260 MB on this machine: no worker was stopped")
    assert proc.returncode == 1, err
    lines = _lines(err)
    assert "Traceback" not in err and not [line for line in lines if "distributed." in line or " ERROR " in line], err
    assert len(lines) == 3, err  # the start line, the scene's progress line, its failed line
    progress = re.fullmatch(rf"compress scene 1/1 to run: failed {re.escape(str(src))} \((\d+\.\d+) s\): (.*)", lines[1])
    assert progress and float(progress.group(1)) > 0, lines[1]
    assert progress.group(2).startswith("its worker process was stopped by dask at its memory limit of ")
    assert "--memory-limit" in progress.group(2) and "on the last of 4 tries" in progress.group(2)
    assert lines[2] == f"failed: {src}: {progress.group(2)}"
    assert rows["big.tif"]["seconds"] == float(progress.group(1))
    assert sorted(p.name for p in out.iterdir()) == ["sar-compress-batch-report.csv",
                                                     "sar-compress-batch-report.json"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_interrupted_rerun_keeps_the_rows_of_scenes_done_before(sar_data, tmp_path):
    """After a run, a rerun interrupted (Ctrl-C) before it got to small_0 reported it "cancelled, batch
    interrupted" with small_0.sarc of the first run in place, and the first run's "ok" row was gone. That row is
    kept while its output is the file it describes; the scene the rerun cut short is cancelled."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(_small(sar_data, 1)[0], d / "small_0.tif")
    out = tmp_path / "out"
    report = out / "sar-compress-batch-report.json"
    argv = [str(d), "--out", str(out), "--workers", "1", "--dashboard-address", ":0", "-q"]
    assert compress_batch_main(argv) == 0
    first = _scenes(report)["small_0.tif"]
    assert first["status"] == "ok"

    _scene(d / "big.tif", 2048)  # submitted first (largest first), so small_0 waits behind it
    proc = _batch([str(d), "--out", str(out), "-q"])
    deadline = time.monotonic() + 120
    while not list(out.glob(".big.sarc.partial-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    # what this run did: small_0 cancelled; big.tif cancelled, or ok when it was published while the workers
    # stopped (a task cannot be stopped mid-way)
    assert re.search(r"^interrupted: sar-compress-batch: (1 ok, 1|2) cancelled of 2 inputs", err, re.M), err
    rows = _scenes(report)
    assert rows["small_0.tif"] == first  # the first run's row, with its run
    assert check_sarc(rows["small_0.tif"]["output"], decode=False)
    assert Path(rows["big.tif"]["output"]).exists() == (rows["big.tif"]["status"] == "ok")


def test_an_earlier_done_row_gives_way_when_its_output_is_gone_or_another(tmp_path):
    """The earlier row stands over this run's "cancelled" only while its output is still the file it describes
    (its size): a .sarc deleted or replaced since is cancelled in this run's row."""
    names = ("kept", "deleted", "replaced")
    for name in names:
        (tmp_path / f"{name}.sarc").write_bytes(b"x" * 100)
    earlier = [{"input": str(tmp_path / f"{n}.tif"), "output": str(tmp_path / f"{n}.sarc"), "status": "ok",
                "error": "", "bytes_out": 100, "run": "2024-01-01T00:00:00"} for n in names]
    (tmp_path / "deleted.sarc").unlink()
    (tmp_path / "replaced.sarc").write_bytes(b"x" * 99)
    records = [{"input": r["input"], "output": r["output"], "status": "cancelled", "error": "batch interrupted",
                "bytes_out": ""} for r in earlier]
    json_path, _ = write_report(tmp_path / "report", "sar-compress-batch", records, {}, {"started": "now"}, earlier)
    rows = {Path(r["input"]).stem: (r["status"], r["run"]) for r in json.loads(json_path.read_text())["scenes"]}
    assert rows == {"kept": ("ok", "2024-01-01T00:00:00"), "deleted": ("cancelled", "now"),
                    "replaced": ("cancelled", "now")}


@pytest.mark.timeout(180)
def test_the_report_gives_bpp_per_band_and_absolute_inputs(sar_data, tmp_path, monkeypatch):
    """`--bpp` is per band, the report's `bpp` of all bands together (`--bpp 0.5` read 1.03): `bpp_per_band` says
    what --bpp meant. Inputs given relative were relative in the report, beside absolute outputs."""
    monkeypatch.chdir(tmp_path)
    Path("s1").mkdir()
    shutil.copy(_small(sar_data, 1)[0], "s1/small_0.tif")
    assert compress_batch_main(["s1/small_0.tif", "--out", "o1", "--bpp", "0.5", "--workers", "1",
                                "--dashboard-address", ":0", "-q"]) == 0
    row = json.loads(Path("o1/sar-compress-batch-report.json").read_text())["scenes"][0]
    assert row["bands"] == 2 and row["bpp_per_band"] == pytest.approx(row["bpp"] / 2, abs=1e-6)
    assert row["bpp_per_band"] == pytest.approx(0.5, rel=0.5)  # searched on sample tiles: near, not equal
    assert row["input"] == str(tmp_path / "s1" / "small_0.tif") and row["output"] == str(tmp_path / "o1" / "small_0.sarc")
    with open("o1/sar-compress-batch-report.csv", newline="") as f:
        (csv_row,) = list(csv.DictReader(f))
    assert float(csv_row["bpp_per_band"]) == row["bpp_per_band"] and csv_row["input"] == row["input"]


def test_a_report_path_that_is_an_input_raster_is_refused(sar_data, tmp_path, capsys):
    """`--report s1/small_0.tif` wrote s1/small_0.tif.json and .csv into the archive's folder; an existing file
    that is not a report's own .json or .csv is refused in one line before any work."""
    d = tmp_path / "s1"
    d.mkdir()
    src = Path(shutil.copy(_small(sar_data, 1)[0], d / "small_0.tif"))
    code = compress_batch_main([str(d), "--out", str(tmp_path / "o1"), "--report", str(src),
                                "--scheduler", NO_SCHEDULER, "-q"])
    err = capsys.readouterr().err
    assert code == 2 and _lines(err) == [f"error: --report {src}: is a file, not a report (PATH.json and PATH.csv "
                                         "are written); give the report a name of its own"], err
    assert sorted(p.name for p in d.iterdir()) == ["small_0.tif"]


def test_an_only_input_that_names_nothing_is_a_failed_input_and_the_help_says_so(tmp_path, capsys):
    """Decided: an INPUT that names nothing (no such file or folder) is a failed input, exit 1 with its row in
    the report, also when it is the only one; 2 stays for a batch that could not run. --help says so."""
    missing = tmp_path / "nothing_here"
    assert compress_batch_main([str(missing), "--out", str(tmp_path / "out"), "--scheduler", NO_SCHEDULER,
                                "-q"]) == 1
    assert _lines(capsys.readouterr().err) == [f"failed: {missing}: no such file or folder"]
    with pytest.raises(SystemExit):
        compress_batch_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "also an INPUT that names nothing to do, even the only one" in text
    assert "another batch writing the output folder" in text


@pytest.mark.parametrize("main", [compress_batch_main, compress_main], ids=["sar-compress-batch", "sar-compress"])
def test_tile_help_states_the_codecs_own_bounds(main, capsys):
    """The batch's --tile help said "multiple of 16" only, where sar-compress said "at most 1024": both now state
    the codec's one rule, from its constants."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"--tile TILE tile size in pixels (a multiple of {TILE_STEP}, from {TILE_STEP} to {MAX_WRITE_TILE})" in text


@pytest.fixture
def three_sarcs(tmp_path) -> tuple[Path, Path, Path]:
    """A good .sarc, a copy damaged in its first latent chunk, and a name with no file."""
    good = tmp_path / "good.sarc"
    shutil.copy(REPO / "tests" / "unit" / "data" / "frankfurt_chip_sar-baseline-ctx4-cpu-v8.sarc", good)
    damaged = tmp_path / "damaged.sarc"
    data = bytearray(good.read_bytes())
    data[1500] ^= 0xFF
    damaged.write_bytes(bytes(data))
    return good, damaged, tmp_path / "missing.sarc"


def test_sar_info_verifies_many_files_one_line_each(three_sarcs, capsys):
    """`sar-info --verify o1/*.sarc` was "unrecognized arguments". One line per file, every file checked, exit 0
    only when all verify; one file alone is described as before."""
    good, damaged, missing = three_sarcs
    assert info_main(["--verify", str(good), str(damaged), str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}: OK",
                                f"{damaged}: FAILED: tile 0 band 1 (latent chunk): chunk checksum mismatch "
                                "(file corrupted)",
                                f"{missing}: FAILED: file does not exist"] and err == ""
    assert info_main(["--verify", str(good), str(good)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{good}: OK", f"{good}: OK"]

    assert info_main(["--verify", str(good)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{good}: sarc format ") and lines[-1] == "verify: OK" and len(lines) > 5
    with pytest.raises(SystemExit) as usage:
        info_main([str(good), str(good)])  # describing several at once: not what one line each can say
    assert usage.value.code == 2
    assert "several files are taken with --verify only" in capsys.readouterr().err


def test_sar_info_help_says_verify_checks_integrity_only(capsys):
    with pytest.raises(SystemExit):
        info_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "check integrity only" in text and "SHA-256 of the whole file" in text
    assert "no tile is decoded by the model" in text
