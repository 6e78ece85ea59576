"""A .sarc opened as a layer in real QGIS: only the tiles the canvas shows are decoded (in a QgsTask), the
rendered canvas equals the rendering of a full reconstruction, zoomed out the stored overview shows at once, and
"Export current extent" writes exactly that window of the full reconstruction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsDirectoryItem,
    QgsMapRendererSequentialJob,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsDataItemGuiContext
from qgis.PyQt.QtCore import QSize

from qgis_harness import (ARTIFACTS, accept_next_dialog, process_events_until, scene_with_private_cache,
                          wait_for_task)


@pytest.fixture
def scene(plugin, sar_tif, model_bundle, codec, tmp_path):
    """berlin 512 x 512 x 2 compressed in 128-px tiles (16 tiles), its full reconstruction, a private cache."""
    return scene_with_private_cache(codec, model_bundle, sar_tif, tmp_path / "full.tif", tile=128)


def _render(settings, layers, size=None):
    from qgis.core import QgsMapSettings

    ms = QgsMapSettings(settings)
    ms.setLayers(layers)
    if size is not None:
        ms.setOutputSize(QSize(*size))
    job = QgsMapRendererSequentialJob(ms)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def _pixels(image) -> np.ndarray:
    """A copy: a view would outlive the converted QImage, whose freed buffer the next render may reuse (that
    was the "row 0 sometimes partly transparent" flake of earlier sessions)."""
    image = image.convertToFormat(image.Format.Format_ARGB32)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    rows = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return rows[:, :image.width()].copy()


def _show_canvas(test_iface, layer):
    """The test iface's map canvas, shown at about 600 x 600 in EPSG:4326, drawing `layer` alone."""
    canvas = test_iface.canvas
    test_iface.main_window.resize(600, 600)
    test_iface.main_window.show()
    assert process_events_until(lambda: canvas.mapSettings().outputSize().width() >= 500, 10)
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    canvas.setLayers([layer])
    return canvas


def _view(canvas, gt, col, row, size):
    """Show raster pixels [col, col+size) x [row, row+size) on the canvas."""
    canvas.setExtent(QgsRectangle(gt[0] + col * gt[1], gt[3] + (row + size) * gt[5],
                                  gt[0] + (col + size) * gt[1], gt[3] + row * gt[5]))
    canvas.refresh()


def _zoomed_out_on_the_overview(test_iface, layer, controller):
    """The canvas showing the whole scene alone, checked to be painted by the stored overview before any tile is
    decoded."""
    canvas = _show_canvas(test_iface, layer)
    canvas.setExtent(layer.extent())
    overview = _pixels(_render(canvas.mapSettings(), [layer], (16, 16)))
    assert controller.cache.decoded == set()
    assert (overview[..., 3] == 255).mean() > 0.9 and overview[..., :3].std() > 5
    return canvas


