"""Bands with a GDAL scale and offset in real QGIS: an int16 sigma0 product, hundredths of a dB under a scale of
0.01. The codec codes such a band as its physical values (stored * scale + offset), so its clip range is in dB;
QGIS reads a layer's values through the scale too. What the plugin shows or measures of such a band must be in
those values: the scene layer's tile cache and its VV/VH composite, the grey dB stretch under the quality maps,
and the value domain the quality maps read a pair in."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsRasterLayer

from qgis_harness import DATA, REPO, process_events_until
from test_scene_layer import _pixels, _render, _show_canvas, _view, _zoomed_out_on_the_overview

sys.path.append(str(REPO / "tests" / "unit"))
from codec_fixtures import GHANA_DB, INT16_DB_NODATA_BLOCK, int16_db_product  # noqa: E402

NODATA = -32768


def _physical(path: Path) -> np.ndarray:
    """The bands of `path` as GDAL means them: stored * 0.01, nodata NaN."""
    stored = gdal.Open(str(path)).ReadAsArray().astype(np.float64)
    return np.where(stored == NODATA, np.nan, stored * 0.01)


@pytest.fixture(scope="module")
def scaled_pair(model_bundle, tmp_path_factory):
    """(the int16 product, no VALUE_DOMAIN tag: codec_fixtures.int16_db_product of the Ghana chip, EPSG:4326;
    its .sarc in 128-px tiles with a stored overview; its full reconstruction)."""
    from sar_compress_plugin.core import codec

    if not (DATA / GHANA_DB).is_file():
        pytest.skip(f"shared SAR data missing: {DATA / GHANA_DB}")
    d = tmp_path_factory.mktemp("scaled")
    src = int16_db_product(DATA / GHANA_DB, d / "ghana_int16.tif")
    sarc = src.with_suffix(".sarc")
    codec.compress(str(src), str(sarc), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                              tile_size=128, overview=True))
    codec.reconstruct(str(sarc), str(d / "full.tif"), model_dirs=[str(model_bundle)], device="cpu")
    return src, sarc, d / "full.tif"


@pytest.fixture
def scaled_scene(plugin, scaled_pair, tmp_path):
    """A copy of the pair's .sarc and the plugin's tile cache in `tmp_path`, and the full reconstruction."""
    from sar_compress_plugin.utils.settings import PluginSettings

    _src, sarc, full = scaled_pair
    sarc = Path(shutil.copy(sarc, tmp_path / sarc.name))
    settings = PluginSettings.load()
    settings.tile_cache_dir = str(tmp_path / "cache")
    settings.save()
    return sarc, full


def test_a_scaled_scene_layer_shows_the_db_its_reconstruction_shows(plugin, test_iface, scaled_scene):
    """The tile cache held the stored values with no scale, under a grey stretch over the file's clip range in dB
    (about -16..-5): every pixel, zoomed out on the stored overview and zoomed in on decoded tiles, was black."""
    sarc, full = scaled_scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    reference = QgsRasterLayer(str(full), "full", "gdal")
    reference.setRenderer(layer.renderer().clone())

    canvas = _zoomed_out_on_the_overview(test_iface, layer, controller)

    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 32, 40, 256)  # the nodata block (64..95) inside
    assert process_events_until(lambda: not controller.busy, 120)
    assert set(controller.cache.grid.tiles_overlapping(controller.visible_window()[0])) <= controller.cache.decoded
    got = _pixels(_render(canvas.mapSettings(), [layer]))
    want = _pixels(_render(canvas.mapSettings(), [reference]))
    assert np.array_equal(got, want)
    assert got[..., :3].std() > 5
    assert (got[..., :3] == 255).all(axis=-1).sum() > 4000  # the nodata block (75 x 75 screen px): background


def test_a_scaled_scenes_vv_vh_composite_is_in_db(plugin, test_iface, scaled_scene):
    """The composite's VRTs read the cache's stored values (a VRT source ignores its band's scale): VV at -889
    "dB" for -8.89 dB, the stretch percentiles in the thousands, and the nodata block at -327.68."""
    from sar_compress_plugin.scene_layer import style_scene_composite

    sarc, full = scaled_scene
    layer = plugin.scenes.open(str(sarc))
    controller = plugin.scenes.controllers[layer.id()]
    canvas = _show_canvas(test_iface, layer)
    _view(canvas, gdal.Open(str(full)).GetGeoTransform(), 32, 40, 200)
    assert process_events_until(lambda: not controller.busy, 120)
    style_scene_composite(layer, controller.cache, 1, 2)

    renderer = layer.renderer()
    stretches = [(ce.minimumValue(), ce.maximumValue()) for ce in (
        renderer.redContrastEnhancement(), renderer.greenContrastEnhancement(), renderer.blueContrastEnhancement())]
    (vv_lo, vv_hi), (vh_lo, vh_hi) = (controller.cache.header["clip_db"][b] for b in (0, 1))
    assert vv_lo - 3 < stretches[0][0] < stretches[0][1] < vv_hi + 3
    assert vh_lo - 3 < stretches[1][0] < stretches[1][1] < vh_hi + 3
    assert 0 < stretches[2][0] < stretches[2][1] < 20  # VV/VH in dB: VV is the brighter

    vv, vh = _physical(full)
    c, r, w, h = controller.visible_window()[0]
    got = gdal.Open(layer.source()).ReadAsArray(c, r, w, h)
    want = np.stack([vv, vh, vv - vh])[:, r:r + h, c:c + w]
    assert np.isnan(want).any()  # the nodata block: NaN in the composite too
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_the_grey_db_stretch_of_a_scaled_band_is_in_its_db(project, scaled_pair):
    """style_db_grey (under the quality maps) sampled the stored values, which QGIS does not show: hundredths of
    a dB read as dB sat at the -100 dB noise floor, and the stretch was -100..-99 dB, all white."""
    from sar_compress_plugin.qgis_io import style_db_grey

    _src, _sarc, full = scaled_pair
    layer = QgsRasterLayer(str(full), "full", "gdal")
    assert layer.dataProvider().bandScale(1) == 0.01
    style_db_grey(layer, 1, "db")
    vv = _physical(full)[0]
    lo, hi = np.percentile(vv[np.isfinite(vv)], (2, 98))
    renderer = layer.renderer()
    assert renderer.classificationMin() == pytest.approx(lo, abs=0.01)
    assert renderer.classificationMax() == pytest.approx(hi, abs=0.01)


def test_quality_maps_read_an_untagged_int16_db_product_as_the_codec_does(scaled_pair, tmp_path):
    """With no tag, the maps took every integer raster for amplitude, as the codec did before it read scales; the
    codec takes this one for dB (its scaled values are negative), and its reconstruction says so in its tag:
    the pair was refused ("it holds dB (its VALUE_DOMAIN tag), the original ... holds linear amplitude")."""
    from sar_compress_plugin.core.codec import read_header
    from sar_compress_plugin.core.quality_maps import compute_quality_maps, open_pair, stated_domain

    src, sarc, full = scaled_pair
    assert read_header(sarc)["domain"] == "db"
    domain, why = stated_domain(gdal.Open(str(src)))
    assert domain == "db" and why.startswith("int16 data with a scale/offset with 100.0% negative values")
    assert open_pair(src, full).domain == "db"
    maps = compute_quality_maps(src, full, tmp_path / "enl.tif", tmp_path / "epi.tif", bands=[1], window=7)
    assert maps.domain == "db" and -1 <= maps.epi_median[0] <= 1 and maps.enl_ratio_median[0] > 0
    epi = gdal.Open(str(tmp_path / "epi.tif")).ReadAsArray()
    assert np.isnan(epi[INT16_DB_NODATA_BLOCK]).all() and np.isfinite(epi[200:, 200:]).all()
