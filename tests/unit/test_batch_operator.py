"""What an operator running sar-compress-batch / sar-reconstruct-batch unattended relies on: a rerun redoes what
was not made as asked now or is not whole, the output folder may sit beside or above the inputs, and the log
of a batch names each scene as it finishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin.batch.cli import compress_batch_main
from sar_compress_plugin.batch.inputs import Job, expand_inputs
from sar_compress_plugin.batch.tasks import check_sarc, compress_scene, reconstruct_scene
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress
from sar_compress_plugin.core.raster_io import RasterReader, read_raster_info

REPO = Path(__file__).resolve().parents[2]


def _small(sar_data: Path, n: int) -> list[Path]:
    """Real Sentinel-1 scenes of 120 x 120 pixels (BigEarthNet patches, dB)."""
    found = sorted(sar_data.glob("bigearthnet_s1_*.tif"))[:n]
    assert len(found) == n
    return found


def test_a_rerun_with_another_domain_or_tile_size_compresses_again(tiny_bundle, sar_data, tmp_path):
    """A .sarc made with another value domain or tile size is not what was asked: a rerun with --domain to
    correct an inferred domain, or with another --tile, used to skip every scene."""
    src = sorted(sar_data.glob("s1_iw_grd_*_512.tif"))[0]  # linear intensity
    out = tmp_path / "out" / "a.sarc"
    opts = CompressOptions(model_dir=tiny_bundle)
    assert compress_scene(Job(str(src), str(out)), opts)["status"] == "ok"
    assert check_sarc(out, decode=False)["domain"] == "intensity"
    assert compress_scene(Job(str(src), str(out)), opts)["status"] == "skipped"
    asked = CompressOptions(model_dir=tiny_bundle, domain="intensity")  # what was inferred: nothing to redo
    assert compress_scene(Job(str(src), str(out)), asked)["status"] == "skipped"

    amplitude = CompressOptions(model_dir=tiny_bundle, domain="amplitude")
    assert compress_scene(Job(str(src), str(out)), amplitude)["status"] == "ok"
    assert check_sarc(out, decode=False)["domain"] == "amplitude"
    assert compress_scene(Job(str(src), str(out)), amplitude)["status"] == "skipped"

    tile = CompressOptions(model_dir=tiny_bundle, domain="amplitude", tile_size=256)
    assert compress_scene(Job(str(src), str(out)), tile)["status"] == "ok"
    assert check_sarc(out, decode=False)["tiling"]["tile_size"] == 256
    assert compress_scene(Job(str(src), str(out)), tile)["status"] == "skipped"


def test_an_output_folder_that_is_or_holds_the_input_folder_keeps_its_rasters(tmp_path):
    """--out equal to the input folder (.sarc files beside the rasters) or above it used to fail the folder as
    having no rasters; an output folder inside it is still not searched."""
    d = tmp_path / "archive"
    for rel in ("x.tif", "sub/y.tif", "out/old.tif"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"")

    def outputs(out: Path) -> list[tuple[str, str]]:
        jobs = expand_inputs([str(d)], out, (".tif", ".tiff"), ".sarc")
        return [(Path(j.input).relative_to(d).as_posix(), Path(j.output).relative_to(out).as_posix()) for j in jobs]

    everything = [("out/old.tif", "out/old.sarc"), ("sub/y.tif", "sub/y.sarc"), ("x.tif", "x.sarc")]
    assert outputs(d) == everything
    assert outputs(tmp_path) == everything
    assert outputs(d / "out") == everything[1:]


def test_a_rerun_reconstructs_again_over_a_truncated_geotiff(tiny_bundle, sar_data, tmp_path):
    """A reconstruction cut short under its final name (an interrupted copy) still opens with the right shape;
    without --verify a rerun used to skip it as done."""
    sarc = tmp_path / "a.sarc"
    compress(_small(sar_data, 1)[0], sarc, CompressOptions(model_dir=tiny_bundle))
    job = Job(str(sarc), str(tmp_path / "rec" / "a.tif"))
    kwargs = {"model_dirs": [str(tiny_bundle)]}
    assert reconstruct_scene(job, **kwargs)["status"] == "ok"
    tif = Path(job.output)
    whole = tif.read_bytes()
    assert reconstruct_scene(job, **kwargs)["status"] == "skipped"

    tif.write_bytes(whole[: len(whole) // 2])
    assert read_raster_info(tif).width == 120  # the damage does not show in the header
    rec = reconstruct_scene(job, **kwargs)
    assert rec["status"] == "ok" and rec["bytes_out"] == len(whole) == tif.stat().st_size


def test_a_rerun_tells_a_reconstruction_by_its_sarc_content_not_by_dates(tiny_bundle, sar_data, tmp_path):
    """A .sarc replaced by another file with an older date (cp -p, rsync -a) is reconstructed again; the same
    .sarc copied afresh (a newer date, the same bytes) is not decoded again."""
    a, b = tmp_path / "a.sarc", tmp_path / "b.sarc"
    first, second = _small(sar_data, 2)
    compress(first, a, CompressOptions(model_dir=tiny_bundle))
    compress(second, b, CompressOptions(model_dir=tiny_bundle))
    job = Job(str(a), str(tmp_path / "rec" / "a.tif"))
    kwargs = {"model_dirs": [str(tiny_bundle)]}
    assert reconstruct_scene(job, **kwargs)["status"] == "ok"

    shutil.copy(a, tmp_path / "copy.sarc")
    os.replace(tmp_path / "copy.sarc", a)  # the same bytes, a newer date than the reconstruction
    assert reconstruct_scene(job, **kwargs)["status"] == "skipped"

    old = Path(job.output).stat().st_mtime - 3600
    shutil.copy(b, a)  # another scene under the same name, dated before the reconstruction
    os.utime(a, (old, old))
    assert reconstruct_scene(job, **kwargs)["status"] == "ok"
    with CompressedRaster(a, model_dirs=[tiny_bundle]) as cr:
        want = cr.read()
    with RasterReader(job.output) as r:
        got = np.stack([r.read(band, 0, 0, r.info.width, r.info.height) for band in range(r.info.band_count)])
    assert np.array_equal(got, want)


@pytest.mark.timeout(120)
def test_progress_in_a_log_file_is_one_line_per_finished_scene(tiny_bundle, sar_data, tmp_path, capsys):
    """stderr redirected to a log (not a terminal): each finished scene is a line naming it, its status and its
    bpp or error; the progress bar's carriage-return redraws were one line naming no scene."""
    d = tmp_path / "in"
    d.mkdir()
    good = [Path(shutil.copy(p, d)) for p in _small(sar_data, 2)]
    bad = d / "zero.tif"
    bad.write_bytes(b"")
    argv = [str(d), "--out", str(tmp_path / "out"), "--model", str(tiny_bundle), "--workers", "1",
            "--dashboard-address", ":0"]
    assert compress_batch_main(argv) == 1
    err = capsys.readouterr().err
    assert "\r" not in err and "Traceback" not in err
    progress = sorted(line for line in err.splitlines() if line.startswith("compress scene "))
    assert [line.split(": ", 1)[0] for line in progress] == [f"compress scene {n}/3 to run" for n in (1, 2, 3)]
    by_input = {line.split()[6]: line for line in progress}
    for p in good:
        assert by_input[str(p)].split()[5] == "ok" and by_input[str(p)].endswith(" bpp)")
    assert by_input[str(bad)].split()[5] == "failed" and "not a readable raster" in by_input[str(bad)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_client_killed_outright_leaves_a_report_and_a_rerun_finishes(sar_data, tmp_path):
    """SIGKILL to the whole batch (the OOM killer, a lost node) cannot be caught: the report written while it
    ran says what finished, the rest cancelled (there used to be none, or the previous run's), and a rerun
    skips what finished and does the rest. The bundled model keeps scenes in flight long enough."""
    d = tmp_path / "in"
    d.mkdir()
    for p in sorted(sar_data.glob("s1_iw_grd_*_512.tif"))[:3]:
        shutil.copy(p, d)
    out = tmp_path / "out"
    report = out / "sar-compress-batch-report.json"
    code = ("import sys; from sar_compress_plugin.batch import engine; engine.CHECKPOINT_SECONDS = 0; "
            "from sar_compress_plugin.batch.cli import compress_batch_main as m; sys.exit(m())")
    argv = [str(d), "--out", str(out), "--workers", "1", "--dashboard-address", ":0", "-q"]
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen: set[str] = set()
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline and "ok" not in seen:
        seen = {r["status"] for r in json.loads(report.read_text())["scenes"]} if report.is_file() else set()
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert seen == {"ok", "cancelled"}, f"no report while the batch ran, only at its end: {seen}"

    scenes = json.loads(report.read_text())["scenes"]
    assert len(scenes) == 3 and {r["status"] for r in scenes} == {"ok", "cancelled"}
    for r in scenes:
        if r["status"] == "ok":
            assert check_sarc(r["output"], decode=False)["raster"]["width"] == 512
        else:
            assert r["error"] == "batch interrupted before this scene finished"
    assert compress_batch_main(argv) == 0
    rerun = {r["input"]: r["status"] for r in json.loads(report.read_text())["scenes"]}
    assert all(rerun[r["input"]] == "skipped" for r in scenes if r["status"] == "ok")
    assert set(rerun.values()) <= {"ok", "skipped"} and sorted(p.name for p in out.iterdir()) == [
        *sorted(f"{p.stem}.sarc" for p in d.iterdir()), "sar-compress-batch-report.csv",
        "sar-compress-batch-report.json"]


#: a scheduler nobody listens on: the batches below have no input to run, so none is started or reached
NO_SCHEDULER = "tcp://127.0.0.1:1"


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_pattern_naming_folders_searches_them_as_the_shell_would(tmp_path, capsys):
    """A quoted pattern that matches folders ('archive/2024-*') found no file, ran nothing and exited 0 with
    "0 inputs"; it now searches each folder, as the same pattern left to the shell does, and one that finds
    nothing fails in one line."""
    d = tmp_path / "archive"
    for rel in ("2024-01/a.tif", "2024-02/sub/b.tif", "2024-02/notes.txt", "2025-01/c.tif"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"")
    out = tmp_path / "out"

    def jobs(*specs: str) -> list[tuple[str, str, str]]:
        return [(Path(j.input).relative_to(d).as_posix(), Path(j.output).relative_to(out).as_posix()
                 if j.output else "", j.error) for j in expand_inputs(specs, out, (".tif", ".tiff"), ".sarc")]

    quoted = jobs(str(d / "2024-*"))
    assert quoted == [("2024-01/a.tif", "a.sarc", ""), ("2024-02/sub/b.tif", "sub/b.sarc", "")]
    assert quoted == jobs(str(d / "2024-01"), str(d / "2024-02"))  # what the shell passes for it unquoted
    # `**/` matches every folder below: each scene once, its sub-folders kept
    assert jobs(f"{d}/**/") == [("2024-01/a.tif", "2024-01/a.sarc", ""),
                                        ("2024-02/sub/b.tif", "2024-02/sub/b.sarc", ""),
                                        ("2025-01/c.tif", "2025-01/c.sarc", "")]

    (tmp_path / "empty" / "2024-03").mkdir(parents=True)
    spec = str(tmp_path / "empty" / "2024-*")
    assert compress_batch_main([spec, "--out", str(out), "--scheduler", NO_SCHEDULER, "-q"]) == 1
    assert _one_line(capsys.readouterr().err) == f"failed: {spec}: pattern matches no .tif/.tiff file"
    report = json.loads((out / "sar-compress-batch-report.json").read_text())
    assert report["summary"]["inputs"] == 1 and report["summary"]["failed"] == 1


def test_a_broken_symbolic_link_to_a_scene_is_a_failed_input_naming_its_target(tmp_path, capsys):
    """A link to a scene whose target is gone (moved, an unmounted volume) was left out of a folder's batch
    without a word: no output, no report row, exit 0. It is now a failed input saying where it points."""
    d = tmp_path / "archive"
    d.mkdir()
    (d / "a.tif").write_bytes(b"")
    gone = tmp_path / "unmounted" / "b.tif"
    (d / "b.tif").symlink_to(gone)
    (d / "c.txt").symlink_to(tmp_path / "unmounted" / "c.txt")  # not a raster: not an input at all
    why = f"symbolic link to {gone} cannot be followed (No such file or directory)"
    out = tmp_path / "out"
    for specs in ([d], [d / "*.tif"], [d, d / "*"]):  # a folder, a pattern, both: the link reported once
        jobs = expand_inputs([str(s) for s in specs], out, (".tif", ".tiff"), ".sarc")
        assert [(Path(j.input).name, j.error) for j in jobs] == [
            ("a.tif", ""), ("b.tif", f"{why}; this scene is not in the batch")], specs
    assert expand_inputs([str(d / "b.tif")], out, (".tif",), ".sarc") == [Job(input=str(d / "b.tif"), error=why)]

    (d / "a.tif").unlink()  # the link alone: the batch fails it in one line (the folder is not "empty")
    assert compress_batch_main([str(d), "--out", str(out), "--scheduler", NO_SCHEDULER, "-q"]) == 1
    assert _one_line(capsys.readouterr().err) == f"failed: {d / 'b.tif'}: {why}; this scene is not in the batch"


def test_two_inputs_for_one_output_are_told_to_use_separate_output_folders(tmp_path):
    """a.tif and a.TIF both want a.sarc; "run them in separate batches" with the same --out made the second
    batch replace the first one's output (another source: not skipped), so the advice names --out."""
    d = tmp_path / "archive"
    d.mkdir()
    for name in ("a.tif", "a.TIF"):
        (d / name).write_bytes(b"")
    jobs = expand_inputs([str(d)], tmp_path / "out", (".tif", ".tiff"), ".sarc")
    assert [bool(j.error) for j in jobs] == [False, True]
    assert "also the output of" in jobs[1].error and "different --out folders" in jobs[1].error


@pytest.mark.parametrize("main", ["sar-compress-batch", "sar-reconstruct-batch"])
def test_help_says_what_each_exit_status_means(main, capsys):
    """The single-file CLIs' --help lists their exit statuses; the batches' did not, and a script needs 1
    (some inputs failed, the others done) and 130 / 143 (stopped: rerun to finish) told apart from 2."""
    from sar_compress_plugin.batch import cli

    fn = cli.compress_batch_main if main == "sar-compress-batch" else cli.reconstruct_batch_main
    with pytest.raises(SystemExit) as stop:
        fn(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for status in ("exit status: 0 every input done or skipped", "1 some inputs failed", "2 the batch could not run",
                   "130 interrupted (Ctrl-C)", "143 terminated (SIGTERM)", "rerun the same command"):
        assert status in text, status


def test_a_second_batch_over_the_same_output_leaves_the_first_ones_partial_files(tiny_bundle, sar_data, tmp_path):
    """Leftovers of a killed attempt are removed before a scene is written again, but every partial file of the
    output went, a live one too: a second batch started over the same --out while the first still ran (an
    overlapping cron job, a rerun of a batch thought dead) deleted the first one's files mid-write and failed
    its scenes. The writer is told by the PID in the name, here real processes: one running, one that ended."""
    src = _small(sar_data, 1)[0]
    out = tmp_path / "out" / "a.sarc"
    out.parent.mkdir()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead_pid = int(ended.stdout)
    try:
        live = [out.parent / f".a.sarc.partial-{running.pid}-0123abcd.sarc",
                out.parent / f"..a.sarc.partial-{running.pid}-0123abcd.sarc.partial-{running.pid}-4567cdef"]
        stale = [out.parent / f".a.sarc.partial-{dead_pid}-89abcdef.sarc",
                 out.parent / f"..a.sarc.partial-{dead_pid}-89abcdef.sarc.partial-{dead_pid}-01234567",
                 out.parent / ".a.sarc.partial-deadbeef.sarc"]  # an earlier version's name, without a PID
        for p in live + stale:
            p.write_bytes(b"half a file")
        rec = compress_scene(Job(str(src), str(out)), CompressOptions(model_dir=tiny_bundle))
        assert rec["status"] == "ok", rec["error"]
        assert [p.exists() for p in live + stale] == [True, True, False, False, False]
    finally:
        running.kill()
        running.wait()