def test_open_pan_zoom_decodes_visible_tiles_only_and_renders_like_full_reconstruction(
        plugin, test_iface, scene, sar_tif, tmp_path):
    sarc, full = scene
    project = QgsProject.instance()

    # Browser: double-click on the .sarc item opens it as a layer named after the scene.
    folder = QgsDirectoryItem(None, "data", str(sarc.parent))
    children = folder.createChildren()  # kept alive with the folder: sip deletes the items with it
    item = [c for c in children if c.path() == str(sarc)][0]
    assert plugin._browser_gui_provider.handleDoubleClick(item, QgsDataItemGuiContext())
    layers = [lyr for lyr in project.mapLayers().values() if lyr.name() == "berlin"]
    assert len(layers) == 1
    layer = layers[0]
    controller = plugin.scenes.controllers[layer.id()]
    reference = QgsRasterLayer(str(full), "full", "gdal")
    assert layer.crs().authid() == "EPSG:4326" and layer.extent() == reference.extent()
    assert (layer.width(), layer.height(), layer.bandCount()) == (512, 512, 2)
    assert layer.renderer().type() == "singlebandpseudocolor"  # grey dB stretch
    reference.setRenderer(layer.renderer().clone())

    canvas = _zoomed_out_on_the_overview(test_iface, layer, controller)

    gt = gdal.Open(str(full)).GetGeoTransform()
    full_px = gdal.Open(str(full)).ReadAsArray()
    cache_px = None
    renders = []
    # two extents at two zooms: 256 px (about 0.4 raster px per screen px) and 160 px (about 0.27)
    for col, row, size in ((32, 40, 256), (300, 330, 160)):
        _view(canvas, gt, col, row, size)
        assert process_events_until(lambda: not controller.busy, 120)
        assert not [m for m in test_iface.messages if "failed" in m[1]], (
            test_iface.messages, controller.cache.raster._model_dirs)
        window = controller.visible_window()[0]
        wanted = set(controller.cache.grid.tiles_overlapping(window))
        assert wanted <= controller.cache.decoded
        got = _pixels(_render(canvas.mapSettings(), [layer]))
        want = _pixels(_render(canvas.mapSettings(), [reference]))
        assert (got[..., 3] == 255).all()
        assert np.array_equal(got, want)
        renders.append(got)
        cache_px = gdal.Open(str(controller.cache.tiff_path)).ReadAsArray()
        c, r, w, h = window
        assert np.array_equal(cache_px[:, r:r + h, c:c + w], full_px[:, r:r + h, c:c + w], equal_nan=True)
    # Only what was shown got decoded: the two views need 10 of the 16 tiles.
    assert controller.cache.decoded == (set(controller.cache.grid.tiles_overlapping((32, 40, 256, 256)))
                                        | set(controller.cache.grid.tiles_overlapping((300, 330, 160, 160))))
    assert len(controller.cache.decoded) < controller.cache.grid.count

    ARTIFACTS.mkdir(exist_ok=True)
    _render(canvas.mapSettings(), [layer]).save(str(ARTIFACTS / "scene_layer_tiny_model.png"))

    # Export current extent: exactly that window of the full reconstruction, added as a layer.
    task = plugin.scenes.export_view(layer, str(tmp_path / "view.tif"))
    def exported_layers():
        return [lyr for lyr in project.mapLayers().values() if lyr.source() == str(tmp_path / "view.tif")]

    assert process_events_until(lambda: task.result is not None and (exported_layers() or not task.result.ok), 120)
    assert task.result.ok, task.result.message
    c, r, w, h = controller.visible_window()[0]
    assert np.array_equal(gdal.Open(str(tmp_path / "view.tif")).ReadAsArray(), full_px[:, r:r + h, c:c + w])

    # Quality maps of the exported window: away from its border (a window's reach), the maps of the full
    # reconstruction there (to float32 rounding of the window sums, which depend on the array's extent).
    from sar_compress_plugin.core.metrics import local_map_radius
    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    part = compute_quality_maps(sar_tif, tmp_path / "view.tif", tmp_path / "e.tif", tmp_path / "p.tif", window=7)
    whole = compute_quality_maps(sar_tif, full, tmp_path / "fe.tif", tmp_path / "fp.tif", window=7)
    assert (part.width, part.height) == (w, h) and whole.width == 512
    m = local_map_radius(7) + 1  # the Gaussian window's reach plus the Laplacian's pixel
    for a, b in (("e.tif", "fe.tif"), ("p.tif", "fp.tif")):
        got = gdal.Open(str(tmp_path / a)).ReadAsArray()[:, m:-m, m:-m]
        want = gdal.Open(str(tmp_path / b)).ReadAsArray()[:, r + m:r + h - m, c + m:c + w - m]
        close = np.isclose(got, want, equal_nan=True, rtol=1e-3, atol=1e-3)
        assert close.mean() > 0.999, (close.mean(), np.nanmax(np.abs(got - want)))

    # Drag-and-drop of the same file gives the layer already open; other files are left to QGIS.
    handler = test_iface.drop_handlers[0]
    assert handler.handleFileDrop(str(sarc)) and len([lyr for lyr in project.mapLayers().values()
                                                      if lyr.name() == "berlin"]) == 1
    assert not handler.handleFileDrop(str(full))

    # Removing the layer stops its controller; opening again reuses the decoded tiles from disk.
    decoded = set(controller.cache.decoded)
    layer_id = layer.id()
    project.removeMapLayer(layer_id)
    assert layer_id not in plugin.scenes.controllers
    again = plugin.scenes.open(str(sarc))
    assert plugin.scenes.controllers[again.id()].cache.decoded == decoded


