"""What keeps the plugin from destroying data or answering the wrong question, as an analyst meets it: the original
typed as the reconstruct dialog's output, an existing file typed into a dialog, two tasks on one output, the
quality-maps dialog opened from the original, layers that are not plain files, scene layers, and what the
compress dialog checks on OK. Real dialogs, typed into and clicked with pytest-qt, in real headless QGIS with the
tiny ONNX model; the only stand-in is the Yes/No question box (said where it is used)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QDialog, QMessageBox

from qgis_harness import accept_next_dialog, click_ok, messages, process_events_until, wait_for_task
from sar_compress_plugin.gui.dialogs import CompressDialog, ReconstructDialog
from sar_compress_plugin.utils.settings import PluginSettings

QUALITY_TEXT = "SAR quality maps…"


def _retype(qtbot, widget, text):
    """Replace a field's text as a user does: select it all, type the new one."""
    line = widget.lineEdit()
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)


def _add_raster(path, name="berlin") -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def _reconstruction(plugin, compressed) -> QgsRasterLayer:
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    return [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "berlin (reconstructed)"][0]


@pytest.fixture
def log_texts():
    """Everything written to QGIS's message log during the test."""
    seen: list[str] = []

    def record(message, _tag, _level):
        seen.append(message)

    QgsApplication.messageLog().messageReceived.connect(record)
    yield seen
    QgsApplication.messageLog().messageReceived.disconnect(record)


@pytest.fixture
def answers(monkeypatch):
    """Stand-in for the user's Yes/No: QMessageBox.question runs a nested modal loop that the dialog answering of
    the harness cannot reach, so it is replaced by a recorder that pops the prepared answers."""
    asked: list[str] = []
    queued: list = []

    def question(_parent, _title, text, *_args):
        asked.append(text)
        return queued.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked, queued


# --- destinations ----------------------------------------------------------------------------------------------

def test_reconstruct_dialog_refuses_the_file_of_a_loaded_layer(plugin, test_iface, sar_tif, compressed, qtbot):
    _add_raster(sar_tif)
    before = sar_tif.read_bytes()

    def onto_original(dialog):
        qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
        _retype(qtbot, dialog.output, str(sar_tif))

    state = accept_next_dialog(onto_original)
    assert plugin.reconstruct_with_dialog() is None
    assert state["error"] == f"{sar_tif} is the file of layer 'berlin' in this project: choose another output."
    assert sar_tif.read_bytes() == before


def test_reconstruct_dialog_refuses_its_input_as_output_before_asking_to_replace_it(qgis_app, compressed, qtbot,
                                                                                      answers):
    """A .sarc copied under a .tif name (compress refuses such a name; a copy does not). Typed as its own output,
    the dialog asked "… exists. Replace it?" about the input, and the task failed after a Yes."""
    asked, queued = answers
    scene = compressed.with_name("scene.tif")
    shutil.copy(compressed, scene)
    dialog = ReconstructDialog(str(scene), "", PluginSettings(), None)
    qtbot.addWidget(dialog)
    dialog.show()
    _retype(qtbot, dialog.output, str(scene))
    queued.append(QMessageBox.StandardButton.No)
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.error_label.text() == "The output may not overwrite the input."
    assert asked == []


