"""A radar analyst's day, looked at again: a retired model chosen to compress with, the legend of a scene layer,
an output that a running task is still writing, and the maps' own context menu. Real dialogs typed into and
clicked with pytest-qt, real headless QGIS, the tiny ONNX model and the bundled models' real manifests."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from qgis.core import QgsColorRampLegendNode, QgsProject

from qgis_harness import DATA, REPO, accept_next_dialog, add_raster, process_events_until, wait_for_task
from sar_compress_plugin.tasks import SarTask
from sar_compress_plugin.utils.settings import PluginSettings

#: An earlier default kept under models/ only to decode the files it wrote (manifest "decode_only": true).
RETIRED_MODEL = REPO / "sar_compress_plugin" / "models" / "sar-baseline-ctx4-cpu-v8"


def _retype(qtbot, widget, text):
    """Replace a field's text as a user does: select it all, type the new one."""
    line = widget.lineEdit()
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)


def test_a_retired_model_folder_is_refused_where_it_is_chosen(plugin, test_iface, sar_tif, qtbot):
    """The models folder holds earlier defaults that can only decode. Typed into the compress dialog, one was
    accepted (its hint even promised a bit rate), the dialog closed, and the task failed afterwards ("kept only
    to decode"); in Settings it was saved as the default model, so every compression after it failed so."""
    assert (RETIRED_MODEL / "manifest.json").is_file()
    test_iface.layer_tree_view.setCurrentLayer(add_raster(sar_tif))
    seen = {}

    def choose_retired(dialog):
        _retype(qtbot, dialog.model_dir, str(RETIRED_MODEL))
        seen["hint"] = dialog.rate.hint.text()

    state = accept_next_dialog(choose_retired)
    plugin.compress_action.trigger()
    assert state["dialog_title"] == "Compress 'berlin' with SAR codec"
    assert "kept only to decode" in state["error"] and "bundled default" in state["error"]
    assert seen["hint"] == "" and plugin.last_task is None

    before = PluginSettings.load().model_dir
    state = accept_next_dialog(lambda dialog: _retype(qtbot, dialog.model_dir, str(RETIRED_MODEL)))
    plugin.settings_action.trigger()
    assert state["dialog_title"] == "SAR Compress settings"
    assert state["error"].startswith("Default model: ") and "kept only to decode" in state["error"]
    assert PluginSettings.load().model_dir == before


def test_a_scene_layers_legend_reads_in_db(plugin, test_iface, compressed):
    """A scene layer is stretched in dB, but its legend (a continuous bar) showed the linear intensities of its
    two ends, numbers with no unit: the dB labels were on ramp items the bar does not show. The same style is
    given to a reconstruction shown without its original."""
    scene = plugin.scenes.open(str(compressed))
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    recon = next(lyr for lyr in QgsProject.instance().mapLayers().values()
                 if lyr.name() == "berlin (reconstructed)")
    for layer in (scene, recon):
        node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
        [bar] = [n for n in test_iface.layer_tree_model.layerLegendNodes(node)
                 if isinstance(n, QgsColorRampLegendNode)]
        labels = (bar.settings().minimumLabel(), bar.settings().maximumLabel())
        assert all(label.endswith(" dB") for label in labels), (layer.name(), labels)
    process_events_until(lambda: not any(c.busy for c in plugin.scenes.controllers.values()), 60)


def test_an_output_a_running_task_writes_is_refused_in_the_dialog(plugin, test_iface, sar_tif, compressed, qtbot,
                                                                  monkeypatch):
    """A file being written does not exist until its task has finished, so the dialogs accepted it as a new
    output: they closed (the compress dialog saving its rate as the default) and only then did the plugin refuse
    to start the task, leaving the analyst to open the dialog and fill it in again."""
    # The tiny model finishes in a fraction of a second: the running tasks are held at their first progress
    # report (real tasks, real codec) until the dialogs have been answered, as a real scene's would still run.
    gate = threading.Event()
    report = SarTask.report_progress
    monkeypatch.setattr(SarTask, "report_progress", lambda task, f: (gate.wait(60), report(task, f)))
    layer = add_raster(sar_tif)
    test_iface.layer_tree_view.setCurrentLayer(layer)
    running = plugin.compress_layer(layer, str(sar_tif.with_name("berlin_q0.sarc")), ask=False)
    assert running is not None and not Path(running.output_path).exists()

    state = accept_next_dialog(lambda dialog: _retype(qtbot, dialog.output, "berlin_q0"))
    plugin.compress_action.trigger()
    assert state["error"] == (f"{running.output_path} is being written by a running task: wait for it to finish "
                              "or choose another output.")
    assert plugin.last_task is running

    rebuilding = plugin.reconstruct_file(str(compressed))
    state = accept_next_dialog(lambda dialog: (_retype(qtbot, dialog.input, str(compressed)),
                                               _retype(qtbot, dialog.output, "berlin_reconstructed.tif")))
    plugin.reconstruct_action.trigger()
    assert state["error"] == (f"{rebuilding.output_path} is being written by a running task: wait for it to "
                              "finish or choose another output.")
    assert plugin.last_task is rebuilding
    gate.set()
    assert wait_for_task(plugin, running).ok and wait_for_task(plugin, rebuilding).ok


