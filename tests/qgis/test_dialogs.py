"""The plugin's dialogs as an analyst meets them: typed into and clicked with pytest-qt, on the real dialog
classes, in real headless QGIS with the tiny ONNX model (no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox

from qgis_harness import accept_next_dialog, click_ok, messages, wait_for_task
from sar_compress_plugin.gui.dialogs import (CompressDialog, QualityMapsDialog, ReconstructDialog,
                                             SettingsDialog)
from sar_compress_plugin.qgis_io import default_reconstruction_path, display_image_warning
from sar_compress_plugin.utils.settings import PluginSettings


# --- Reconstruct dialog ------------------------------------------------------------------------------------

def test_reconstruct_output_follows_typed_input_until_the_user_edits_it(qtbot, qgis_app, compressed, tmp_path,
                                                                        model_bundle):
    dialog = ReconstructDialog("", "", PluginSettings(model_dirs=[str(model_bundle)]), None)
    qtbot.addWidget(dialog)
    dialog.show()
    # Typed character by character: "/" then "/w"... used to raise "PosixPath('/') has an empty name".
    qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
    assert dialog.output.filePath() == default_reconstruction_path(str(compressed))
    other = tmp_path / "other.sarc"
    dialog.input.lineEdit().clear()
    assert dialog.output.filePath() == ""
    qtbot.keyClicks(dialog.input.lineEdit(), str(other))  # another input: the output follows again
    assert dialog.output.filePath() == str(tmp_path / "other_reconstructed.tif")

    mine = str(tmp_path / "mine.tif")
    dialog.output.lineEdit().clear()
    qtbot.keyClicks(dialog.output.lineEdit(), mine)
    dialog.input.lineEdit().clear()
    qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
    assert dialog.output.filePath() == mine  # the user's own output is kept
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error_label.text() == ""
    assert (dialog.sarc_path(), dialog.output_path()) == (str(compressed), mine)


def test_reconstruct_refuses_an_unwritable_destination_on_ok(qtbot, qgis_app, compressed):
    dialog = ReconstructDialog(str(compressed), "", PluginSettings(), None)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.output.lineEdit().clear()
    qtbot.keyClicks(dialog.output.lineEdit(), "/proc/berlin_rec.tif")  # /proc refuses new files, even to root
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert "/proc is not writable" in dialog.error_label.text()


def test_reconstruct_current_map_extent_writes_that_window_only(plugin, test_iface, compressed, codec,
                                                                 model_bundle, qtbot, tmp_path):
    """The canvas shows part of the scene in another CRS (EPSG:3857); "Current map extent" reconstructs the
    scene's pixels under it (on the scene's grid), equal to the same window of a full reconstruction."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsRectangle

    full = tmp_path / "full.tif"
    codec.reconstruct(str(compressed), str(full), model_dirs=[str(model_bundle)], device="cpu")
    gt = gdal.Open(str(full)).GetGeoTransform()
    wgs84, merc = QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857")
    to_merc = QgsCoordinateTransform(wgs84, merc, QgsProject.instance())
    canvas = test_iface.canvas
    test_iface.main_window.show()
    canvas.setDestinationCrs(merc)

    def show_pixels(col, row, w, h):
        canvas.setExtent(to_merc.transformBoundingBox(QgsRectangle(
            gt[0] + col * gt[1], gt[3] + (row + h) * gt[5], gt[0] + (col + w) * gt[1], gt[3] + row * gt[5])))

    out = tmp_path / "part.tif"
    seen = {}

    def configure(dialog):
        qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
        qtbot.keyClicks(dialog.area, "Current")  # keyboard search in the combo box
        assert dialog.area.currentText() == "Current map extent"
        dialog.output.lineEdit().clear()
        qtbot.keyClicks(dialog.output.lineEdit(), str(out))
        show_pixels(2000, 2000, 100, 100)  # far east of the scene
        click_ok(qtbot, dialog)
        seen["error"] = dialog.error_label.text()
        show_pixels(300, 40, 150, 120)  # in the top-right part of the scene

    state = accept_next_dialog(configure)
    task = plugin.reconstruct_with_dialog()
    assert "error" not in state
    assert seen["error"] == ('The current map extent does not overlap berlin.sarc: pan to the scene or choose '
                             '"Whole scene".')
    # What the canvas shows (its extent follows the widget's aspect ratio), in the scene's CRS and pixels; an
    # edge within rounding of a pixel edge is that edge (the round trip through EPSG:3857 moves it 1e-10 px).
    shown = QgsCoordinateTransform(merc, wgs84, QgsProject.instance()).transformBoundingBox(canvas.extent())

    def pixel(v):
        return round(v) if abs(v - round(v)) < 1e-6 else v

    c0, c1 = max(0, int(np.floor(pixel((shown.xMinimum() - gt[0]) / gt[1])))), min(512, int(np.ceil(
        pixel((shown.xMaximum() - gt[0]) / gt[1]))))
    r0, r1 = max(0, int(np.floor(pixel((shown.yMaximum() - gt[3]) / gt[5])))), min(512, int(np.ceil(
        pixel((shown.yMinimum() - gt[3]) / gt[5]))))
    assert task.window == (c0, r0, c1 - c0, r1 - r0) and c1 - c0 < 512 and r1 - r0 < 512
    assert wait_for_task(plugin, task).ok
    part = gdal.Open(str(out))
    assert (part.RasterXSize, part.RasterYSize) == (c1 - c0, r1 - r0)
    assert np.array_equal(part.ReadAsArray(), gdal.Open(str(full)).ReadAsArray()[:, r0:r1, c0:c1])
    assert part.GetGeoTransform()[0] == pytest.approx(gt[0] + c0 * gt[1])
    assert part.GetGeoTransform()[3] == pytest.approx(gt[3] + r0 * gt[5])


