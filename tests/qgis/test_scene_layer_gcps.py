"""A compressed scene georeferenced by ground control points only (a Sentinel-1 GRD measurement GeoTIFF) opened as
a scene layer in real QGIS: it sits where its GCPs put it, as its reconstruction does, and decodes what is shown."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsRasterLayer, QgsRectangle

from qgis_harness import process_events_until, scene_with_private_cache
from test_scene_layer import _pixels, _render, _show_canvas


@pytest.fixture
def gcp_scene(plugin, sar_tif, model_bundle, codec, tmp_path):
    """berlin 512 x 512 x 2 georeferenced by a 3 x 3 grid of GCPs in EPSG:4326, compressed in 128-px tiles, its
    full reconstruction, a private cache."""
    from codec_fixtures import gcp_georeferenced_copy  # tests/unit, on the path once model_bundle is built

    src = gcp_georeferenced_copy(sar_tif, tmp_path / "berlin_gcps.tif")
    return scene_with_private_cache(codec, model_bundle, src, tmp_path / "full.tif", tile=128)


# QGIS warns "Creating Warped VRT." from the canvas's render threads whenever they open the layer; pytest-qt's
# Python message handler then waits for the GIL, which the main thread holds while a QImage conversion waits for
# those same pool threads (a run of the scene-layer tests hung so, in _pixels).
@pytest.mark.no_qt_log
def test_a_gcp_scene_layer_sits_at_its_gcps_and_decodes_what_is_shown(plugin, test_iface, gcp_scene, tmp_path):
    """Its cache had GDAL's placeholder geotransform: the layer lay at pixel coordinates (0..512), and since no
    view could be mapped to pixels through the GCPs, nothing was ever decoded nor exported."""
    from sar_compress_plugin.scene_layer import style_scene_composite, style_scene_grey

    sarc, full = gcp_scene
    gcps = gdal.Open(str(full)).GetGCPs()
    xs, ys = [g.GCPX for g in gcps], [g.GCPY for g in gcps]
    layer = plugin.scenes.open(str(sarc))
    reference = QgsRasterLayer(str(full), "full", "gdal")
    extent = layer.extent()
    assert layer.crs().authid() == "EPSG:4326" and extent == reference.extent()
    assert [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()] == pytest.approx(
        [min(xs), min(ys), max(xs), max(ys)], abs=1e-4)  # the GCPs' box, to a pixel (9e-5 degrees)

    # A view about the middle GCP (pixel 256, 256): its tiles are decoded and it renders as the reconstruction.
    centre = next(g for g in gcps if (g.GCPPixel, g.GCPLine) == (256, 256))
    canvas = _show_canvas(test_iface, layer)
    canvas.setExtent(QgsRectangle(centre.GCPX - 0.004, centre.GCPY - 0.004, centre.GCPX + 0.004,
                                  centre.GCPY + 0.004))
    canvas.refresh()
    controller = plugin.scenes.controllers[layer.id()]
    assert process_events_until(lambda: not controller.busy, 120)
    window = controller.visible_window()[0]
    assert window[0] < 256 < window[0] + window[2] and window[1] < 256 < window[1] + window[3]
    assert set(controller.cache.grid.tiles_overlapping(window)) <= controller.cache.decoded
    assert len(controller.cache.decoded) < controller.cache.grid.count
    reference.setRenderer(layer.renderer().clone())
    got = _pixels(_render(canvas.mapSettings(), [layer]))
    assert (got[..., 3] == 255).all() and np.array_equal(got, _pixels(_render(canvas.mapSettings(), [reference])))

    # The VV/VH composite (a VRT over the cache) sits at the GCPs too.
    style_scene_composite(layer, controller.cache, 1, 2)
    assert layer.crs().authid() == "EPSG:4326" and layer.extent() == extent
    style_scene_grey(layer, controller.cache, 1)

    # "Export current extent…": that window of the full reconstruction, with its GCPs shifted to the window.
    task = plugin.scenes.export_view(layer, str(tmp_path / "view.tif"))
    assert task is not None and process_events_until(lambda: task.result is not None, 120) and task.result.ok
    c, r, w, h = window
    view = gdal.Open(str(tmp_path / "view.tif"))
    assert np.array_equal(view.ReadAsArray(), gdal.Open(str(full)).ReadAsArray()[:, r:r + h, c:c + w])
    assert [(g.GCPPixel, g.GCPLine) for g in view.GetGCPs()] == [(g.GCPPixel - c, g.GCPLine - r) for g in gcps]
    assert not [m for m in test_iface.messages if m[2] >= 1 and "view.tif" not in m[1]], test_iface.messages


@pytest.mark.no_qt_log  # "Creating Warped VRT." from the render threads: see above
@pytest.mark.parametrize("rebuilt", ["as the project is read", "before"])
def test_a_project_saved_before_gcps_were_kept_reopens_its_scene_layers_at_the_gcps(plugin, test_iface, gcp_scene,
                                                                                    tmp_path, rebuilt):
    """A project saved before the cache kept GCPs: its cache GeoTIFF and the VV/VH composite's VRTs beside it were
    placed by GDAL's placeholder geotransform, at pixel coordinates. The cache was rebuilt with the GCPs, as the
    project was read or when its .sarc was opened before, but the composite's VRTs were left in place, and the
    layers kept the files as QGIS had opened them: the composite and the grey copy lay at pixel coordinates."""
    import re

    from qgis.core import QgsProject

    from sar_compress_plugin.scene_layer import style_scene_composite

    sarc, _full = gcp_scene
    layer = plugin.scenes.open(str(sarc))
    cache = plugin.scenes.controllers[layer.id()].cache
    placed = layer.extent()
    grey = layer.clone()
    grey.setName("grey")
    QgsProject.instance().addMapLayer(grey)
    style_scene_composite(layer, cache, 1, 2)
    project = QgsProject.instance()
    assert project.write(str(tmp_path / "old.qgz"))
    project.clear()
    ds = gdal.Open(str(cache.tiff_path), gdal.GA_Update)  # as the cache was written then
    ds.SetGCPs([], "")
    ds.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    ds = None
    for vrt in (cache.folder / "db.vrt", cache.folder / "composite.vrt"):
        vrt.write_text(re.sub(r"<GCPList.*</GCPList>", "<GeoTransform>0.0, 1.0, 0.0, 0.0, 0.0, 1.0</GeoTransform>",
                              vrt.read_text(), flags=re.DOTALL))
    if rebuilt == "before":
        plugin.scenes.open(str(sarc))

    assert project.read(str(tmp_path / "old.qgz"))
    layers = {lyr.name(): lyr for lyr in project.mapLayers().values()}
    assert sorted(layers) == ["berlin_gcps", "grey"]
    assert all(lyr.id() in plugin.scenes.controllers for lyr in layers.values())
    assert layers["berlin_gcps"].source().endswith("composite.vrt") and layers["grey"].source().endswith("scene.tif")
    for read in layers.values():
        assert read.isValid() and read.crs().authid() == "EPSG:4326" and read.extent() == placed, read.name()
