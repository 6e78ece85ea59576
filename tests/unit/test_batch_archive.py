"""An archive operator's second and third runs of sar-compress-batch / sar-reconstruct-batch: outputs beside
the inputs, reports sent to odd places, and what a rerun may replace."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sar_compress_plugin.batch.inputs import Job
from sar_compress_plugin.batch.tasks import compress_scene, reconstruct_scene
from sar_compress_plugin.core.codec import CompressOptions, compress


def _small(sar_data: Path, n: int) -> list[Path]:
    """Real Sentinel-1 scenes of 120 x 120 pixels (BigEarthNet patches, dB)."""
    found = sorted(sar_data.glob("bigearthnet_s1_*.tif"))[:n]
    assert len(found) == n
    return found


def test_reconstructing_beside_the_originals_never_replaces_an_original(tiny_bundle, sar_data, tmp_path):
    """`sar-compress-batch DIR --out DIR` leaves a.sarc beside a.tif; `sar-reconstruct-batch DIR --out DIR`
    then replaced every original a.tif by its lossy reconstruction and reported it "ok". The original is kept
    and the scene fails in one line naming it; a reconstruction made earlier is still replaced."""
    original = Path(shutil.copy(_small(sar_data, 1)[0], tmp_path / "a.tif"))
    before = original.read_bytes()
    sarc = tmp_path / "a.sarc"
    compress(original, sarc, CompressOptions(model_dir=tiny_bundle))
    job, kwargs = Job(str(sarc), str(original)), {"model_dirs": [str(tiny_bundle)]}

    rec = reconstruct_scene(job, **kwargs)
    assert rec["status"] == "failed" and original.read_bytes() == before
    assert rec["error"].startswith(f"{original}: exists and is not a reconstruction")
    assert "\n" not in rec["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sarc", "a.tif"]  # no temporary left

    rec_dir = tmp_path / "rec"
    elsewhere = Job(str(sarc), str(rec_dir / "a.tif"))
    assert reconstruct_scene(elsewhere, **kwargs)["status"] == "ok"
    other = tmp_path / "b.sarc"  # a reconstruction of another .sarc under this name: redone, not refused
    compress(_small(sar_data, 2)[1], other, CompressOptions(model_dir=tiny_bundle))
    shutil.copy(rec_dir / "a.tif", rec_dir / "b.tif")
    assert reconstruct_scene(Job(str(other), str(rec_dir / "b.tif")), **kwargs)["status"] == "ok"
    (rec_dir / "c.tif").write_bytes(b"")  # an empty file under the name is nothing to keep
    assert reconstruct_scene(Job(str(other), str(rec_dir / "c.tif")), **kwargs)["status"] == "ok"


def test_a_report_sent_to_a_folder_or_a_dotted_name_lands_where_asked(tiny_bundle, sar_data, tmp_path, capsys):
    """`--report reports` (a folder) wrote reports.json beside the folder, and `--report reports/run.2024-05`
    wrote reports/run.json: the next day's run.2024-06 replaced it."""
    from sar_compress_plugin.batch.cli import compress_batch_main

    src = Path(shutil.copy(_small(sar_data, 1)[0], tmp_path / "a.tif"))
    reports = tmp_path / "reports"
    reports.mkdir()
    common = [str(src), "--out", str(tmp_path / "out"), "--model", str(tiny_bundle), "--workers", "1",
              "--dashboard-address", ":0", "-q"]
    for report in (str(reports), f"{tmp_path}/new/", str(reports / "run.2024-05")):
        assert compress_batch_main([*common, "--report", report]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "new", "out", "reports"]
    named = ["sar-compress-batch-report.csv", "sar-compress-batch-report.json"]
    assert sorted(p.name for p in reports.iterdir()) == ["run.2024-05.csv", "run.2024-05.json", *named]
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == named
    assert f"report {reports / 'run.2024-05.json'} and {reports / 'run.2024-05.csv'}" in capsys.readouterr().out
    from sar_compress_plugin.batch.report import report_paths

    assert report_paths("r/run.2024-06") == (Path("r/run.2024-06.json"), Path("r/run.2024-06.csv"))
    assert report_paths("r/x.json") == report_paths("r/x.CSV") == (Path("r/x.json"), Path("r/x.csv"))


@pytest.fixture
def small_disk(tmp_path):
    """A 16 KiB tmpfs (four pages): a disk that fills up for real; skipped where it cannot be mounted."""
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(d)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=True)