@pytest.mark.no_qt_log  # a GCP layer: "Creating Warped VRT." from render threads (test_quality_maps.py)
def test_reconstruct_current_map_extent_of_a_scene_placed_by_gcps(plugin, test_iface, gcp_compressed, qtbot,
                                                                  tmp_path):
    """A Sentinel-1 GRD scene is placed by ground control points only: "Current map extent" said the map extent
    did not overlap it and to pan to the scene, wherever the map showed. The view about one of its GCPs, in
    another CRS (EPSG:3857), reconstructs the pixels under it, placed by the GCPs moved to the window."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsRectangle

    src, sarc = gcp_compressed
    gcps = gdal.Open(str(src)).GetGCPs()
    centre = next(g for g in gcps if (g.GCPPixel, g.GCPLine) == (256, 256))
    wgs84, merc = QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857")
    canvas = test_iface.canvas
    test_iface.main_window.show()
    canvas.setDestinationCrs(merc)
    canvas.setExtent(QgsCoordinateTransform(wgs84, merc, QgsProject.instance()).transformBoundingBox(QgsRectangle(
        centre.GCPX - 0.004, centre.GCPY - 0.004, centre.GCPX + 0.004, centre.GCPY + 0.004)))
    out = tmp_path / "part.tif"

    def configure(dialog):
        qtbot.keyClicks(dialog.input.lineEdit(), str(sarc))
        qtbot.keyClicks(dialog.area, "Current")
        dialog.output.lineEdit().clear()
        qtbot.keyClicks(dialog.output.lineEdit(), str(out))

    state = accept_next_dialog(configure)
    task = plugin.reconstruct_with_dialog()
    assert "error" not in state, state["error"]
    c, r, w, h = task.window
    assert c < 256 < c + w and r < 256 < r + h and w < 512 and h < 512
    assert wait_for_task(plugin, task).ok
    assert [(g.GCPPixel, g.GCPLine) for g in gdal.Open(str(out)).GetGCPs()] == \
        [(g.GCPPixel - c, g.GCPLine - r) for g in gcps]
    shown = QgsCoordinateTransform(merc, wgs84, QgsProject.instance()).transformBoundingBox(canvas.extent())
    assert QgsRasterLayer(str(out), "part", "gdal").extent().contains(shown)


def _placed_copy(sar_tif: Path, codec, model_bundle, gt) -> Path:
    """The test scene placed by geotransform `gt` instead of its own, compressed beside it (256-px tiles)."""
    src = sar_tif.with_name("placed.tif")
    ds = gdal.Translate(str(src), str(sar_tif))
    ds.SetGeoTransform(gt)
    ds = None
    codec.compress(str(src), str(src.with_suffix(".sarc")), codec.CompressOptions(
        model_dir=str(model_bundle), device="cpu", tile_size=256))
    return src.with_suffix(".sarc")


def _extent_dialog(qtbot, test_iface, sarc: Path, model_bundle, extent) -> ReconstructDialog:
    """The Reconstruct dialog on `sarc`, "Current map extent" of a canvas showing `extent` (EPSG:4326), OK
    clicked."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    canvas = test_iface.canvas
    test_iface.main_window.show()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setExtent(QgsRectangle(*extent))
    dialog = ReconstructDialog(str(sarc), "", PluginSettings(model_dirs=[str(model_bundle)]), None, canvas=canvas)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.area, "Current")
    click_ok(qtbot, dialog)
    return dialog


