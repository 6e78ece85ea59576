"""A radar analyst's day, a fourth look: an original not loaded in the project under a reconstruction's name, a
second compression of the same layer, a single-look complex layer, a tile size the Toolbox took, folders typed
with "~", and a window of a scene written under the whole scene's name. Real dialogs typed into and clicked with
pytest-qt, the layer context menu, Processing, real headless QGIS, the tiny ONNX model, real Sentinel-1 scenes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsProcessingContext, QgsProcessingException,
                       QgsProcessingFeedback, QgsProject, QgsRectangle)
from qgis.PyQt.QtWidgets import QDialog, QMessageBox

from qgis_harness import DATA, accept_next_dialog, add_raster, click_ok, messages, wait_for_task
from sar_compress_plugin.gui.dialogs import CompressDialog, ReconstructDialog, SettingsDialog
from sar_compress_plugin.qgis_io import ORIGINAL_PROPERTY
from sar_compress_plugin.utils.settings import PluginSettings


@pytest.fixture
def processing_ready(plugin):
    """Processing initialised as in the desktop, with the plugin's provider registered."""
    import processing  # noqa: F401
    from processing.core.Processing import Processing

    Processing.initialize()
    return plugin


def _run(alg_id: str, params: dict, project):
    import processing

    context = QgsProcessingContext()
    context.setProject(project)  # as the Toolbox runs it
    return processing.run(alg_id, params, feedback=QgsProcessingFeedback(), context=context)


def _retype(qtbot, line, text):
    """Replace a field's text as a user does: select it all, type the new one."""
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)


def test_an_original_not_in_the_project_is_never_replaced_by_its_reconstruction(processing_ready, test_iface,
                                                                                compressed, sar_tif, qtbot,
                                                                                monkeypatch, tmp_path):
    """berlin.tif, the original, is not loaded. The Reconstruct dialog on berlin.sarc with the output typed as
    "berlin.tif" asked "… exists. Replace it?", and a Yes replaced the original scene by its lossy copy;
    Processing's Reconstruct (a batch row named after its .sarc in the originals' folder) did it without asking,
    and its Compress wrote a .sarc over an ERDAS .img scene. sar-reconstruct and the batch refuse exactly this."""
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kw: (asked.append(args[2]), QMessageBox.StandardButton.Yes)[1])
    before = sar_tif.read_bytes()
    state = accept_next_dialog(lambda dialog: (_retype(qtbot, dialog.input.lineEdit(), str(compressed)),
                                               _retype(qtbot, dialog.output.lineEdit(), "berlin.tif")))
    plugin = processing_ready
    plugin.reconstruct_action.trigger()
    assert state["error"].startswith(f"{sar_tif}: exists and is not a reconstruction (")
    assert state["error"].endswith("so it is not replaced; move it away or choose another output.")
    assert asked == [] and plugin.last_task is None and sar_tif.read_bytes() == before

    with pytest.raises(QgsProcessingException, match="exists and is not a reconstruction"):
        _run("sarcompress:reconstruct", {"INPUT": str(compressed), "DEVICE": 2, "OUTPUT": str(sar_tif)},
             QgsProject.instance())
    assert sar_tif.read_bytes() == before
    erdas = tmp_path / "frankfurt.img"
    gdal.Translate(str(erdas), str(DATA / "s1_iw_grd_frankfurt_512.tif"), format="HFA")
    erdas_bytes = erdas.read_bytes()
    with pytest.raises(QgsProcessingException, match="exists and is a raster, not a .sarc file"):
        _run("sarcompress:compress", {"INPUT": str(sar_tif), "DEVICE": 2, "TILE_SIZE": 256, "OUTPUT": str(erdas)},
             QgsProject.instance())
    assert erdas.read_bytes() == erdas_bytes

    # an earlier reconstruction under the name is still replaced: by Processing, and by the dialog once asked
    again = tmp_path / "again.tif"
    for _ in range(2):
        _run("sarcompress:reconstruct", {"INPUT": str(compressed), "DEVICE": 2, "OUTPUT": str(again)},
             QgsProject.instance())
    state = accept_next_dialog(lambda dialog: (_retype(qtbot, dialog.input.lineEdit(), str(compressed)),
                                               _retype(qtbot, dialog.output.lineEdit(), str(again))))
    plugin.reconstruct_action.trigger()
    assert "error" not in state and asked == [f"{again} exists. Replace it?"]
    assert wait_for_task(plugin, plugin.last_task).ok


