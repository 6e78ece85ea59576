"""The plugin in a real headless QGIS, on a real Sentinel-1 GRD scene (Berlin, 2 x 512 x 512 float32 intensity).

What is real: QgsApplication, QgsProject, QgsMapCanvas, QgsLayerTreeView + bridge, QgsMessageBar, the task
manager, the dialogs (their exec() loops run and are answered by `accept_next_dialog`), the Browser's
QgsDirectoryItem, the Processing registry, the codec with a tiny ONNX model. What stands in for the desktop app:
`TestIface` (conftest.py), because QgisApp and its layer-tree context menu cannot exist headless (trap 8).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsDirectoryItem,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsProject,
    QgsRasterLayer,
    QgsTask,
    QgsVectorLayer,
)
from qgis.gui import QgsDataItemGuiContext
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QMenu

from qgis_harness import (ARTIFACTS, PLUGIN, REPO, TestIface, accept_next_dialog, add_raster, click_ok, messages,
                          plugin_installed_from_zip, plugin_without_codec_packages, process_events_until,
                          wait_for_task)

COMPRESS_TEXT = "Compress with SAR codec…"
QUALITY_TEXT = "SAR quality maps…"


def _menu_texts(iface: TestIface, layer) -> list[str]:
    iface.layer_tree_view.setCurrentLayer(layer)
    menu = iface.layer_tree_view.menuProvider().createContextMenu()
    return [a.text() for a in menu.actions()] if menu is not None else []


# --- loading and registration -------------------------------------------------------------------------------

def test_install_from_zip_load_through_qgis_utils_registers_and_unload_removes(test_iface, sar_tif, tmp_path):
    """As QGIS does it: the built zip unpacked in a plugins folder, found, loaded and started by qgis.utils."""
    import qgis.utils

    with plugin_installed_from_zip(tmp_path) as plugins_dir:
        assert PLUGIN in qgis.utils.available_plugins
        assert qgis.utils.pluginMetadata(PLUGIN, "name") == "SAR Compress"
        assert qgis.utils.pluginMetadata(PLUGIN, "qgisMinimumVersion") == "3.22"
        earlier = add_raster(sar_tif, "in the project before the plugin started")
        assert qgis.utils.loadPlugin(PLUGIN)
        assert qgis.utils.startPlugin(PLUGIN)
        assert qgis.utils.isPluginLoaded(PLUGIN)
        assert sys.modules[PLUGIN].__file__.startswith(str(plugins_dir))  # the installed copy, not the repo
        raster = add_raster(sar_tif)
        vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
        QgsProject.instance().addMapLayer(vector)

        for layer in (earlier, raster):
            texts = _menu_texts(test_iface, layer)
            assert COMPRESS_TEXT in texts and QUALITY_TEXT in texts
        assert COMPRESS_TEXT not in _menu_texts(test_iface, vector)
        menu_texts = [a.text() for a in test_iface.raster_menu_actions("&SAR Compress")]
        assert "Reconstruct SAR raster…" in menu_texts and "Settings…" in menu_texts
        registry = QgsApplication.processingRegistry()
        provider = registry.providerById("sarcompress")
        assert provider is not None
        assert sorted(a.id() for a in provider.algorithms()) == [
            "sarcompress:compress", "sarcompress:qualitymaps", "sarcompress:reconstruct"]
        assert "SAR compressed files" in [p.name() for p in QgsApplication.dataItemProviderRegistry().providers()]

        assert qgis.utils.unloadPlugin(PLUGIN)
        assert _menu_texts(test_iface, raster) == []
        assert test_iface.raster_menu_actions("&SAR Compress") == []
        assert registry.providerById("sarcompress") is None
        assert "SAR compressed files" not in [
            p.name() for p in QgsApplication.dataItemProviderRegistry().providers()]
        assert PLUGIN not in sys.modules


def test_missing_onnxruntime_still_loads_and_opens_the_dependency_dialog(tmp_path, sar_tif):
    """In a fresh process where onnxruntime, zstandard, constriction, threadpoolctl and jsonschema cannot be imported:
    Compress opens the dependency dialog (closed here without installing: the install itself is tested in
    test_dependencies.py)."""
    script = plugin_without_codec_packages() + f"""