def test_processing_reconstruct_extent_decodes_only_that_window(plugin, scene, codec, model_bundle, tmp_path):
    """The Processing reconstruct algorithm with an extent (given in another CRS) writes exactly that window of
    the full reconstruction; the codec reads only the chunks of the tiles under it."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsCoordinateTransform, QgsProcessingContext, QgsProcessingFeedback

    Processing.initialize()
    sarc, full = scene
    gt = gdal.Open(str(full)).GetGeoTransform()
    col, row, w, h = 130, 70, 100, 60  # inside tiles 1, 2, 5, 6 of 16
    x0, x1 = gt[0] + col * gt[1], gt[0] + (col + w) * gt[1]
    y1, y0 = gt[3] + row * gt[5], gt[3] + (row + h) * gt[5]
    to_3857 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:4326"),
                                     QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance())
    inset = 0.01 * gt[1]  # the box edges must not land beyond a pixel boundary after the round trip
    r = to_3857.transformBoundingBox(QgsRectangle(x0 + inset, y0 - gt[5] * 0.01, x1 - inset, y1 + gt[5] * 0.01))
    extent = f"{r.xMinimum()!r},{r.xMaximum()!r},{r.yMinimum()!r},{r.yMaximum()!r} [EPSG:3857]"
    res = processing.run("sarcompress:reconstruct", {"INPUT": str(sarc), "DEVICE": 2, "EXTENT": extent,
                                                     "OUTPUT": str(tmp_path / "win.tif")},
                         feedback=QgsProcessingFeedback(), context=QgsProcessingContext())
    out = gdal.Open(res["OUTPUT"])
    assert (out.RasterXSize, out.RasterYSize) == (w, h)
    assert np.array_equal(out.ReadAsArray(), gdal.Open(str(full)).ReadAsArray()[:, row:row + h, col:col + w])
    assert out.GetGeoTransform()[0] == pytest.approx(x0) and out.GetGeoTransform()[3] == pytest.approx(y1)

    with codec.CompressedRaster(sarc, model_dirs=[str(model_bundle)], device="cpu") as cr:
        header_bytes = cr.bytes_read
        cr.read((col, row, w, h))
        latents = cr.info["chunks"]["latent"]
        near = range(12)  # tiles 1, 2, 5, 6 and their halo neighbours: never the bottom row of tiles
        assert cr.bytes_read - header_bytes <= sum(latents[b * 16 + t][1] for b in range(2) for t in near) + sum(
            e[1] for kind in ("mask", "outlier") for e in cr.info["chunks"][kind] if e)


def test_sar_style_switches_between_vv_vh_composite_and_grey_db(plugin, test_iface, scene, qtbot):
    """"SAR style…" in the scene layer's context menu: the VV/VH composite (R = VV dB, G = VH dB, B = VV/VH dB,
    percentile-stretched) keeps filling in as tiles decode; grey dB of a chosen band goes back to the cache."""
    from qgis_harness import accept_next_dialog

    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    gt = gdal.Open(str(full)).GetGeoTransform()
    _view(canvas, gt, 32, 40, 200)
    assert process_events_until(lambda: not controller.busy, 120)

    def style_action():
        test_iface.setActiveLayer(layer)
        menu = test_iface.menu_provider.createContextMenu()
        return [a for a in menu.actions() if a.text() == "SAR style…"][0], menu

    seen = {}

    def composite(dialog):
        seen["bands"] = (dialog.vv.currentText(), dialog.vh.currentText())
        qtbot.keyClicks(dialog.style, "VV/VH")
        assert not dialog.band.isEnabled() and dialog.vv.isEnabled()

    accept_next_dialog(composite)
    action, _menu = style_action()
    action.trigger()
    assert seen["bands"] == ("1: Intensity_VV", "2: Intensity_VH")  # guessed from the band names
    renderer = layer.renderer()
    assert renderer.type() == "multibandcolor"
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (1, 2, 3)
    assert layer.source() == str(controller.cache.folder / "composite.vrt")
    stretches = [(ce.minimumValue(), ce.maximumValue()) for ce in (
        renderer.redContrastEnhancement(), renderer.greenContrastEnhancement(), renderer.blueContrastEnhancement())]
    assert all(-100 < lo < hi < 100 for lo, hi in stretches) and stretches[0] != stretches[1]

    # The composite's bands are the dB of the decoded pixels: equal to those of the full reconstruction.
    full_px = gdal.Open(str(full)).ReadAsArray().astype(np.float64)
    want = np.stack([10 * np.log10(full_px[0]), 10 * np.log10(full_px[1]),
                     10 * np.log10(full_px[0]) - 10 * np.log10(full_px[1])])
    c, r, w, h = controller.visible_window()[0]
    got = gdal.Open(layer.source()).ReadAsArray(c, r, w, h)
    assert np.allclose(got, want[:, r:r + h, c:c + w], atol=1e-4, equal_nan=True)

    # Panning on decodes into the same cache, and the composite shows the new tiles, in colour.
    _view(canvas, gt, 300, 330, 160)
    assert process_events_until(lambda: not controller.busy, 120)
    assert set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0])) <= controller.cache.decoded
    shown = _pixels(_render(canvas.mapSettings(), [layer]))[1:]
    assert (shown[..., 3] == 255).all() and (shown[..., 0] != shown[..., 1]).mean() > 0.5
    ARTIFACTS.mkdir(exist_ok=True)
    _render(canvas.mapSettings(), [layer]).save(str(ARTIFACTS / "scene_layer_vv_vh_composite.png"))

    def grey_vh(dialog):
        assert dialog.style.currentData() == "composite"  # the dialog opens on the layer's style
        qtbot.keyClicks(dialog.style, "Grey")
        qtbot.keyClicks(dialog.band, "2")

    accept_next_dialog(grey_vh)
    style_action()[0].trigger()
    assert layer.renderer().type() == "singlebandpseudocolor" and layer.renderer().band() == 2
    assert layer.source() == str(controller.cache.tiff_path)


def test_sar_style_of_a_one_band_scene_offers_grey_only(qtbot, qgis_app):
    from qgis.PyQt.QtWidgets import QDialog, QDialogButtonBox
    from sar_compress_plugin.gui.dialogs import SarStyleDialog

    dialog = SarStyleDialog("hh", ["HH"])
    qtbot.addWidget(dialog)
    assert not dialog.style.model().item(1).isEnabled()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.result() == QDialog.DialogCode.Accepted and dialog.choice() == ("grey", (1,))


def _decoding(plugin, test_iface, scene):
    """A scene layer whose task has written at least one tile, its signals not yet delivered (no event
    processed since): the moment a user closes something mid-decode."""
    import time

    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 0, 0, 512)
    assert process_events_until(lambda: controller.task is not None, 10)
    deadline = time.monotonic() + 60
    while not controller.cache.decoded and time.monotonic() < deadline:
        time.sleep(0.005)
    assert controller.cache.decoded
    return layer, controller


@pytest.mark.parametrize("close", ["layer", "project", "plugin"])
def test_closing_mid_decode_leaves_no_task_and_no_error(plugin, test_iface, scene, close):
    from qgis.core import QgsApplication

    layer, controller = _decoding(plugin, test_iface, scene)
    if close == "layer":
        QgsProject.instance().removeMapLayer(layer.id())
    elif close == "project":
        QgsProject.instance().clear()
    else:
        plugin.unload()
    process_events_until(lambda: False, 1)  # deliver what the task had queued
    assert controller.task is None
    assert QgsApplication.taskManager().countActiveTasks() == 0
    assert not test_iface.messages
    if close == "plugin":
        plugin.initGui()  # the fixture unloads it again


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_a_sarc_changed_on_disk_never_shows_the_old_files_pixels(plugin, test_iface, scene, codec, model_bundle,
                                                                 sar_tif, tmp_path, change):
    """A replaced .sarc shows as it is now in the same layer (its place in the tree, its name and its style kept);
    a deleted one's layer goes, with the error."""
    import os

    from qgis.core import QgsMultiBandColorRenderer
    from qgis_harness import messages

    from sar_compress_plugin.scene_layer import STYLE_PROPERTY, style_scene_composite

    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    style_scene_composite(layer, controller.cache, 1, 2)  # the analyst's choice, to be kept
    above = QgsRasterLayer(str(sar_tif), "a layer above it", "gdal")
    QgsProject.instance().addMapLayer(above)
    root = QgsProject.instance().layerTreeRoot()
    place = [n.layerId() for n in root.findLayers()].index(layer.id())
    canvas = _show_canvas(test_iface, layer)
    gt = gdal.Open(str(full)).GetGeoTransform()
    _view(canvas, gt, 32, 40, 200)
    assert process_events_until(lambda: not controller.busy, 120)
    if change == "replaced":  # written elsewhere at another quality, then moved over it (as a copy tool does)
        new = tmp_path / "new.sarc"
        codec.compress(str(sar_tif), str(new), codec.CompressOptions(
            model_dir=str(model_bundle), device="cpu", tile_size=128, overview=True, quality=0.5))
        os.replace(new, sarc)
        codec.reconstruct(str(sarc), str(tmp_path / "new_full.tif"), model_dirs=[str(model_bundle)], device="cpu")
        full = tmp_path / "new_full.tif"
    else:
        sarc.unlink()

    _view(canvas, gt, 300, 330, 160)
    layer_id = layer.id()
    assert process_events_until(lambda: plugin.scenes.controllers.get(layer_id) is not controller, 10)
    assert any("changed on disk" in m for m in messages(test_iface))
    if change == "deleted":
        assert layer_id not in QgsProject.instance().mapLayers() and layer_id not in plugin.scenes.controllers
        assert any("does not exist" in m for m in messages(test_iface))
        return
    now = plugin.scenes.controllers[layer_id]
    assert now.layer is layer and layer.name() == "berlin" and now.cache.folder != controller.cache.folder
    assert [n.layerId() for n in root.findLayers()].index(layer_id) == place
    assert layer.customProperty(STYLE_PROPERTY) == "composite:1,2"
    assert isinstance(layer.renderer(), QgsMultiBandColorRenderer)
    _view(canvas, gt, 300, 330, 160)
    assert process_events_until(lambda: not now.busy, 120)
    c, r, w, h = now.visible_window()[0]
    cache = gdal.Open(str(now.cache.tiff_path))
    assert np.array_equal(cache.ReadAsArray(c, r, w, h), gdal.Open(str(full)).ReadAsArray(c, r, w, h))