def test_reconstruct_current_map_extent_of_a_turned_scene(qtbot, test_iface, sar_tif, codec, model_bundle):
    """A scene turned off north-up (a raster in a satellite's geometry) was told "The current map extent does
    not overlap" wherever the map showed. A view inside it gives the pixel window enclosing the view's corners,
    as GDAL's inverse geotransform places them."""
    g0, s, _, g3, _, _ = gdal.Open(str(sar_tif)).GetGeoTransform()
    turn = np.radians(25)
    gt = (g0, s * np.cos(turn), s * np.sin(turn), g3, s * np.sin(turn), -s * np.cos(turn))
    centre = gdal.ApplyGeoTransform(gt, 256, 256)
    dialog = _extent_dialog(qtbot, test_iface, _placed_copy(sar_tif, codec, model_bundle, gt), model_bundle,
                            (centre[0] - 30 * s, centre[1] - 20 * s, centre[0] + 30 * s, centre[1] + 20 * s))
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error_label.text() == ""
    shown = test_iface.canvas.extent()
    inverse = gdal.InvGeoTransform(gt)
    cols, rows = zip(*(gdal.ApplyGeoTransform(inverse, x, y) for x in (shown.xMinimum(), shown.xMaximum())
                       for y in (shown.yMinimum(), shown.yMaximum())))
    c0, r0, c1, r1 = int(np.floor(min(cols))), int(np.floor(min(rows))), int(np.ceil(max(cols))), int(np.ceil(
        max(rows)))
    assert 0 < c0 < c1 < 512 and 0 < r0 < r1 < 512  # the view is inside the scene
    assert dialog.window() == (c0, r0, c1 - c0, r1 - r0)


def test_reconstruct_current_map_extent_tells_why_a_scene_cannot_take_it(qtbot, test_iface, sar_tif, codec,
                                                                         model_bundle):
    """Every error mapping the view to pixels read "does not overlap ...: pan to the scene"; a geotransform
    that puts every pixel on one line is told as it is, in no command line's words."""
    g0, s, _, g3, _, _ = gdal.Open(str(sar_tif)).GetGeoTransform()
    gt = (g0, s, 2 * s, g3, s, 2 * s)
    sarc = _placed_copy(sar_tif, codec, model_bundle, gt)
    dialog = _extent_dialog(qtbot, test_iface, sarc, model_bundle, (g0, g3, g0 + 50 * s, g3 + 50 * s))
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error_label.text() == (f"{sarc}: its geotransform {gt} is degenerate (it puts every pixel on "
                                         f"one line), so no map box can be placed on its pixels")