def test_a_report_that_outgrows_a_full_disk_is_still_the_outcome(tiny_bundle, sar_data, tmp_path, small_disk,
                                                                  capsys):
    """The interim report (all scenes "cancelled ... batch interrupted") filled the disk; the outcome did not
    fit beside it, so the batch exited 2 leaving that interim report on disk, and never printed which inputs
    failed or why. The interim report is this run's own and gives way to the outcome."""
    from sar_compress_plugin.batch.cli import compress_batch_main

    (small_disk / "filler").write_bytes(b"x" * 8192)  # two pages left: the interim JSON and CSV fill them
    good = Path(shutil.copy(_small(sar_data, 1)[0], tmp_path / "a.tif"))
    bad = tmp_path / "zero.tif"
    bad.write_bytes(b"")
    argv = [str(good), str(bad), "--out", str(tmp_path / "out"), "--model", str(tiny_bundle), "--workers", "1",
            "--dashboard-address", ":0", "-q", "--report", str(small_disk / "r")]
    assert compress_batch_main(argv) == 1
    err = capsys.readouterr().err
    assert f"failed: {bad}: not a readable raster" in err and "Traceback" not in err
    doc = json.loads((small_disk / "r.json").read_text())
    assert [s["status"] for s in doc["scenes"]] == ["ok", "failed"]
    assert (small_disk / "r.csv").read_text().count("\n") == 3


def test_a_pattern_over_rasters_with_their_outputs_beside_them_takes_only_the_rasters(tmp_path):
    """`sar-compress-batch 'scenes/*' --out scenes` a second time took every .aux.xml sidecar, .sarc and report
    as a failed input (exit 1 on every run), and a.sarc, sorted before a.tif, took a.tif's output name: a.tif
    failed as its duplicate and a replaced a.tif was never compressed again. A pattern that names a suffix
    still takes what it names; a .sarc that would be its own output fails instead of shadowing a.tif."""
    from sar_compress_plugin.batch.inputs import expand_inputs

    d = tmp_path / "scenes"
    d.mkdir()
    for name in ("a.tif", "a.tif.aux.xml", "a.sarc", "b.tif", "b.sarc", "notes.txt", "x.img",
                 "sar-compress-batch-report.json", "sar-compress-batch-report.csv"):
        (d / name).write_bytes(b"")

    def jobs(*specs, suffixes=(".tif", ".tiff"), out_suffix=".sarc"):
        return [(Path(j.input).name, Path(j.output).name if j.output else "", j.error.split(" (")[0])
                for j in expand_inputs([str(s) for s in specs], d, suffixes, out_suffix)]

    assert jobs(d / "*") == [("a.tif", "a.sarc", ""), ("b.tif", "b.sarc", "")]
    reconstructions = jobs(d / "*", suffixes=(".sarc",), out_suffix=".tif")
    assert reconstructions == [("a.sarc", "a.tif", ""), ("b.sarc", "b.tif", "")]
    assert jobs(d / "*.img") == [("x.img", "x.sarc", "")]
    itself = "is itself the output this batch would write for it"
    assert jobs(d / "a.sarc", d / "a.tif") == [("a.sarc", "", itself), ("a.tif", "a.sarc", "")]
    assert jobs(d / "*.sarc") == [("a.sarc", "", itself), ("b.sarc", "", itself)]


def test_an_output_that_does_not_fit_on_the_disk_is_one_line_naming_it(tiny_bundle, sar_data, tmp_path,
                                                                       small_disk):
    """A full disk failed the scene with the name of the hidden temporary, which is gone by the time anyone
    reads the report; the line names the output, and nothing is left under either name."""
    (small_disk / "filler").write_bytes(b"x" * 16384)
    src = _small(sar_data, 1)[0]
    out = small_disk / "a.sarc"
    rec = compress_scene(Job(str(src), str(out)), CompressOptions(model_dir=tiny_bundle))
    assert rec["status"] == "failed"
    assert rec["error"].startswith(f"{out}: cannot write (No space left on device)"), rec["error"]
    assert ".partial-" not in rec["error"]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_an_original_the_codec_cannot_read_is_not_replaced_either(tiny_bundle, sar_data, tmp_path):
    """The batch asked read_raster_info whether the file under an output's name was an earlier reconstruction,
    and took every raster that function refuses (a complex SLC, bands of different types) for a leftover it may
    replace: a CInt16 SLC beside its intensity's .sarc was replaced by the reconstruction. What counts is
    whether GDAL reads a raster there, as for sar-reconstruct (core.codec.refuse_to_replace_data)."""
    from osgeo import gdal

    sarc = tmp_path / "a.sarc"
    compress(_small(sar_data, 1)[0], sarc, CompressOptions(model_dir=tiny_bundle))
    slc = tmp_path / "a.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(slc), 16, 16, 1, gdal.GDT_CInt16)
    ds = None  # noqa: F841  (closes it)
    before = slc.read_bytes()
    rec = reconstruct_scene(Job(str(sarc), str(slc)), model_dirs=[str(tiny_bundle)])
    assert rec["status"] == "failed" and slc.read_bytes() == before, rec
    assert rec["error"].startswith(f"{slc}: exists and is not a reconstruction") and "--out" in rec["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.sarc", "a.tif"]
