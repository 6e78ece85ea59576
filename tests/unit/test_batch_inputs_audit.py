"""What an operator's audit of the batch inputs found: a nightly rerun compressed a scene's own reconstruction
over its archive copy, output names were silently rewritten into collisions, and scenes behind symbolic links
to folders (or a second link to a file) vanished from the batch without a row."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sar_compress_plugin.batch.cli import compress_batch_main, reconstruct_batch_main
from sar_compress_plugin.batch.inputs import expand_inputs
from sar_compress_plugin.cli import info_main
from sar_compress_plugin.core.raster_io import RECONSTRUCTION_TAG, read_raster_info, source_stamp

RASTERS = (".tif", ".tiff")


def _small(sar_data: Path, n: int) -> list[Path]:
    """Real Sentinel-1 scenes of 120 x 120 pixels, VV and VH (BigEarthNet patches, dB)."""
    found = sorted(sar_data.glob("bigearthnet_s1_*.tif"))[:n]
    assert len(found) == n
    return found


CLUSTER = ("--workers", "1", "--dashboard-address", ":0", "-q")


def _rows(report: Path) -> dict[str, dict]:
    """This run's rows of a batch report, by absolute input path."""
    doc = json.loads(report.read_text())
    return {os.path.abspath(r["input"]): r for r in doc["scenes"][:doc["summary"]["inputs"]]}


def _jobs(specs, out: Path, base: Path) -> list[tuple[str, str, str]]:
    """(input, output, why it is not run, as 'failed: ...' or 'skipped: ...') per Job, paths from `base`."""
    def rel(path: str) -> str:
        return Path(os.path.relpath(path, base)).as_posix() if path else ""

    return [(rel(j.input), rel(j.output), f"{'skipped' if j.skipped else 'failed'}: {j.error}" if j.error else "")
            for j in expand_inputs([str(s) for s in specs], out, RASTERS, ".sarc")]


def test_a_nightly_rerun_never_compresses_a_reconstruction_over_the_original(tiny_bundle, sar_data, tmp_path,
                                                                              capsys, monkeypatch):
    """compress DIR --out DIR; reconstruct DIR --out DIR; compress DIR --out DIR: the reconstruction, written as
    scene.tif beside scene.tiff, sorted first and took scene.sarc; the original failed ("its output ... is also
    the output of ... .tif") and scene.sarc became a copy of the lossy reconstruction. It is skipped now, and
    claims no output name."""
    monkeypatch.chdir(tmp_path)
    s5 = Path("s5")
    s5.mkdir()
    original = Path(shutil.copy(_small(sar_data, 1)[0], s5 / "s1a-iw-grd-vv-001.tiff"))
    sarc, reconstruction = s5 / "s1a-iw-grd-vv-001.sarc", s5 / "s1a-iw-grd-vv-001.tif"
    report = s5 / "sar-compress-batch-report.json"

    assert compress_batch_main(["s5", "--out", "s5", "--model", str(tiny_bundle), *CLUSTER]) == 0
    archived = sarc.read_bytes()
    assert reconstruct_batch_main(["s5", "--out", "s5", "--model-dir", str(tiny_bundle),
                                   *CLUSTER]) == 0
    assert read_raster_info(reconstruction).metadata[RECONSTRUCTION_TAG] == sarc.name
    assert _jobs([s5], s5, tmp_path) == [
        ("s5/s1a-iw-grd-vv-001.tif", "", "skipped: a reconstruction of s1a-iw-grd-vv-001.sarc: this codec's lossy "
                                         "output is not compressed again"),
        ("s5/s1a-iw-grd-vv-001.tiff", "s5/s1a-iw-grd-vv-001.sarc", "")]
    capsys.readouterr()

    assert compress_batch_main(["s5", "--out", "s5", "--model", str(tiny_bundle), *CLUSTER]) == 0
    err = capsys.readouterr().err
    assert "failed" not in err and "Traceback" not in err
    assert sarc.read_bytes() == archived
    rows = _rows(report)
    kept, skipped = rows[str(original.resolve())], rows[str(reconstruction.resolve())]
    assert kept["status"] == "skipped" and kept["output"] == str(sarc.resolve())
    assert skipped["status"] == "skipped" and skipped["output"] == ""
    assert skipped["error"].startswith(f"a reconstruction of {sarc.name}")

    assert info_main([str(sarc), "--json"]) == 0  # what sar-info says the archive copy was made from
    header = json.loads(capsys.readouterr().out)
    assert header["source"] == source_stamp(original)
    assert not {RECONSTRUCTION_TAG, f"{RECONSTRUCTION_TAG}_SHA256"} & set(header["raster"]["metadata"])


