"""A no-data value set in QGIS on a band with a GDAL scale and offset (a quantized product: stored int16, shown
as stored * SCALE + OFFSET). QGIS 3.22's GDAL provider applies the scale and offset in float32 and compares the
layer's no-data value with the result; the codec reads the stored values. Real headless QGIS, the plugin's
compress and quality-map paths, the tiny ONNX model, a real Sentinel-1 scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsRasterLayer, QgsRasterRange

from qgis_harness import DATA, add_raster, messages, wait_for_task
from sar_compress_plugin.core.codec import read_header

SCALE, OFFSET = 0.01, 0.5
#: Stored fill of the border: shown by QGIS as float32(32001 * 0.01 + 0.5) = 320.510009765625, not 320.51.
FILL = 32001
BORDER = 100  # columns


def _quantized(out: Path, smoothed: bool = False, nodata: float | None = None) -> Path:
    """The Berlin scene's amplitude stored as int16 with SCALE and OFFSET, its first BORDER columns FILL (or, when
    `smoothed`, a 3x3 box mean of its intensity and no border, a stand-in reconstruction)."""
    from sar_compress_plugin.core.metrics import box_mean

    ds = gdal.Translate(str(out), str(DATA / "s1_iw_grd_berlin_512.tif"), outputType=gdal.GDT_Int16)
    ds.SetMetadata({})  # integers read as amplitude, the codec's way
    source = gdal.Open(str(DATA / "s1_iw_grd_berlin_512.tif"))
    for b in range(1, ds.RasterCount + 1):
        intensity = source.GetRasterBand(b).ReadAsArray().astype(np.float64)
        stored = np.sqrt(box_mean(intensity, 3) if smoothed else intensity).round()
        if not smoothed:
            stored[:, :BORDER] = FILL
        band = ds.GetRasterBand(b)
        band.WriteArray(stored.astype(np.int16))
        band.SetScale(SCALE)
        band.SetOffset(OFFSET)
        if nodata is not None:
            band.SetNoDataValue(nodata)
    ds = None
    return out


def _hidden(layer: QgsRasterLayer, band: int = 1) -> np.ndarray:
    """Where QGIS shows no-data on `band` of the layer, at its native resolution."""
    provider = layer.dataProvider()
    width, height = layer.width(), layer.height()
    block = provider.block(band, layer.extent(), width, height)
    return np.array([[block.isNoData(r, c) for c in range(width)] for r in range(height)])


def _shown(layer: QgsRasterLayer, band: int = 1) -> float:
    """The value QGIS shows for the border (top-left pixel), as a user reads it and sets it as no-data."""
    return layer.dataProvider().block(band, layer.extent(), layer.width(), layer.height()).value(0, 0)


def test_a_no_data_value_set_in_qgis_on_a_scaled_band_hides_the_same_pixels_after_compression(
        plugin, test_iface, tmp_path):
    """The analyst set the border's value as QGIS shows it as the layer's no-data value: QGIS hid the border, but
    the codec compared it with the stored values, so it took scene pixels (stored 320 or 321) for no-data and
    coded the border as 90 dB backscatter, which stretched the clip range and came back as data."""
    layer = add_raster(_quantized(tmp_path / "berlin.tif"))
    shown = _shown(layer)
    assert shown == pytest.approx(FILL * SCALE + OFFSET, abs=1e-4) and shown != FILL * SCALE + OFFSET
    for b in (1, 2):
        layer.dataProvider().setUserNoDataValue(b, [QgsRasterRange(shown, shown)])
    hidden = _hidden(layer)
    assert hidden[:, :BORDER].all() and not hidden[:, BORDER:].any()

    assert wait_for_task(plugin, plugin.compress_layer(layer, ask=False)).ok, messages(test_iface)
    sarc = tmp_path / "berlin.sarc"
    header = read_header(sarc)
    assert header["raster"]["nodata"] == [FILL, FILL]
    assert all(hi < 80 for _lo, hi in header["clip_db"])
    assert wait_for_task(plugin, plugin.reconstruct_file(str(sarc))).ok
    recon = QgsRasterLayer(str(tmp_path / "berlin_reconstructed.tif"), "recon", "gdal")
    np.testing.assert_array_equal(_hidden(recon), hidden)
    assert (gdal.Open(recon.source()).ReadAsArray()[:, :, :BORDER] == FILL).all()


def test_a_no_data_value_no_stored_value_shows_as_is_refused_in_one_line(plugin, test_iface, tmp_path):
    """320.51, the border's value as the analyst would type it, hides nothing in QGIS (it shows
    320.510009765625): the codec must not hide the border either, nor anything else."""
    layer = add_raster(_quantized(tmp_path / "berlin.tif"))
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(320.51, 320.51)])
    assert not _hidden(layer).any()
    assert plugin.compress_layer(layer, ask=False) is None
    assert messages(test_iface)[-1] == (
        "Cannot compress: 'berlin': band 1 has no-data value 320.51 set in QGIS, which QGIS compares with its "
        "file's values times 0.01 plus 0.5: none shows as it (the nearest as 320.510009765625); set the value its "
        "no-data pixels show in Layer Properties > Transparency")


def test_quality_maps_hide_the_pixels_qgis_hides_on_a_scaled_band(plugin, test_iface, tmp_path):
    """The maps compared the value QGIS shows (float32) with the values they compute in float64: 320.51 is not
    320.510009765625, so the border QGIS hid entered their windows. They must be the maps of the same pair with
    the border's stored value as the file's own no-data value."""
    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    original = _quantized(tmp_path / "berlin.tif")
    recon = _quantized(tmp_path / "berlin_reconstructed.tif", smoothed=True)
    want = compute_quality_maps(_quantized(tmp_path / "nodata_in_file.tif", nodata=FILL), recon,
                                tmp_path / "want_enl.tif", tmp_path / "want_epi.tif", bands=[1], domain="amplitude")
    layer = add_raster(original)
    shown = _shown(layer)
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(shown, shown)])
    result = wait_for_task(plugin, plugin.quality_maps(add_raster(recon, "berlin (reconstructed)"), layer,
                                                       domain="amplitude"))
    assert result.ok, messages(test_iface)
    for got, expected in ((result.value.enl_ratio_path, want.enl_ratio_path), (result.value.epi_path, want.epi_path)):
        pixels = gdal.Open(got).ReadAsArray()
        assert np.isnan(pixels[:, :BORDER]).all()
        np.testing.assert_array_equal(pixels, gdal.Open(expected).ReadAsArray())


def test_a_no_data_value_several_stored_values_show_as_is_refused_in_one_line(plugin, test_iface, tmp_path):
    """Beyond 2**24, QGIS's float32 shows neighbouring int32 values as one: it hides both, a .sarc keeps one."""
    path = tmp_path / "counts.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 4, 1, 1, gdal.GDT_Int32)
    ds.SetGeoTransform((0, 1, 0, 0, 0, -1))
    ds.GetRasterBand(1).WriteArray(np.array([[2**24, 2**24 + 1, 2**24 + 2, 7]], dtype=np.int32))
    ds.GetRasterBand(1).SetOffset(0.5)
    ds = None
    layer = add_raster(path, "counts")
    shown = _shown(layer)  # float32(2**24 + 0.5)
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(shown, shown)])
    assert _hidden(layer).tolist() == [[True, True, False, False]]
    assert plugin.compress_layer(layer, ask=False) is None
    assert messages(test_iface)[-1] == (
        "Cannot compress: 'counts': band 1 has no-data value 16777216.0 set in QGIS, which QGIS compares with its "
        "file's values times 1 plus 0.5: several show as it, and a compressed file keeps one no-data value per band")