def test_decoding_in_an_open_scene_trims_the_caches_of_closed_ones(plugin, test_iface, scene, codec, model_bundle,
                                                                   sar_tif, tmp_path):
    """The cache limit holds while scenes are open, not only when the next one opens: once a scene layer has
    decoded its view, caches of scenes no longer open go, least recently used first; open scenes' stay."""
    from sar_compress_plugin.utils.settings import PluginSettings

    sarc, full = scene
    gt = gdal.Open(str(full)).GetGeoTransform()
    first = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[first.id()]
    canvas = _show_canvas(test_iface, first)
    _view(canvas, gt, 32, 40, 200)
    assert process_events_until(lambda: not controller.busy, 120)
    closed = controller.cache.folder
    QgsProject.instance().removeMapLayer(first.id())

    other = tmp_path / "other.sarc"  # another scene (another file), opened under the limit
    codec.compress(str(sar_tif), str(other), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                                     tile_size=128, overview=True, quality=0.5))
    second = plugin.scenes.open(str(other))
    now = plugin.scenes.controllers[second.id()]
    assert closed.is_dir() and now.cache.folder.is_dir()
    s = PluginSettings.load()
    s.tile_cache_mb = 0  # the limit lowered while the scene is open: everything not open is beyond it
    s.save()
    canvas.setLayers([second])
    _view(canvas, gt, 300, 330, 160)
    assert process_events_until(lambda: not now.busy and not closed.exists(), 120)
    assert now.cache.folder.is_dir() and now.cache.decoded