def test_an_existing_output_is_replaced_only_when_the_user_says_yes(plugin, test_iface, sar_tif, compressed, qtbot,
                                                                     answers):
    asked, queued = answers
    layer = _add_raster(sar_tif)
    before = compressed.stat().st_mtime_ns

    def type_existing(dialog):
        _retype(qtbot, dialog.output, str(compressed))

    queued.append(QMessageBox.StandardButton.No)
    state = accept_next_dialog(type_existing)
    assert plugin.compress_layer(layer) is None
    assert asked == [f"{compressed} exists. Replace it?"]
    assert state["error"] == ""  # No: the dialog stayed open, with nothing to correct
    assert compressed.stat().st_mtime_ns == before

    queued.append(QMessageBox.StandardButton.Yes)
    state = accept_next_dialog(type_existing)
    task = plugin.compress_layer(layer)
    assert "error" not in state and len(asked) == 2
    assert wait_for_task(plugin, task).ok and compressed.stat().st_mtime_ns != before

    # The reconstruct dialog asks the same; its file picker no longer asks a second time.
    existing = compressed.with_name("mine.tif")
    existing.write_bytes(b"an earlier result")
    dialog = ReconstructDialog(str(compressed), "", PluginSettings.load(), None)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.output.confirmOverwrite()
    _retype(qtbot, dialog.output, str(existing))
    queued.append(QMessageBox.StandardButton.No)
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and asked[-1] == f"{existing} exists. Replace it?"
    queued.append(QMessageBox.StandardButton.Yes)
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.output_path() == str(existing)


def test_two_compressions_at_once_write_two_files_and_a_clash_is_refused(plugin, test_iface, sar_tif, codec,
                                                                         model_bundle):
    layer = _add_raster(sar_tif)

    def options(quality):
        return codec.CompressOptions(model_dir=str(model_bundle), device="cpu", tile_size=256, quality=quality)

    first = plugin.compress_layer(layer, ask=False, options=options(0.0))
    second = plugin.compress_layer(layer, ask=False, options=options(2.0))  # not waiting for the first
    assert (Path(first.output_path).name, Path(second.output_path).name) == ("berlin.sarc", "berlin_2.sarc")
    clash = plugin.compress_layer(layer, first.output_path, ask=False, options=options(1.0))
    assert clash is None
    assert messages(test_iface, Qgis.MessageLevel.Warning)[-1] == (
        f"{first.output_path} is already being written by a running task: wait for it to finish or choose "
        "another output.")
    assert wait_for_task(plugin, first).ok and wait_for_task(plugin, second).ok
    assert [codec.read_header(t.output_path)["rate"]["quality"] for t in (first, second)] == [0.0, 2.0]


# --- quality maps ----------------------------------------------------------------------------------------------

def test_quality_maps_of_two_bands_at_once_and_the_same_band_twice(plugin, test_iface, sar_tif, compressed,
                                                                   tmp_path, log_texts):
    original = _add_raster(sar_tif)
    recon = _reconstruction(plugin, compressed)
    band1 = plugin.quality_maps(recon, original, band=1)
    band2 = plugin.quality_maps(recon, original, band=2)
    assert plugin.quality_maps(recon, original, band=1) is None  # the same maps, already being computed
    assert "is already being written by a running task" in messages(test_iface, Qgis.MessageLevel.Warning)[-1]
    assert wait_for_task(plugin, band1).ok and wait_for_task(plugin, band2).ok
    assert Path(band1.enl_ratio_path).name == "berlin_reconstructed_band1_enl_ratio.tif"
    assert Path(band2.epi_path).name == "berlin_reconstructed_band2_epi.tif"
    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    for task, band in ((band1, 1), (band2, 2)):
        direct = compute_quality_maps(sar_tif, recon.source(), tmp_path / f"enl{band}.tif",
                                      tmp_path / f"epi{band}.tif", bands=[band])
        for mine, want in ((task.enl_ratio_path, direct.enl_ratio_path), (task.epi_path, direct.epi_path)):
            np.testing.assert_array_equal(gdal.Open(mine).ReadAsArray(), gdal.Open(want).ReadAsArray())
    assert messages(test_iface, Qgis.MessageLevel.Critical) == []
    assert not [t for t in log_texts if "Traceback" in t]