def _unreadable(kind: str, compressed: Path, sar_tif: Path) -> tuple[Path, str]:
    """A file an analyst may pick by mistake, and why the dialog refuses it."""
    if kind == "empty":
        path = compressed.with_name("empty.sarc")
        path.write_bytes(b"")
        return path, f"{path}: file is too small (0 bytes) to be a .sarc file; truncated?"
    if kind == "truncated":  # a copy cut short
        path = compressed.with_name("cut.sarc")
        path.write_bytes(compressed.read_bytes()[: compressed.stat().st_size // 2])
        return path, f"{path}: footer is missing or damaged (file truncated or corrupted)"
    return sar_tif, f"{sar_tif}: not a .sarc file (wrong magic bytes)"  # the original GeoTIFF


@pytest.mark.parametrize("kind", ["empty", "truncated", "not a .sarc"])
def test_reconstruct_refuses_a_file_that_is_not_a_readable_sarc_on_ok(qtbot, qgis_app, compressed, sar_tif, kind):
    """Such a file was accepted on OK (it exists): the dialog closed, the task failed, and the analyst had to
    open the dialog and fill it in again. It is refused on OK, in one line, where another file can be chosen."""
    path, reason = _unreadable(kind, compressed, sar_tif)
    dialog = ReconstructDialog("", "", PluginSettings(), None)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.input.lineEdit(), str(path))
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error_label.text() == reason


def test_reconstruct_without_a_canvas_offers_the_whole_scene_only(qtbot, qgis_app, compressed, model_bundle):
    dialog = ReconstructDialog(str(compressed), "", PluginSettings(model_dirs=[str(model_bundle)]), None)
    qtbot.addWidget(dialog)
    assert not dialog.area.model().item(1).isEnabled()
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.window() is None


def test_reconstruct_dialog_refuses_a_file_whose_model_is_not_installed_on_ok(qtbot, qgis_app, compressed,
                                                                             model_bundle):
    """The dialog accepted such a file; the task then failed once the dialog had closed. It is refused on OK, in
    the plugin's wording, where another file can be chosen (or the dialog cancelled to add the folder); with the
    folder of bundles that holds the model among the model folders, the file is accepted."""
    dialog = ReconstructDialog(str(compressed), "", PluginSettings(), None)
    qtbot.addWidget(dialog)
    dialog.show()
    click_ok(qtbot, dialog)
    error = dialog.error_label.text()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert error.startswith(f"{compressed}: model 'tiny' with decoder SHA-256 ")
    assert error.endswith('Settings… > "More model folders"') and "--model-dir" not in error

    dialog = ReconstructDialog(str(compressed), "", PluginSettings(model_dirs=[str(model_bundle.parent)]), None)
    qtbot.addWidget(dialog)
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error_label.text() == ""


def test_reconstruct_dialog_offers_the_last_device_that_worked(plugin, test_iface, compressed, qtbot, tmp_path):
    """The dialog always offered the Settings' device, whatever had been chosen in it. As the compress dialog does,
    it offers the last choice that worked; a GPU choice that failed is not kept."""
    offered = []

    def choose(text, out):
        def configure(dialog):
            offered.append(dialog.device.currentData())
            qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
            qtbot.keyClicks(dialog.device, text)  # keyboard search in the combo box, as a user would
            dialog.output.lineEdit().clear()
            qtbot.keyClicks(dialog.output.lineEdit(), str(out))
        return configure

    accept_next_dialog(choose("Automatic", tmp_path / "auto.tif"))
    assert wait_for_task(plugin, plugin.reconstruct_with_dialog()).ok
    accept_next_dialog(choose("GPU", tmp_path / "gpu.tif"))
    result = wait_for_task(plugin, plugin.reconstruct_with_dialog())
    assert result.status.value == "failed" and "cuda" in result.message  # no usable GPU here
    accept_next_dialog(choose("CPU", tmp_path / "cpu.tif"))
    assert wait_for_task(plugin, plugin.reconstruct_with_dialog()).ok
    assert offered == ["cpu", "auto", "auto"]  # the fixture's setting, then the choice that worked
    assert PluginSettings.load().device == "cpu"


def test_a_reconstruction_of_the_map_extent_is_named_as_a_window(plugin, test_iface, compressed, sar_tif, qtbot):
    """A window of the scene got the whole scene's layer name, "berlin (reconstructed)": in the Layers panel a
    part of the scene could not be told from all of it."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle

    gt = gdal.Open(str(sar_tif)).GetGeoTransform()
    test_iface.main_window.show()
    test_iface.canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))  # the scene's CRS
    test_iface.canvas.setExtent(QgsRectangle(gt[0] + 100 * gt[1], gt[3] + 300 * gt[5],
                                             gt[0] + 300 * gt[1], gt[3] + 100 * gt[5]))

    def current_extent(dialog):
        qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
        qtbot.keyClicks(dialog.area, "Current")

    for _ in range(2):
        accept_next_dialog(current_extent)
        task = plugin.reconstruct_with_dialog()
        assert task.window is not None and wait_for_task(plugin, task).ok
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    names = sorted(lyr.name() for lyr in QgsProject.instance().mapLayers().values())
    assert names == ["berlin (reconstructed)", "berlin (reconstructed, extent)",
                     "berlin (reconstructed, extent) [2]"]


# --- plugin flows ------------------------------------------------------------------------------------------

def test_failed_cuda_choice_is_not_saved_a_working_one_is(plugin, test_iface, sar_tif, qtbot):
    layer = QgsRasterLayer(str(sar_tif), "berlin", "gdal")
    QgsProject.instance().addMapLayer(layer)

    def choose(text, out):
        def configure(dialog):
            qtbot.keyClicks(dialog.device, text)  # keyboard search in the combo box, as a user would
            dialog.output.lineEdit().clear()
            qtbot.keyClicks(dialog.output.lineEdit(), str(out))
        return configure

    accept_next_dialog(choose("GPU", sar_tif.with_name("gpu.sarc")))
    result = wait_for_task(plugin, plugin.compress_layer(layer))
    assert result.status.value == "failed" and "cuda" in result.message  # no usable GPU here
    assert PluginSettings.load().device == "cpu"  # the fixture's setting, not the CUDA choice that failed

    accept_next_dialog(choose("Automatic", sar_tif.with_name("auto.sarc")))
    assert wait_for_task(plugin, plugin.compress_layer(layer)).ok
    assert PluginSettings.load().device == "auto"


def test_missing_model_error_names_the_plugin_setting(plugin, test_iface, compressed):
    kept = PluginSettings.load()
    s = PluginSettings.load()
    s.model_dir, s.model_dirs = "", []  # the tiny model the file needs is in none of the searched folders
    s.save()
    try:
        result = wait_for_task(plugin, plugin.reconstruct_file(str(compressed)))
    finally:
        kept.save()
    assert result.status.value == "failed"
    error = messages(test_iface, Qgis.MessageLevel.Critical)[-1]
    assert '"More model folders"' in error and "--model-dir" not in error
    assert "\n" not in error


def test_cancel_gives_one_message_and_no_file(plugin, test_iface, compressed):
    out = compressed.with_name("cancelled.tif")
    task = plugin.reconstruct_file(str(compressed), str(out))
    task.cancel()  # the task manager's cancel button
    assert wait_for_task(plugin, task).status.value == "cancelled"
    QgsApplication.processEvents()
    assert messages(test_iface, Qgis.MessageLevel.Critical) == []
    said = [m for m in messages(test_iface) if "cancel" in m.lower() or "fail" in m.lower()]
    assert said == ["Reconstruction of berlin.sarc cancelled; no file was written."]
    assert not out.exists()


def test_repeated_reconstruction_gets_a_distinct_layer_name(plugin, compressed):
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    names = sorted(lyr.name() for lyr in QgsProject.instance().mapLayers().values())
    assert names == ["berlin (reconstructed)", "berlin (reconstructed) [2]"]


# --- display images ----------------------------------------------------------------------------------------

@pytest.fixture
def rgb_png_like(tmp_path) -> Path:
    """An 8-bit RGB GeoTIFF, like a screenshot or quick-look an analyst might right-click by mistake."""
    path = tmp_path / "quicklook.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 128, 128, 3, gdal.GDT_Byte, options=["PHOTOMETRIC=RGB"])
    ds.SetGeoTransform([13.0, 0.001, 0, 52.0, 0, -0.001])
    rng = np.random.default_rng(0)
    for b in range(1, 4):
        ds.GetRasterBand(b).WriteArray(rng.integers(0, 255, (128, 128), dtype=np.uint8))
    ds = None
    return path


def test_rgb_image_warns_and_the_user_stops_or_goes_on(plugin, test_iface, rgb_png_like, sar_tif, qtbot):
    layer = QgsRasterLayer(str(rgb_png_like), "quicklook", "gdal")
    QgsProject.instance().addMapLayer(layer)
    assert "RGB colour image" in display_image_warning(layer)
    assert display_image_warning(QgsRasterLayer(str(sar_tif), "berlin", "gdal")) == ""  # float32 SAR: silent
    seen = {}

    def go_on(dialog):
        assert isinstance(dialog, CompressDialog) and "RGB colour image" in dialog.display_image_warning
        click_ok(qtbot, dialog)  # not ticked: refused with a reason
        seen["error"] = dialog.error_label.text()
        qtbot.mouseClick(dialog.compress_anyway, Qt.MouseButton.LeftButton)

    state = accept_next_dialog(go_on)
    task = plugin.compress_layer(layer)
    assert "Compress it anyway" in seen["error"] and "error" not in state
    assert wait_for_task(plugin, task).ok and rgb_png_like.with_suffix(".sarc").is_file()

    # Or the user stops: Cancel in the same dialog, and nothing starts.
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QApplication

    def cancel():
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, CompressDialog):
            QTimer.singleShot(20, cancel)
            return
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)

    before = plugin.last_task
    QTimer.singleShot(0, cancel)
    assert plugin.compress_layer(layer) is None and plugin.last_task is before


# --- Settings dialog: scene-layer cache ----------------------------------------------------------------------

def _retype(qtbot, spin, text):
    """Replace a spin box's number as a user does: select it all, type the new one."""
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, text)


