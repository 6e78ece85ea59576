"""The batch report as an archive operator keeps it: one report per output folder across many runs, never
written over a file that is not a report, and the ratio every other front end prints."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np

from sar_compress_plugin.batch.cli import compress_batch_main
from sar_compress_plugin.batch.engine import ClusterOptions, open_client
from sar_compress_plugin.core.raster_io import read_raster_info

REPORT = "sar-compress-batch-report"


def _small(sar_data: Path, n: int) -> list[Path]:
    """Real Sentinel-1 scenes of 120 x 120 pixels (BigEarthNet patches, dB)."""
    found = sorted(sar_data.glob("bigearthnet_s1_*.tif"))[:n]
    assert len(found) == n
    return found


def _argv(tiny_bundle: Path, out: Path, *inputs) -> list[str]:
    return [*map(str, inputs), "--out", str(out), "--model", str(tiny_bundle), "--workers", "1",
            "--dashboard-address", ":0", "-q"]


def test_a_run_over_other_inputs_keeps_the_earlier_rows_with_their_run(tiny_bundle, sar_data, tmp_path):
    """An archive compressed folder by folder into one --out, or a rerun of just the inputs that failed, left a
    report of the last run's inputs only: the record of every earlier scene was gone. Rows of earlier runs
    about other inputs stay, each naming its run; the summary is this run's. Each row has the ratio."""
    a, b, c = (Path(shutil.copy(p, tmp_path / f"{n}.tif")) for n, p in zip("abc", _small(sar_data, 3)))
    out = tmp_path / "out"
    assert compress_batch_main(_argv(tiny_bundle, out, a, b)) == 0
    first = json.loads((out / f"{REPORT}.json").read_text())
    assert compress_batch_main(_argv(tiny_bundle, out, c, b)) == 0

    doc = json.loads((out / f"{REPORT}.json").read_text())
    runs = {r["input"]: (r["status"], r["run"]) for r in doc["scenes"]}
    assert runs == {str(c): ("ok", doc["run"]["started"]), str(b): ("skipped", doc["run"]["started"]),
                    str(a): ("ok", first["run"]["started"])}
    assert doc["summary"]["inputs"] == 2 and doc["summary"]["rows_of_earlier_runs"] == 1
    with open(out / f"{REPORT}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == [r["input"] for r in doc["scenes"]]
    for r in doc["scenes"]:
        info = read_raster_info(r["input"])
        raw = info.width * info.height * info.band_count * np.dtype(info.dtype).itemsize
        assert r["ratio"] == round(raw / Path(r["output"]).stat().st_size, 2)


def test_an_input_named_relative_then_absolute_is_one_input_in_the_report(tiny_bundle, tmp_path, monkeypatch):
    """A scene the batch cannot reach (a broken link) has no output, so its row is told from other inputs by its
    name alone: `scenes` in one run and /archive/scenes in the next kept both failures, and once the link was
    mended, a "failed" row beside the "ok" one, about the same file, for good."""
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "b.tif").symlink_to(tmp_path / "gone.tif")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    for given in ("scenes", str(tmp_path / "scenes")):
        assert compress_batch_main(_argv(tiny_bundle, out, given)) == 1
    doc = json.loads((out / f"{REPORT}.json").read_text())
    assert [(r["input"], r["status"]) for r in doc["scenes"]] == [(str(tmp_path / "scenes" / "b.tif"), "failed")]
    assert doc["summary"]["rows_of_earlier_runs"] == 0


def test_a_report_over_an_input_or_a_foreign_file_is_refused_before_any_work(tiny_bundle, sar_data, tmp_path,
                                                                           capsys):
    """`--report item.json`, the STAC item the batch reads, replaced the item with the report (the rerun then
    failed on it), as `--report notes` replaced anyone's notes.csv: one line, exit 2, nothing written."""
    shutil.copy(_small(sar_data, 1)[0], tmp_path / "a.tif")
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"type": "Feature", "id": "s1", "assets": {"vv": {"href": "a.tif"}}}))
    notes = tmp_path / "notes.csv"
    notes.write_text("scene,comment\na,cloudy\n")
    before = {p: p.read_bytes() for p in (item, notes)}
    for report, refused in ((item, item), (tmp_path / "notes", notes)):
        out = tmp_path / "out"
        assert compress_batch_main([*_argv(tiny_bundle, out, item), "--report", str(report)]) == 2
        err = capsys.readouterr().err
        assert err == f"error: {refused}: exists and is not a batch report, so it is not replaced; " \
                      "choose another --report\n"
        assert {p: p.read_bytes() for p in before} == before and not any(out.iterdir())


def test_a_second_batch_on_the_machine_gets_another_dashboard_port_without_a_warning(tmp_path):
    """With the dashboard port taken (another batch running), dask's four-line UserWarning naming its own
    source file came before the batch's first line, which names the port the dashboard got."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with open_client(ClusterOptions(workers=1, dashboard_address=f"127.0.0.1:{port}")) as client:
                link = client.dashboard_link
    assert f":{port}/" not in link
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []
