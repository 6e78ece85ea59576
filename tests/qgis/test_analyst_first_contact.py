"""An analyst's first contact with the plugin: the Settings dialog filled in before anything else (typed into and
clicked with pytest-qt), a compressed scene opened before the Python packages are installed, a model folder with
a damaged file, and what the Plugin Manager and the Processing toolbox say. Real headless QGIS, the tiny ONNX
model; where CUDA is concerned, the NVIDIA driver probe is set either way so the test reads the same on every
machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingContext
from qgis.PyQt.QtWidgets import QDialog

from qgis_harness import CODEC_PACKAGES, REPO, click_ok, plugin_without_codec_packages
from sar_compress_plugin.core import runtime
from sar_compress_plugin.core.tiling import tile_size_error
from sar_compress_plugin.gui.dialogs import CompressDialog, ReconstructDialog, SettingsDialog
from sar_compress_plugin.utils.settings import PluginSettings


def _settings_dialog(qtbot, settings: PluginSettings | None = None) -> SettingsDialog:
    dialog = SettingsDialog(settings or PluginSettings.load())
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def _retype(qtbot, line, text):
    """Replace a line edit's (or spin box's) text as a user does: select it all, type the new one."""
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)


def test_a_tile_larger_than_the_codec_writes_is_refused_where_it_is_typed(qtbot, qgis_app, sar_tif):
    """Settings and the compress dialog offered tiles up to 8192 px: 2048 was accepted, remembered, and every
    compression after it failed once its dialog had closed ("tile size 2048 must be ... between 16 and 1024")."""
    PluginSettings(device="cpu").save()
    dialog = _settings_dialog(qtbot)
    _retype(qtbot, dialog.tile_size, "2048")  # the spin box takes no digit past its maximum: 204 is left
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error_label.text() == tile_size_error(204) != ""
    assert dialog.tile_size.maximum() == 1024 and "from 16 to 1024" in dialog.tile_size.toolTip()
    _retype(qtbot, dialog.tile_size, "1024")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted
    dialog.settings().save()
    assert PluginSettings.load().tile_size == 1024

    compress = CompressDialog("berlin", str(sar_tif), str(sar_tif.with_suffix(".sarc")), PluginSettings.load())
    qtbot.addWidget(compress)
    compress.show()
    _retype(qtbot, compress.tile_size, "2048")
    click_ok(qtbot, compress)
    assert compress.isVisible() and compress.error_label.text() == tile_size_error(204)


def test_the_compress_dialog_takes_the_tile_sizes_the_codec_takes_in_its_words(qtbot, qgis_app, sar_tif, tmp_path):
    """The forms had a rule of their own, 64 to 1024: a typed 32, which the codec, the CLI and Processing take, was
    left below the spin box's minimum and the tile compressed with was the one shown before; their message gave
    another range than the codec's."""
    dialog = CompressDialog("berlin", str(sar_tif), str(tmp_path / "berlin.sarc"), PluginSettings(device="cpu"))
    qtbot.addWidget(dialog)
    dialog.show()
    _retype(qtbot, dialog.tile_size, "100")
    click_ok(qtbot, dialog)
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.error_label.text() == tile_size_error(100) == (
        "tile size 100 must be a multiple of 16 between 16 and 1024 (larger tiles need gigabytes of memory to "
        "decode)")
    _retype(qtbot, dialog.tile_size, "32")
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.error_label.text() == ""
    assert dialog.option_values()["tile_size"] == 32


def test_processing_refuses_a_tile_larger_than_the_codec_writes_before_the_run(plugin, sar_tif, tmp_path):
    """The Toolbox took TILE_SIZE up to 8192 and the run failed after it started; its help said no limit."""
    alg = QgsApplication.processingRegistry().algorithmById("sarcompress:compress")
    tile = alg.parameterDefinition("TILE_SIZE")
    assert tile.maximum() == 1024 and "16 to 1024" in tile.description()
    ok, _message = alg.checkParameterValues({"INPUT": str(sar_tif), "TILE_SIZE": 2048,
                                             "OUTPUT": str(tmp_path / "big.sarc")}, QgsProcessingContext())
    assert not ok


def test_processing_says_its_bits_per_pixel_count_all_bands(plugin):
    """TARGET_BPP is per band, the BPP output all bands together: a VV+VH scene asked 0.5 gave "BPP 1.0", under
    the same words "Bits per pixel", which read as a target missed twice over."""
    alg = QgsApplication.processingRegistry().algorithmById("sarcompress:compress")
    assert alg.outputDefinition("BPP").description() == "Bits per pixel, all bands together"
    assert "BPP counts all bands together" in alg.shortHelpString()
    assert "per band" in alg.parameterDefinition("TARGET_BPP").description()


def test_gpu_chosen_in_settings_on_a_machine_without_cuda_is_refused(qtbot, qgis_app, monkeypatch):
    """Saved, "GPU (CUDA)" failed every compression, reconstruction and scene layer until the analyst found the
    setting again; the compress dialog never remembers a device that failed, Settings saved it unasked."""
    monkeypatch.setattr(runtime, "_nvidia_driver_present", lambda: False)
    PluginSettings(device="cpu").save()
    dialog = _settings_dialog(qtbot)
    qtbot.keyClicks(dialog.device, "GPU")  # keyboard search in the combo box, as a user would
    assert dialog.device.currentData() == "cuda"
    click_ok(qtbot, dialog)
    error = dialog.error_label.text()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert error.startswith("Device: GPU (CUDA) cannot run on this machine (") and "choose Automatic or CPU" in error
    assert PluginSettings.load().device == "cpu"

    monkeypatch.setattr(runtime, "cuda_unavailable", lambda: "")  # a machine where CUDA can run
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.settings().device == "cuda"


def test_a_file_typed_as_a_folder_is_called_a_file(qtbot, qgis_app, model_bundle):
    """A bundle's manifest.json typed where its folder goes was refused as "Folder …/manifest.json does not
    exist", which it plainly does."""
    manifest = model_bundle / "manifest.json"
    dialog = _settings_dialog(qtbot, PluginSettings())
    qtbot.keyClicks(dialog.model_dir.lineEdit(), str(manifest))
    click_ok(qtbot, dialog)
    assert dialog.error_label.text() == f"{manifest} is a file, not a folder."
    dialog.model_dir.lineEdit().clear()
    qtbot.keyClicks(dialog.tile_cache_dir.lineEdit(), str(manifest))
    click_ok(qtbot, dialog)
    assert dialog.error_label.text() == f"Scene tile cache: {manifest} is a file, not a folder."


def test_a_damaged_copy_of_the_model_is_named_as_damaged(qtbot, qgis_app, compressed, model_bundle, tmp_path):
    """The only copy of the file's model had a damaged decoder: the dialog said the model "was not found in
    <that folder> (tiny)" and to add the folder that holds it, which the analyst had just done."""
    damaged = tmp_path / "models" / "tiny"
    shutil.copytree(model_bundle, damaged)
    decoder = damaged / json.loads((damaged / "manifest.json").read_text())["files"]["decoder"]["path"]
    data = bytearray(decoder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    decoder.write_bytes(bytes(data))
    dialog = ReconstructDialog(str(compressed), "", PluginSettings(model_dirs=[str(damaged.parent)]), None)
    qtbot.addWidget(dialog)
    dialog.show()
    click_ok(qtbot, dialog)
    error = dialog.error_label.text()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert f"damaged copy (its decoder is missing or altered; copy it again): {decoder}" in error


def test_opening_a_scene_before_the_packages_are_installed_asks_for_them(tmp_path, compressed, sar_tif):
    """Without zstandard (and the codec's other packages), "Open compressed scene…", a Browser double-click or a
    drop raised an ImportError traceback before the dependency dialog could open; a scene layer added to the
    project (a project read) did the same. In a fresh process where the packages cannot be imported."""
    script = plugin_without_codec_packages() + f"""
from qgis.core import QgsProject, QgsRasterLayer
from sar_compress_plugin.qgis_io import ROLE_PROPERTY, SARC_PATH_PROPERTY, SCENE_ROLE
seen = []
QTimer.singleShot(0, lambda: answer_dependency_dialog(lambda d: seen.append(d.status.text())))
assert p.scenes.open({str(compressed)!r}) is None
layer = QgsRasterLayer({str(sar_tif)!r}, 'a scene layer read with a project')
layer.setCustomProperty(ROLE_PROPERTY, SCENE_ROLE)
layer.setCustomProperty(SARC_PATH_PROPERTY, {str(compressed)!r})
QgsProject.instance().addMapLayer(layer)
print('SEEN', repr(seen))
print('MENU', repr([a.text() for a in iface.raster_menu_actions('&SAR Compress')]))
p.unload()
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("SEEN", "MENU")))
    seen = eval(lines["SEEN"])  # noqa: S307 (our repr)
    assert len(seen) == 1 and all(module in seen[0] for module in CODEC_PACKAGES)
    assert "Settings…" in eval(lines["MENU"]) and "Python dependencies…" in eval(lines["MENU"])  # noqa: S307


def test_the_plugin_managers_about_says_where_the_menu_is(qgis_app):
    """The about text sent the analyst to "the plugin menu" (QGIS's Plugins menu), where nothing of it is: its
    actions are under Raster > SAR Compress."""
    from sar_compress_plugin import __about__

    about = __about__.read_metadata(REPO / "metadata.txt")["about"]
    assert "Raster > SAR Compress" in about and "plugin menu" not in about

