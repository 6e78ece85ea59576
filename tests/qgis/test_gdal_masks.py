"""The plugin on scenes whose invalid pixels a GDAL mask marks (a GeoTIFF's internal mask, a .msk file beside
it) rather than a nodata value, and on their reconstructions, which carry an internal mask: a real Sentinel-1
scene, real QGIS layers and dialogs, the codec with the tiny ONNX model.

QGIS's GDAL provider shows such a per-dataset mask as one more band of the layer, an 8-bit alpha band after the
data bands (`bandCount()` counts it; the codec's `RasterInfo.band_count` does not)."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import Qgis, QgsProject, QgsRasterLayer
from qgis.PyQt.QtWidgets import QDialog

from qgis_harness import accept_next_dialog, click_ok, messages, wait_for_task

gdal.UseExceptions()

GARBAGE = 1.0  # 0 dB: far below the scene (uncalibrated DN^2, about 42-62 dB), as fill under a mask can be


def _valid(height: int, width: int) -> np.ndarray:
    """Valid (True) but for a swath edge on the left and a strip at the bottom: about 40 % of the scene."""
    valid = np.ones((height, width), dtype=bool)
    valid[:, :160] = False
    valid[400:, :] = False
    return valid


def _masked_scene(sar_tif, internal: bool = True):
    """The scene with garbage under a per-dataset GDAL mask, inside the GeoTIFF or in a .msk file beside it."""
    path = sar_tif.with_name("masked.tif")
    gdal.Translate(str(path), str(sar_tif))
    gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES" if internal else "NO")
    try:
        ds = gdal.Open(str(path), gdal.GA_Update)
        valid = _valid(ds.RasterYSize, ds.RasterXSize)
        for b in range(1, ds.RasterCount + 1):
            values = ds.GetRasterBand(b).ReadAsArray()
            values[~valid] = GARBAGE
            ds.GetRasterBand(b).WriteArray(values)
        assert ds.CreateMaskBand(gdal.GMF_PER_DATASET) == 0
        ds.GetRasterBand(1).GetMaskBand().WriteArray(valid.astype(np.uint8) * 255)
        ds = None
    finally:
        gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
    assert path.with_name("masked.tif.msk").exists() != internal
    return path, valid


def _layer(path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.mark.parametrize("internal", [True, False], ids=["internal-mask", "msk-file"])
def test_a_masked_float_scene_compresses_without_the_display_image_warning(plugin, test_iface, sar_tif, codec,
                                                                           internal):
    """The compress dialog took the mask QGIS shows as an 8-bit alpha band for the scene's data: a float32
    Sentinel-1 scene with a mask was "a display image or quick-look" and OK refused it until "Compress it
    anyway" was ticked. Its reconstruction, which carries the mask, was refused the same way."""
    from sar_compress_plugin.qgis_io import display_image_warning

    masked, valid = _masked_scene(sar_tif, internal)
    layer = _layer(masked, "masked")
    assert layer.bandCount() == 3  # VV, VH and the mask as QGIS shows it
    seen = {}

    def configure(dialog):
        seen["warning"] = dialog.display_image_warning

    state = accept_next_dialog(configure)
    test_iface.layer_tree_view.setCurrentLayer(layer)
    plugin.compress_action.trigger()
    assert seen["warning"] == "" and "error" not in state, state
    assert wait_for_task(plugin, plugin.last_task).ok
    header = codec.read_header(masked.with_suffix(".sarc"))
    assert header["raster"]["band_count"] == 2 and header["invalid_pixels"] == 2 * int((~valid).sum())

    assert wait_for_task(plugin, plugin.reconstruct_file(str(masked.with_suffix(".sarc")))).ok
    [recon] = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "masked (reconstructed)"]
    assert recon.bandCount() == 3 and display_image_warning(recon) == ""