from qgis.core import QgsProject, QgsRasterLayer
layer = QgsRasterLayer({str(sar_tif)!r}, 'berlin')
QgsProject.instance().addMapLayer(layer)
seen = {{}}
QTimer.singleShot(0, lambda: answer_dependency_dialog(lambda d: seen.update(
    status=d.status.text(), plan=d.plan.text(), cmd=d.command(), enabled=d.install_button.isEnabled())))
assert p.compress_layer(layer) is None
assert 'onnxruntime' not in sys.modules
print('SEEN', repr(seen))
p.unload()
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = eval([x for x in out.stdout.splitlines() if x.startswith("SEEN")][0][5:])  # noqa: S307 (our repr)
    for module in ("onnxruntime", "zstandard", "constriction", "threadpoolctl", "jsonschema"):
        assert module in seen["status"]
    assert seen["enabled"]
    cmd = seen["cmd"]
    assert Path(cmd[0]).name.startswith("python") and cmd[1:5] == ["-m", "pip", "install", "--target"]
    # No NVIDIA GPU on the test machines: the CPU runtime, never onnxruntime-gpu beside it.
    assert "onnxruntime==1.31.1" in cmd and not any(c.startswith("onnxruntime-gpu") for c in cmd)
    assert "zstandard==0.25.0" in cmd and "constriction==0.5.0" in cmd and "threadpoolctl==3.8.0" in cmd
    assert "jsonschema==4.10.3" in cmd
    assert "No restart is needed" in seen["plan"]
    assert not list(tmp_path.glob("*.sarc"))


def test_unreadable_layers_give_messages_not_exceptions(plugin, test_iface, tmp_path, sar_tif):
    missing = QgsRasterLayer(str(tmp_path / "nowhere.tif"), "ghost", "gdal")
    assert plugin.compress_layer(missing) is None
    assert any("cannot be read" in m for m in messages(test_iface, Qgis.MessageLevel.Warning))
    assert plugin.compress_layer(None) is None

    # A layer that was fine when loaded but whose file is now garbage: refused in one line before any dialog or
    # task (the codec cannot read it; test_analyst_fourth_look: a complex layer).
    broken = tmp_path / "broken.tif"
    broken.write_bytes(sar_tif.read_bytes())
    layer = add_raster(broken, "broken")
    broken.write_bytes(b"II*\x00 this is not a GeoTIFF any more")
    assert plugin.compress_layer(layer, str(tmp_path / "broken.sarc"), ask=False) is None
    warning = messages(test_iface, Qgis.MessageLevel.Warning)[-1]
    assert warning.startswith(f"Cannot compress: {broken}: not a readable raster") and "\n" not in warning
    assert plugin.last_task is None and not (tmp_path / "broken.sarc").exists()


# --- compress ----------------------------------------------------------------------------------------------

def test_compress_from_layer_context_menu(plugin, test_iface, sar_tif, codec):
    layer = add_raster(sar_tif)
    test_iface.layer_tree_view.setCurrentLayer(layer)
    menu = test_iface.layer_tree_view.menuProvider().createContextMenu()
    action = [a for a in menu.actions() if a.text() == COMPRESS_TEXT][0]
    out = sar_tif.with_name("berlin_ctx.sarc")

    def configure(dialog):
        assert dialog.output.filePath() == str(sar_tif.with_suffix(".sarc"))  # default next to the input
        assert dialog.device.currentData() == "cpu" and dialog.tile_size.value() == 256
        dialog.output.setFilePath(str(out))

    state = accept_next_dialog(configure)
    action.trigger()
    assert state.get("dialog_title", "").startswith("Compress 'berlin'") and "error" not in state
    task = plugin.last_task
    result = wait_for_task(plugin, task)
    assert result.ok, result.message
    assert task.progress() == pytest.approx(100.0)
    header = codec.read_header(out)
    assert header["raster"]["width"] == 512 and header["raster"]["height"] == 512
    done = messages(test_iface, Qgis.MessageLevel.Success)[-1]
    r = result.value
    assert f"ratio {r.ratio:.1f}:1" in done and f"{r.bpp_per_band:.3f} bpp per band" in done
    assert r.provider in done and "CPUExecutionProvider" in done


