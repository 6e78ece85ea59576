"""An archive operator's second audit of the batch CLIs: a long scene says how far it is (on the batch's own
LocalCluster and on a remote one, `--scheduler`), the header and the progress count the same inputs, a file
name that is not UTF-8 is one row asking for a rename instead of a traceback, and a scene's record carries its
own bpp_per_band."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from sar_compress_plugin.batch.cli import compress_batch_main, reconstruct_batch_main
from sar_compress_plugin.batch.inputs import Job
from sar_compress_plugin.batch.progress import Display
from sar_compress_plugin.batch.tasks import PROGRESS_SECONDS_VARIABLE, compress_scene, reconstruct_scene
from sar_compress_plugin.core.codec import CompressOptions

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sar_compress_plugin" / "sample_data" / "s1_iw_grd_frankfurt_512.tif"
#: a scheduler nobody listens on: the batches that use it have no scene to run, so none is started or reached
NO_SCHEDULER = "tcp://127.0.0.1:1"
#: The line a progress event gives in a log file.
NOT_UTF8 = ("its path is not valid UTF-8 (the bytes that are not shown as \\xNN: a name from a Latin-1 system?), "
            "and a batch carries UTF-8 paths only; rename it, e.g. with convmv -f latin1 -t utf8")
RUNNING = re.compile(r"(compress|reconstruct) scene running: (.+) \((\d+)% of its tiles, (\d+\.\d) s\)")


def _scene(path: Path, size: int = 512) -> Path:
    """The repository's real Sentinel-1 sample (VV, VH), resampled by GDAL to `size` x `size`."""
    from osgeo import gdal

    path.parent.mkdir(parents=True, exist_ok=True)
    gdal.Translate(str(path), str(SAMPLE), width=size, height=size)
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _cluster_args() -> list[str]:
    return ["--workers", "1", "--dashboard-address", ":0"]


def _running(err: str, src: Path) -> list[int]:
    """The percentages of the progress lines about `src`, in order; they all come before its finished line."""
    lines = _lines(err)
    done = next(n for n, line in enumerate(lines) if f": ok {src} (" in line)
    found = [(n, RUNNING.fullmatch(line)) for n, line in enumerate(lines)]
    percents = [int(m.group(3)) for n, m in found if m and m.group(2) == str(src)]
    assert all(n < done for n, m in found if m), err
    return percents


@pytest.mark.timeout(240)
def test_a_long_scene_says_how_far_it_is_on_a_local_and_on_a_remote_cluster(tiny_bundle, tmp_path, monkeypatch,
                                                                            capsys):
    """A full Sentinel-1 scene takes ~15 min on a worker, with nothing shown until it ended. Its task now sends
    the share of its tiles done (at most every 30 s and every tenth of its tiles: here every tenth, the seconds
    set to 0 in the workers' environment), and a log file gets one line per event before the scene's own. The
    events travel through the scheduler: the same for a cluster the batch did not start (--scheduler)."""
    from dask.distributed import LocalCluster

    monkeypatch.setenv(PROGRESS_SECONDS_VARIABLE, "0")  # inherited by the workers started below
    src = _scene(tmp_path / "in" / "scene.tif")
    out = tmp_path / "out"
    assert compress_batch_main([str(src), "--out", str(out), "--model", str(tiny_bundle), "--tile", "64",
                                *_cluster_args()]) == 0
    err = capsys.readouterr().err
    percents = _running(err, src)
    assert len(percents) >= 2 and percents == sorted(set(percents)) and 0 < percents[0] < percents[-1] < 100, err

    sarc = out / "scene.sarc"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        assert reconstruct_batch_main([str(sarc), "--out", str(tmp_path / "rec"), "--model-dir", str(tiny_bundle),
                                       "--scheduler", cluster.scheduler_address]) == 0
    err = capsys.readouterr().err
    percents = _running(err, sarc)
    assert len(percents) >= 2 and percents == sorted(set(percents)), err
    assert "Traceback" not in err


