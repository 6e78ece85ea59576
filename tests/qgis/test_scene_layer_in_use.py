"""A scene layer while the analyst works with it and its files change under it: quick pans while tiles decode,
the cache folder deleted, the .sarc replaced before an export, the same scene opened from a second path."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
from osgeo import gdal
from qgis.core import QgsProject

from qgis_harness import accept_next_dialog, messages, process_events_until
from test_scene_layer import _pixels, _render, _scene_decoded_in_view, _show_canvas, _view, scene  # noqa: F401
from test_scene_layer_copies import _shows_the_reconstruction


def test_panning_while_tiles_decode_decodes_each_tile_once(plugin, test_iface, scene):
    """Each pan cancels the running task. The tiles the decoder had started (it works a few ahead) were
    dropped, finished or not, and decoded again by the next task: small pans a little faster than the tiles
    decoded decoded the centre tiles once per pan, and the view did not fill in until the analyst stopped."""
    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    gt = gdal.Open(str(full)).GetGeoTransform()
    raster = controller.cache.raster
    decode_tile = raster.decode_tile
    decodes: dict[int, int] = {}

    def slow(band, tile):  # a real model takes seconds per tile: pans come while tiles decode
        time.sleep(0.15)
        if band == 0:
            decodes[tile] = decodes.get(tile, 0) + 1
        return decode_tile(band, tile)

    raster.decode_tile = slow
    for step in range(8):
        _view(canvas, gt, 4 * step, 4 * step, 500)
        process_events_until(lambda: False, 0.6)
    assert process_events_until(lambda: not controller.busy, 120)
    assert decodes and max(decodes.values()) == 1, decodes
    shown = set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0]))
    assert shown <= controller.cache.decoded
    assert _shows_the_reconstruction(canvas, layer, full)
    assert not test_iface.messages


def test_a_composite_layer_whose_cache_folder_is_deleted_fills_in_again(plugin, test_iface, scene):
    """The cache folder deleted while the scene is shown (by hand, or evicted by another QGIS on the same
    profile) is built again at the next pan, but a VV/VH composite's VRTs went with it: the layer could not
    reopen its file and stayed blank for good, without a word."""
    from sar_compress_plugin.scene_layer import STYLE_PROPERTY, style_scene_composite

    sarc, layer, canvas, gt = _scene_decoded_in_view(plugin, test_iface, scene)
    controller = plugin.scenes.controllers[layer.id()]
    style_scene_composite(layer, controller.cache, 1, 2)
    shutil.rmtree(controller.cache.folder)

    _view(canvas, gt, 300, 330, 160)
    assert process_events_until(lambda: not controller.busy, 120)
    assert layer.dataProvider().isValid() and layer.customProperty(STYLE_PROPERTY) == "composite:1,2"
    shown = _pixels(_render(canvas.mapSettings(), [layer]))
    assert (shown[..., 3] == 255).all() and (shown[..., 0] != shown[..., 1]).mean() > 0.5  # in colour
    assert not test_iface.messages


def test_sar_style_on_a_deleted_cache_folder_is_one_line(plugin, test_iface, scene, qtbot):
    """"SAR style…" to the composite writes its VRTs beside the cache: with the cache folder deleted (or
    read-only) the action raised, and QGIS showed a Python error. It says why in one line, and the layer keeps
    its style."""
    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    shutil.rmtree(plugin.scenes.controllers[layer.id()].cache.folder)
    test_iface.setActiveLayer(layer)
    accept_next_dialog(lambda dialog: qtbot.keyClicks(dialog.style, "VV/VH"))
    assert plugin.scenes.choose_style(layer) is False
    (message,) = messages(test_iface)
    assert message.startswith("SAR style: cannot write the composite of 'berlin'") and "\n" not in message
    assert "deleted or read-only" in message and layer.renderer().type() == "singlebandpseudocolor"


def test_export_current_extent_of_a_replaced_sarc_cuts_the_file_as_it_is_now(plugin, test_iface, scene, codec,
                                                                            model_bundle, sar_tif, tmp_path):
    """A .sarc replaced by another scene (a smaller cut of it) before "Export current extent…": the view was
    mapped to pixels through the old file, and the new file was cut there, reported as a success. The layer
    first shows the file as it is now (as a pan would), and the export is the view's window of that file."""
    sarc, layer, _canvas, _gt = _scene_decoded_in_view(plugin, test_iface, scene)
    cut = tmp_path / "cut.tif"
    gdal.Translate(str(cut), str(sar_tif), srcWin=[100, 100, 300, 200])
    codec.compress(str(cut), str(tmp_path / "cut.sarc"), codec.CompressOptions(
        model_dir=str(model_bundle), device="cpu", tile_size=128, overview=True))
    os.replace(tmp_path / "cut.sarc", sarc)

    task = plugin.scenes.export_view(layer, str(tmp_path / "view.tif"))
    assert task is not None and process_events_until(lambda: task.result is not None, 120) and task.result.ok
    assert any("changed on disk" in m for m in messages(test_iface))
    out = gdal.Open(str(tmp_path / "view.tif"))
    # the view's pixels 32..192 x 40..200 of the old scene are 0..92 x 0..100 of the cut (made from 100, 100)
    assert (out.RasterXSize, out.RasterYSize) == (92, 100)
    assert out.GetGeoTransform() == gdal.Open(str(cut)).GetGeoTransform()
    codec.reconstruct(str(sarc), str(tmp_path / "cut_full.tif"), model_dirs=[str(model_bundle)], device="cpu")
    want = gdal.Open(str(tmp_path / "cut_full.tif")).ReadAsArray(0, 0, 92, 100)
    assert np.array_equal(out.ReadAsArray(), want)