def test_scene_cache_settings_are_validated_saved_and_used_by_the_next_scene(plugin, test_iface, compressed,
                                                                              qtbot, tmp_path):
    seen = {}

    def configure(dialog):
        assert dialog.tile_cache_dir.lineEdit().placeholderText() == "tile_cache in the QGIS profile"
        qtbot.keyClicks(dialog.tile_cache_dir.lineEdit(), "/proc")  # /proc refuses new files, even to root
        click_ok(qtbot, dialog)
        seen["error"] = dialog.error_label.text()
        seen["still_open"] = dialog.isVisible()
        dialog.tile_cache_dir.lineEdit().clear()
        qtbot.keyClicks(dialog.tile_cache_dir.lineEdit(), str(tmp_path / "my_cache"))
        click_ok(qtbot, dialog)
        seen["missing"] = dialog.error_label.text()
        (tmp_path / "my_cache").mkdir()
        _retype(qtbot, dialog.tile_cache_mb, "512")
        _retype(qtbot, dialog.decode_budget, "0.5")

    state = accept_next_dialog(configure)
    assert plugin.show_settings() is True and "error" not in state
    assert seen["still_open"]
    assert seen["error"].startswith("Scene tile cache: Folder /proc is not writable")
    assert seen["missing"] == f"Scene tile cache: Folder {tmp_path / 'my_cache'} does not exist."
    saved = PluginSettings.load()
    assert (saved.tile_cache_dir, saved.tile_cache_mb, saved.decode_budget_mpx) == (
        str(tmp_path / "my_cache"), 512, 0.5)
    assert saved.device == "cpu" and saved.tile_size == 256  # the other settings are kept

    # The next scene opened uses them: its tiles go to that folder, a pan decodes at most half a megapixel.
    layer = plugin.scenes.open(str(compressed))
    controller = plugin.scenes.controllers[layer.id()]
    assert controller.cache.folder.parent == tmp_path / "my_cache"
    assert controller.max_decode_pixels == 500_000


# --- Compress dialog: how the rate is set ----------------------------------------------------------------------

@pytest.fixture
def small_sar(sar_tif) -> Path:
    """A 256 x 256 crop of the real scene (VV, VH float32 intensity): one tile, so a compression takes a second."""
    out = sar_tif.with_name("berlin_crop.tif")
    gdal.Translate(str(out), str(sar_tif), srcWin=[128, 128, 256, 256])
    return out


