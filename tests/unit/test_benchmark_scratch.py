"""Benchmarks write files only where they are told to (benchmarks/README.md): codec_memory.py's big raster,
without --workdir, lives in a temporary folder that is removed at the end (1.6 GB at the default size)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_codec_memory_without_workdir_leaves_no_big_files(tiny_bundle, sar_data, tmp_path, monkeypatch, capsys):
    import codec_memory

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert codec_memory.main(["--bundle", str(tiny_bundle), "--size", "256", "--device", "cpu",
                              "--source", str(sar_data / "s1_iw_grd_berlin_512.tif")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["file_bytes"] > 0 and res["peak_rss_reconstruct_mb"] > 0
    assert list(scratch.iterdir()) == []