def test_cancelled_compress_leaves_no_file(plugin, test_iface, sar_tif, codec):
    from sar_compress_plugin.tasks import CompressTask

    out = sar_tif.with_name("cancelled.sarc")
    options = codec.CompressOptions(model_dir=plugin_settings_model(), device="cpu", tile_size=128)
    task = CompressTask(str(sar_tif), str(out), options,
                        on_finished=lambda r: plugin._compress_done("berlin", None, task, r))
    seen = []
    report = task.report_progress

    def progress_then_cancel(p):
        seen.append(p)
        report(p)
        if p > 0.3:
            task.cancel()  # what the task manager's cancel button does

    task.report_progress = progress_then_cancel
    assert task.run() is False
    task.finished(False)
    assert task.result.status.value == "cancelled"
    assert 0.3 < max(seen) < 1.0
    assert not out.exists()
    assert sorted(p.name for p in sar_tif.parent.iterdir()) == ["berlin.tif"]
    assert "cancelled; no file was written" in messages(test_iface, Qgis.MessageLevel.Warning)[-1]


def plugin_settings_model() -> str:
    from sar_compress_plugin.utils.settings import PluginSettings

    return PluginSettings.load().model_dir


# --- reconstruct and quality maps ---------------------------------------------------------------------------

def test_reconstruct_from_browser_and_menu_groups_with_original(plugin, test_iface, sar_tif, compressed):
    original = add_raster(sar_tif)
    project = QgsProject.instance()

    # Browser: the folder lists the .sarc file as our item, whose context menu has "Reconstruct".
    folder = QgsDirectoryItem(None, "data", str(sar_tif.parent))
    children = folder.createChildren()
    items = [c for c in children if c.path() == str(compressed)]
    assert items and items[0].type() == Qgis.BrowserItemType.Custom  # SarcDataItem (sip returns the base)
    assert "SAR compressed raster" in items[0].toolTip()
    menu = QMenu()
    plugin._browser_gui_provider.populateContextMenu(items[0], menu, [items[0]], QgsDataItemGuiContext())
    reconstruct = [a for a in menu.actions() if a.text() == "Reconstruct"]
    assert reconstruct
    reconstruct[0].trigger()
    result = wait_for_task(plugin, plugin.last_task)
    assert result.ok, result.message
    assert Path(result.value.output_path) == sar_tif.with_name("berlin_reconstructed.tif")

    recon = [lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin (reconstructed)"][0]
    assert recon.isValid()
    assert recon.extent() == original.extent()
    assert recon.crs() == original.crs() and recon.crs().authid() == "EPSG:4326"
    assert (recon.width(), recon.height(), recon.bandCount()) == (512, 512, 2)
    root = project.layerTreeRoot()
    group = root.findLayer(recon.id()).parent()
    assert group is root.findLayer(original.id()).parent() and group is not root
    assert [n.layerId() for n in group.findLayers()] == [recon.id(), original.id()]  # reconstruction on top
    assert "CPUExecutionProvider" in messages(test_iface, Qgis.MessageLevel.Success)[-1]

    # Plugin menu: "Reconstruct SAR raster…" with a chosen output path; same group, no second group.
    chosen = sar_tif.with_name("chosen.tif")

    def configure(dialog):
        dialog.input.setFilePath(str(compressed))
        dialog.output.setFilePath(str(chosen))

    state = accept_next_dialog(configure)
    plugin.reconstruct_action.trigger()
    assert "error" not in state
    assert wait_for_task(plugin, plugin.last_task).ok
    assert chosen.is_file()
    assert len(group.findLayers()) == 3 and len(root.findGroups()) == 1
    assert np.array_equal(gdal.Open(str(chosen)).ReadAsArray(),
                          gdal.Open(result.value.output_path).ReadAsArray())


@pytest.fixture
def read_only_sarc(compressed, tmp_path) -> Path:
    """A copy of the compressed scene in a folder where no file can be made, even by root (chattr +i), as on a
    read-only archive share; skipped where that cannot be done."""
    folder = tmp_path / "archive"
    folder.mkdir()
    sarc = folder / compressed.name
    shutil.copy(compressed, sarc)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a read-only folder here (chattr +i refused)")
    yield sarc
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_browser_reconstruct_with_dialog_takes_another_output_beside_a_read_only_folder(plugin, test_iface,
                                                                                        read_only_sarc, tmp_path,
                                                                                        qtbot):
    """The Browser's one-click "Reconstruct" writes beside the file: in a read-only folder it fails, and the
    Browser offered no way to choose another output. "Reconstruct…" opens the Reconstruct dialog on that file,
    which refuses the folder on OK and takes the output typed instead."""
    folder = QgsDirectoryItem(None, "archive", str(read_only_sarc.parent))
    item = [c for c in folder.createChildren() if c.path() == str(read_only_sarc)][0]
    menu = QMenu()
    plugin._browser_gui_provider.populateContextMenu(item, menu, [item], QgsDataItemGuiContext())
    actions = {a.text(): a for a in menu.actions()}
    assert list(actions) == ["Open as layer", "Reconstruct", "Reconstruct…"]

    actions["Reconstruct"].trigger()
    result = wait_for_task(plugin, plugin.last_task)
    assert not result.ok and f"cannot write in folder {read_only_sarc.parent}" in result.message

    out = tmp_path / "elsewhere.tif"
    seen = {}

    def configure(dialog):
        seen["file"] = dialog.sarc_path()
        click_ok(qtbot, dialog)  # the output it offers: beside the file, in the read-only folder
        seen["error"] = dialog.error_label.text()
        dialog.output.lineEdit().clear()
        qtbot.keyClicks(dialog.output.lineEdit(), str(out))

    state = accept_next_dialog(configure)
    actions["Reconstruct…"].trigger()
    assert "error" not in state
    assert seen == {"file": str(read_only_sarc), "error": f"Folder {read_only_sarc.parent} is not writable "
                                                           f"(Operation not permitted): choose another output."}
    assert wait_for_task(plugin, plugin.last_task).ok
    assert [lyr.source() for lyr in QgsProject.instance().mapLayers().values()] == [str(out)]
    assert sorted(p.name for p in read_only_sarc.parent.iterdir()) == [read_only_sarc.name]


def test_cancelling_a_big_reconstruction_midway_leaves_no_file_and_no_layer(plugin, test_iface, sar_tif, codec,
                                                                            model_bundle):
    """A 4096 x 4096 scene: a QgsTask whose progress rises while the GeoTIFF grows under a hidden temporary
    name; the task manager's cancel removes it, adds no layer and says so once."""
    big = sar_tif.with_name("big.tif")
    gdal.Translate(str(big), str(sar_tif), width=4096, height=4096, resampleAlg="nearest")
    sarc = big.with_suffix(".sarc")
    codec.compress(str(big), str(sarc), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                              tile_size=256))
    before = sorted(p.name for p in sar_tif.parent.iterdir())
    task = plugin.reconstruct_file(str(sarc))
    assert isinstance(task, QgsTask) and task in QgsApplication.taskManager().tasks()
    progress: list[float] = []
    task.progressChanged.connect(progress.append)
    assert process_events_until(lambda: progress and progress[-1] >= 5, 120)
    written = sorted(p.name for p in sar_tif.parent.iterdir() if p.name not in before)
    assert len(written) == 1 and written[0].startswith(".big_reconstructed.tif.partial-")
    task.cancel()  # the task manager's cancel button
    assert wait_for_task(plugin, task).status.value == "cancelled"
    assert 5 <= progress[-1] < 100
    assert sorted(p.name for p in sar_tif.parent.iterdir()) == before
    assert QgsProject.instance().mapLayers() == {}
    assert [m for m in messages(test_iface) if "cancel" in m.lower()] == [
        "Reconstruction of big.sarc cancelled; no file was written."]