def test_a_reconstruction_alone_is_skipped_and_a_reconstruct_batch_still_takes_every_sarc(tiny_bundle, sar_data,
                                                                                          tmp_path):
    """A reconstruction with no original beside it (the archive kept only the .sarc) was compressed into that
    .sarc's place, one generation worse; named by a pattern it is skipped too. Folder searches of .sarc inputs
    read no raster tags."""
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(_small(sar_data, 1)[0], d / "a.tif")
    argv = ["--model", str(tiny_bundle), *CLUSTER]
    assert compress_batch_main([str(d / "a.tif"), "--out", str(d), *argv]) == 0
    (d / "a.tif").unlink()
    assert reconstruct_batch_main([str(d), "--out", str(d), "--model-dir", str(tiny_bundle),
                                   *CLUSTER]) == 0
    archived = (d / "a.sarc").read_bytes()
    skipped = "skipped: a reconstruction of a.sarc: this codec's lossy output is not compressed again"
    assert _jobs([d], d, tmp_path) == _jobs([d / "*.tif"], d, tmp_path) == [("d/a.tif", "", skipped)]
    assert compress_batch_main([str(d), "--out", str(d), *argv]) == 0
    assert (d / "a.sarc").read_bytes() == archived
    assert [(j.input, j.output) for j in expand_inputs([str(d)], d, (".sarc",), ".tif")] == [
        (str(d / "a.sarc"), str(d / "a.tif"))]


def test_output_names_keep_the_input_names_spaces_and_accents(tiny_bundle, sar_data, tmp_path):
    """`in sub é ü.tif` was written as `in_sub____.sarc`, and `scène 1.tif` and `scène_1.tif` both wanted
    `sc_ne_1.sarc`, so one always failed. Only STAC ids and asset keys are made into safe names."""
    bad = tmp_path / "bad"
    (bad / "sub").mkdir(parents=True)
    src = _small(sar_data, 1)[0]
    for name in ("sub/in sub é ü.tif", "scène 1.tif", "scène_1.tif"):
        shutil.copy(src, bad / name)
    hidden = Path(shutil.copy(src, tmp_path / ".hidden scène.tif"))  # named on its own: a visible output
    out, rec = tmp_path / "out", tmp_path / "rec"
    assert compress_batch_main([str(bad), str(hidden), "--out", str(out), "--model", str(tiny_bundle),
                                *CLUSTER]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.sarc")) == [
        "hidden scène.sarc", "scène 1.sarc", "scène_1.sarc", "sub/in sub é ü.sarc"]
    rows = _rows(out / "sar-compress-batch-report.json")
    assert {r["status"] for r in rows.values()} == {"ok"} and len(rows) == 4
    assert reconstruct_batch_main([str(out), "--out", str(rec), "--model-dir", str(tiny_bundle),
                                   *CLUSTER]) == 0
    assert sorted(p.relative_to(rec).as_posix() for p in rec.rglob("*.tif")) == [
        "hidden scène.tif", "scène 1.tif", "scène_1.tif", "sub/in sub é ü.tif"]


