"""QGIS's own "Export > Save As…" on a scene layer writes the layer's tile cache: the tiles decoded so far, and
nodata where none is yet. It wrote a file with NaN holes that passed for the whole scene, without a word. Now the
holes are the declared nodata, the plugin names the partial file as soon as QGIS has written it, and the scene
layer's "Save whole scene as GeoTIFF…" writes the full reconstruction."""

from __future__ import annotations

import numpy as np
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsProject,
    QgsRasterFileWriter,
    QgsRasterFileWriterTask,
    QgsRasterNuller,
    QgsRasterPipe,
)

from qgis_harness import accept_next_dialog, process_events_until
from test_scene_layer import _menu_texts, _show_canvas, _view, scene  # noqa: F401 (fixture)

SAVE_SCENE = "Save whole scene as GeoTIFF…"


def _qgis_save_as(test_iface, layer, path, extent) -> None:
    """What QGIS 3.22's Save As does in its default raw-data mode (QgisApp::saveAsRasterFile): a clone of the
    layer's provider behind a QgsRasterNuller, at the layer's resolution, written by a QgsRasterFileWriterTask; on
    writeComplete QGIS emits the interface's layerSavedAs and then pushes its own "Layer Exported" message."""
    pipe = QgsRasterPipe()
    assert pipe.set(layer.dataProvider().clone())
    nuller = QgsRasterNuller()
    for band in range(1, layer.bandCount() + 1):
        nuller.setNoData(band, [])  # the dialog's "No data values" table, empty by default
    assert pipe.insert(1, nuller)
    writer = QgsRasterFileWriter(str(path))
    writer.setOutputFormat("GTiff")
    columns = round(extent.width() / layer.rasterUnitsPerPixelX())
    rows = round(extent.height() / layer.rasterUnitsPerPixelY())
    task = QgsRasterFileWriterTask(writer, pipe, columns, rows, extent, layer.crs(),
                                   QgsProject.instance().transformContext())
    written = []

    def complete(name):
        test_iface.layerSavedAs.emit(layer, name)
        test_iface.messageBar().pushMessage("Layer Exported", f"Successfully saved raster layer to {name}",
                                            Qgis.MessageLevel.Success, 0)
        written.append(name)

    task.writeComplete.connect(complete)
    QgsApplication.taskManager().addTask(task)
    assert process_events_until(lambda: written, 60)
    process_events_until(lambda: False, 0.3)  # the plugin's word comes after QGIS's, on top of it


def _partial_warnings(test_iface) -> list[str]:
    return [text for _title, text, level in test_iface.messages
            if level == int(Qgis.MessageLevel.Warning) and "holds only" in text]


def test_qgis_save_as_of_a_partly_decoded_scene_is_nodata_there_named_partial_and_the_whole_scene_is_one_action(
        plugin, test_iface, scene, tmp_path):
    sarc, full = scene
    full_px = gdal.Open(str(full)).ReadAsArray()
    assert np.isfinite(full_px).all()
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    cache = controller.cache
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 32, 40, 160)
    assert process_events_until(lambda: not controller.busy, 120)
    decoded = set(cache.decoded)
    assert 0 < len(decoded) < cache.grid.count

    # The map view's extent (the Save As dialog's "Map view extent"): every tile under it is decoded, no warning.
    _qgis_save_as(test_iface, layer, tmp_path / "view.tif", canvas.extent())
    assert _partial_warnings(test_iface) == []

    # The whole layer (the dialog's default): decoded tiles as a full reconstruction has them, the rest the bands'
    # declared nodata, and the plugin's warning on top of the message bar, naming the file and the way out.
    saved = tmp_path / "saved.tif"
    _qgis_save_as(test_iface, layer, saved, layer.extent())
    ds = gdal.Open(str(saved))
    px = ds.ReadAsArray()
    assert px.shape == full_px.shape
    assert all(np.isnan(ds.GetRasterBand(b).GetNoDataValue()) for b in range(1, ds.RasterCount + 1))
    ds = None
    for t in range(cache.grid.count):
        c, r, w, h = cache.grid.core_in_raster(t)
        if t in decoded:
            assert np.array_equal(px[:, r:r + h, c:c + w], full_px[:, r:r + h, c:c + w])
        else:
            assert np.isnan(px[:, r:r + h, c:c + w]).all()
    n = cache.grid.count
    assert _partial_warnings(test_iface) == [
        f"saved.tif holds only {len(decoded)} of the {n} tiles of 'berlin' it covers: QGIS's Save As writes the "
        f"tiles decoded so far, the other {n - len(decoded)} are nodata in it. \"{SAVE_SCENE}\" in the layer's "
        f"menu writes the whole scene."]
    assert "holds only" in test_iface.message_bar.currentItem().text()  # not hidden under "Layer Exported"

    # "Save whole scene as GeoTIFF…" in the layer's menu: the Reconstruct dialog on the scene's file, whole scene,
    # written next to it by a task; the result is the full reconstruction, added as a layer.
    assert SAVE_SCENE in _menu_texts(test_iface, layer)
    menu = test_iface.layer_tree_view.menuProvider().createContextMenu()
    [action] = [a for a in menu.actions() if a.text() == SAVE_SCENE]
    seen = {}
    state = accept_next_dialog(lambda d: seen.update(input=d.sarc_path(), area=d.area.currentData()))
    action.trigger()
    assert seen == {"input": str(sarc), "area": "whole"}, state
    task = plugin.last_task
    assert process_events_until(lambda: task.result is not None, 120) and task.result.ok, task.result
    whole = sarc.with_name("berlin_reconstructed.tif")
    assert np.array_equal(gdal.Open(str(whole)).ReadAsArray(), full_px)
    # the result is set on the task's thread; the layer is added by finished(), on the main thread, a moment later
    assert process_events_until(lambda: [lyr for lyr in QgsProject.instance().mapLayers().values()
                                         if lyr.source() == str(whole)], 30)