def test_opening_a_scene_again_over_the_cache_limit_reuses_its_tiles(plugin, test_iface, scene):
    """Eviction runs when a scene is opened; the scene being opened is the least recently used one until then,
    but its own cache must not be the one that goes."""
    from sar_compress_plugin.utils.settings import PluginSettings

    sarc, full = scene
    s = PluginSettings.load()
    s.tile_cache_mb = 0  # every scene folder beyond the limit
    s.save()
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 32, 40, 200)
    assert process_events_until(lambda: not controller.busy, 120)
    decoded = set(controller.cache.decoded)
    assert decoded
    QgsProject.instance().removeMapLayer(layer.id())
    again = plugin.scenes.open(str(sarc))
    assert plugin.scenes.controllers[again.id()].cache.decoded == decoded


@pytest.fixture
def cache_disk(scene, tmp_path):
    """(fill, real): within `with fill(cache):` the disk under the scene's tile cache is full.

    Real where root may mount a file system: an 8 MiB tmpfs on the cache folder, filled up. Elsewhere a full
    disk cannot be made, so it is simulated as in tests/unit/test_scene_cache.py: RLIMIT_FSIZE caps this
    process's files at the cache GeoTIFF's size, and a tile write fails (EFBIG) through GDAL's ENOSPC path."""
    import os
    import resource
    import signal
    import subprocess
    from contextlib import contextmanager, suppress

    folder = tmp_path / "cache"  # the scene fixture's cache folder
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)]
    try:
        real = os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0
    except OSError:  # no mount binary
        real = False

    @contextmanager
    def fill(cache):
        if real:
            filler = folder / "filler"
            with open(filler, "wb", buffering=0) as f, suppress(OSError):
                while True:
                    f.write(bytes(1 << 16))
            try:
                yield
            finally:
                filler.unlink()
            return
        previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (cache.tiff_path.stat().st_size, previous_limit[1]))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
            signal.signal(signal.SIGXFSZ, previous_handler)

    yield fill, real
    if real:
        subprocess.run(["umount", "-l", str(folder)], check=False)  # lazily: the plugin still holds the cache


