"""Fixtures for the real headless QGIS tests. The harness (one QgsApplication, created before anything else
touches Qt, with QT_QPA_PLATFORM=offscreen; the test iface) lives in qgis_harness.py so test modules can import
it by a name that cannot clash with tests/unit/conftest.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything creates a Qt application

import pytest  # noqa: E402

from qgis_harness import DATA, QGS_APP, REPO, TestIface, shared_scene_copy  # noqa: F401  (creates the QgsApplication)
from qgis.core import QgsProject
from qgis.gui import QgsGui

pytestmark = pytest.mark.qgis


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.qgis)


@pytest.fixture(scope="session")
def qgis_app():
    return QGS_APP


@pytest.fixture(scope="session")
def qapp(qgis_app):
    """pytest-qt uses this application instead of creating its own QApplication."""
    return qgis_app


@pytest.fixture(autouse=True)
def no_remembered_output_folders(qgis_app):
    """Each test starts with no output folder remembered by the dialogs: the test profile is shared by all the tests
    of a run, and the folder one test's dialog was accepted with (its tmp_path) became a later test's default."""
    from sar_compress_plugin.utils.settings import PluginSettings

    PluginSettings.remember(compress_output_folder="", reconstruct_output_folder="", quality_maps_folder="")


@pytest.fixture
def project():
    QgsProject.instance().clear()
    yield QgsProject.instance()
    QgsProject.instance().clear()


@pytest.fixture
def test_iface(qgis_app, project):
    import qgis.utils

    QgsGui.instance()  # make sure the GUI registries exist
    iface = TestIface()
    previous = qgis.utils.iface
    qgis.utils.iface = iface
    yield iface
    qgis.utils.iface = previous


@pytest.fixture
def sar_tif(tmp_path) -> Path:
    """A private copy of a real 2-band float32 Sentinel-1 GRD intensity scene (VV, VH; EPSG:4326)."""
    return shared_scene_copy(tmp_path, "s1_iw_grd_berlin_512.tif", "berlin.tif")


@pytest.fixture
def read_only_folder(sar_tif, tmp_path):
    """A folder holding a copy of the test scene, in which no file can be made, even by root (chattr +i);
    skipped where that cannot be done."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    shutil.copy(sar_tif, folder / sar_tif.name)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only folder here (chattr +i refused)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.fixture
def codec():
    from sar_compress_plugin.core import codec as module

    return module


def _unit_fixtures():
    """The codec tests' helpers (tests/unit/codec_fixtures.py), reused rather than duplicated."""
    unit = str(REPO / "tests" / "unit")
    if unit not in sys.path:
        sys.path.append(unit)
    import codec_fixtures

    return codec_fixtures


@pytest.fixture(scope="session")
def model_bundle(tmp_path_factory) -> Path:
    """A model bundle: the codec's tiny test bundle (torch -> ONNX at test time, manifest with SHA-256s)."""
    return Path(_unit_fixtures().build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny"))


@pytest.fixture
def plugin(test_iface, model_bundle):
    """The plugin from classFactory + initGui, with the tiny model as default model, on CPU."""
    from sar_compress_plugin import classFactory
    from sar_compress_plugin.utils.settings import PluginSettings

    PluginSettings(model_dir=str(model_bundle), model_dirs=[str(model_bundle)], device="cpu",
                   tile_size=256).save()
    p = classFactory(test_iface)
    p.initGui()
    yield p
    p.unload()


@pytest.fixture
def compressed(sar_tif, codec, model_bundle):
    """The test raster compressed with the test bundle (256-px tiles), beside it as .sarc."""
    out = sar_tif.with_suffix(".sarc")
    codec.compress(str(sar_tif), str(out), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                                   tile_size=256))
    return out


@pytest.fixture
def gcp_compressed(sar_tif, codec, model_bundle, tmp_path):
    """The test raster georeferenced by a 3 x 3 grid of ground control points only, as a Sentinel-1 GRD
    measurement GeoTIFF is (codec_fixtures.gcp_georeferenced_copy), and its .sarc (256-px tiles) beside it."""
    src = _unit_fixtures().gcp_georeferenced_copy(sar_tif, tmp_path / "berlin_gcps.tif")
    out = src.with_suffix(".sarc")
    codec.compress(str(src), str(out), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                               tile_size=256))
    return src, out