def test_quality_maps_opened_from_the_original_put_each_layer_in_its_role(plugin, test_iface, sar_tif, compressed,
                                                                          qtbot):
    original = _add_raster(sar_tif)
    recon = _reconstruction(plugin, compressed)
    seen = {}

    def look(dialog):
        seen["roles"] = (dialog.reconstruction_layer(), dialog.original_layer())

    test_iface.layer_tree_view.setCurrentLayer(original)  # right-click the ORIGINAL > "SAR quality maps…"
    menu = test_iface.layer_tree_view.menuProvider().createContextMenu()
    state = accept_next_dialog(look)
    [a for a in menu.actions() if a.text() == QUALITY_TEXT][0].trigger()
    assert "error" not in state and seen["roles"] == (recon, original)
    task = plugin.last_task
    assert wait_for_task(plugin, task).ok
    assert (task.reconstruction_path, task.original_path) == (recon.source(), str(sar_tif))

    # A layer nothing tells the role of: no layer is preselected in either role; the user chooses both.
    other = _add_raster(shutil.copy(sar_tif, sar_tif.with_name("other.tif")), "other")

    def choose(dialog):
        seen["roles"] = (dialog.reconstruction_layer(), dialog.original_layer())
        click_ok(qtbot, dialog)
        seen["error"] = dialog.error_label.text()
        dialog.reconstruction.setLayer(recon)
        dialog.original.setLayer(other)

    test_iface.layer_tree_view.setCurrentLayer(other)
    state = accept_next_dialog(choose)
    task = plugin.quality_maps_active_layer()
    assert "error" not in state
    assert seen["roles"] == (None, None) and seen["error"] == "Choose the reconstruction."
    assert (task.reconstruction_path, task.original_path) == (recon.source(), str(other.source()))
    assert wait_for_task(plugin, task).ok


# --- layers the codec cannot take as they are --------------------------------------------------------------------

def test_layers_that_are_not_plain_files_are_refused_with_one_clear_message(plugin, test_iface, sar_tif, tmp_path):
    gpkg = tmp_path / "two.gpkg"  # two raster tables (GeoPackage rasters are 8-bit here)
    for table, window, more in (("first", [0, 0, 256, 256], []), ("second", [256, 256, 200, 200],
                                                                   ["APPEND_SUBDATASET=YES"])):
        gdal.Translate(str(gpkg), str(sar_tif), format="GPKG", bandList=[1], srcWin=window,
                       outputType=gdal.GDT_Byte, scaleParams=[[]], creationOptions=[f"RASTER_TABLE={table}", *more])
    # (a file inside a local archive is read in place, and one in GDAL's memory refused: test_archived_layers.py)
    layer = _add_raster(f"GPKG:{gpkg}:second", "second")
    before = len(test_iface.messages)
    assert plugin.compress_layer(layer, str(tmp_path / "out.sarc"), ask=False) is None
    assert messages(test_iface)[before:] == [
        "Cannot compress: 'second' is not a plain raster file (a GeoPackage table); export it as GeoTIFF first"]
    assert not (tmp_path / "out.sarc").exists()


def test_a_scene_layer_is_not_compressed_or_mapped_from_its_tile_cache(plugin, test_iface, sar_tif, compressed,
                                                                      tmp_path):
    original = _add_raster(sar_tif)
    scene = plugin.scenes.open(str(compressed))
    test_iface.layer_tree_view.setCurrentLayer(scene)
    scene_menu = [a.text() for a in test_iface.layer_tree_view.menuProvider().createContextMenu().actions()]
    assert "SAR style…" in scene_menu  # the scene layer's own actions, and not the two below
    assert "Compress with SAR codec…" not in scene_menu and "SAR quality maps…" not in scene_menu
    # were they offered anyway (an older project, a script), they still refuse with what to do
    assert plugin.compress_layer(scene, str(tmp_path / "again.sarc"), ask=False) is None
    assert plugin.quality_maps(scene, original) is None
    warnings = messages(test_iface, Qgis.MessageLevel.Warning)[-2:]
    assert all("is a compressed scene shown from its tile cache; reconstruct it first" in w for w in warnings)
    assert plugin.tasks == {} and not (tmp_path / "again.sarc").exists()


