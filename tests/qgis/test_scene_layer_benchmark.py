"""benchmarks/scene_layer.py as benchmarks/README.md gives it: it prints JSON and writes only its pictures
(`--png DIR`), into a folder that need not exist yet, and leaves no scene or tile cache behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qgis_harness import DATA, REPO

pytestmark = pytest.mark.slow


def test_scene_layer_benchmark_writes_its_pictures_and_nothing_else(model_bundle, tmp_path):
    if not (DATA / "s1_iw_grd_berlin_512.tif").is_file():
        pytest.skip(f"shared SAR data not available at {DATA}")
    scratch, png = tmp_path / "tmp", tmp_path / "figures" / "new"  # neither folder exists yet
    scratch.mkdir()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TMPDIR=str(scratch), OMP_NUM_THREADS="1",
               SAR_COMPRESS_THREADS="1")
    # a big scene of 1 MP or less has no overview (docs/format.md): measured as such, not a KeyError
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "scene_layer.py"), "--big-size", "1024",
                          "--big-bundle", str(model_bundle), "--bundle", str(model_bundle), "--pan-size", "512",
                          "--tile", "256", "--png", str(png)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout[out.stdout.index("{"):])
    assert res["big"]["overview_bytes"] == 0 and res["big"]["overview_factor"] is None
    assert res["pan"]["complete"]
    assert sorted(p.name for p in png.iterdir()) == ["scene_layer_overview.png", "scene_layer_pan.png"]
    assert all(p.stat().st_size > 0 for p in png.iterdir())
    assert not [p for p in scratch.iterdir() if p.name.startswith("scene_layer_")]  # the scenes and caches