BORDER_COLUMNS = 128


@pytest.fixture
def bordered_sarc(sar_tif, codec, model_bundle):
    """The scene with a nodata (0) strip on its left, as a Sentinel-1 GRD swath edge has, compressed."""
    bordered = sar_tif.with_name("bordered.tif")
    gdal.Translate(str(bordered), str(sar_tif), noData=0)
    ds = gdal.Open(str(bordered), gdal.GA_Update)
    for b in (1, 2):
        values = ds.GetRasterBand(b).ReadAsArray()
        values[:, :BORDER_COLUMNS] = 0
        ds.GetRasterBand(b).WriteArray(values)
    ds = None
    out = bordered.with_suffix(".sarc")
    codec.compress(str(bordered), str(out), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                                   tile_size=256))
    return out


def _render_alone(layer: QgsRasterLayer, background: QColor, size: int = 256):
    """The layer rendered alone over its extent, as the canvas would show it."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(size, size))
    settings.setBackgroundColor(background)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def test_a_reconstruction_without_its_original_shows_readable_grey_db_with_nodata_transparent(
        plugin, bordered_sarc):
    """With no original in the project to copy a style from, the reconstruction kept QGIS's default for two
    float bands: a red/green min/max stretch of linear intensity, in which most of a SAR scene (decades of
    range) is near black. It is shown as band 1 in grey dB instead; its nodata strip stays transparent."""
    assert wait_for_task(plugin, plugin.reconstruct_file(str(bordered_sarc))).ok
    [layer] = QgsProject.instance().mapLayers().values()
    assert layer.name() == "bordered (reconstructed)"
    written, original = gdal.Open(layer.source()), gdal.Open(str(bordered_sarc.with_suffix(".tif")))
    assert written.GetGeoTransform() == original.GetGeoTransform()
    assert written.GetProjection() == original.GetProjection()

    magenta = QColor(255, 0, 255)
    image = _render_alone(layer, magenta)
    edge = image.width() * BORDER_COLUMNS // 512
    assert {image.pixelColor(x, y).name() for x in range(0, edge - 2, 8) for y in range(0, 256, 8)} == {
        magenta.name()}
    lightness = np.array([[image.pixelColor(x, y).lightness() for x in range(edge + 2, 256, 4)]
                          for y in range(0, 256, 4)])
    # Mid-grey on the whole, few black pixels (QGIS's default gave a median of 52 and a quarter below 30).
    assert np.median(lightness) > 80 and (lightness < 30).mean() < 0.1
    assert layer.renderer().type() == "singlebandpseudocolor" and layer.renderer().band() == 1


def _grey_vv(layer: QgsRasterLayer) -> None:
    """How an analyst would look at it: VV in grey, 2-98 % cumulative-cut stretch."""
    from qgis.core import QgsContrastEnhancement, QgsRasterMinMaxOrigin, QgsSingleBandGrayRenderer

    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    layer.setRenderer(renderer)
    layer.setContrastEnhancement(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum,
                                 QgsRasterMinMaxOrigin.Limits.CumulativeCut)


def test_quality_maps_overlays_and_rendered_png(plugin, test_iface, sar_tif, compressed, qtbot):
    original = add_raster(sar_tif)
    _grey_vv(original)
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    project = QgsProject.instance()
    recon = [lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin (reconstructed)"][0]
    assert recon.renderer().type() == "singlebandgray"  # styled like the original, for comparison
    assert recon.renderer().contrastEnhancement().maximumValue() == \
        original.renderer().contrastEnhancement().maximumValue()

    # Right-click the reconstruction > "SAR quality maps…": the dialog proposes the original by itself.
    test_iface.layer_tree_view.setCurrentLayer(recon)
    menu = test_iface.layer_tree_view.menuProvider().createContextMenu()
    action = [a for a in menu.actions() if a.text() == QUALITY_TEXT][0]
    proposed = {}

    def configure(d):
        proposed["layer"] = d.original_layer()
        proposed["bands"] = [d.band.itemText(i) for i in range(d.band.count())]
        qtbot.keyClicks(d.band, "Band 2")  # the VH band, chosen with the keyboard
        proposed["band"] = d.band_number()

    state = accept_next_dialog(configure)
    action.trigger()
    assert "error" not in state and proposed["layer"] is original
    assert len(proposed["bands"]) == 2 and proposed["band"] == 2
    result = wait_for_task(plugin, plugin.last_task)
    assert result.ok, result.message
    assert result.value.bands == 1  # only the chosen band is computed

    group = project.layerTreeRoot().findLayer(recon.id()).parent()
    ids = [n.layerId() for n in group.findLayers()]
    enl = [lyr for lyr in project.mapLayers().values() if "local ENL ratio" in lyr.name()][0]
    epi = [lyr for lyr in project.mapLayers().values() if "local EPI" in lyr.name()][0]
    assert ids == [enl.id(), epi.id(), recon.id(), original.id()]  # both maps above the reconstruction
    assert proposed["bands"][1] in enl.name()  # the band is named on the layer
    legends = {}
    for layer, lo, hi in ((enl, 0.5, 2.0), (epi, 0.0, 1.0)):
        assert layer.extent() == recon.extent() and layer.crs() == recon.crs()
        assert (layer.width(), layer.height(), layer.bandCount()) == (512, 512, 1)
        r = layer.renderer()
        assert r.type() == "singlebandpseudocolor"
        assert (r.classificationMin(), r.classificationMax()) == (lo, hi)
        assert r.opacity() == pytest.approx(0.6)
        legend = test_iface.layer_tree_model.layerLegendNodes(project.layerTreeRoot().findLayer(layer.id()))
        legends[layer.id()] = [n.data(Qt.ItemDataRole.DisplayRole) for n in legend][1:]  # [0]: band name
    # Every class is labelled in words, not only the ends of a colour bar.
    assert legends[enl.id()] == ["rougher than the original (ENL ratio < 0.67)", "slightly rougher (0.67–0.9)",
                                 "as the original (0.9–1.11)", "slightly smoother (1.11–1.5)",
                                 "smoother than the original (> 1.5)"]
    assert legends[epi.id()][0].startswith("edges lost") and legends[epi.id()][-1].startswith("edges kept")
    items = enl.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert items[2].color == QColor("#f7f7f7") and items[1].value < 1.0 < items[2].value  # neutral around 1
    # The reconstruction under the maps: the same band in grey, stretched in dB (no red/green composite).
    rr = recon.renderer()
    assert rr.type() == "singlebandpseudocolor" and rr.band() == 2
    grey = rr.shader().rasterShaderFunction().colorRampItemList()
    assert all(i.color.red() == i.color.green() == i.color.blue() for i in grey)
    assert grey[0].label.endswith(" dB") and grey[-1].label.endswith(" dB")
    ratios = [b.value / a.value for a, b in zip(grey, grey[1:])]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)  # equal dB steps
    # Same numbers as core.quality_maps gives (the plugin only adds layers around it).
    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    direct = compute_quality_maps(sar_tif, recon.source(), sar_tif.with_name("d_enl.tif"),
                                  sar_tif.with_name("d_epi.tif"), bands=[2])
    np.testing.assert_array_equal(gdal.Open(enl.source()).ReadAsArray(),
                                  gdal.Open(direct.enl_ratio_path).ReadAsArray())
    msg = messages(test_iface, Qgis.MessageLevel.Success)[-1]
    assert "median local ENL ratio" in msg and "median local EPI" in msg

    # Render the canvas' map settings: reconstruction + ENL-ratio overlay (EPI is added but hidden).
    assert not project.layerTreeRoot().findLayer(epi.id()).isVisible()
    settings = QgsMapSettings(test_iface.canvas.mapSettings())
    settings.setLayers([enl, recon])
    settings.setDestinationCrs(recon.crs())
    settings.setExtent(recon.extent())
    settings.setOutputSize(QSize(700, 700))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "quality_overlay_berlin.png"
    assert image.save(str(png), "PNG")
    assert png.stat().st_size > 10_000
    # Not blank, and the overlay tints it: sample colours must vary.
    colours = {image.pixelColor(x, y).name() for x in range(0, 700, 35) for y in range(0, 700, 35)}
    assert len(colours) > 20


def _reconstructed(plugin, compressed) -> QgsRasterLayer:
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    return [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "berlin (reconstructed)"][0]


def test_quality_map_layers_name_the_reconstruction_and_the_original(plugin, sar_tif, compressed):
    """The maps were named after the reconstruction alone ("berlin (reconstructed) — Band 1: Intensity_VV local
    ENL ratio (15 px)"): with several originals in the project, maps against two of them read the same. Each
    map names both layers, and the two files of the second run share one suffix."""
    original = add_raster(sar_tif)
    copy = add_raster(shutil.copy(sar_tif, sar_tif.with_name("berlin_copy.tif")), "berlin copy")
    recon = _reconstructed(plugin, compressed)
    for against in (original, copy):
        assert wait_for_task(plugin, plugin.quality_maps(recon, against, band=1)).ok
    maps = [lyr for lyr in QgsProject.instance().mapLayers().values()
            if lyr.customProperty("sar_compress/role") in ("enl_ratio", "epi")]
    assert sorted(lyr.name() for lyr in maps) == sorted(
        f"berlin (reconstructed) vs {name} — Band 1: Intensity_VV local {kind} (15 px)"
        for name in ("berlin", "berlin copy") for kind in ("ENL ratio", "EPI"))
    assert sorted(Path(lyr.source()).name for lyr in maps if "berlin copy" in lyr.name()) == [
        "berlin_reconstructed_band1_enl_ratio_2.tif", "berlin_reconstructed_band1_epi_2.tif"]


def test_quality_maps_show_the_original_in_the_reconstructions_grey_db_stretch(plugin, sar_tif, compressed):
    """After the maps, the reconstruction showed the mapped band in grey dB while the original kept its own
    style (QGIS's colour composite of both bands): toggling the two compared two stretches. The original picked
    gets the same band and the same dB stops; another layer of the scene, not picked, keeps its style."""
    original = add_raster(sar_tif)
    other = add_raster(shutil.copy(sar_tif, sar_tif.with_name("berlin_copy.tif")), "berlin copy")
    assert original.renderer().type() == other.renderer().type() == "multibandcolor"
    recon = _reconstructed(plugin, compressed)
    assert wait_for_task(plugin, plugin.quality_maps(recon, original, band=2)).ok

    def grey_db(layer):
        r = layer.renderer()
        items = r.shader().rasterShaderFunction().colorRampItemList()
        return (r.type(), r.band(), r.classificationMin(), r.classificationMax(),
                [(i.value, i.color.name(), i.label) for i in items])

    assert grey_db(original) == grey_db(recon)
    assert grey_db(recon)[:2] == ("singlebandpseudocolor", 2) and grey_db(recon)[-1][-1][2].endswith(" dB")
    assert other.renderer().type() == "multibandcolor"


def test_settings_dialog_saves_to_qgssettings(plugin, tmp_path, monkeypatch):
    from qgis.core import QgsSettings

    from sar_compress_plugin.core import runtime
    from sar_compress_plugin.utils.settings import PluginSettings

    monkeypatch.setattr(runtime, "cuda_unavailable", lambda: "")  # a machine where CUDA can run

    def configure(dialog):
        dialog.model_dirs.setText(str(tmp_path))
        dialog.device.setCurrentIndex(dialog.device.findData("cuda"))
        dialog.tile_size.setValue(1024)

    state = accept_next_dialog(configure)
    assert plugin.settings_action.trigger() is None and "error" not in state
    s = PluginSettings.load()
    assert (s.device, s.tile_size, s.model_dirs) == ("cuda", 1024, [str(tmp_path)])
    assert QgsSettings().value("sar_compress/device") == "cuda"
    bad = accept_next_dialog(lambda d: d.tile_size.setValue(1000))
    plugin.settings_action.trigger()
    assert "multiple of 16" in bad["error"]