def test_quality_maps_of_a_masked_scene_list_its_bands_and_stretch_the_valid_pixels(plugin, test_iface, sar_tif,
                                                                                       codec, model_bundle, qtbot):
    """Two faults between a masked original and its reconstruction. The dialog offered a third band, the mask
    QGIS shows as an alpha band ("Band 3"), which the maps then refused. And the grey dB stretch under the maps
    (given to the original too) was computed over the masked pixels, which the codec restores bit for bit: the
    garbage under the mask (0 dB here) set its dark end, 40 dB below the scene."""
    from sar_compress_plugin.core.preprocessing import from_db, to_db

    masked, valid = _masked_scene(sar_tif)
    original = _layer(masked, "masked")
    sarc = masked.with_suffix(".sarc")
    codec.compress(str(masked), str(sarc), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                                 tile_size=256))
    assert wait_for_task(plugin, plugin.reconstruct_file(str(sarc))).ok
    [recon] = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "masked (reconstructed)"]
    written = gdal.Open(recon.source())  # kept: a band outlives no dataset
    assert recon.bandCount() == 3 and written.GetRasterBand(1).GetMaskFlags() == gdal.GMF_PER_DATASET

    seen = {}

    def configure(dialog):
        seen["bands"] = [dialog.band.itemText(i) for i in range(dialog.band.count())]
        seen["roles"] = (dialog.reconstruction_layer(), dialog.original_layer())
        dialog.band.setCurrentIndex(0)

    state = accept_next_dialog(configure)
    test_iface.layer_tree_view.setCurrentLayer(recon)
    plugin.quality_action.trigger()
    assert "error" not in state, state
    assert seen["roles"] == (recon, original)
    assert seen["bands"] == [recon.bandName(1), recon.bandName(2)]  # VV and VH, not the mask
    result = wait_for_task(plugin, plugin.last_task)
    assert result.ok, result.message
    assert "median local ENL ratio" in messages(test_iface, Qgis.MessageLevel.Success)[-1]

    # The stretch: 2-98 % of the reconstruction's valid pixels in dB (a 512 x 512 band is read whole).
    values = written.GetRasterBand(1).ReadAsArray()
    db, ok = to_db(values, "intensity")
    lo, hi = np.percentile(db[ok & valid], (2, 98))
    for layer in (recon, original):
        items = layer.renderer().shader().rasterShaderFunction().colorRampItemList()
        assert layer.renderer().band() == 1
        assert items[0].value == pytest.approx(from_db(np.array([lo]), "intensity")[0], rel=1e-4)
        assert items[-1].value == pytest.approx(from_db(np.array([hi]), "intensity")[0], rel=1e-4)
        assert items[0].label == f"{lo:.0f} dB" and lo > 30


def test_the_quality_maps_dialog_offers_no_mask_band_of_a_reconstruction_chosen_in_it(qtbot, project, sar_tif):
    """Chosen in the dialog rather than right-clicked: the band list follows the reconstruction chosen."""
    from sar_compress_plugin.gui.dialogs import QualityMapsDialog

    masked, _ = _masked_scene(sar_tif)
    plain = _layer(sar_tif, "berlin")
    with_mask = _layer(masked, "masked")
    dialog = QualityMapsDialog(None, plain)
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.reconstruction.setLayer(with_mask)
    assert [dialog.band.itemData(i) for i in range(dialog.band.count())] == [1, 2]
    click_ok(qtbot, dialog)
    assert dialog.result() == QDialog.DialogCode.Accepted, dialog.error_label.text()


def test_processing_quality_maps_refuse_the_mask_band_in_one_line(plugin, project, sar_tif, tmp_path):
    """The Processing algorithm's BAND list is the layer's, where QGIS shows the mask as band 3: chosen, it got
    the core's "has only 2 band(s)" about a band the Toolbox had just offered. It is refused, naming the data
    bands, before the run (checkParameterValues, as processing.run and the Toolbox call it) and in
    processAlgorithm for callers that skip the check; a data band still maps."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    Processing.initialize()
    masked, _ = _masked_scene(sar_tif)
    params = {"ORIGINAL": str(masked), "RECONSTRUCTION": str(masked), "BAND": 3, "WINDOW": 15, "DOMAIN": 0,
              "OUTPUT_ENL_RATIO": str(tmp_path / "enl.tif"), "OUTPUT_EPI": str(tmp_path / "epi.tif")}
    want = ("band 3 of 'masked' is the alpha band under which QGIS shows the raster's mask, not data: choose one "
            "of its data bands (1, 2), or none for every band")
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("sarcompress:qualitymaps", params, feedback=QgsProcessingFeedback(),
                       context=QgsProcessingContext())
    assert str(refused.value).splitlines()[-1] == want

    alg = QgsApplication.processingRegistry().createAlgorithmById("sarcompress:qualitymaps")
    context = QgsProcessingContext()
    assert alg.checkParameterValues(params, context) == (False, want)
    with pytest.raises(QgsProcessingException) as refused:
        alg.processAlgorithm(params, context, QgsProcessingFeedback())
    assert str(refused.value) == want
    assert not (tmp_path / "enl.tif").exists() and not (tmp_path / "epi.tif").exists()

    done = processing.run("sarcompress:qualitymaps", {**params, "BAND": 2}, feedback=QgsProcessingFeedback(),
                          context=QgsProcessingContext())
    assert gdal.Open(done["OUTPUT_EPI"]).RasterCount == 1
