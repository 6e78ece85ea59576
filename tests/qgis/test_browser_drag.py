"""A .sarc dragged from the Browser panel onto the map or the layers panel opens as a scene layer.

A drag from the Browser carries what QgsBrowserModel::mimeData() encodes: the items' mime uris, no file URL,
so `handleFileDrop` never sees it. QGIS (QgisApp::handleDropUriList, where drops on the map canvas and the
layers panel end) hands a uri of layerType "custom" to the registered drop handler whose
customUriProviderKey() is the uri's providerKey. QgisApp and a real drag (QDrag::exec) cannot run headless:
these tests take the mime data from a real QgsBrowserModel listing the folder, decode it with
QgsMimeDataUtils and hand the uris to the plugin's registered handlers as handleDropUriList does. The model,
not QgsDirectoryItem.createChildren() as elsewhere: called from Python, that returns new base-class wrappers
of the plugin's items, without their Python methods (mimeUris), which the Browser panel calls from C++.
"""

from __future__ import annotations

from qgis.core import QgsApplication, QgsBrowserModel, QgsMimeDataUtils, QgsProject
from qgis.PyQt.QtCore import Qt

from qgis_harness import messages, process_events_until


FAVOURITE = "sar_compress drag test"


def _favourite(model: QgsBrowserModel):
    favourites = model.findPath("favorites:")
    return next(i for i in (model.index(r, 0, favourites) for r in range(model.rowCount(favourites)))
                if model.data(i) == FAVOURITE)


def _dragged_uris(folder, *paths) -> list:
    """The uris a drag of the Browser items of `paths` carries. The folder is listed as a favourite (taken
    out again: favourites are saved in the settings), filled in a thread as when expanded in the Browser."""
    model = QgsBrowserModel()
    model.initialize()
    model.addFavoriteDirectory(str(folder), FAVOURITE)
    try:
        index = _favourite(model)
        model.fetchMore(index)
        assert process_events_until(lambda: model.rowCount(index) > 0, 30)
        rows = {model.data(i, QgsBrowserModel.PathRole): i
                for i in (model.index(r, 0, index) for r in range(model.rowCount(index)))}
        items = [rows[str(p)] for p in paths]
        assert all(model.flags(i) & Qt.ItemFlag.ItemIsDragEnabled for i in items)
        return QgsMimeDataUtils.decodeUriList(model.mimeData(items))
    finally:
        model.removeFavorite(_favourite(model))


def _drop(test_iface, uris) -> None:
    """What QgisApp::handleDropUriList does with custom uris; the others are QGIS's own (not exercised)."""
    for uri in uris:
        handler = next(h for h in test_iface.drop_handlers if h.customUriProviderKey() == uri.providerKey)
        handler.handleCustomUriDrop(uri)


def _scene_layers(name: str) -> list:
    return [layer for layer in QgsProject.instance().mapLayers().values() if layer.name() == name]


def test_a_sarc_dragged_from_the_browser_opens_as_a_scene_layer(plugin, test_iface, compressed, sar_tif,
                                                                 tmp_path):
    from sar_compress_plugin.utils.settings import PluginSettings

    settings = PluginSettings.load()
    settings.tile_cache_dir = str(tmp_path / "cache")
    settings.save()
    assert "SAR compressed files" in [p.name() for p in QgsApplication.dataItemProviderRegistry().providers()]

    sarc_uri, tif_uri = _dragged_uris(tmp_path, compressed, sar_tif)
    assert (sarc_uri.layerType, sarc_uri.providerKey, sarc_uri.uri, sarc_uri.name) == (
        "custom", "sar_compress_scene", str(compressed), "berlin")
    # Another file keeps the uri QGIS gives it: QGIS adds it as a raster layer, as without the plugin.
    assert (tif_uri.layerType, tif_uri.providerKey) == ("raster", "gdal")

    _drop(test_iface, [sarc_uri])
    layers = _scene_layers("berlin")
    assert len(layers) == 1 and layers[0].id() in plugin.scenes.controllers
    assert messages(test_iface) == []
    # Dropped again: the layer already open, not a second one (as for a drop from the file manager).
    _drop(test_iface, [sarc_uri])
    assert _scene_layers("berlin") == layers


def test_a_damaged_sarc_dragged_from_the_browser_gives_one_message_and_no_layer(plugin, test_iface,
                                                                               compressed, tmp_path):
    cut = compressed.with_name("cut.sarc")
    cut.write_bytes(compressed.read_bytes()[: compressed.stat().st_size // 2])

    _drop(test_iface, _dragged_uris(tmp_path, cut))
    assert _scene_layers("cut") == []
    assert messages(test_iface) == [
        f"Cannot open cut.sarc: {cut}: footer is missing or damaged (file truncated or corrupted)"]
