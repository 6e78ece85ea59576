"""A raster layer that QGIS reads from inside a local archive (`/vsizip/<folder>/a.zip/scene.tif`), as an analyst
opens a zipped GeoTIFF: compressed from its context menu through the real dialog, to a .sarc named after the member
beside the archive, which decodes; used as the original of "SAR quality maps"; the archive never written over.
Layers in GDAL's memory or in an archive that is not a local file are refused in one line. Real headless QGIS,
the tiny ONNX model."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer

from qgis_harness import accept_next_dialog, messages, wait_for_task
from sar_compress_plugin.gui.dialogs import destination_error

COMPRESS_TEXT = "Compress with SAR codec…"


@pytest.fixture
def zipped(sar_tif, tmp_path) -> tuple[Path, str]:
    """A zip in its own folder holding a 256 x 256 crop of the real scene as scene.tif, and the GDAL name of that
    member, as QGIS opens it."""
    crop = tmp_path / "crop.tif"
    gdal.Translate(str(crop), str(sar_tif), srcWin=[128, 128, 256, 256])
    folder = tmp_path / "archives"
    folder.mkdir()
    archive = folder / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(crop, "scene.tif")
    return archive, f"/vsizip/{archive}/scene.tif"


def _add(source: str, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(source, name, "gdal")
    assert layer.isValid(), source
    QgsProject.instance().addMapLayer(layer)
    return layer


def _values(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


def test_a_zipped_geotiff_is_compressed_from_its_context_menu_beside_the_archive(plugin, test_iface, zipped, codec,
                                                                               model_bundle, tmp_path):
    archive, member = zipped
    before = archive.read_bytes()
    layer = _add(member, "zipped scene")
    test_iface.layer_tree_view.setCurrentLayer(layer)
    menu = test_iface.layer_tree_view.menuProvider().createContextMenu()
    action = [a for a in menu.actions() if a.text() == COMPRESS_TEXT][0]
    seen = {}

    def look(dialog):
        seen["output"] = dialog.output.filePath()
        seen["input"] = dialog.input_path

    state = accept_next_dialog(look)
    action.trigger()
    assert state.get("dialog_title") == "Compress 'zipped scene' with SAR codec" and "error" not in state
    out = archive.parent / "scene.sarc"  # a local file beside the archive, named after the member
    assert seen == {"output": str(out), "input": member}
    result = wait_for_task(plugin, plugin.last_task)
    assert result.ok, result.message
    assert Path(result.value.output_path) == out and out.is_file()
    assert archive.read_bytes() == before and sorted(p.name for p in archive.parent.iterdir()) == ["a.zip",
                                                                                                  "scene.sarc"]
    header = codec.read_header(out)
    assert (header["raster"]["width"], header["raster"]["height"]) == (256, 256)

    decoded = tmp_path / "decoded.tif"
    codec.reconstruct(str(out), str(decoded), model_dirs=[str(model_bundle)], device="cpu")
    original, back = _values(member), _values(decoded)
    assert back.shape == original.shape == (2, 256, 256)
    db = lambda v: 10 * np.log10(np.maximum(v, 1e-6))  # noqa: E731
    assert np.corrcoef(db(original).ravel(), db(back).ravel())[0, 1] > 0.5  # the scene, not noise


def test_the_archive_is_never_written_over(plugin, test_iface, zipped):
    """The archive is the zipped layer's file: the dialogs refuse it as an output, and asked to write it without a
    dialog, the compression fails before writing anything (the codec core's check on its output)."""
    archive, member = zipped
    before = archive.read_bytes()
    layer = _add(member, "zipped scene")
    assert destination_error(str(archive)) == (f"{archive} is the file of layer 'zipped scene' in this project: "
                                               f"choose another output.")
    result = wait_for_task(plugin, plugin.compress_layer(layer, str(archive), ask=False))
    assert not result.ok
    assert messages(test_iface)[-1] == (f"Compression of 'zipped scene' failed: {archive}: output is the archive "
                                        f"the input {member} is read from")
    assert archive.read_bytes() == before and sorted(p.name for p in archive.parent.iterdir()) == ["a.zip"]


def test_quality_maps_take_a_zipped_layer_as_the_original(plugin, test_iface, zipped, codec, model_bundle):
    archive, member = zipped
    original = _add(member, "zipped scene")
    out = archive.parent / "scene.sarc"
    codec.compress(member, str(out), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                          tile_size=256))
    assert wait_for_task(plugin, plugin.reconstruct_file(str(out))).ok
    recon = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "scene (reconstructed)"][0]
    test_iface.layer_tree_view.setCurrentLayer(recon)
    seen = {}

    def look(dialog):
        seen["roles"] = (dialog.reconstruction_layer(), dialog.original_layer())

    state = accept_next_dialog(look)
    task = plugin.quality_maps_active_layer()
    assert "error" not in state
    assert seen["roles"] == (recon, original)  # the original found by the member's name, not the zip's
    assert task.original_path == member
    result = wait_for_task(plugin, task)
    assert result.ok, result.message
    for path in (result.value.enl_ratio_path, result.value.epi_path):
        assert Path(path).parent == archive.parent and Path(path).is_file()
    assert 0 < result.value.epi_median[0] <= 1.0


@pytest.mark.parametrize("where", ["memory", "zip in memory"])
def test_a_layer_in_gdal_memory_is_refused_in_one_line(plugin, test_iface, zipped, tmp_path, where):
    archive, member = zipped
    if where == "memory":
        name, kind = "/vsimem/sar_compress_test/scene.tif", "kept in GDAL's memory by /vsimem/"
        gdal.Translate(name, member)
        held = "/vsimem/sar_compress_test/scene.tif"
    else:
        held = "/vsimem/sar_compress_test/a.zip"
        gdal.FileFromMemBuffer(held, archive.read_bytes())
        name, kind = f"/vsizip/{held}/scene.tif", "inside an archive that is not a local file"
    try:
        layer = _add(name, "in memory")
        before = len(test_iface.messages)
        assert plugin.compress_layer(layer, str(tmp_path / "out.sarc"), ask=False) is None
        test_iface.layer_tree_view.setCurrentLayer(layer)
        assert plugin.quality_maps_active_layer() is None
        line = f"'in memory' is not a local raster file ({kind}); save it as a GeoTIFF first"
        assert messages(test_iface)[before:] == [f"Cannot compress: {line}", f"Cannot make quality maps: {line}"]
        assert plugin.tasks == {} and not (tmp_path / "out.sarc").exists()
    finally:
        QgsProject.instance().removeAllMapLayers()
        gdal.Unlink(held)