def test_the_same_scene_at_two_paths_is_one_layer_and_one_writer(plugin, test_iface, scene, tmp_path):
    """A copy of a .sarc under the same name in another folder has the same cache folder. Opened too, it got a
    second controller: two writers of one GeoTIFF and one tile list, which failed ("cannot write the tile
    cache": one renamed the list's temporary file under the other) and lost tiles from the list."""
    sarc, full = scene
    copy = tmp_path / "backup" / sarc.name
    copy.parent.mkdir()
    shutil.copy(sarc, copy)
    layer = plugin.scenes.open(str(sarc))
    assert plugin.scenes.open(str(copy)) is layer
    assert list(QgsProject.instance().mapLayers()) == [layer.id()]
    (note,) = messages(test_iface)
    assert note.startswith(f"{copy}: the same scene as the layer 'berlin'")

    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 0, 0, 512)
    assert process_events_until(lambda: not controller.busy, 120)
    assert len(controller.cache.decoded) == controller.cache.grid.count
    assert messages(test_iface) == [note]


def _second_layer_of(layer, sarc_path):
    """Another layer of `layer`'s scene, naming `sarc_path` (what a project that names both paths reads back)."""
    from qgis.core import QgsRasterLayer

    from sar_compress_plugin.qgis_io import ROLE_PROPERTY, SARC_PATH_PROPERTY, SCENE_ROLE

    second = QgsRasterLayer(layer.source(), "backup", "gdal")
    second.setCustomProperty(ROLE_PROPERTY, SCENE_ROLE)
    second.setCustomProperty(SARC_PATH_PROPERTY, str(sarc_path))
    QgsProject.instance().addMapLayer(second)
    return second


def test_a_layer_of_the_same_scene_at_another_path_outlives_the_first_paths_deletion(plugin, test_iface, scene,
                                                                                     tmp_path):
    """Two layers of one scene at two paths (a project naming both) share one controller. When the first path's
    file was deleted, both layers went with it, though the second's file was there; replaced by another scene,
    the second layer showed that scene. Each layer goes with its own file."""
    sarc, full = scene
    copy = tmp_path / "backup" / sarc.name
    copy.parent.mkdir()
    shutil.copy(sarc, copy)
    layer = plugin.scenes.open(str(sarc))
    second = _second_layer_of(layer, copy)
    assert plugin.scenes.controllers[second.id()] is plugin.scenes.controllers[layer.id()]
    layer_id, second_id = layer.id(), second.id()
    os.remove(sarc)
    canvas = _show_canvas(test_iface, second)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 32, 40, 160)
    assert process_events_until(lambda: layer_id not in plugin.scenes.controllers and (
        second_id not in plugin.scenes.controllers or not plugin.scenes.controllers[second_id].busy), 120)
    assert list(QgsProject.instance().mapLayers()) == [second_id]
    controller = plugin.scenes.controllers[second_id]
    assert controller.cache.raster.path == copy and second.isValid()
    assert set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0])) <= controller.cache.decoded
    assert _shows_the_reconstruction(canvas, second, full)


def test_a_project_read_after_its_sarc_became_another_scene_stretches_over_that_scenes_range(
        plugin, test_iface, scene, codec, model_bundle, sar_tif, tmp_path):
    """A project is read back with its layer's saved renderer where the cache was evicted (the same scene); but a
    .sarc replaced by another scene meanwhile kept the old scene's stretch and legend (40.7 .. 66.0 dB over a
    scene clipped to 50.1 .. 75.8 dB)."""
    sarc, _full = scene
    plugin.scenes.open(str(sarc))
    project = QgsProject.instance()
    assert project.write(str(tmp_path / "session.qgz"))
    project.clear()
    brighter = tmp_path / "brighter.tif"
    gdal.Translate(str(brighter), str(sar_tif), srcWin=[100, 100, 300, 200],
                   scaleParams=[[0, 1, 0, 10]] * gdal.Open(str(sar_tif)).RasterCount)
    codec.compress(str(brighter), str(tmp_path / "brighter.sarc"), codec.CompressOptions(
        model_dir=str(model_bundle), device="cpu", tile_size=128, overview=True))
    os.replace(tmp_path / "brighter.sarc", sarc)

    assert project.read(str(tmp_path / "session.qgz"))
    (read,) = project.mapLayers().values()
    cache = plugin.scenes.controllers[read.id()].cache
    labels = [i.label for i in read.renderer().shader().rasterShaderFunction().colorRampItemList() if i.label]
    lo, hi = cache.header["clip_db"][0]
    assert (labels[0], labels[-1]) == (f"{lo:.1f} dB", f"{hi:.1f} dB")
