"""The plugin reloaded as the Plugin Reloader and an update from the Plugin Manager do it (qgis.utils: unload, its
modules dropped, imported and started again), with a task running and a scene layer on the map."""

from __future__ import annotations

from osgeo import gdal
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer

from qgis_harness import PLUGIN, messages, plugin_installed_from_zip, process_events_until
from test_scene_layer import _show_canvas, _view


def test_a_reload_with_a_compression_running_says_it_was_cancelled_and_keeps_the_scene(
        test_iface, sar_tif, compressed, model_bundle, tmp_path):
    """The compression vanished without a word (and without its file): the plugin that started it could no
    longer report its end. Nothing else may be lost: no Python error, no partial file, the settings, the scene
    layer decoding with the new plugin."""
    import qgis.utils

    python_errors = []

    def record(message, tag, _level):
        if tag == "Python error" or "Traceback" in message:
            python_errors.append(message)

    QgsApplication.messageLog().messageReceived.connect(record)
    try:
        with plugin_installed_from_zip(tmp_path / "install"):
            from sar_compress_plugin.utils.settings import PluginSettings  # the installed copy's

            settings = PluginSettings(model_dir=str(model_bundle), model_dirs=[str(model_bundle)], device="cpu",
                                      tile_size=64, tile_cache_dir=str(tmp_path / "cache"))
            settings.save()
            assert qgis.utils.loadPlugin(PLUGIN) and qgis.utils.startPlugin(PLUGIN)
            plugin = qgis.utils.plugins[PLUGIN]
            scene = plugin.scenes.open(str(compressed))
            canvas = _show_canvas(test_iface, scene)
            original = QgsRasterLayer(str(sar_tif), "berlin original", "gdal")
            QgsProject.instance().addMapLayer(original)
            output = tmp_path / "out" / "berlin.sarc"
            output.parent.mkdir()
            task = plugin.compress_layer(original, str(output), ask=False)  # no event processed: it is running
            assert task is not None and plugin.tasks

            assert qgis.utils.reloadPlugin(PLUGIN)
            assert any(m.startswith("SAR compress berlin.tif cancelled: the plugin was unloaded")
                       for m in messages(test_iface, Qgis.MessageLevel.Warning)), test_iface.messages
            assert process_events_until(lambda: QgsApplication.taskManager().countActiveTasks() == 0, 120)
            assert list(output.parent.iterdir()) == []  # neither the file nor a partial one
            assert PluginSettings.load() == settings
            reloaded = qgis.utils.plugins[PLUGIN]
            assert reloaded is not plugin and scene.id() in reloaded.scenes.controllers
            controller = reloaded.scenes.controllers[scene.id()]
            gt = gdal.Open(str(sar_tif)).GetGeoTransform()
            _view(canvas, gt, 300, 330, 160)
            assert process_events_until(lambda: not controller.busy, 120)
            shown = set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0]))
            assert shown <= controller.cache.decoded
            assert python_errors == []
            assert qgis.utils.unloadPlugin(PLUGIN)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(record)
