"""The plugin used all day: what the second run of an action or a dialog finds, through the real entry points
(context menu, dialogs) in real headless QGIS with the tiny ONNX model. Scene layers across a plugin reload or a
project read again: test_scene_layer.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer, QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialog, QDialogButtonBox

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
    state = accept_next_dialog()  # Settings, OK without a change
    plugin.settings_action.trigger()
    assert state.get("dialog_title") == "SAR Compress settings" and "error" not in state

    test_iface.layer_tree_view.setCurrentLayer(_add_raster(sar_tif, "berlin"))
    offered = {}
    accept_next_dialog(lambda dialog: offered.update(folder=dialog.folder.filePath()))
    plugin.quality_action.trigger()
    assert offered["folder"] == str(folder)


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


def _cancel_next_dialog(configure) -> None:
    """Answer the next modal dialog the code under test opens: `configure(dialog)`, then Cancel."""

    def answer():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QDialog):
            QTimer.singleShot(20, answer)
            return
        configure(dialog)
        dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()

    QTimer.singleShot(0, answer)


def _retype(qtbot, widget, text: str) -> None:
    """Replace a file field's text as a user does: select it all, type the new one."""
    line = widget.lineEdit()
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)


def _scene_in(folder: Path, sar_tif: Path, name: str) -> QgsRasterLayer:
    """A 256 x 256 crop of the real scene in `folder`, as a layer: one tile, compressed in a second."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.tif"
    gdal.Translate(str(path), str(sar_tif), srcWin=[128, 128, 256, 256])
    return _add_raster(path, name)


def test_the_compress_dialog_offers_the_folder_the_last_compression_went_to(plugin, test_iface, sar_tif, tmp_path,
                                                                            qtbot):
    """An analyst compressing scene after scene into one archive folder chose that folder again for every scene:
    the dialog always offered the .sarc beside its source. The folder of an accepted compression is offered next
    time (in the plugin's QgsSettings, so in the next QGIS session too); one typed and then cancelled is not; one
    that is gone (an unplugged drive) gives way to the folder beside the source again."""
    first = _scene_in(tmp_path / "scenes_a", sar_tif, "first")
    second = _scene_in(tmp_path / "scenes_b", sar_tif, "second")
    archive = tmp_path / "archive"
    archive.mkdir()
    offered = []

    def choose_archive(dialog):
        offered.append(dialog.output.filePath())
        _retype(qtbot, dialog.output, str(archive / "first.sarc"))

    state = accept_next_dialog(choose_archive)
    assert wait_for_task(plugin, plugin.compress_layer(first)).ok and "error" not in state
    assert offered == [str(tmp_path / "scenes_a" / "first.sarc")]  # nothing remembered: beside the source
    assert QgsSettings().value("sar_compress/compress_output_folder") == str(archive)

    def type_elsewhere_then_cancel(dialog):
        offered.append(dialog.output.filePath())
        _retype(qtbot, dialog.output, str(tmp_path / "scenes_b" / "second.sarc"))

    _cancel_next_dialog(type_elsewhere_then_cancel)
    assert plugin.compress_layer(second) is None
    state = accept_next_dialog(lambda dialog: offered.append(dialog.output.filePath()))  # OK as offered
    assert wait_for_task(plugin, plugin.compress_layer(second)).ok and "error" not in state
    assert offered[1:] == [str(archive / "second.sarc")] * 2
    assert sorted(p.name for p in archive.iterdir()) == ["first.sarc", "second.sarc"]

    shutil.rmtree(archive)
    _cancel_next_dialog(lambda dialog: offered.append(dialog.output.filePath()))
    assert plugin.compress_layer(second) is None
    assert offered[3] == str(tmp_path / "scenes_b" / "second.sarc")


def test_the_reconstruct_dialog_offers_the_folder_the_last_reconstruction_went_to(plugin, test_iface, compressed,
                                                                                  tmp_path, qtbot):
    """As the compress dialog: the reconstruction of a .sarc typed in follows it into the folder the last one
    went to, rather than beside it, while that folder is there."""
    other = tmp_path / "other" / "second.sarc"
    other.parent.mkdir()
    shutil.copy(compressed, other)
    work = tmp_path / "work"
    work.mkdir()
    seen = []

    def choose_work(dialog):
        seen.append(dialog.output.lineEdit().placeholderText())
        _retype(qtbot, dialog.output, str(work / "first.tif"))

    state = accept_next_dialog(choose_work)
    assert wait_for_task(plugin, plugin.reconstruct_with_dialog(str(compressed))).ok and "error" not in state
    assert QgsSettings().value("sar_compress/reconstruct_output_folder") == str(work)

    def type_the_input(dialog):
        seen.append(dialog.output.lineEdit().placeholderText())
        qtbot.keyClicks(dialog.input.lineEdit(), str(other))
        seen.append(dialog.output.filePath())

    state = accept_next_dialog(type_the_input)
    assert wait_for_task(plugin, plugin.reconstruct_with_dialog()).ok and "error" not in state
    assert seen == ["next to the .sarc file", f"in {work}", str(work / "second_reconstructed.tif")]
    assert sorted(p.name for p in work.iterdir()) == ["first.tif", "second_reconstructed.tif"]

    shutil.rmtree(work)
    _cancel_next_dialog(type_the_input)
    assert plugin.reconstruct_with_dialog() is None
    assert seen[3:] == ["next to the .sarc file", str(other.with_name("second_reconstructed.tif"))]


def test_a_quality_maps_folder_that_is_gone_is_not_offered(plugin, test_iface, sar_tif, tmp_path):
    """The quality-maps dialog offered the folder it was last given even once it was gone, and refused it on OK
    ("does not exist"): the analyst had to find and empty the field. Beside the reconstruction is offered."""
    settings = PluginSettings.load()
    settings.quality_maps_folder = str(tmp_path / "maps")  # remembered, then deleted
    settings.save()
    test_iface.layer_tree_view.setCurrentLayer(_add_raster(sar_tif, "berlin"))
    offered = {}
    _cancel_next_dialog(lambda dialog: offered.update(folder=dialog.folder.filePath()))
    plugin.quality_action.trigger()
    assert offered == {"folder": ""}
    assert PluginSettings.load().quality_maps_folder == str(tmp_path / "maps")  # the drive may come back


def test_the_tests_settings_are_their_own_not_the_users_nor_another_runs():
    """QgsSettings of the tests went to ~/.config/Unknown Organization.conf despite the throw-away profile: two
    test runs at once read each other's plugin settings (a reconstruct task looked for the model in the other
    run's folders and failed), and a run left its folders in the user's settings."""
    from qgis.core import QgsSettings

    import qgis_harness

    assert Path(QgsSettings().fileName()).parent == Path(qgis_harness._PROFILE)
