"""Every model bundle the plugin ships: the default, and the earlier defaults kept decode-only under their own
names so that the files they wrote still decode after an upgrade (export/retire.py, publish_default_model.sh)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codec_fixtures import write_geotiff
from export.retire import main as retire_main
from export.retire import retire_bundle
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.errors import ModelBundleError
from sar_compress_plugin.core.raster_io import RasterReader
from sar_compress_plugin.core.runtime import default_model_dir

MODELS = default_model_dir().parent
SHIPPED = sorted(p.parent for p in MODELS.glob("*/manifest.json"))
#: the earlier defaults, kept decode-only; each has a file it wrote while it was the default, from the first
#: 160 x 144 px of the Frankfurt VV band (publish_default_model.sh writes it before retiring the model)
EARLIER = sorted(b.name for b in SHIPPED if b.name != "default")
CHIPS = Path(__file__).parent / "data"
#: what a decode-only bundle holds: its decoder and hyperprior packed with zstd (core/bundle_files.py)
KEPT_FILES = ["decoder.onnx.zst", "hyperprior.npz.zst", "manifest.json"]


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _frankfurt_chip(sar_data) -> np.ndarray:
    with RasterReader(sar_data / "s1_iw_grd_frankfurt_512.tif") as r:
        return r.read(0, 0, 0, 160, 144)


def _db_rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((10 * np.log10(np.maximum(a, 1e-10)) - 10 * np.log10(np.maximum(b, 1e-10))) ** 2)))


def test_shipped_bundles_have_distinct_decoders_and_earlier_ones_are_decode_only():
    manifests = {b.name: _manifest(b) for b in SHIPPED}
    assert "default" in manifests and not manifests["default"].get("decode_only")
    decoders = [m["files"]["decoder"]["sha256"] for m in manifests.values()]
    assert len(set(decoders)) == len(decoders)
    for folder, m in manifests.items():
        if folder != "default":
            assert folder == m["name"] and m["decode_only"] is True
            assert sorted(p.name for p in (MODELS / folder).iterdir()) == KEPT_FILES
    assert manifests["default"]["name"] not in manifests


def test_the_default_writes_files_that_decode_with_no_model_folder_given(sar_data, tmp_path):
    chip = _frankfurt_chip(sar_data)
    sarc = tmp_path / "chip.sarc"
    compress(write_geotiff(tmp_path / "chip.tif", chip), sarc, CompressOptions(device="cpu", quality=2.0))
    assert read_header(sarc)["model"]["name"] == _manifest(default_model_dir())["name"]
    with CompressedRaster(sarc, device="cpu") as cr:
        assert cr.model.bundle_dir.resolve() == default_model_dir().resolve()
        assert _db_rmse(cr.read(band=0), chip) < 3


@pytest.mark.parametrize("name", EARLIER)
def test_a_file_an_earlier_default_wrote_still_decodes(name, sar_data, tmp_path):
    sarc = CHIPS / f"frankfurt_chip_{name}.sarc"
    assert read_header(sarc)["model"]["name"] == name
    with CompressedRaster(sarc, device="cpu") as cr:  # only the plugin's own models folder is searched
        assert cr.model.bundle_dir.name == name and cr.model.decode_only
        rec = cr.read(band=0)
    assert _db_rmse(rec, _frankfurt_chip(sar_data)) < 1.5
    reconstruct(sarc, tmp_path / "rec.tif", device="cpu")
    with RasterReader(tmp_path / "rec.tif") as r:
        assert np.array_equal(r.read(0, 0, 0, 160, 144), rec)


@pytest.mark.parametrize("bundle", [b for b in SHIPPED if b.name != "default"], ids=lambda p: p.name)
def test_an_earlier_default_refuses_to_compress_with_one_line_and_writes_nothing(bundle, sar_data, tmp_path):
    src = write_geotiff(tmp_path / "chip.tif", _frankfurt_chip(sar_data))
    with pytest.raises(ModelBundleError, match="kept only to decode"):
        compress(src, tmp_path / "out.sarc", CompressOptions(model_dir=bundle, device="cpu"))
    assert list(tmp_path.iterdir()) == [src]


def test_retiring_a_bundle_keeps_what_decodes_its_files(tiny_bundle, sar_data, tmp_path, capsys):
    src = write_geotiff(tmp_path / "chip.tif", _frankfurt_chip(sar_data))
    sarc = tmp_path / "chip.sarc"
    compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu"))
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        want = cr.read(band=0)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bundle, copy)
    assert retire_main([str(copy), str(tmp_path / "tiny")]) == 0
    assert "kept for decoding" in capsys.readouterr().out
    retire_bundle(copy, copy)  # in place, as the publish script may
    retire_bundle(copy, copy)  # and again: a packed bundle is read and packed as it was
    original = _manifest(tiny_bundle)["files"]
    for kept in (tmp_path / "tiny", copy):
        assert sorted(p.name for p in kept.iterdir()) == KEPT_FILES
        files = _manifest(kept)["files"]
        assert {part: files[part]["sha256"] for part in files} == {part: original[part]["sha256"] for part in files}
        assert sum(f.stat().st_size for f in kept.iterdir()) < 0.8 * sum(
            (tiny_bundle / original[part]["path"]).stat().st_size for part in files)
        with CompressedRaster(sarc, model_dirs=[kept], device="cpu") as cr:
            assert np.array_equal(cr.read(band=0), want)
    assert retire_main([str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
