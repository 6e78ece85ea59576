"""sar-compress-batch / sar-reconstruct-batch on a real dask LocalCluster (2 worker processes) over real
Sentinel-1 scenes: a corrupt input, a worker killed mid-task, reruns, and the report."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin.batch.cli import compress_batch_main, reconstruct_batch_main
from sar_compress_plugin.batch.engine import ClusterOptions, open_client
from sar_compress_plugin.batch.inputs import expand_inputs
from sar_compress_plugin.batch.tasks import check_sarc
from sar_compress_plugin.core.codec import CompressOptions, compress
from sar_compress_plugin.core.raster_io import read_raster_info

REPORT = "sar-compress-batch-report"


@pytest.fixture(scope="module")
def client():
    """One 2-worker LocalCluster for the module, built by the batch's own open_client, closed at the end."""
    with open_client(ClusterOptions(workers=2, threads=1, dashboard_address=":0")) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture
def scenes(sar_data, tmp_path) -> Path:
    """A folder of small real scenes (one in a sub-folder) and a truncated, corrupt GeoTIFF."""
    src = sorted(sar_data.glob("s1_iw_grd_*_512.tif"))[:3]
    assert len(src) == 3
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for p in src[:2]:
        shutil.copy(p, d / p.name)
    shutil.copy(src[2], d / "sub" / src[2].name)
    (d / "corrupt.tif").write_bytes(src[0].read_bytes()[:5000])
    return d


