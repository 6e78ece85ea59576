"""scripts/build_plugin_zip.py builds an installable plugin zip with the canonical metadata."""

from __future__ import annotations

import configparser
import importlib.util
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_plugin_zip", REPO / "scripts" / "build_plugin_zip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zip_contents_and_metadata(tmp_path):
    builder = _load_builder()
    (REPO / "sar_compress_plugin" / "__pycache__").mkdir(exist_ok=True)  # must be left out
    assert builder.main(["--out-dir", str(tmp_path)]) == 0
    canonical = (REPO / "metadata.txt").read_text(encoding="utf-8")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(canonical)
    version = parser["general"]["version"]
    target = tmp_path / f"sar_compress_plugin-{version}.zip"
    assert target.is_file()
    with zipfile.ZipFile(target) as zf:
        names = set(zf.namelist())
        assert all(n.startswith("sar_compress_plugin/") for n in names)
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        for needed in ("__init__.py", "__about__.py", "plugin.py", "LICENSE", "metadata.txt",
                       "icons/sar_compress.svg", "core/__init__.py", "core/metrics.py", "core/quality_maps.py",
                       "processing/provider.py", "tasks/__init__.py", "utils/log.py"):
            assert f"sar_compress_plugin/{needed}" in names, needed
        if (REPO / "sar_compress_plugin" / "models" / "default" / "manifest.json").is_file():
            for f in ("manifest.json", "encoder.onnx", "decoder.onnx"):
                assert f"sar_compress_plugin/models/default/{f}" in names
        packed = zf.read("sar_compress_plugin/metadata.txt").decode("utf-8")
    assert packed == canonical
    meta = parser["general"]
    assert meta["name"] == "SAR Compress"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    for field in ("description", "about", "author", "email", "repository", "tracker", "tags", "icon"):
        assert meta[field].strip(), field
    assert meta["repository"].startswith("https://") and meta["tracker"].startswith("https://")
    assert "@" in meta["email"]


def test_about_reads_the_same_metadata():
    from sar_compress_plugin import __about__

    meta = __about__.read_metadata(REPO / "metadata.txt")
    assert __about__.__version__ == meta["version"]
    assert __about__.__title__ == meta["name"]
    assert __about__.__qgis_minimum_version__ == "3.22"
    assert __about__.__icon_path__.is_file()