def test_on_a_terminal_the_bar_names_each_running_scene_and_how_far_it_is(monkeypatch):
    """On a terminal the progress is the bar: its postfix names the failures and each running scene's share of
    its tiles; a scene leaves it when it finishes, and events that come late (after their scene finished, after
    the batch, or of another batch on a shared scheduler) change nothing. With -q nothing is drawn."""

    class Terminal:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    display = Display("compress scene", {"k-a": "/archive/a.tif", "k-b": "/archive/b.tif"}, quiet=False)
    display.on_event((0.0, {"key": "k-a", "fraction": 0.4, "seconds": 31.0}))
    display.on_event((0.0, {"key": "k-b", "fraction": 0.1, "seconds": 30.5}))
    display.on_event((0.0, {"key": "other-batch", "fraction": 0.5, "seconds": 30.0}))
    assert "0/2" in term.text and "failed=0, a.tif 40%, b.tif 10%" in term.text.rsplit("\r", 1)[-1]
    assert "compress scenes to run" in term.text and "other" not in term.text
    display.finished("k-a", {"status": "failed", "input": "/archive/a.tif", "error": "x", "bpp": "", "seconds": 1})
    display.on_event((0.0, {"key": "k-a", "fraction": 0.5, "seconds": 60.0}))
    assert "1/2" in term.text and "failed=1, b.tif 10%" in term.text.rsplit("\r", 1)[-1]
    assert "a.tif 50%" not in term.text
    display.close()
    display.on_event((0.0, {"key": "k-b", "fraction": 0.6, "seconds": 90.0}))
    assert "b.tif 60%" not in term.text

    term.text = ""
    quiet = Display("compress scene", {"k-a": "/archive/a.tif"}, quiet=True)
    quiet.on_event((0.0, {"key": "k-a", "fraction": 0.4, "seconds": 31.0}))
    quiet.finished("k-a", {"status": "ok", "input": "/archive/a.tif", "error": "", "bpp": 1.0, "seconds": 1})
    quiet.close()
    assert term.text == ""


@pytest.mark.timeout(180)
def test_the_header_and_the_progress_count_the_same_inputs(tiny_bundle, tmp_path, capsys):
    """The header said "4 inputs" where the progress counted "1/2": it counted every row (an input that names
    nothing, a scene reached a second way) and the progress only the scenes it runs. The header now says both,
    the progress is labelled "to run", and the last line counts the report's inputs."""
    d = tmp_path / "in"
    a, b = _scene(d / "a.tif", 64), _scene(d / "b.tif", 64)
    link = tmp_path / "elsewhere" / "link.tif"
    link.parent.mkdir()
    link.symlink_to(a)
    out = tmp_path / "out"
    assert compress_batch_main([str(d), str(tmp_path / "missing.tif"), str(link), "--out", str(out), "--model",
                                str(tiny_bundle), *_cluster_args()]) == 1
    captured = capsys.readouterr()
    lines = _lines(captured.err)
    assert lines[0].startswith("sar-compress-batch: 4 inputs, 2 to run (1 failed, 1 skipped before running) on 1 "
                               "workers (1 threads each); dashboard "), lines[0]
    progress = sorted(line.split(": ")[0] for line in lines if line.startswith("compress scene "))
    assert progress == ["compress scene 1/2 to run", "compress scene 2/2 to run"], lines
    doc = json.loads((out / "sar-compress-batch-report.json").read_text())
    assert doc["summary"]["inputs"] == len(doc["scenes"]) == 4
    assert re.match(r"sar-compress-batch: 2 ok, 1 skipped, 1 failed of 4 inputs in ", captured.out), captured.out
    assert sorted(Path(r["input"]).name for r in doc["scenes"] if r["status"] == "ok") == [a.name, b.name]


