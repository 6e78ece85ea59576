"""A compressed scene of a few thousand pixels on the map (the real Berlin scene mirrored to 2048 x 2048, coded
with the tiny test model in 256-px tiles): zoomed out, at 1:1, panned, read with the Identify tool, and its .sarc
written over while its tiles decode."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import Qgis, QgsPointXY, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapToolIdentify
from qgis.PyQt.QtCore import Qt

from qgis_harness import messages, process_events_until, scene_with_private_cache
from test_scene_layer import _pixels, _render, _show_canvas, _view


@pytest.fixture
def big_scene(plugin, sar_tif, model_bundle, codec, tmp_path):
    """(.sarc, its full reconstruction, the source GeoTIFF): 2 bands, 2048 x 2048, 64 tiles, a stored overview."""
    ds = gdal.Open(str(sar_tif))
    px = ds.ReadAsArray()
    row = np.concatenate([px, px[:, :, ::-1]] * 2, axis=2)
    mosaic = np.concatenate([row, row[:, ::-1, :]] * 2, axis=1)
    source = tmp_path / "big.tif"
    out = gdal.GetDriverByName("GTiff").Create(str(source), mosaic.shape[2], mosaic.shape[1], 2, gdal.GDT_Float32,
                                               ["TILED=YES"])
    out.SetGeoTransform(ds.GetGeoTransform())
    out.SetProjection(ds.GetProjection())
    for b in range(2):
        out.GetRasterBand(b + 1).WriteArray(mosaic[b])
    out = None
    sarc, full = scene_with_private_cache(codec, model_bundle, source, tmp_path / "big_full.tif", tile=256)
    return sarc, full, source


def _identify(canvas, layer, col: int, row: int, gt) -> list[float]:
    """The Identify tool clicked on the screen pixel showing raster pixel (col, row)'s centre: band values."""
    centre = QgsPointXY(gt[0] + (col + 0.5) * gt[1], gt[3] + (row + 0.5) * gt[5])
    screen = canvas.getCoordinateTransform().transform(centre)
    (result,) = QgsMapToolIdentify(canvas).identify(int(screen.x()), int(screen.y()), [layer],
                                                    QgsMapToolIdentify.TopDownAll)
    return [float(v) for _band, v in sorted(result.mAttributes.items())]


def test_zoom_pan_and_identify_read_what_a_full_reconstruction_reads(plugin, test_iface, big_scene):
    sarc, full, _source = big_scene
    gt = gdal.Open(str(full)).GetGeoTransform()
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    reference = QgsRasterLayer(str(full), "full", "gdal")
    reference.setRenderer(layer.renderer().clone())
    canvas = _show_canvas(test_iface, layer)
    width = canvas.mapSettings().outputSize().width()
    for col, row in ((1000, 1000), (1500, 300), (100, 1600)):  # 1:1, then panned
        _view(canvas, gt, col - width // 2, row - width // 2, width)
        assert process_events_until(lambda: not controller.busy, 120)
        assert abs(controller.visible_window()[1] - 1) < 0.01
        assert np.array_equal(_pixels(_render(canvas.mapSettings(), [layer])),
                              _pixels(_render(canvas.mapSettings(), [reference])))
        for dc, dr in ((0, 0), (37, -101), (-60, 90)):
            assert _identify(canvas, layer, col + dc, row + dr, gt) == _identify(canvas, reference, col + dc,
                                                                                 row + dr, gt)
    canvas.setExtent(layer.extent())  # zoomed out again: the whole scene, nothing left blank
    canvas.refresh()
    assert process_events_until(lambda: not controller.busy, 120)
    assert np.array_equal(_pixels(_render(canvas.mapSettings(), [layer])),
                          _pixels(_render(canvas.mapSettings(), [reference])))
    assert not test_iface.messages


def test_a_sarc_copied_over_while_its_tiles_decode_is_shown_as_it_is_now(plugin, test_iface, big_scene, codec,
                                                                         model_bundle, tmp_path):
    """Another .sarc copied over the one shown (cp writes in place) while its tiles decoded: the decoder's
    "file is truncated" was shown as a critical error that stayed, about a file that had only been replaced."""
    sarc, full, source = big_scene
    other = tmp_path / "other.sarc"
    codec.compress(str(source), str(other), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                                    tile_size=256, overview=True, quality=0.3))
    gt = gdal.Open(str(full)).GetGeoTransform()
    layer = plugin.scenes.open(str(sarc))
    layer_id = layer.id()
    controller = plugin.scenes.controllers[layer_id]
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gt, 0, 0, 2048)  # every tile of the scene to decode
    assert process_events_until(lambda: controller.task is not None, 10)
    copied = []

    def copy_over_after_the_first_tile(_tile):  # in the decoding thread, between two tiles
        if not copied:
            shutil.copyfile(other, sarc)
            copied.append(True)

    controller.task.tile_decoded.connect(copy_over_after_the_first_tile, Qt.ConnectionType.DirectConnection)
    assert process_events_until(lambda: plugin.scenes.controllers.get(layer_id) is not controller
                                or messages(test_iface, Qgis.MessageLevel.Critical), 120)
    assert copied and not messages(test_iface, Qgis.MessageLevel.Critical), test_iface.messages
    now = plugin.scenes.controllers[layer_id]
    assert process_events_until(lambda: not now.busy, 120)
    assert any("changed on disk" in m for m in messages(test_iface, Qgis.MessageLevel.Warning))
    codec.reconstruct(str(sarc), str(tmp_path / "other_full.tif"), model_dirs=[str(model_bundle)], device="cpu")
    c, r, w, h = now.visible_window()[0]
    assert np.array_equal(gdal.Open(str(now.cache.tiff_path)).ReadAsArray(c, r, w, h),
                          gdal.Open(str(tmp_path / "other_full.tif")).ReadAsArray(c, r, w, h))
    assert now.layer is layer and layer_id in QgsProject.instance().mapLayers()
