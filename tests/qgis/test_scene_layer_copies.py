"""Two layers of one compressed scene: a copy made by the Layers panel's "Duplicate Layer", or two read with a
project. One cache and one decoding task serve both; each is a scene layer in its own right."""

from __future__ import annotations

import numpy as np
from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer

from qgis_harness import process_events_until
from test_scene_layer import _menu_texts, _pixels, _render, _show_canvas, _view, scene  # noqa: F401 (fixture)


def _duplicate(layer):
    """What QGIS's "Duplicate Layer" does: a clone (custom properties included) added to the project."""
    copy = layer.clone()
    copy.setName(f"{layer.name()} copy")
    QgsProject.instance().addMapLayer(copy)
    return copy


def _shows_the_reconstruction(canvas, layer, full) -> bool:
    reference = QgsRasterLayer(str(full), "full", "gdal")
    reference.setRenderer(layer.renderer().clone())
    return np.array_equal(_pixels(_render(canvas.mapSettings(), [layer])),
                          _pixels(_render(canvas.mapSettings(), [reference])))


def test_a_duplicated_scene_layer_decodes_where_it_is_panned_and_outlives_its_original(plugin, test_iface, scene,
                                                                                       tmp_path):
    """The copy shown alone (the original unticked) stayed blank wherever it was panned: nothing decoded for it,
    its menu had neither "SAR style…" nor "Export current extent…", and the export refused it. Once the original
    was removed it could never decode again."""
    sarc, full = scene
    gt = gdal.Open(str(full)).GetGeoTransform()
    original = plugin.scenes.open(str(sarc))
    copy = _duplicate(original)
    canvas = _show_canvas(test_iface, copy)  # the copy alone on the map
    controller = plugin.scenes.controllers[original.id()]
    for col, row in ((32, 40), (300, 330)):
        _view(canvas, gt, col, row, 160)
        assert process_events_until(lambda: not controller.busy, 120)
        assert _shows_the_reconstruction(canvas, copy, full)
    assert {"SAR style…", "Export current extent as GeoTIFF…"} <= set(_menu_texts(test_iface, copy))
    task = plugin.scenes.export_view(copy, str(tmp_path / "view.tif"))
    assert task is not None and process_events_until(lambda: task.result is not None, 120) and task.result.ok

    QgsProject.instance().removeMapLayer(original.id())
    assert copy.id() in plugin.scenes.controllers
    _view(canvas, gt, 300, 40, 160)
    now = plugin.scenes.controllers[copy.id()]
    assert process_events_until(lambda: not now.busy, 120)
    assert _shows_the_reconstruction(canvas, copy, full)
    assert not [m for m in test_iface.messages if m[2] >= 1 and "view.tif" not in m[1]], test_iface.messages

    QgsProject.instance().removeMapLayer(copy.id())
    assert plugin.scenes.controllers == {}


def test_two_layers_of_one_scene_read_with_a_project_both_decode(plugin, test_iface, scene, tmp_path):
    """A project saved with a scene layer and its copy: read again, only the first was decoded on demand; the
    second, shown alone, showed the tiles decoded before the save and nothing more."""
    sarc, full = scene
    gt = gdal.Open(str(full)).GetGeoTransform()
    original = plugin.scenes.open(str(sarc))
    _duplicate(original)
    project = QgsProject.instance()
    assert project.write(str(tmp_path / "two.qgz"))
    project.clear()
    assert project.read(str(tmp_path / "two.qgz"))
    layers = sorted(project.mapLayers().values(), key=lambda layer: layer.name())
    assert [layer.name() for layer in layers] == ["berlin", "berlin copy"]
    for layer, (col, row) in zip(layers, ((300, 330), (32, 300))):  # each shown alone, where nothing was decoded
        assert layer.id() in plugin.scenes.controllers
        canvas = _show_canvas(test_iface, layer)
        _view(canvas, gt, col, row, 160)
        assert process_events_until(lambda: not plugin.scenes.controllers[layer.id()].busy, 120)
        assert _shows_the_reconstruction(canvas, layer, full)