def test_a_lasting_cache_write_failure_is_reported_once_until_a_decode_succeeds(plugin, test_iface, scene,
                                                                                cache_disk, monkeypatch):
    """A full disk under the tile cache fails the decode of every pan. It filled the message bar with one
    "Decoding failed" per pan (GDAL's words named the scanline, new at each tile); the analyst reads it once,
    in one line naming the cache folder and the cause. Another failure meanwhile is still reported (one that
    root can make: a folder where the tile list's temporary file goes), and so is the disk filling up again
    once a decode has succeeded."""
    from qgis_harness import messages

    fill, real = cache_disk
    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    cache = controller.cache
    canvas = _show_canvas(test_iface, layer)
    gt = gdal.Open(str(full)).GetGeoTransform()

    def pan(col, row):
        """Pan, wait, and close what the bar shows, as the analyst would: the bar itself drops a message
        equal to one it still shows, which would hide a report made again."""
        _view(canvas, gt, col, row, 200)
        assert process_events_until(lambda: not controller.busy, 120)
        test_iface.message_bar.clearWidgets()

    def reports():
        return [m for m in messages(test_iface) if m.startswith("Decoding failed")]

    tries = []
    decode = cache.decode

    def counted(tiles, *args):
        tries.append(tiles)
        return decode(tiles, *args)

    monkeypatch.setattr(cache, "decode", counted)
    with fill(cache):
        for col, row in ((0, 0), (0, 312), (312, 0)):
            pan(col, row)
    assert len(tries) == 3 and not cache.decoded  # each pan tried, and failed
    assert len(reports()) == 1, reports()
    disk_full = reports()[0]
    assert str(cache.folder) in disk_full and "cannot write the tile cache" in disk_full
    assert ("No space left on device" if real else "is the disk full") in disk_full

    blocker = cache.folder / "tiles.json.tmp"  # the disk has room again, but the tile list cannot be saved
    blocker.mkdir()
    for col, row in ((312, 312), (312, 156)):
        pan(col, row)
    assert len(reports()) == 2 and "tiles.json.tmp" in reports()[1], reports()

    blocker.rmdir()
    pan(312, 312)
    assert set(cache.grid.tiles_overlapping(controller.visible_window()[0])) <= cache.decoded
    assert len(reports()) == 2, reports()

    with fill(cache):
        pan(0, 0)
    assert reports()[2:] == [disk_full]
    assert all("\n" not in m and "Traceback" not in m for m in messages(test_iface))