def _default_manifest() -> dict:
    import json

    from sar_compress_plugin.core.runtime import default_model_dir

    return json.loads((default_model_dir() / "manifest.json").read_text())


def _compress_dialog(qtbot, raster: Path, settings: PluginSettings | None = None) -> CompressDialog:
    dialog = CompressDialog("berlin", str(raster), str(raster.with_suffix(".sarc")), settings or PluginSettings(),
                            None)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def _choose(qtbot, combo, text):
    """Pick a combo box item by typing its start, as a user does; waiting first so that this typing is not
    appended to the previous search (Qt joins keystrokes within the keyboard input interval)."""
    from qgis.PyQt.QtWidgets import QApplication

    qtbot.wait(QApplication.keyboardInputInterval() + 50)
    qtbot.keyClicks(combo, text)


def test_rate_choice_shows_its_own_field_and_gives_one_option(qtbot, qgis_app, small_sar):
    dialog = _compress_dialog(qtbot, small_sar)
    rate = dialog.rate
    assert rate.mode.currentText() == "Quality" and rate.quality.isVisible()
    assert dialog.option_values()["quality"] is None  # "model default"
    for typed, label, field, key in (("Bits", "Bits per pixel (per band)", rate.target_bpp, "target_bpp"),
                                     ("Error", "Error (dB RMSE)", rate.target_db_rmse, "target_db_rmse"),
                                     ("Quality", "Quality", rate.quality, "quality")):
        _choose(qtbot, rate.mode, typed)
        assert rate.mode.currentText() == label
        assert [f for f in (rate.quality, rate.target_bpp, rate.target_db_rmse) if f.isVisible()] == [field]
        chosen = {k for k in ("quality", "target_bpp", "target_db_rmse") if k in dialog.option_values()}
        assert chosen == {key}


def test_rate_hint_follows_value_and_model_from_the_manifest(qtbot, qgis_app, small_sar, model_bundle):
    manifest = _default_manifest()  # of the bundled default model (empty model folder)
    b = [level["bpp"] for level in manifest["validation"]["val_levels"]]  # level i is quality i

    def log_linear(q):
        i = min(int(q), len(b) - 2)
        return b[i] ** (1 - (q - i)) * b[i + 1] ** (q - i)

    dialog = _compress_dialog(qtbot, small_sar)
    rate = dialog.rate

    def says(bpp):
        return (f"{bpp:.3f} bpp per band, ratio {32 / bpp:.1f}:1 for a float32 band (typical, on the model's "
                f"validation scenes)")

    default = manifest["rate"]["default_quality"]
    assert rate.hint.text() == f"Model default ({default:g}): about {says(log_linear(default))}."
    for typed, bpp in (("1", b[1]), ("1.5", (b[1] * b[2]) ** 0.5), ("0.25", b[0] ** 0.75 * b[1] ** 0.25)):
        _retype(qtbot, rate.quality, typed)  # log-linear in bpp between the levels
        assert rate.hint.text() == f"About {says(bpp)}."
    _choose(qtbot, rate.mode, "Bits")
    _retype(qtbot, rate.target_bpp, "0.8")
    assert rate.hint.text() == "Ratio 40.0:1 for a float32 band."
    _choose(qtbot, rate.mode, "Error")
    assert rate.hint.text().startswith("No estimate: the quality that gives this error is searched on sample tiles")
    _choose(qtbot, rate.mode, "Quality")
    qtbot.keyClicks(dialog.model_dir.lineEdit(), str(model_bundle))  # a model without validation levels
    assert rate.hint.text() == ""
    dialog.model_dir.lineEdit().clear()
    assert rate.hint.text().startswith("About ")


def test_out_of_range_targets_are_refused_in_the_dialog(qtbot, qgis_app, small_sar):
    dialog = _compress_dialog(qtbot, small_sar)
    _choose(qtbot, dialog.rate.mode, "Bits")
    _retype(qtbot, dialog.rate.target_bpp, "6")
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert dialog.error_label.text() == "Bits per pixel (per band) must be between 0.05 and 4, not 6."
    _choose(qtbot, dialog.rate.mode, "Error")
    _retype(qtbot, dialog.rate.target_db_rmse, "0.1")
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert dialog.error_label.text() == "The error (dB RMSE) must be between 0.3 and 3, not 0.1."
    _retype(qtbot, dialog.rate.target_db_rmse, "1.2")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.option_values()["target_db_rmse"] == 1.2


