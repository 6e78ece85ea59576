"""A radar analyst's day, a fifth look: a .sarc of a scaled product written before format version 5, reopened
and reconstructed. Real headless QGIS, the plugin's real tasks and layers, the tiny ONNX model, a real Sentinel-1
scene."""

from __future__ import annotations

import math
import sys

import numpy as np
from osgeo import gdal
from qgis.core import QgsColorRampLegendNode, QgsProject, QgsRasterLayer

from qgis_harness import REPO, process_events_until, wait_for_task

sys.path.append(str(REPO / "tests" / "unit"))
from test_codec_errors import rewrite_header  # noqa: E402

#: The GDAL scale of the crafted old product: its physical values are its stored ones times 1e-4 (-40 dB).
SCALE = 1e-4


def _old_scaled_copy(compressed, tmp_path):
    """berlin.sarc as the codec wrote a scaled product before format version 5: the stored values coded (the
    clip range in their dB), the band's scale only recorded in the header (no `coded`), so a reconstruction
    writes the stored values back under that scale, and QGIS shows them times SCALE."""
    def scaled(header):
        for band in header["raster"]["bands"]:
            band["scale"] = SCALE

    return rewrite_header(compressed, tmp_path / "old.sarc", scaled)


def _legend_labels(test_iface, layer) -> tuple[str, str]:
    node = QgsProject.instance().layerTreeRoot().findLayer(layer.id())
    [bar] = [n for n in test_iface.layer_tree_model.layerLegendNodes(node) if isinstance(n, QgsColorRampLegendNode)]
    return bar.settings().minimumLabel(), bar.settings().maximumLabel()


def _grey(layer: QgsRasterLayer) -> np.ndarray:
    """The grey levels the layer's renderer draws of its whole extent at 128 x 128."""
    block = layer.renderer().block(1, layer.extent(), 128, 128)
    return np.array([[block.color(r, c) & 0xFF for c in range(128)] for r in range(128)], np.int16)


def test_a_scaled_product_compressed_before_version_5_shows_in_its_physical_db(plugin, test_iface, compressed,
                                                                                tmp_path):
    """Reconstructed with no original in the project, the reconstruction of an old scaled .sarc got its grey
    stretch from the header's clip range, which is in the stored values' dB: QGIS shows the values through the
    scale, 40 dB below every stop, and the scene was black. The legend of both it and the scene layer named the
    stored values' dB."""
    from sar_compress_plugin.core.codec import read_header
    from sar_compress_plugin.scene_layer import style_scene_layer

    old = _old_scaled_copy(compressed, tmp_path)
    header = read_header(old)
    assert header["format_version"] == 4 and "coded" not in header["raster"]["bands"][0]
    assert wait_for_task(plugin, plugin.reconstruct_file(str(old))).ok
    recon = next(lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "old (reconstructed)")
    assert recon.dataProvider().bandScale(1) == SCALE

    # the same pixels unscaled, in the plugin's style of the unscaled file: what the analyst must see
    unscaled = tmp_path / "unscaled.tif"
    gdal.Translate(str(unscaled), recon.source())
    ds = gdal.Open(str(unscaled), gdal.GA_Update)
    for b in (1, 2):
        ds.GetRasterBand(b).SetScale(1.0)
    ds = None
    reference = QgsRasterLayer(str(unscaled), "reference", "gdal")
    style_scene_layer(reference, read_header(compressed), 1)
    difference = np.abs(_grey(recon) - _grey(reference))
    assert _grey(reference).std() > 20 and difference.max() <= 1

    lo, hi = header["clip_db"][0]
    shift = 10 * math.log10(SCALE)
    physical_db = (f"{lo + shift:.1f} dB", f"{hi + shift:.1f} dB")
    assert _legend_labels(test_iface, recon) == physical_db

    scene = plugin.scenes.open(str(old))
    assert _legend_labels(test_iface, scene) == physical_db
    process_events_until(lambda: not any(c.busy for c in plugin.scenes.controllers.values()), 60)


def test_the_vv_vh_composite_of_a_scaled_product_compressed_before_version_5_is_in_its_physical_db(
        plugin, compressed, codec, model_bundle, tmp_path):
    """Its VRTs took the dB of the tile cache's values, the stored ones (such a file's cache carries no scale):
    "Intensity_VV (dB)" read 40 dB above what the reconstruction of the same file shows under a scale of 1e-4."""
    from sar_compress_plugin.scene_layer import style_scene_composite

    old = _old_scaled_copy(compressed, tmp_path)
    layer = plugin.scenes.open(str(old))
    cache = plugin.scenes.controllers[layer.id()].cache
    process_events_until(lambda: not plugin.scenes.controllers[layer.id()].busy, 60)
    cache.decode(cache.grid.tiles_overlapping((0, 0, 512, 512)))
    style_scene_composite(layer, cache, 1, 2)

    full = tmp_path / "old_full.tif"
    codec.reconstruct(str(old), str(full), model_dirs=[str(model_bundle)], device="cpu")
    ds = gdal.Open(str(full))
    physical = [ds.GetRasterBand(b).ReadAsArray() * ds.GetRasterBand(b).GetScale() for b in (1, 2)]
    got = gdal.Open(layer.source()).ReadAsArray()
    np.testing.assert_allclose(got[:2], 10 * np.log10(physical), atol=1e-3)
