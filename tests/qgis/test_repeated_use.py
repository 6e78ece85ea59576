"""The plugin used all day: what the second run of an action or a dialog finds, through the real entry points
(context menu, dialogs) in real headless QGIS with the tiny ONNX model. Scene layers across a plugin reload or a
project read again: test_scene_layer.py."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer

from qgis_harness import accept_next_dialog, process_events_until, wait_for_task
from sar_compress_plugin.utils.settings import PluginSettings

QUALITY_ROLES = ("enl_ratio", "epi")


def _add_raster(path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def _layer_named(name: str) -> QgsRasterLayer:
    return next(lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == name)


def test_saving_settings_keeps_the_folder_the_quality_maps_dialog_remembers(plugin, test_iface, sar_tif, tmp_path):
    """The quality-maps dialog offers the folder it was last given; OK in Settings (which has no such field)
    wrote it back as "" and the next quality maps went beside the reconstruction again."""
    folder = tmp_path / "maps"
    folder.mkdir()
    settings = PluginSettings.load()
    settings.quality_maps_folder = str(folder)  # what the quality-maps dialog saves on OK
    settings.save()
    try:
        state = accept_next_dialog()  # Settings, OK without a change
        plugin.settings_action.trigger()
        assert state.get("dialog_title") == "SAR Compress settings" and "error" not in state

        test_iface.layer_tree_view.setCurrentLayer(_add_raster(sar_tif, "berlin"))
        offered = {}
        accept_next_dialog(lambda dialog: offered.update(folder=dialog.folder.filePath()))
        plugin.quality_action.trigger()
        assert offered["folder"] == str(folder)
    finally:
        settings = PluginSettings.load()  # the test profile is shared by the tests that follow
        settings.quality_maps_folder = ""
        settings.save()


def test_a_second_quality_maps_run_is_the_overlay_shown(plugin, test_iface, sar_tif, compressed):
    """Maps go just above their reconstruction, so the second run's maps (another window size) went below the
    first run's ENL ratio map, still shown: the canvas showed the old map with the new one faintly through it."""
    original = _add_raster(sar_tif, "berlin")
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    recon = _layer_named("berlin (reconstructed)")
    for window in (15, 7):
        assert wait_for_task(plugin, plugin.quality_maps(recon, original, window=window)).ok
    root = QgsProject.instance().layerTreeRoot()
    shown = [lyr.name() for lyr in root.checkedLayers() if lyr.customProperty("sar_compress/role") in QUALITY_ROLES]
    assert shown == ["berlin (reconstructed) vs berlin — Band 1: Intensity_VV local ENL ratio (7 px)"]


def test_the_maps_of_a_second_reconstruction_are_not_under_the_first(plugin, test_iface, sar_tif, compressed):
    """A second reconstruction of the original went just above the original, under the first one; its quality
    maps, placed just above it, were then drawn under the first reconstruction (opaque): the canvas showed no
    map at all."""
    original = _add_raster(sar_tif, "berlin")
    for _ in range(2):
        assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    second = _layer_named("berlin (reconstructed) [2]")
    assert wait_for_task(plugin, plugin.quality_maps(second, original)).ok
    shown = [lyr.name() for lyr in QgsProject.instance().layerTreeRoot().checkedLayers()]  # top to bottom
    assert shown[:2] == ["berlin (reconstructed) [2] vs berlin — Band 1: Intensity_VV local ENL ratio (15 px)",
                         "berlin (reconstructed) [2]"]


def test_a_device_remembered_while_the_quality_maps_dialog_is_open_is_kept(plugin, test_iface, sar_tif, compressed):
    """A reconstruction on a chosen device remembers it once it has worked. Finishing while the quality-maps
    dialog was open, it was undone on OK: the dialog saved every setting as read when it opened."""
    settings = PluginSettings.load()
    settings.device = "auto"
    settings.save()
    original = _add_raster(sar_tif, "berlin")
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    test_iface.layer_tree_view.setCurrentLayer(_layer_named("berlin (reconstructed)"))
    running = plugin.reconstruct_file(str(compressed), device="cpu")  # as the Reconstruct dialog passes it

    seen = {}

    def finish_meanwhile(dialog):
        seen["original"] = dialog.original_layer()
        seen["finished"] = process_events_until(lambda: id(running) not in plugin.tasks)
        seen["device"] = PluginSettings.load().device

    state = accept_next_dialog(finish_meanwhile)
    plugin.quality_action.trigger()
    assert seen == {"original": original, "finished": True, "device": "cpu"} and running.result.ok
    assert "error" not in state and wait_for_task(plugin, plugin.last_task).ok
    assert PluginSettings.load().device == "cpu"


def test_the_tests_settings_are_their_own_not_the_users_nor_another_runs():
    """QgsSettings of the tests went to ~/.config/Unknown Organization.conf despite the throw-away profile: two
    test runs at once read each other's plugin settings (a reconstruct task looked for the model in the other
    run's folders and failed), and a run left its folders in the user's settings."""
    from qgis.core import QgsSettings

    import qgis_harness

    assert Path(QgsSettings().fileName()).parent == Path(qgis_harness._PROFILE)