def test_bpp_target_compresses_through_the_task_and_is_remembered(plugin, test_iface, small_sar, codec, qtbot):
    layer = QgsRasterLayer(str(small_sar), "berlin crop", "gdal")
    QgsProject.instance().addMapLayer(layer)

    def configure(dialog):
        dialog.model_dir.lineEdit().clear()  # the bundled default model
        _choose(qtbot, dialog.rate.mode, "Bits")
        _retype(qtbot, dialog.rate.target_bpp, "0.5")

    state = accept_next_dialog(configure)
    task = plugin.compress_layer(layer)
    assert "error" not in state
    result = wait_for_task(plugin, task)
    assert result.ok
    rate = codec.read_header(small_sar.with_suffix(".sarc"))["rate"]
    assert rate["chosen_by"] == "bpp" and rate["target"] == 0.5 and 0 < rate["quality"] < 5
    assert result.value.bpp_per_band == pytest.approx(0.5, rel=0.25)  # from the file's bytes, header included
    assert f"{result.value.bpp_per_band:.3f} bpp per band" in messages(test_iface)[-1]  # the unit asked in
    saved = PluginSettings.load()
    assert (saved.rate_mode, saved.target_bpp) == ("bpp", 0.5)

    reopened = CompressDialog("berlin crop", str(small_sar), "", PluginSettings.load(), None)  # as the plugin does
    qtbot.addWidget(reopened)
    assert reopened.rate.mode.currentText() == "Bits per pixel (per band)"
    assert reopened.rate.target_bpp.value() == 0.5


def test_rate_settings_round_trip_and_old_settings_take_defaults(qgis_app):
    from qgis.core import QgsSettings

    from sar_compress_plugin.__about__ import SETTINGS_PREFIX

    kept = PluginSettings.load()
    try:
        PluginSettings(quality=3.0, rate_mode="db_rmse", target_bpp=0.8, target_db_rmse=1.5).save()
        loaded = PluginSettings.load()
        assert (loaded.quality, loaded.rate_mode, loaded.target_bpp, loaded.target_db_rmse) == (3.0, "db_rmse",
                                                                                                 0.8, 1.5)
        assert loaded.rate_options() == {"target_db_rmse": 1.5}
        # The settings dialog keeps the choice (it rebuilds the settings from its fields).
        assert SettingsDialog(loaded).settings() == loaded
        for key in ("rate_mode", "target_bpp", "target_db_rmse"):  # as a plugin version before them wrote
            QgsSettings().remove(SETTINGS_PREFIX + key)
        old = PluginSettings.load()
        assert (old.quality, old.rate_mode, old.target_bpp, old.target_db_rmse) == (3.0, "quality", 0.5, 1.0)
        assert old.rate_options() == {"quality": 3.0}
    finally:
        kept.save()


# --- Quality maps dialog -----------------------------------------------------------------------------------

def _translated(src: Path, dst: Path, **options) -> Path:
    gdal.Translate(str(dst), str(src), **options)  # the dataset it returns is closed (flushed) at once
    return dst