def test_reconstruct_dialog_starts_on_the_selected_scene_layers_file(plugin, test_iface, scene, sar_tif, qtbot,
                                                                    tmp_path):
    """With a scene layer selected in the Layers panel, Raster > SAR Compress > "Reconstruct SAR raster…" opened
    with an empty file for the analyst to find again; it starts on that layer's .sarc. Another layer selected
    says nothing about a .sarc: the file stays empty."""
    sarc, _full = scene
    layer = plugin.scenes.open(str(sarc))
    original = QgsRasterLayer(str(sar_tif), "berlin original", "gdal")
    QgsProject.instance().addMapLayer(original)
    test_iface.layer_tree_view.setCurrentLayer(layer)
    out = tmp_path / "from_scene.tif"
    seen = {}

    def configure(dialog):
        seen["file"] = dialog.sarc_path()
        qtbot.keyClicks(dialog.output.lineEdit(), str(out))

    state = accept_next_dialog(configure)
    plugin.reconstruct_action.trigger()
    assert "error" not in state and seen["file"] == str(sarc)
    assert wait_for_task(plugin, plugin.last_task).ok and out.is_file()

    test_iface.layer_tree_view.setCurrentLayer(original)
    state = accept_next_dialog()
    assert plugin.reconstruct_with_dialog() is None
    assert state["error"] == "Choose an existing .sarc file."


def _menu_texts(test_iface, layer) -> list[str]:
    test_iface.layer_tree_view.setCurrentLayer(layer)
    menu = test_iface.layer_tree_view.menuProvider().createContextMenu()
    return [a.text() for a in menu.actions()] if menu is not None else []


def test_exporting_another_extent_while_the_first_export_runs_writes_both(plugin, test_iface, scene):
    """Export current extent named its file berlin_extent.tif whatever was running: a second export started
    before the first had finished was refused ("already being written by a running task"), with no way to
    choose another output from that action."""
    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    canvas = _show_canvas(test_iface, layer)
    gt = gdal.Open(str(full)).GetGeoTransform()
    test_iface.layer_tree_view.setCurrentLayer(layer)
    tasks = []
    for col, row in ((32, 40), (300, 330)):
        _view(canvas, gt, col, row, 160)
        plugin.export_view_action.trigger()  # no event is processed between the two: the first is still running
        tasks.append(plugin.last_task)
    assert tasks[0] is not tasks[1]
    outputs = [Path(task.output_path).name for task in tasks]
    assert outputs == ["berlin_extent.tif", "berlin_extent_2.tif"]
    for task in tasks:
        assert wait_for_task(plugin, task).ok and Path(task.output_path).is_file()


def _scene_decoded_in_view(plugin, test_iface, scene):
    """The scene opened as a layer, shown alone on the canvas, a 160-px view of it decoded: (sarc, layer, canvas,
    the full raster's geotransform)."""
    sarc, full = scene
    layer = plugin.scenes.open(str(sarc))
    canvas = _show_canvas(test_iface, layer)
    gt = gdal.Open(str(full)).GetGeoTransform()
    _view(canvas, gt, 32, 40, 160)
    assert process_events_until(lambda: not plugin.scenes.controllers[layer.id()].busy, 120)
    return sarc, layer, canvas, gt


def test_a_scene_layer_keeps_decoding_and_its_actions_across_a_plugin_reload(plugin, test_iface, scene):
    """Plugin reload (an update from the Plugin Manager, or disabled and enabled again) with a scene layer open:
    the layer stayed, but the new plugin did not know it. It decoded nothing more when panned, had no "SAR
    style…" nor "Export current extent…" in its menu, and opening its .sarc again added a second layer."""
    from sar_compress_plugin import classFactory

    sarc, layer, canvas, gt = _scene_decoded_in_view(plugin, test_iface, scene)
    before = set(plugin.scenes.controllers[layer.id()].cache.decoded)

    plugin.unload()  # as qgis.utils.reloadPlugin does: unload, then a new instance
    reloaded = classFactory(test_iface)
    reloaded.initGui()
    try:
        assert {"SAR style…", "Export current extent as GeoTIFF…"} <= set(_menu_texts(test_iface, layer))
        assert reloaded.scenes.open(str(sarc)) is layer
        assert [lyr.id() for lyr in QgsProject.instance().mapLayers().values()] == [layer.id()]
        controller = reloaded.scenes.controllers[layer.id()]
        _view(canvas, gt, 300, 330, 160)
        assert process_events_until(lambda: not controller.busy, 120)
        shown = set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0]))
        assert before < controller.cache.decoded and shown <= controller.cache.decoded
        assert not test_iface.messages
    finally:
        reloaded.unload()