def test_the_reconstruction_of_a_second_compression_finds_its_original(processing_ready, test_iface, sar_tif,
                                                                       tmp_path):
    """The analyst compresses 'berlin' twice from its context menu (two qualities to compare): the plugin names the
    second berlin_2.sarc. Its reconstruction was matched to an original by file stem ("berlin_2"), found none: it
    went outside the original's group, in another stretch than the original's, and "SAR quality maps…" on it
    asked which layer the original was. So did a reconstruction of it written by Processing and loaded by hand."""
    plugin = processing_ready
    project = QgsProject.instance()
    original = add_raster(sar_tif)
    test_iface.layer_tree_view.setCurrentLayer(original)
    for _ in range(2):
        accept_next_dialog()
        plugin.compress_action.trigger()
        assert wait_for_task(plugin, plugin.last_task).ok
    assert plugin.last_task.output_path == str(tmp_path / "berlin_2.sarc")
    for name in ("berlin.sarc", "berlin_2.sarc"):
        assert wait_for_task(plugin, plugin.reconstruct_file(str(tmp_path / name))).ok
    second = next(lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin_2 (reconstructed)")
    root = project.layerTreeRoot()
    assert root.findLayer(second.id()).parent() is root.findLayer(original.id()).parent() is not root
    assert second.customProperty(ORIGINAL_PROPERTY) == original.id()
    assert second.renderer().type() == original.renderer().type() == "multibandcolor"
    assert plugin.quality_roles(second) == (second, original)

    # kept with the project, and found for a reconstruction the plugin did not load
    project_file = tmp_path / "day.qgz"
    assert project.write(str(project_file))
    project.clear()
    assert project.read(str(project_file))
    original = next(lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin")
    done = _run("sarcompress:reconstruct", {"INPUT": str(tmp_path / "berlin_2.sarc"), "DEVICE": 2,
                                            "OUTPUT": str(tmp_path / "q2.tif")}, project)
    by_hand = add_raster(done["OUTPUT"], "q2")
    assert plugin.quality_roles(by_hand) == (by_hand, original)


def test_a_complex_layer_is_refused_before_the_compress_dialog_opens(plugin, test_iface, tmp_path, monkeypatch):
    """A single-look complex layer (CFloat32, as an SLC product is): the compress dialog opened, was filled in, and
    only once it had closed did the task fail: "data type CFloat32 is complex, not supported"."""
    from sar_compress_plugin.gui import dialogs

    rng = np.random.default_rng(0)
    slc = tmp_path / "slc.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(slc), 256, 256, 1, gdal.GDT_CFloat32)
    ds.SetGeoTransform((10.0, 0.001, 0.0, 50.0, 0.0, -0.001))
    ds.GetRasterBand(1).WriteArray((rng.normal(size=(256, 256)) + 1j * rng.normal(size=(256, 256)))
                                   .astype(np.complex64))
    ds = None
    opened = []
    monkeypatch.setattr(dialogs.CompressDialog, "exec",
                        lambda dialog: (opened.append(dialog), QDialog.DialogCode.Rejected)[1])
    test_iface.layer_tree_view.setCurrentLayer(add_raster(slc, "slc"))
    plugin.compress_action.trigger()
    assert opened == [] and plugin.last_task is None
    assert messages(test_iface)[-1].startswith(f"Cannot compress: {slc}: data type CFloat32 is complex, not "
                                               "supported (a single-look complex product?)")


def test_processing_refuses_a_tile_size_that_is_no_multiple_of_16_before_the_run(plugin, sar_tif, tmp_path):
    """TILE_SIZE 100 passed the Toolbox's check; the run then failed, saying "between 16 and 1024" where the
    parameter said 64 to 1024. Now the Toolbox refuses it with the codec's own rule and words."""
    alg = QgsApplication.processingRegistry().algorithmById("sarcompress:compress")
    ok, message = alg.checkParameterValues({"INPUT": str(sar_tif), "TILE_SIZE": 100,
                                            "OUTPUT": str(tmp_path / "a.sarc")}, QgsProcessingContext())
    assert not ok and message == ("tile size 100 must be a multiple of 16 between 16 and 1024 (larger tiles need "
                                  "gigabytes of memory to decode)")
    ok, _message = alg.checkParameterValues({"INPUT": str(sar_tif), "TILE_SIZE": 256,
                                             "OUTPUT": str(tmp_path / "a.sarc")}, QgsProcessingContext())
    assert ok


def test_folders_typed_with_a_tilde_are_the_home_folders(qtbot, qgis_app, model_bundle, compressed, tmp_path,
                                                          monkeypatch):
    """"~/cache" as the tile cache, "~/models/tiny" as a model folder: refused as folders that "do not exist",
    which they did; the output fields took "~" already."""
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    shutil.copytree(model_bundle, home / "models" / "tiny")
    shutil.copy(compressed, home / "berlin.sarc")
    monkeypatch.setenv("HOME", str(home))

    dialog = SettingsDialog(PluginSettings(device="cpu"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClicks(dialog.tile_cache_dir.lineEdit(), "~/cache")
    qtbot.keyClicks(dialog.model_dir.lineEdit(), "~/models/tiny")
    qtbot.keyClicks(dialog.model_dirs, "~/models")
    click_ok(qtbot, dialog)
    assert dialog.error_label.text() == "" and dialog.result() == QDialog.DialogCode.Accepted
    saved = dialog.settings()
    assert (saved.tile_cache_dir, saved.model_dir, saved.model_dirs) == (
        str(home / "cache"), str(home / "models" / "tiny"), [str(home / "models")])

    compress = CompressDialog("berlin", str(compressed.with_suffix(".tif")), str(compressed.with_name("b.sarc")),
                              PluginSettings(device="cpu"))
    qtbot.addWidget(compress)
    compress.show()
    qtbot.keyClicks(compress.model_dir.lineEdit(), "~/models/tiny")
    click_ok(qtbot, compress)
    assert compress.error_label.text() == "" and compress.result() == QDialog.DialogCode.Accepted
    assert compress.option_values()["model_dir"] == str(home / "models" / "tiny")

    reconstruct = ReconstructDialog("", "", PluginSettings(model_dirs=[str(model_bundle)]), None)
    qtbot.addWidget(reconstruct)
    reconstruct.show()
    qtbot.keyClicks(reconstruct.input.lineEdit(), "~/berlin.sarc")
    click_ok(qtbot, reconstruct)
    assert reconstruct.error_label.text() == "" and reconstruct.result() == QDialog.DialogCode.Accepted
    assert (reconstruct.sarc_path(), reconstruct.output_path()) == (
        str(home / "berlin.sarc"), str(home / "berlin_reconstructed.tif"))


def test_a_window_of_the_scene_is_written_under_an_extent_name(plugin, test_iface, compressed, sar_tif, qtbot):
    """"Current map extent" wrote the window as berlin_reconstructed.tif, the whole scene's name, and the whole
    scene reconstructed after it became berlin_reconstructed_2.tif: on disk the part passed for all of it. Named
    as "Export current extent…" names a window: berlin_extent.tif."""
    gt = gdal.Open(str(sar_tif)).GetGeoTransform()
    test_iface.main_window.show()
    test_iface.canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))  # the scene's CRS
    test_iface.canvas.setExtent(QgsRectangle(gt[0] + 100 * gt[1], gt[3] + 300 * gt[5],
                                             gt[0] + 300 * gt[1], gt[3] + 100 * gt[5]))
    seen = {}

    def current_extent(dialog):
        qtbot.keyClicks(dialog.input.lineEdit(), str(compressed))
        seen["whole"] = dialog.output.filePath()
        qtbot.keyClicks(dialog.area, "Current")
        seen["extent"] = dialog.output.filePath()

    accept_next_dialog(current_extent)
    task = plugin.reconstruct_with_dialog()
    assert seen == {"whole": str(sar_tif.with_name("berlin_reconstructed.tif")),
                    "extent": str(sar_tif.with_name("berlin_extent.tif"))}
    assert task.window is not None and wait_for_task(plugin, task).ok
    assert gdal.Open(task.output_path).RasterXSize < 512
    whole = plugin.reconstruct_file(str(compressed))
    assert wait_for_task(plugin, whole).ok and whole.output_path == str(sar_tif.with_name("berlin_reconstructed.tif"))


def test_quality_maps_of_a_reconstruction_run_in_a_qgis_without_the_codecs_packages(sar_tif, compressed, codec,
                                                                                     model_bundle):
    """The quality maps need none of the codec's packages (zstandard, onnxruntime...), yet "SAR quality maps…"
    raised an ImportError traceback in a QGIS without them: telling the reconstruction from its original read the
    reconstruction tag's name from core.codec, which loads them. In a fresh process where they cannot be
    imported: the dialog opens with both layers in their roles, and the maps are made."""
    import os
    import subprocess
    import sys

    from qgis_harness import plugin_without_codec_packages
    from sar_compress_plugin import qgis_io

    recon = sar_tif.with_name("berlin_reconstructed.tif")
    codec.reconstruct(str(compressed), str(recon), model_dirs=[str(model_bundle)], device="cpu")
    script = plugin_without_codec_packages() + f"""
import qgis_harness
from qgis.core import QgsProject, QgsRasterLayer
original = QgsRasterLayer({str(sar_tif)!r}, 'berlin', 'gdal')
recon = QgsRasterLayer({str(recon)!r}, 'berlin (reconstructed)', 'gdal')
QgsProject.instance().addMapLayers([original, recon])
iface.layer_tree_view.setCurrentLayer(recon)
roles = {{}}
qgis_harness.accept_next_dialog(lambda d: roles.update(r=d.reconstruction_layer().name(),
                                                       o=d.original_layer().name()))
p.quality_action.trigger()
print('ROLES', roles)
print('OK', qgis_harness.wait_for_task(p, p.last_task).ok)
print('MESSAGE', iface.messages[-1][1])
p.unload()
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("ROLES", "OK", "MESS")))
    assert lines["ROLES"] == "{'r': 'berlin (reconstructed)', 'o': 'berlin'}" and lines["OK"] == "True"
    assert lines["MESSAGE"].startswith("Quality maps of 'berlin (reconstructed)' vs 'berlin' (Band 1: Intensity_VV)")