def _raster_layer(project, path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def test_quality_maps_dialog_refuses_a_pair_that_cannot_be_compared_on_ok(qtbot, project, sar_tif, tmp_path):
    """Each of these pairs closed the dialog and failed in the task a moment later: the user had to open the
    dialog again and choose anew. The dialog keeps them and says why, in one line, and takes a good pair."""
    original = _raster_layer(project, sar_tif, "berlin")
    vv_only = _raster_layer(project, _translated(sar_tif, tmp_path / "vv.tif", bandList=[1]), "vv only")
    res = gdal.Open(str(sar_tif)).GetGeoTransform()[1]
    variants = {"coarser grid": {"xRes": 2 * res, "yRes": 2 * res},
                "wider extent": {"srcWin": [-8, -8, 520, 520]},
                "mercator": {"outputSRS": "EPSG:3857"}, "window": {"srcWin": [64, 32, 200, 300]}}
    for name, options in variants.items():
        _raster_layer(project, _translated(sar_tif, tmp_path / f"{name}.tif", **options), name)
    dialog = QualityMapsDialog(None, original)
    qtbot.addWidget(dialog)
    dialog.show()
    want = {"coarser grid": "its pixel grid differs from the original",
            "wider extent": "its extent is not inside the original",
            "mercator": "its CRS differs from the original"}
    for name, why in want.items():
        _choose(qtbot, dialog.reconstruction, name)
        click_ok(qtbot, dialog)
        assert dialog.isVisible(), name
        assert dialog.error_label.text() == f"Reconstruction {tmp_path / name}.tif: {why} {sar_tif}"

    _choose(qtbot, dialog.reconstruction, "window")
    _choose(qtbot, dialog.original, "vv only")
    _choose(qtbot, dialog.band, "Band 2")
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert dialog.error_label.text() == f"Band 2: the original {vv_only.source()} has only 1 band(s)"
    _choose(qtbot, dialog.original, "berlin")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error_label.text() == ""
    assert (dialog.reconstruction_layer().name(), dialog.original_layer(), dialog.band_number()) == \
        ("window", original, 2)


def test_quality_maps_dialog_refuses_a_read_only_folder_and_takes_one_typed(qtbot, project, sar_tif, tmp_path,
                                                                           read_only_folder):
    """The maps went beside the reconstruction only, and a read-only folder there was refused with advice to
    use Processing instead. The dialog has an output folder: the read-only one, beside the reconstruction or
    typed, is refused on OK; a writable one typed is taken."""
    original = _raster_layer(project, sar_tif, "berlin")
    recon = _raster_layer(project, read_only_folder / sar_tif.name, "berlin on a read-only disk")
    dialog = QualityMapsDialog(recon, original)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.folder.lineEdit().placeholderText() == "beside the reconstruction"
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error_label.text() == (
        f"Folder {read_only_folder} is not writable (Operation not permitted): the maps are written beside "
        "the reconstruction unless you choose an output folder.")

    qtbot.keyClicks(dialog.folder.lineEdit(), str(read_only_folder))
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert dialog.error_label.text() == (
        f"Folder {read_only_folder} is not writable (Operation not permitted): choose another output folder.")

    maps = tmp_path / "maps"
    maps.mkdir()
    dialog.folder.lineEdit().clear()
    qtbot.keyClicks(dialog.folder.lineEdit(), str(maps))
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error_label.text() == ""
    assert dialog.output_folder() == str(maps)
    assert sorted(p.name for p in read_only_folder.iterdir()) == [sar_tif.name]


def test_quality_maps_dialog_refuses_another_value_domain_or_a_missing_crs_on_ok(qtbot, project, sar_tif,
                                                                                 tmp_path):
    """An 8-bit display copy of the intensity scene, and a copy without a CRS, were taken as its reconstruction
    and mapped into nonsense (or mapped at a place not known to be the same). Refused on OK in one line; the
    user's own "Values are" choice is taken for both."""
    original = _raster_layer(project, sar_tif, "berlin")
    byte_copy = _translated(sar_tif, tmp_path / "quicklook.tif", bandList=[1], outputType=gdal.GDT_Byte,
                            scaleParams=[[]])
    byte_copy_ds = gdal.Open(str(byte_copy), gdal.GA_Update)
    byte_copy_ds.SetMetadata({})  # a quick-look exported by a viewer carries no tags
    byte_copy_ds = None
    no_crs = _translated(sar_tif, tmp_path / "no_crs.tif")
    no_crs_ds = gdal.Open(str(no_crs), gdal.GA_Update)
    no_crs_ds.SetSpatialRef(None)
    no_crs_ds = None
    _raster_layer(project, byte_copy, "quicklook")
    _raster_layer(project, no_crs, "no crs")
    dialog = QualityMapsDialog(None, original)
    qtbot.addWidget(dialog)
    dialog.show()
    _choose(qtbot, dialog.reconstruction, "quicklook")
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert dialog.error_label.text() == (
        f"Reconstruction {byte_copy}: it holds linear amplitude (its Byte integers), the original {sar_tif} "
        "holds linear intensity (its value_domain tag); the maps need both in one value domain (choose it if "
        "one of them is mislabelled)")
    _choose(qtbot, dialog.reconstruction, "no crs")
    click_ok(qtbot, dialog)
    assert dialog.isVisible()
    assert dialog.error_label.text() == f"Reconstruction {no_crs}: it has no CRS, the original {sar_tif} has one"

    _choose(qtbot, dialog.reconstruction, "quicklook")
    _choose(qtbot, dialog.domain, "Decibels")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.value_domain() == "db"


def test_quality_maps_go_to_the_folder_typed_which_is_offered_next_time(plugin, test_iface, sar_tif, compressed,
                                                                        qtbot):
    """The maps could only go beside the reconstruction. A folder typed in the dialog (a relative name is taken
    in the reconstruction's folder) receives them and is offered the next time, as the other dialogs remember
    their choices; emptied, the maps go beside the reconstruction again."""
    from sar_compress_plugin.utils.settings import PluginSettings

    project = QgsProject.instance()
    _raster_layer(project, sar_tif, "berlin")
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    recon = [lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin (reconstructed)"][0]
    test_iface.layer_tree_view.setCurrentLayer(recon)
    folder = sar_tif.parent / "maps"
    folder.mkdir()
    seen = {}

    def offered_then_emptied(dialog):
        seen["offered"] = dialog.folder.filePath()
        dialog.folder.lineEdit().clear()

    state = accept_next_dialog(lambda dialog: qtbot.keyClicks(dialog.folder.lineEdit(), "maps"))
    first = wait_for_task(plugin, plugin.quality_maps_active_layer())
    assert "error" not in state and first.ok, first.message
    assert Path(first.value.enl_ratio_path).parent == Path(first.value.epi_path).parent == folder
    state = accept_next_dialog(offered_then_emptied)
    second = wait_for_task(plugin, plugin.quality_maps_active_layer())
    assert "error" not in state and second.ok, second.message
    assert seen["offered"] == str(folder)
    assert Path(second.value.enl_ratio_path).parent == sar_tif.parent
    assert PluginSettings.load().quality_maps_folder == ""