@pytest.mark.parametrize("cache", ["kept", "evicted"])
def test_a_scene_layer_read_with_its_project_decodes_on_demand(plugin, test_iface, scene, tmp_path, cache):
    """A project saved with a scene layer and opened again (the next morning) gave back a plain layer on the tile
    cache: only the tiles decoded before showed, the scene actions were missing, and opening its .sarc added it
    again. Its cache may have been evicted meanwhile (QGIS then reads the layer invalid): it is decoded anew, and
    its renderer is the one saved (made anew, it lost the analyst's opacity and stretch)."""
    import shutil

    sarc, layer, canvas, gt = _scene_decoded_in_view(plugin, test_iface, scene)
    folder = plugin.scenes.controllers[layer.id()].cache.folder
    layer.renderer().setOpacity(0.5)
    project = QgsProject.instance()
    assert project.write(str(tmp_path / "session.qgz"))
    project.clear()
    if cache == "evicted":
        shutil.rmtree(folder)

    assert project.read(str(tmp_path / "session.qgz"))
    (read,) = project.mapLayers().values()
    assert read.isValid() and plugin.scenes.open(str(sarc)) is read
    assert read.renderer().type() == "singlebandpseudocolor" and read.renderer().opacity() == 0.5
    assert {"SAR style…", "Export current extent as GeoTIFF…"} <= set(_menu_texts(test_iface, read))
    controller = plugin.scenes.controllers[read.id()]
    # the view is given in EPSG:4326: reading a project may have set the canvas to the project's CRS
    canvas = _show_canvas(test_iface, read)
    _view(canvas, gt, 300, 330, 160)
    assert process_events_until(lambda: not controller.busy, 120)
    assert set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0])) <= controller.cache.decoded
    assert not test_iface.messages


def test_the_composite_of_a_uint16_amplitude_scene_leaves_its_nodata_out(plugin, test_iface, sar_tif, model_bundle,
                                                                          codec, tmp_path):
    """A uint16 amplitude scene with nodata 0 (a GRD product's border): the composite's VRT read the cache's fill
    0 as a value, which GDAL's dB pixel function made -inf, where the grey layer shows nodata."""
    from sar_compress_plugin.scene_layer import style_scene_composite

    source = gdal.Open(str(sar_tif))
    amplitude = np.sqrt(source.ReadAsArray().astype(np.float64)).round().clip(1, 65535)
    amplitude[:, :, :40] = 0  # the border
    src = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "grd_uint16.tif"), source.RasterXSize,
                                               source.RasterYSize, 2, gdal.GDT_UInt16)
    src.SetGeoTransform(source.GetGeoTransform())
    src.SetProjection(source.GetProjection())
    for b in (1, 2):
        src.GetRasterBand(b).SetNoDataValue(0)
        src.GetRasterBand(b).WriteArray(amplitude[b - 1].astype(np.uint16))
    src = None
    sarc, full = scene_with_private_cache(codec, model_bundle, tmp_path / "grd_uint16.tif", tmp_path / "full.tif",
                                          tile=128)
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 0, 0, 160)
    assert process_events_until(lambda: not controller.busy, 120)
    style_scene_composite(layer, controller.cache, 1, 2)

    c, r, w, h = controller.visible_window()[0]
    assert c == r == 0 and w >= 160 and h >= 160
    got = gdal.Open(layer.source()).ReadAsArray(0, 0, 160, 160)
    full_px = gdal.Open(str(full)).ReadAsArray(0, 0, 160, 160).astype(np.float64)
    assert (full_px[:, :, :40] == 0).all() and (full_px[:, :, 40:] > 0).all()
    assert np.isnan(got[:, :, :40]).all()
    db = 20 * np.log10(full_px[:, :, 40:])
    np.testing.assert_allclose(got[:, :, 40:], np.stack([db[0], db[1], db[0] - db[1]]), atol=1e-4)