def test_links_to_folders_are_followed_and_a_second_way_to_a_scene_is_a_skipped_row(tmp_path):
    """s6/ holding real.tif, alias.tif (a link to a file outside), linked_scenes -> ../s4 and
    real_copy.tif -> real.tif gave "2 ok of 2 inputs": the linked scenes and the copy appeared nowhere. Links to
    folders are followed, once each (a loop ends), and every second way to a file or folder is one skipped row;
    a link sorted before the file it names does not take the file's output name."""
    s4, s6, outside = tmp_path / "s4", tmp_path / "s6", tmp_path / "outside.tif"
    s4.mkdir()
    s6.mkdir()
    for i in range(3):
        (s4 / f"scene{i}.tif").write_bytes(b"")
    outside.write_bytes(b"")
    (s6 / "real.tif").write_bytes(b"")
    (s6 / "alias.tif").symlink_to(outside)
    (s6 / "linked_scenes").symlink_to(Path("..") / "s4")
    (s6 / "real_copy.tif").symlink_to("real.tif")
    (s6 / "a_link.tif").symlink_to("real.tif")
    (s4 / "back").symlink_to(Path("..") / "s6")  # a loop: s6 -> linked_scenes -> back -> s6
    out = tmp_path / "out"
    assert _jobs([s6], out, tmp_path) == [  # the folders are searched first, then the files taken, plain ones first
        ("s6/linked_scenes/back", "", f"skipped: the same folder as {s6}"),
        ("s6/real.tif", "out/real.sarc", ""),
        ("s6/a_link.tif", "", f"skipped: the same file as {s6 / 'real.tif'}"),
        ("s6/alias.tif", "out/alias.sarc", ""),
        ("s6/linked_scenes/scene0.tif", "out/linked_scenes/scene0.sarc", ""),
        ("s6/linked_scenes/scene1.tif", "out/linked_scenes/scene1.sarc", ""),
        ("s6/linked_scenes/scene2.tif", "out/linked_scenes/scene2.sarc", ""),
        ("s6/real_copy.tif", "", f"skipped: the same file as {s6 / 'real.tif'}")]

    # s4 given first: the link to it is a second way to a folder already in the batch
    (s4 / "back").unlink()
    assert _jobs([s4, s6], out, tmp_path) == [
        ("s4/scene0.tif", "out/scene0.sarc", ""), ("s4/scene1.tif", "out/scene1.sarc", ""),
        ("s4/scene2.tif", "out/scene2.sarc", ""),
        ("s6/linked_scenes", "", f"skipped: the same folder as {s4}"),
        ("s6/real.tif", "out/real.sarc", ""), ("s6/a_link.tif", "", f"skipped: the same file as {s6 / 'real.tif'}"),
        ("s6/alias.tif", "out/alias.sarc", ""),
        ("s6/real_copy.tif", "", f"skipped: the same file as {s6 / 'real.tif'}")]
    # the same folder or file named twice (a folder and a pattern over it) is one input, without a row
    assert _jobs([s6, s6, s6 / "real.tif", s6 / "*.tif"], out, tmp_path) == _jobs([s6], out, tmp_path)


def test_a_batch_over_linked_folders_reports_every_scene(tiny_bundle, sar_data, tmp_path, capsys):
    """The audit's s6 with real scenes, through the real command: every file below s6, however reached, is a
    row of the report; the duplicates are skipped, not failed."""
    scenes = _small(sar_data, 3)
    s4, s6 = tmp_path / "s4", tmp_path / "s6"
    s4.mkdir()
    s6.mkdir()
    for i, p in enumerate(scenes[:2]):
        shutil.copy(p, s4 / f"scene{i}.tif")
    shutil.copy(scenes[2], tmp_path / "outside.tif")
    shutil.copy(scenes[0], s6 / "real.tif")
    (s6 / "alias.tif").symlink_to(tmp_path / "outside.tif")
    (s6 / "linked_scenes").symlink_to(Path("..") / "s4")
    (s6 / "real_copy.tif").symlink_to("real.tif")
    out = tmp_path / "out"
    assert compress_batch_main([str(s6), "--out", str(out), "--model", str(tiny_bundle),
                                *CLUSTER]) == 0
    assert "4 ok, 1 skipped of 5 inputs" in capsys.readouterr().out
    rows = _rows(out / "sar-compress-batch-report.json")
    below = {os.path.join(d, f) for d, _, files in os.walk(s6, followlinks=True) for f in files}
    assert set(rows) == below
    assert {i: r["status"] for i, r in rows.items()} == {
        str(s6 / "alias.tif"): "ok", str(s6 / "real.tif"): "ok", str(s6 / "linked_scenes" / "scene0.tif"): "ok",
        str(s6 / "linked_scenes" / "scene1.tif"): "ok", str(s6 / "real_copy.tif"): "skipped"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.sarc")) == [
        "alias.sarc", "linked_scenes/scene0.sarc", "linked_scenes/scene1.sarc", "real.sarc"]