@pytest.mark.timeout(180)
def test_a_file_name_that_is_not_utf8_is_one_failed_row_asking_for_a_rename(tiny_bundle, tmp_path, capsys):
    """An archive copied from an old Latin-1 system has names with a byte such as \\xe8 that is not UTF-8:
    the batch died with a traceback (dask's messages, then the report's CSV). Each such file, found in a
    folder, given by name or below such a folder, is now one failed row naming it with \\xNN escapes and asking
    for a rename; the other scenes run, and the report is valid UTF-8 JSON and CSV."""
    d = tmp_path / "in"
    good = _scene(d / "good.tif", 64)
    bad = Path(os.fsdecode(bytes(d) + b"/sc\xe8ne.tif"))
    shutil.copy(good, bad)
    bad_folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    below = bad_folder / "inside.tif"
    bad_folder.mkdir()
    shutil.copy(good, below)
    out = tmp_path / "out"
    code = compress_batch_main([str(d), str(bad_folder), "--out", str(out), "--model", str(tiny_bundle), "-q",
                                *_cluster_args()])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err, captured.err
    shown_bad, shown_below = f"{d}/sc\\xe8ne.tif", f"{tmp_path}/caf\\xe9/inside.tif"
    failed = sorted(line for line in _lines(captured.err) if line.startswith("failed: "))
    assert failed == sorted(f"failed: {path}: {NOT_UTF8}" for path in (shown_bad, shown_below)), captured.err
    assert "1 ok, 2 failed of 3 inputs" in captured.out

    doc = json.loads((out / "sar-compress-batch-report.json").read_bytes().decode("utf-8"))
    rows = {r["input"]: r for r in doc["scenes"]}
    assert rows[str(good)]["status"] == "ok" and (out / "good.sarc").is_file()
    assert rows[shown_bad]["status"] == rows[shown_below]["status"] == "failed"
    assert rows[shown_bad]["output"] == "" and doc["run"]["arguments"]["inputs"][1] == f"{tmp_path}/caf\\xe9"
    assert "\\udc" not in (out / "sar-compress-batch-report.json").read_text()  # no lone surrogates for a reader
    with open(out / "sar-compress-batch-report.csv", newline="", encoding="utf-8") as f:
        assert {r["input"] for r in csv.DictReader(f)} == {str(good), shown_bad, shown_below}
    assert sorted(os.listdir(out)) == ["good.sarc", "sar-compress-batch-report.csv", "sar-compress-batch-report.json"]

    # given by name: the same row, and nothing to start a cluster for
    assert compress_batch_main([str(bad), "--out", str(tmp_path / "out2"), "--scheduler", NO_SCHEDULER, "-q"]) == 1
    assert _lines(capsys.readouterr().err) == [f"failed: {shown_bad}: {NOT_UTF8}"]


def test_an_output_folder_whose_name_is_not_utf8_is_refused_before_any_work(tmp_path, capsys):
    """--out (or --report, --model...) not valid UTF-8 would name every output and the report so: the batch
    stops in one line, exit 2, before it makes anything."""
    out = Path(os.fsdecode(bytes(tmp_path) + b"/sortie-\xe9t\xe9"))
    code = compress_batch_main([str(tmp_path / "a.tif"), "--out", str(out), "--scheduler", NO_SCHEDULER, "-q"])
    assert code == 2 and _lines(capsys.readouterr().err) == [
        f"error: --out {tmp_path}/sortie-\\xe9t\\xe9: not valid UTF-8 (the bytes that are not shown as \\xNN); "
        "rename it, e.g. with convmv -f latin1 -t utf8"]
    assert os.listdir(tmp_path) == []


def test_a_scenes_record_carries_its_bpp_per_band(tiny_bundle, tmp_path):
    """bpp_per_band was added by the report from bpp and bands; it is the task's, with bpp and the ratio (one
    place computes a row's figures), for a compressed and for a reconstructed scene alike."""
    src = _scene(tmp_path / "a.tif", 64)
    rec = compress_scene(Job(str(src), str(tmp_path / "a.sarc")), CompressOptions(model_dir=str(tiny_bundle)))
    assert rec["status"] == "ok" and rec["bands"] == 2
    assert rec["bpp_per_band"] == pytest.approx(rec["bpp"] / 2, abs=1e-6) and rec["bpp_per_band"] > 0
    back = reconstruct_scene(Job(str(tmp_path / "a.sarc"), str(tmp_path / "rec" / "a.tif")),
                             model_dirs=[str(tiny_bundle)])
    assert back["status"] == "ok" and back["bpp_per_band"] == rec["bpp_per_band"]