def _menu_texts(test_iface, layer) -> list[str]:
    """The layer's context menu in the Layers panel, as the analyst right-clicks it."""
    test_iface.layer_tree_view.setCurrentLayer(layer)
    menu = test_iface.menu_provider.createContextMenu()
    return [action.text() for action in menu.actions()] if menu is not None else []


def test_a_quality_map_is_not_offered_compression_or_quality_maps(plugin, test_iface, sar_tif, compressed, tmp_path):
    """Right-clicked, an ENL-ratio map offered "Compress with SAR codec…", which compressed its ratios as radar
    intensity without a word, and "SAR quality maps…", whose dialog opened with neither layer known. Also after
    the project is saved and read again."""
    original = add_raster(sar_tif)
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    recon = next(lyr for lyr in QgsProject.instance().mapLayers().values()
                 if lyr.name() == "berlin (reconstructed)")
    assert wait_for_task(plugin, plugin.quality_maps(recon, original)).ok

    def menus():
        return {lyr.customProperty("sar_compress/role") or "original": _menu_texts(test_iface, lyr)
                for lyr in QgsProject.instance().mapLayers().values()}

    offered = ["Compress with SAR codec…", "SAR quality maps…"]
    want = {"original": offered, "reconstruction": offered, "enl_ratio": [], "epi": []}
    assert menus() == want
    project_file = tmp_path / "day.qgz"
    assert QgsProject.instance().write(str(project_file))
    QgsProject.instance().clear()
    assert QgsProject.instance().read(str(project_file))
    assert menus() == want


def test_the_vv_vh_composites_legend_names_its_polarisations(plugin, test_iface, compressed, qtbot):
    """Switched to the VV/VH composite with "SAR style…", the layer's legend read "Band 1", "Band 2", "Band 3"
    beside the red, green and blue swatches: nothing said which channel was VV, VH or their ratio."""
    from qgis.PyQt.QtCore import Qt

    layer = plugin.scenes.open(str(compressed))

    def composite(dialog):
        qtbot.keyClicks(dialog.style, "VV/VH")

    test_iface.setActiveLayer(layer)
    [action] = [a for a in test_iface.menu_provider.createContextMenu().actions() if a.text() == "SAR style…"]
    state = accept_next_dialog(composite)
    action.trigger()
    assert "error" not in state and layer.renderer().type() == "multibandcolor"
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    legend = [n.data(Qt.ItemDataRole.DisplayRole) for n in test_iface.layer_tree_model.layerLegendNodes(node)]
    assert legend == ["Band 1: Intensity_VV (dB)", "Band 2: Intensity_VH (dB)",
                      "Band 3: Intensity_VV / Intensity_VH (dB)"]
    process_events_until(lambda: not any(c.busy for c in plugin.scenes.controllers.values()), 60)


def test_processing_quality_maps_refuse_to_write_over_another_layers_file(plugin, sar_tif, compressed, tmp_path):
    """Processing replaces an existing output without asking. Compress and Reconstruct refuse the file of a
    project layer; the quality maps wrote their EPI map over another scene loaded in the project (a real
    Sentinel-1 scene), which its layer then showed as a map of correlations."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    Processing.initialize()
    project = QgsProject.instance()
    original = add_raster(sar_tif)
    other = tmp_path / "frankfurt.tif"
    shutil.copy(DATA / "s1_iw_grd_frankfurt_512.tif", other)
    add_raster(other, "frankfurt")
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    recon = next(lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin (reconstructed)")
    context = QgsProcessingContext()
    context.setProject(project)  # as the Toolbox runs it
    before = other.read_bytes()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("sarcompress:qualitymaps", {
            "ORIGINAL": original.id(), "RECONSTRUCTION": recon.id(), "BAND": 1,
            "OUTPUT_ENL_RATIO": str(tmp_path / "enl.tif"), "OUTPUT_EPI": str(other)},
            context=context, feedback=QgsProcessingFeedback())
    assert str(refused.value) == f"{other} is the file of layer 'frankfurt' in this project: choose another output"
    assert other.read_bytes() == before and not (tmp_path / "enl.tif").exists()