def _report(out: Path) -> tuple[dict, list[dict]]:
    doc = json.loads((out / f"{REPORT}.json").read_text())
    with open(out / f"{REPORT}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == [r["input"] for r in doc["scenes"]]
    return doc, rows


def _hidden(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


def _this_run(doc: dict) -> dict:
    """The report with the rows of the run that wrote it: rows of earlier runs about other inputs follow them."""
    return {**doc, "scenes": doc["scenes"][:doc["summary"]["inputs"]]}


def _check_good(doc: dict, scenes: Path, out: Path, workers) -> None:
    """Every good scene has a verified output under its final name, and the report's figures are its own."""
    good = sorted(p for p in scenes.rglob("s1_*.tif"))
    by_input = {r["input"]: r for r in doc["scenes"]}
    assert len(by_input) == len(doc["scenes"]) == len(good) + 1
    for p in good:
        r = by_input[str(p)]
        o = out / p.relative_to(scenes).with_suffix(".sarc")
        assert r["output"] == str(o) and r["status"] in ("ok", "skipped") and r["error"] == ""
        header = check_sarc(o, decode=False)  # SHA-256 of the whole file: nothing partial under a final name
        info = read_raster_info(p)
        assert (header["raster"]["width"], header["raster"]["height"]) == (info.width, info.height)
        assert r["bytes_in"] == p.stat().st_size and r["bytes_out"] == o.stat().st_size
        assert r["pixels"] == info.width * info.height and r["bands"] == info.band_count
        assert r["bpp"] == pytest.approx(8 * o.stat().st_size / r["pixels"], rel=1e-5)
        assert r["seconds"] > 0 and r["worker"] in workers
    bad = by_input[str(scenes / "corrupt.tif")]
    assert bad["status"] == "failed" and bad["bytes_out"] == "" and not Path(bad["output"]).exists()
    assert "corrupt.tif" in bad["error"] and "not a readable raster" in bad["error"] and "\n" not in bad["error"]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_batch_compresses_a_folder_reports_every_input_and_a_rerun_skips_or_repairs(client, scenes, tiny_bundle,
                                                                                     tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(scenes), str(tmp_path / "missing" / "*.tif"), "--out", str(out), "--model", str(tiny_bundle),
            "--scheduler", client.scheduler.address, "-q"]
    assert compress_batch_main(argv) == 1  # the corrupt scene and the empty pattern failed, the rest did not
    err = capsys.readouterr().err
    assert "dashboard http" in err and "Traceback" not in err
    assert "failed: " in err and "corrupt.tif" in err
    doc, rows = _report(out)
    workers = set(client.scheduler_info()["workers"])
    scenes_doc = {**doc, "scenes": [r for r in doc["scenes"] if "missing" not in r["input"]]}
    _check_good(scenes_doc, scenes, out, workers)
    assert {r["status"] for r in scenes_doc["scenes"]} == {"ok", "failed"}
    missing = [r for r in rows if "missing" in r["input"]]
    assert len(missing) == 1 and missing[0]["status"] == "failed" and missing[0]["error"] == "pattern matches no file"
    assert doc["summary"]["ok"] == 3 and doc["summary"]["failed"] == 2 and doc["summary"]["inputs"] == 5
    assert doc["summary"]["bytes_out"] == sum(p.stat().st_size for p in out.rglob("*.sarc"))
    assert (out / "sub").is_dir() and _hidden(out) == []
    assert {r["worker"] for r in doc["scenes"] if r["status"] == "ok"} == workers  # both workers took scenes

    # rerun after damage: one output truncated, a temporary left behind by a dead worker
    outputs = sorted(out.rglob("*.sarc"))
    damaged = outputs[0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    leftover = damaged.parent / f".{damaged.name}.partial-deadbeef.sarc"
    leftover.write_bytes(b"half a file")
    mtimes = {p: p.stat().st_mtime_ns for p in outputs[1:]}
    assert compress_batch_main(argv[:1] + argv[2:] + ["--verify"]) == 1
    doc = _this_run(_report(out)[0])  # the failed pattern of the first run, left out now, follows its rows
    status = {r["output"]: r["status"] for r in doc["scenes"]}
    assert status[str(damaged)] == "ok" and all(status[str(p)] == "skipped" for p in outputs[1:])
    assert {p: p.stat().st_mtime_ns for p in outputs[1:]} == mtimes  # skipped means untouched
    _check_good(doc, scenes, out, workers)
    assert check_sarc(damaged, decode=True, model_dirs=[tiny_bundle])["raster"]["band_count"] == 2
    assert _hidden(out) == []

    # asked for another quality: existing outputs are not what was asked for, so all are redone
    assert compress_batch_main(argv[:1] + argv[2:] + ["--quality", "2"]) == 1
    doc = _this_run(_report(out)[0])
    assert sorted(r["status"] for r in doc["scenes"]) == ["failed", "ok", "ok", "ok"]
    assert all(check_sarc(p, decode=False)["rate"] == {"quality": 2.0, "levels": 3, "chosen_by": "quality",
                                                                   "rounding": "rate_distortion"}
               for p in outputs)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_batch_survives_a_worker_killed_mid_task(client, scenes, tmp_path):
    """SIGKILL the worker writing a scene: the scheduler reruns that scene elsewhere, the batch completes,
    every good scene is done exactly once and nothing partial is left under a final name. (The bundled model,
    slower than the tiny one, keeps each scene in flight long enough to be caught.)"""
    out = tmp_path / "out"
    result = {}
    argv = [str(scenes), "--out", str(out), "--scheduler", client.scheduler.address, "-q"]
    batch = threading.Thread(target=lambda: result.setdefault("rc", compress_batch_main(argv)), daemon=True)
    batch.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and batch.is_alive() and time.monotonic() < deadline:
        partial = [p for p in out.rglob(".*.partial-*")] if out.is_dir() else []
        if partial:
            stem = partial[0].name.lstrip(".").split(".")[0]
            for addr, keys in client.processing().items():
                if any(stem in str(k) for k in keys):
                    pid = client.run(os.getpid, workers=[addr])[addr]
                    os.kill(pid, signal.SIGKILL)
                    killed = (addr, stem)
                    break
        time.sleep(0.005)
    batch.join(timeout=180)
    assert killed is not None, "no task was caught mid-write"
    assert not batch.is_alive() and result["rc"] == 1
    doc, _ = _report(out)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    _check_good(doc, scenes, out, set(client.scheduler_info()["workers"]) | {killed[0]})
    redone = [r for r in doc["scenes"] if killed[1] in r["input"]]
    assert len(redone) == 1 and redone[0]["status"] == "ok" and redone[0]["worker"] != killed[0]
    assert _hidden(out) == []


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_reconstruct_batch_on_its_own_local_cluster(client, tiny_bundle, sar_data, tmp_path, capsys):
    src = sorted(sar_data.glob("s1_iw_grd_*_512.tif"))[:2]
    sarc = tmp_path / "sarc"
    sarc.mkdir()
    for p in src:
        compress(p, sarc / f"{p.stem}.sarc", CompressOptions(model_dir=tiny_bundle))
    (sarc / "bad.sarc").write_bytes(b"not a sarc file at all")
    out = tmp_path / "rec"
    argv = [str(sarc / "*.sarc"), "--out", str(out), "--model-dir", str(tiny_bundle), "--workers", "2",
            "--dashboard-address", ":0", "--verify", "-q"]
    assert reconstruct_batch_main(argv) == 1
    assert "Traceback" not in capsys.readouterr().err
    doc = json.loads((out / "sar-reconstruct-batch-report.json").read_text())
    assert doc["run"]["workers"] == 2
    rows = {Path(r["input"]).name: r for r in doc["scenes"]}
    assert rows["bad.sarc"]["status"] == "failed" and "bad.sarc" in rows["bad.sarc"]["error"]
    for p in src:
        r, tif = rows[f"{p.stem}.sarc"], out / f"{p.stem}.tif"
        a, b = read_raster_info(p), read_raster_info(tif)
        assert r["status"] == "ok" and r["output"] == str(tif)
        assert (b.width, b.height, b.band_count, b.dtype) == (a.width, a.height, a.band_count, a.dtype)
        assert r["bpp"] == pytest.approx(8 * (sarc / f"{p.stem}.sarc").stat().st_size / (a.width * a.height),
                                         rel=1e-5)
    # rerun (on the module's cluster): the good ones are skipped, the bad one fails again
    assert reconstruct_batch_main(argv + ["--scheduler", client.scheduler.address]) == 1
    doc = json.loads((out / "sar-reconstruct-batch-report.json").read_text())
    assert sorted(r["status"] for r in doc["scenes"]) == ["failed", "skipped", "skipped"]


def test_inputs_from_folders_patterns_and_stac(tmp_path):
    d = tmp_path / "archive"
    for rel in ("a/x.tif", "b/x.tif", "c.TIFF", "notes.txt", ".hidden.tif"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"")
    item = {"type": "Feature", "id": "S1A_IW_GRDH_0001", "links": [],
            "assets": {"vv": {"href": "../archive/a/x.tif"}, "vh": {"href": f"file://{d}/c.TIFF"},
                       "remote": {"href": "https://example.com/vv.tif"}, "thumbnail": {"href": "thumb.png"}}}
    (tmp_path / "stac").mkdir()
    (tmp_path / "stac" / "item.json").write_text(json.dumps(item))
    (tmp_path / "stac" / "collection.json").write_text(json.dumps(
        {"type": "Collection", "id": "c", "links": [{"rel": "item", "href": "./item.json"},
                                                    {"rel": "self", "href": "./collection.json"}]}))
    out = tmp_path / "out"
    jobs = expand_inputs([str(d), str(d / "*.TIFF"), str(tmp_path / "stac" / "collection.json"),
                          str(tmp_path / "nope.tif")], out, (".tif", ".tiff"), ".sarc")
    got = [(Path(j.input).relative_to(tmp_path).as_posix() if j.input.startswith(str(tmp_path)) else j.input,
            Path(j.output).relative_to(out).as_posix() if j.output else "", j.error) for j in jobs]
    assert got == [
        ("archive/a/x.tif", "a/x.sarc", ""), ("archive/b/x.tif", "b/x.sarc", ""),
        ("archive/c.TIFF", "c.sarc", ""),  # the pattern names c.TIFF again: one task, not two
        # the STAC assets are the same files again (deduplicated); only the remote one is reported
        ("https://example.com/vv.tif", "",
         f"{tmp_path / 'stac' / 'item.json'} item S1A_IW_GRDH_0001 asset remote: not a local file "
         "(only local assets are processed)"),
        ("nope.tif", "", "no such file or folder"),
    ]
    # a STAC item alone: outputs per item id and asset key; two inputs wanting one output name collide
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.tif").write_bytes(b"")
    jobs = expand_inputs([str(tmp_path / "stac" / "item.json"), str(d / "b" / "x.tif"),
                          str(tmp_path / "other" / "x.tif")], out, (".tif", ".tiff"), ".sarc")
    assert [(Path(j.output).relative_to(out).as_posix() if j.output else "", bool(j.error)) for j in jobs] == [
        ("S1A_IW_GRDH_0001/vv.sarc", False), ("S1A_IW_GRDH_0001/vh.sarc", False), ("", True), ("x.sarc", False),
        ("", True)]
    assert "is also the output of" in jobs[-1].error


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_batch_throughput_benchmark_measures_both_and_projects(tiny_bundle, sar_data, tmp_path, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import batch_throughput

    assert batch_throughput.main(["--scenes", "2", "--workers", "1", "--model", str(tiny_bundle),
                                  "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "batch_throughput.json").read_text())
    (run,) = res["batch"]
    assert run["workers"] == 1 and run["scenes"] == 2 and run["megapixels"] == pytest.approx(2 * 2 * 512 * 512 / 1e6, rel=1e-3)
    assert run["mp_per_s"] == pytest.approx(run["megapixels"] / run["wall_s"], rel=0.02)
    jp2 = res["jpeg2000_loop"]
    assert jp2["scenes"] == 2 and jp2["mp_per_s"] > 0 and 0 < jp2["bpp"] < 16
    rows = res["projection"]["rows"]
    assert rows[1]["full_scenes_per_hour"] == pytest.approx(10 * rows[0]["full_scenes_per_hour"], rel=0.01)
    assert "gdal_translate JP2 loop" in capsys.readouterr().out


def test_a_scene_that_kills_its_workers_is_one_line_naming_the_likely_cause(client, tmp_path):
    """A scene whose worker process dies (memory limit, OOM killer) is retried on other workers, then reported
    failed with a line that says what usually kills a worker; dask's own text was cut mid-word at 300 characters."""
    import re

    from sar_compress_plugin.batch.engine import run_jobs
    from sar_compress_plugin.batch.inputs import Job

    def die(job, **_):  # the worker process exits at once, as one killed by its nanny would
        os._exit(1)

    jobs = [Job(str(tmp_path / "a.tif"), str(tmp_path / "a.sarc"))]
    records, interrupt = run_jobs(client, die, jobs, {}, quiet=True)
    client.wait_for_workers(2, timeout=60)  # the nannies restart them for the other tests
    assert interrupt is None and records[0]["status"] == "failed"
    error = records[0]["error"]
    assert "\n" not in error and re.match(r"its worker process died on each of \d+ tries \(", error)
    assert "--memory-limit" in error and "out-of-memory killer" in error


def _zip_scene(archive: Path, member: str, scene: Path) -> Path:
    """`scene` stored in `archive` as `member`, with a fixed member date (a zip keeps one, to 2 seconds)."""
    import zipfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(zipfile.ZipInfo(member, date_time=(2024, 5, 6, 7, 8, 10)), scene.read_bytes())
        z.writestr(zipfile.ZipInfo("sub/", date_time=(2024, 5, 6, 7, 8, 10)), b"")
    return archive


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_scene_inside_a_zip_is_an_input_and_a_rerun_skips_it_until_the_archive_changes(client, sar_data,
                                                                                       tiny_bundle, tmp_path):
    """`/vsizip/archive.zip/scene.tif`, which single-file sar-compress reads, failed as "no such file or folder".
    It is a file input named after its last component; a rerun skips it, and compresses it again once the
    archive is replaced by one holding an equal-looking scene under the same name and member date, copied with
    its own date kept (cp -p): the member's listed size and date alone would have passed it."""
    from osgeo import gdal

    from sar_compress_plugin.core.raster_io import source_stamp

    plain = tmp_path / "plain" / "scene.tif"  # uncompressed, so that the twin has the same byte count
    plain.parent.mkdir()
    gdal.Translate(str(plain), str(sorted(sar_data.glob("s1_iw_grd_*_512.tif"))[0]))
    twin = tmp_path / "plain" / "twin.tif"
    gdal.Translate(str(twin), str(plain))
    ds = gdal.Open(str(twin), gdal.GA_Update)
    ds.GetRasterBand(1).WriteArray(ds.GetRasterBand(1).ReadAsArray()[::-1].copy())
    ds = None
    assert twin.stat().st_size == plain.stat().st_size and twin.read_bytes() != plain.read_bytes()

    archive = _zip_scene(tmp_path / "in" / "scenes.zip", "S1A scene.tif", plain)
    inside = f"/vsizip/{archive}/S1A scene.tif"
    out = tmp_path / "out"
    argv = [inside, f"/vsizip/{archive}/missing.tif", f"/vsizip/{archive}/sub", "/vsimem/scene.tif",
            "--out", str(out), "--model", str(tiny_bundle), "--scheduler", client.scheduler.address, "-q"]
    assert compress_batch_main(argv) == 1  # the three bad inputs
    doc, rows = _report(out)
    by_input = {r["input"]: r for r in rows}
    scene = by_input[inside]
    sarc = out / "S1A scene.sarc"
    assert scene["status"] == "ok" and scene["output"] == str(sarc) and scene["error"] == ""
    assert int(scene["bytes_in"]) == plain.stat().st_size and int(scene["bytes_out"]) == sarc.stat().st_size
    header = check_sarc(sarc, decode=True, model_dirs=[tiny_bundle])
    assert header["source"] == source_stamp(inside)
    assert header["source"]["archive"]["mtime_ns"] == archive.stat().st_mtime_ns
    assert by_input[f"/vsizip/{archive}/missing.tif"]["error"].startswith("not found in its archive")
    assert by_input[f"/vsizip/{archive}/sub"]["error"].startswith("is a folder inside an archive")
    assert by_input["/vsimem/scene.tif"]["error"].startswith("only GDAL virtual paths to a file inside a local")
    assert {r["status"] for r in rows if r["input"] != inside} == {"failed"} and _hidden(out) == []

    mtime = sarc.stat().st_mtime_ns
    assert compress_batch_main(argv[:1] + argv[4:]) == 0
    doc = _this_run(_report(out)[0])
    assert [r["status"] for r in doc["scenes"]] == ["skipped"] and sarc.stat().st_mtime_ns == mtime

    other = _zip_scene(tmp_path / "other" / "scenes.zip", "S1A scene.tif", twin)
    assert other.stat().st_size == archive.stat().st_size
    import subprocess

    subprocess.run(["cp", "-p", str(other), str(archive)], check=True)
    assert compress_batch_main(argv[:1] + argv[4:]) == 0
    doc = _this_run(_report(out)[0])
    assert [r["status"] for r in doc["scenes"]] == ["ok"]
    assert check_sarc(sarc, decode=False)["source"]["archive"]["mtime_ns"] == other.stat().st_mtime_ns


def test_virtual_paths_the_batch_cannot_resume_or_read_fail_in_one_line(tmp_path):
    """A .sarc is read as a plain file, not through GDAL: sar-reconstruct-batch cannot take one in an archive.
    A path with no local archive under it (a URL, /vsimem/) cannot be checked unchanged by a rerun."""
    import zipfile

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("s.sarc", b"x")
        z.writestr("s.tif", b"x")
    jobs = expand_inputs([f"/vsizip/{archive}/s.sarc"], tmp_path / "out", (".sarc",), ".tif")
    assert [(j.output, j.error) for j in jobs] == [
        ("", "a .sarc inside an archive or behind a GDAL virtual path cannot be read in place; unpack it first")]
    jobs = expand_inputs([f"/vsizip/{archive}/s.tif", f"/vsizip//{archive}/s.tif", "/vsicurl/https://x/s.tif",
                          f"/vsizip/{{{archive}}}/s.tif"], tmp_path / "out", (".tif",), ".sarc")
    assert [(j.input, j.output, bool(j.error)) for j in jobs] == [
        (f"/vsizip/{archive}/s.tif", str(tmp_path / "out" / "s.sarc"), False),
        (f"/vsizip//{archive}/s.tif", "", True),  # the same file by another name: one output, named twice
        ("/vsicurl/https://x/s.tif", "", True), (f"/vsizip/{{{archive}}}/s.tif", "", True)]
    assert "is also the output of" in jobs[1].error and "local archive" in jobs[2].error


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_reconstruct_batch_of_a_masked_scene_carries_the_mask_and_a_cut_mask_is_redone(client, tiny_bundle,
                                                                                       tmp_path, capsys):
    """A .sarc of a source whose invalid pixels a GDAL mask marked reconstructs with an internal mask,
    passes --verify and is skipped on a rerun. The mask's blocks come last in the GeoTIFF, after every data
    block, and the truncation check read the data bands only: a copy cut inside the mask (an interrupted cp,
    a full disk) was skipped as done, even with --verify, and reading its mask failed (TIFFReadEncodedTile).
    """
    from osgeo import gdal

    from sar_compress_plugin.core.codec import read_header
    from test_codec_gdal_masks import _add_mask, _scene_mask, _speckle, _with_garbage
    from codec_fixtures import write_geotiff

    valid = _scene_mask()
    src = write_geotiff(tmp_path / "masked.tif", _with_garbage(_speckle(2), valid), names=["VV", "VH"])
    _add_mask(src, valid)
    sarc = tmp_path / "sarc" / "masked.sarc"
    sarc.parent.mkdir()
    compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64,
                                        domain="intensity"))
    assert read_header(sarc)["raster"]["gdal_mask"] == "per_dataset"
    out = tmp_path / "rec"
    tif = out / "masked.tif"
    argv = [str(sarc), "--out", str(out), "--model-dir", str(tiny_bundle), "--scheduler",
            client.scheduler.address, "--verify", "-q"]

    def statuses():
        doc = json.loads((out / "sar-reconstruct-batch-report.json").read_text())
        return [r["status"] for r in doc["scenes"]]

    def mask():
        ds = gdal.Open(str(tif))
        band = ds.GetRasterBand(1)
        return band.GetMaskFlags(), band.GetMaskBand().ReadAsArray()

    assert reconstruct_batch_main(argv) == 0, capsys.readouterr().err
    assert statuses() == ["ok"]
    flags, m = mask()
    assert flags == gdal.GMF_PER_DATASET and np.array_equal(m, np.where(valid, 255, 0))
    for extra in ([], ["--verify"]):  # the rerun skips it, with or without reading it back
        mtime = tif.stat().st_mtime_ns
        assert reconstruct_batch_main([a for a in argv if a != "--verify"] + extra) == 0
        assert statuses() == ["skipped"] and tif.stat().st_mtime_ns == mtime

    ds = gdal.Open(str(tif))
    data_end = max(int(b.GetMetadataItem(f"BLOCK_OFFSET_{i}_{j}", "TIFF"))
                   + int(b.GetMetadataItem(f"BLOCK_SIZE_{i}_{j}", "TIFF"))
                   for b in (ds.GetRasterBand(k) for k in (1, 2)) for i in range(4) for j in range(3))
    ds = None
    whole = tif.read_bytes()
    assert data_end < len(whole) - 100  # the mask's blocks follow the data's
    for extra in ([], ["--verify"]):
        tif.write_bytes(whole[:data_end + 10])  # every data block inside, the mask's cut off
        assert reconstruct_batch_main([a for a in argv if a != "--verify"] + extra) == 0
        assert statuses() == ["ok"] and tif.stat().st_size == len(whole)
        assert np.array_equal(mask()[1], np.where(valid, 255, 0))

    # a reconstruction of the same .sarc without its mask (a reader that does not know raster.gdal_mask):
    # redone
    gdal.Translate(str(tmp_path / "nomask.tif"), str(tif), options=["-mask", "none"])
    (tmp_path / "nomask.tif").replace(tif)
    assert mask()[0] != gdal.GMF_PER_DATASET
    assert reconstruct_batch_main([a for a in argv if a != "--verify"]) == 0
    assert statuses() == ["ok"] and mask()[0] == gdal.GMF_PER_DATASET
