"""A project reopened after the plugin's cache eviction deleted its scene layers' tile cache. QGIS opened each
layer on the deleted cache file: the layer came invalid, and QGIS Desktop stopped loading the project with its
modal "Handle Unavailable Layers" dialog, whose "Remove Unavailable Layers" deleted the scene layer before the
plugin could point it at a new cache. The cache is built again before QGIS opens the layer (a path
preprocessor and the cache folder's scene registry), so the layers read valid and decode as before."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProject

from qgis_harness import process_events_until
from test_scene_layer import _pixels, _render, _scene_decoded_in_view, _show_canvas, _view, scene  # noqa: F401
from test_scene_layer_copies import _duplicate


@pytest.fixture
def read_events():
    """(validity of each layer as QGIS adds it, by name; QGIS's log messages) while a project is read."""
    valid: dict[str, bool] = {}
    logged: list[str] = []

    def added(layers):
        valid.update((layer.name(), layer.isValid()) for layer in layers)

    def message(text, tag, _level):
        logged.append(f"{tag}: {text}")

    project = QgsProject.instance()
    project.layersAdded.connect(added)
    QgsApplication.messageLog().messageReceived.connect(message)
    yield valid, logged
    QgsApplication.messageLog().messageReceived.disconnect(message)
    project.layersAdded.disconnect(added)


@pytest.mark.parametrize("deleted", ["evicted", "by hand"])
def test_a_project_whose_scene_cache_was_evicted_reads_its_scene_layers_valid(plugin, test_iface, scene, tmp_path,
                                                                               read_events, deleted):
    import shutil

    from sar_compress_plugin.core.scene_cache import evict
    from sar_compress_plugin.scene_layer import STYLE_PROPERTY, style_scene_composite

    sarc, layer, canvas, gt = _scene_decoded_in_view(plugin, test_iface, scene)
    cache = plugin.scenes.controllers[layer.id()].cache
    folder, root = cache.folder, cache.folder.parent
    layer.renderer().setOpacity(0.5)
    composite = _duplicate(layer)
    style_scene_composite(composite, cache, 1, 2)
    names = layer.name(), composite.name()
    project = QgsProject.instance()
    assert project.write(str(tmp_path / "session.qgz"))
    project.clear()
    if deleted == "evicted":
        assert evict(root, 0) == [folder]
    else:
        shutil.rmtree(folder)
    assert not folder.exists()

    valid, logged = read_events
    assert project.read(str(tmp_path / "session.qgz"))
    assert valid == dict.fromkeys(names, True)
    assert not [m for m in logged if "unavailable" in m.lower()], logged
    read = {lyr.name(): lyr for lyr in project.mapLayers().values()}
    grey, colour = (read[name] for name in names)
    assert grey.source() == str(folder / "scene.tif") and colour.source() == str(folder / "composite.vrt")
    assert grey.renderer().type() == "singlebandpseudocolor" and grey.renderer().opacity() == 0.5
    assert colour.renderer().type() == "multibandcolor" and colour.customProperty(STYLE_PROPERTY) == "composite:1,2"
    assert plugin.scenes.open(str(sarc)) is colour  # the top one in the Layers panel (the copy, added last)
    controller = plugin.scenes.controllers[grey.id()]
    assert plugin.scenes.controllers[colour.id()] is controller and controller.cache.folder == folder

    canvas = _show_canvas(test_iface, grey)  # the view is given in EPSG:4326
    _view(canvas, gt, 300, 330, 160)
    assert process_events_until(lambda: not controller.busy, 120)
    assert set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0])) <= controller.cache.decoded
    canvas.setLayers([colour])
    assert process_events_until(lambda: not controller.busy, 120)
    shown = _pixels(_render(canvas.mapSettings(), [colour]))
    assert (shown[..., 3] == 255).all() and (shown[..., 0] != shown[..., 1]).mean() > 0.5  # in colour
    c, r, w, h = controller.visible_window()[0]
    full = gdal.Open(str(scene[1])).ReadAsArray()
    assert np.array_equal(gdal.Open(grey.source()).ReadAsArray(c, r, w, h), full[:, r:r + h, c:c + w])
    assert not test_iface.messages


def test_the_cache_hook_leaves_other_paths_alone(plugin, scene, tmp_path):
    """QGIS hands the hook every path of every project: only a missing file of a known scene's cache folder is
    made again; other paths, an unknown folder, a file that is there and a .sarc that is gone are left as they
    are (the layer is then repaired as the project is read, as before)."""
    from sar_compress_plugin.scene_layer import rebuild_evicted_cache

    sarc, _full = scene
    layer = plugin.scenes.open(str(sarc))
    cache = plugin.scenes.controllers[layer.id()].cache
    there = str(cache.tiff_path)
    for path in ("", "/data/berlin.tif", "dbname='gis' table=x", "/elsewhere/scene.tif", "./scene.tif",
                 str(tmp_path / "unknown-0123456789abcdef" / "scene.tif"), there, "scene.tif"):
        assert rebuild_evicted_cache(path) == path
    QgsProject.instance().clear()
    missing = cache.folder / "scene.tif"
    import shutil

    shutil.rmtree(cache.folder)
    relative = f"../{cache.folder.parent.name}/{cache.folder.name}/scene.tif"
    assert rebuild_evicted_cache(relative) == str(missing) and missing.is_file()
    shutil.rmtree(cache.folder)
    sarc.unlink()
    assert rebuild_evicted_cache(str(missing)) == str(missing) and not missing.exists()