# --- what the compress dialog checks on OK -----------------------------------------------------------------------

def test_compress_dialog_checks_the_model_folder_and_its_top_quality(plugin, test_iface, sar_tif, model_bundle,
                                                                     qtbot, tmp_path):
    layer = _add_raster(sar_tif)
    seen = {}

    def configure(dialog):
        _retype(qtbot, dialog.model_dir, str(tmp_path / "no_model"))
        click_ok(qtbot, dialog)
        seen["folder"] = dialog.error_label.text()
        _retype(qtbot, dialog.model_dir, str(model_bundle))
        dialog.quality.setFocus()
        dialog.quality.selectAll()
        qtbot.keyClicks(dialog.quality, "4")  # the tiny model has levels 0, 1, 2

    state = accept_next_dialog(configure)
    assert plugin.compress_layer(layer) is None
    assert seen["folder"] == f"Folder {tmp_path / 'no_model'} does not exist."
    assert state["error"] == "quality 4.0 must be between 0 and 2 for this model"  # the codec's words
    assert PluginSettings.load().quality is None  # the bad quality did not become the default


def test_compress_dialog_takes_a_relative_name_beside_the_input_and_refuses_a_folder(qgis_app, sar_tif, qtbot,
                                                                                      tmp_path):
    dialog = CompressDialog("berlin", str(sar_tif), str(sar_tif.with_suffix(".sarc")), PluginSettings(), None)
    qtbot.addWidget(dialog)
    dialog.show()
    (tmp_path / "sub").mkdir()
    _retype(qtbot, dialog.output, "sub")
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.error_label.text() == f"{tmp_path / 'sub'} is a folder: choose a file name in it."
    _retype(qtbot, dialog.output, "rel_out")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.output_path() == dialog.output.filePath() == str(sar_tif.parent / "rel_out.sarc")
    assert not (Path(os.getcwd()) / "rel_out.sarc").exists()


# --- messages --------------------------------------------------------------------------------------------------

def test_a_scene_whose_model_is_missing_names_the_settings_entry(plugin, test_iface, compressed, tmp_path):
    s = PluginSettings.load()
    s.model_dir, s.model_dirs = "", []  # the tiny model the file needs is in none of the searched folders
    # A cache of its own: the profile's cache is the session's, and another test that opened the same file (it
    # compresses to the same bytes) had decoded every tile there, so nothing was decoded and nothing failed.
    s.tile_cache_dir = str(tmp_path / "cache")
    s.save()
    layer = plugin.scenes.open(str(compressed))  # the model is looked for when the first tiles are decoded
    test_iface.canvas.setExtent(layer.extent())
    test_iface.canvas.refresh()
    assert process_events_until(lambda: messages(test_iface, Qgis.MessageLevel.Critical), 60)
    error = messages(test_iface, Qgis.MessageLevel.Critical)[-1]
    assert error.startswith("Decoding failed: berlin: ")
    assert '"More model folders"' in error and "--model-dir" not in error


def test_an_unexpected_error_is_one_line_naming_a_file_with_its_traceback(plugin, test_iface, sar_tif, codec,
                                                                          monkeypatch, log_texts):
    # Stand-in: every input the plugin passes on is checked, so a bug cannot be provoked with real data; the
    # codec's compress is replaced by one that fails as a bug would.
    def bug(*_args, **_kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(codec, "compress", bug)
    layer = _add_raster(sar_tif)
    assert wait_for_task(plugin, plugin.compress_layer(layer, ask=False)).status.value == "failed"
    error = messages(test_iface, Qgis.MessageLevel.Critical)[-1]
    assert "\n" not in error and "unexpected ValueError: a bug (traceback in " in error
    saved = Path(error.split("(traceback in ")[1].rstrip(")"))
    assert "Traceback" in saved.read_text() and "a bug" in saved.read_text()
    saved.unlink()
    assert not [t for t in log_texts if "Traceback" in t]
