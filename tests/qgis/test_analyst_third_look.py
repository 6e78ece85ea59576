"""A radar analyst's day, a third look: a fill value that QGIS alone knows as no-data, a raster whose value
domain tag is wrong, and a pair whose layer leaves the project while its quality maps are computed. Real
dialogs clicked and typed into with pytest-qt, real headless QGIS, the tiny ONNX model, real Sentinel-1 scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProject, QgsRasterRange

from qgis_harness import DATA, accept_next_dialog, add_raster, messages, wait_for_task
from sar_compress_plugin.core.codec import read_header

#: A real 2-band Sentinel-1 scene in dB (VALUE_DOMAIN sigma0_db), 512 x 512.
DB_SCENE = "s1_iw_grd_sen1floods11_ghana_53713_vv_vh_db.tif"
FILL = -9999.0


def _db_copy(tmp_path: Path, fill_columns: int = 0, domain_tag: str | None = None) -> Path:
    """The dB scene without a nodata value in its file; its first `fill_columns` columns hold FILL, as the
    border of a geocoded scene exported without one does."""
    out = tmp_path / "ghana.tif"
    ds = gdal.Translate(str(out), str(DATA / DB_SCENE))
    pixels = ds.ReadAsArray()
    pixels[:, :, :fill_columns] = FILL
    for b in range(ds.RasterCount):
        ds.GetRasterBand(b + 1).WriteArray(pixels[b])
        ds.GetRasterBand(b + 1).DeleteNoDataValue()
    if domain_tag:
        ds.SetMetadataItem("VALUE_DOMAIN", domain_tag)
    ds = None
    return out


def _choose(qtbot, combo, text):
    """Pick a combo box item by typing its start, as a user does."""
    from qgis.PyQt.QtWidgets import QApplication

    qtbot.wait(QApplication.keyboardInputInterval() + 50)
    qtbot.keyClicks(combo, text)


def test_a_no_data_value_set_on_the_layer_in_qgis_is_kept_by_the_compression(plugin, test_iface, tmp_path):
    """The analyst set -9999 as the layer's no-data value in QGIS (Transparency), which the file lacks. The codec
    read the file: the border was coded as -9999 dB backscatter, the clip range stretched to -9999 dB (the scene
    itself squeezed into a sliver of it) and the reconstruction showed the border as data."""
    layer = add_raster(_db_copy(tmp_path, fill_columns=100), "ghana")
    for b in (1, 2):
        layer.dataProvider().setUserNoDataValue(b, [QgsRasterRange(FILL, FILL)])
    test_iface.layer_tree_view.setCurrentLayer(layer)
    accept_next_dialog()
    plugin.compress_action.trigger()
    assert wait_for_task(plugin, plugin.last_task).ok
    sarc = tmp_path / "ghana.sarc"
    assert all(lo > -60 for lo, _hi in read_header(sarc)["clip_db"])

    assert wait_for_task(plugin, plugin.reconstruct_file(str(sarc))).ok
    recon = gdal.Open(str(tmp_path / "ghana_reconstructed.tif"))
    assert recon.GetRasterBand(1).GetNoDataValue() == FILL
    assert (recon.ReadAsArray()[:, :, :100] == FILL).all()

    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(-10000, -9000)])
    assert plugin.compress_layer(layer) is None  # refused before the dialog opens
    assert messages(test_iface)[-1] == (
        "Cannot compress: 'ghana': band 1 has a no-data range set in QGIS, and a compressed file keeps one no-data "
        "value per band; set a single value in Layer Properties > Transparency")


def test_a_no_data_value_set_in_qgis_on_a_file_whose_own_is_nan_is_kept_too(plugin, test_iface, tmp_path):
    """A float file whose own no-data value is NaN (as gdalwarp writes it), with -9999 set in QGIS for its border:
    NaN is never a measurement to the codec, so nothing is lost by taking -9999 as the band's no-data value. It
    was refused as a second no-data value ("remove one")."""
    path = _db_copy(tmp_path, fill_columns=100)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in (1, 2):
        band = ds.GetRasterBand(b)
        pixels = band.ReadAsArray()
        pixels[:10] = float("nan")
        band.WriteArray(pixels)
        band.SetNoDataValue(float("nan"))
    ds = None
    layer = add_raster(path, "ghana")
    for b in (1, 2):
        layer.dataProvider().setUserNoDataValue(b, [QgsRasterRange(FILL, FILL)])
    assert wait_for_task(plugin, plugin.compress_layer(layer, ask=False)).ok, messages(test_iface)
    sarc = tmp_path / "ghana.sarc"
    assert all(lo > -60 for lo, _hi in read_header(sarc)["clip_db"])
    assert wait_for_task(plugin, plugin.reconstruct_file(str(sarc))).ok
    recon = gdal.Open(str(tmp_path / "ghana_reconstructed.tif"))
    assert recon.GetRasterBand(1).GetNoDataValue() == FILL
    px = recon.ReadAsArray()
    assert np.isnan(px[:, :10]).all() and (px[:, 10:, :100] == FILL).all()  # as they were in the file


def test_a_raster_whose_domain_tag_is_wrong_is_compressed_as_the_dialog_says(plugin, test_iface, tmp_path, qtbot):
    """A dB scene tagged VALUE_DOMAIN=intensity failed with "pass --domain db": a command-line flag, and the
    plugin offered no way to give the domain at all."""
    layer = add_raster(_db_copy(tmp_path, domain_tag="intensity"), "ghana")
    accept_next_dialog()
    assert not wait_for_task(plugin, plugin.compress_layer(layer)).ok
    failure = messages(test_iface)[-1]
    assert "--" not in failure and 'compress it again with "Values are: Decibels"' in failure

    accept_next_dialog(lambda dialog: _choose(qtbot, dialog.domain, "Decibels"))
    assert wait_for_task(plugin, plugin.compress_layer(layer)).ok
    assert read_header(tmp_path / "ghana.sarc")["domain"] == "db"


def test_quality_maps_of_a_pair_that_leaves_the_project_are_not_added(plugin, test_iface, sar_tif, compressed):
    """The original was removed (or the project closed) while its maps were computed: they were added at the top
    of the project, over nothing (or into the next project), and reported as a success."""
    project = QgsProject.instance()
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    for leave, gone in (("remove the original", "berlin"), ("close the project", "berlin (reconstructed)")):
        original = add_raster(sar_tif)
        recon = add_raster(sar_tif.with_name("berlin_reconstructed.tif"), "berlin (reconstructed)")
        task = plugin.quality_maps(recon, original)
        if leave == "remove the original":
            project.removeMapLayer(original.id())
        else:
            project.clear()
        wait_for_task(plugin, task)
        assert messages(test_iface)[-1].startswith(
            f"Quality maps of 'berlin (reconstructed)' vs 'berlin' not added: '{gone}' was removed from the "
            f"project; ")
        assert not [layer for layer in project.mapLayers().values()
                    if layer.customProperty("sar_compress/role") in ("enl_ratio", "epi")]


def test_the_quality_maps_dialog_takes_the_band_the_reconstruction_shows(plugin, test_iface, sar_tif, compressed):
    """The analyst looks at VH (band 2) and asks for quality maps: the dialog offered band 1, so the maps were of
    VV and the grey restyle under them switched both layers to VV."""
    from qgis.core import QgsSingleBandGrayRenderer

    project = QgsProject.instance()
    add_raster(sar_tif)
    assert wait_for_task(plugin, plugin.reconstruct_file(str(compressed))).ok
    recon = next(layer for layer in project.mapLayers().values() if layer.name() == "berlin (reconstructed)")
    recon.setRenderer(QgsSingleBandGrayRenderer(recon.dataProvider(), 2))
    test_iface.layer_tree_view.setCurrentLayer(recon)
    seen = {}
    accept_next_dialog(lambda dialog: seen.update(band=dialog.band.currentText()))
    plugin.quality_action.trigger()
    assert seen["band"] == "Band 2: Intensity_VH"
    assert wait_for_task(plugin, plugin.last_task).ok
    assert recon.renderer().usesBands() == [2]


def test_processing_compress_takes_the_value_domain_and_the_layers_no_data(plugin, project, tmp_path):
    """Processing compress had no way to give the value domain (its error named --domain) and, like the dialog,
    coded the layer's own no-data value as backscatter."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    Processing.initialize()
    layer = add_raster(_db_copy(tmp_path, fill_columns=100, domain_tag="intensity"), "ghana")
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(FILL, FILL)])
    context = QgsProcessingContext()
    context.setProject(project)
    params = {"INPUT": layer.id(), "DEVICE": 2, "TILE_SIZE": 256, "OUTPUT": str(tmp_path / "ghana.sarc")}
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("sarcompress:compress", params, feedback=QgsProcessingFeedback(), context=context)
    assert "--" not in str(refused.value) and 'compress it again with "Values are: Decibels"' in str(refused.value)

    processing.run("sarcompress:compress", {**params, "DOMAIN": 3}, feedback=QgsProcessingFeedback(),
                   context=context)
    header = read_header(tmp_path / "ghana.sarc")
    assert header["domain"] == "db" and header["clip_db"][0][0] > -60


def _smoothed_copy(source: Path, out: Path, domain: str, fill_columns: int = 0) -> Path:
    """A stand-in reconstruction of `source` (a 3x3 box mean of its intensity, back in its `domain`) without a
    nodata value in its file; its first `fill_columns` columns hold FILL."""
    from sar_compress_plugin.core.metrics import box_mean
    from sar_compress_plugin.core.preprocessing import from_db, to_db

    ds = gdal.Translate(str(out), str(source))
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        intensity = from_db(to_db(band.ReadAsArray(), domain)[0], "intensity")
        pixels = from_db(to_db(box_mean(intensity, 3), "intensity")[0], domain)
        pixels[:, :fill_columns] = FILL
        band.WriteArray(pixels)
        band.DeleteNoDataValue()
    ds = None
    return out


@pytest.mark.parametrize("filled", ["original", "reconstruction"])
def test_quality_maps_keep_a_no_data_value_set_on_a_layer_in_qgis_out_of_their_windows(
        plugin, test_iface, project, tmp_path, filled):
    """A -9999 border known to QGIS alone (Layer Properties > Transparency), on the original or on the
    reconstruction: the maps read the files, so the border entered the windows as -9999 dB backscatter and the
    maps showed values over it, through the plugin and Processing alike. They must be the maps of the same pair
    with -9999 as that file's own no-data value."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    columns = {"original": 0, "reconstruction": 0, filled: 100}
    paths = {"original": _db_copy(tmp_path, fill_columns=columns["original"]),
             "reconstruction": _smoothed_copy(DATA / DB_SCENE, tmp_path / "ghana_reconstructed.tif", "db",
                                              fill_columns=columns["reconstruction"])}
    in_file = {**paths, filled: tmp_path / "nodata_in_file.tif"}
    gdal.Translate(str(in_file[filled]), str(paths[filled]), noData=FILL)
    want = compute_quality_maps(in_file["original"], in_file["reconstruction"], tmp_path / "want_enl.tif",
                                tmp_path / "want_epi.tif", bands=[1])

    layers = {"original": add_raster(paths["original"], "ghana"),
              "reconstruction": add_raster(paths["reconstruction"], "ghana (reconstructed)")}
    for b in (1, 2):
        layers[filled].dataProvider().setUserNoDataValue(b, [QgsRasterRange(FILL, FILL)])
    result = wait_for_task(plugin, plugin.quality_maps(layers["reconstruction"], layers["original"]))
    assert result.ok, messages(test_iface)
    Processing.initialize()
    context = QgsProcessingContext()
    context.setProject(project)
    done = processing.run("sarcompress:qualitymaps", {
        "ORIGINAL": layers["original"].id(), "RECONSTRUCTION": layers["reconstruction"].id(), "BAND": 1,
        "WINDOW": 15, "OUTPUT_ENL_RATIO": str(tmp_path / "alg_enl.tif"), "OUTPUT_EPI": str(tmp_path / "alg_epi.tif")},
        feedback=QgsProcessingFeedback(), context=context)

    for enl, epi in ((result.value.enl_ratio_path, result.value.epi_path),
                     (done["OUTPUT_ENL_RATIO"], done["OUTPUT_EPI"])):
        for got, expected in ((enl, want.enl_ratio_path), (epi, want.epi_path)):
            pixels = gdal.Open(got).ReadAsArray()
            assert np.isnan(pixels[:, :100]).all()
            np.testing.assert_array_equal(pixels, gdal.Open(expected).ReadAsArray())


def test_quality_maps_read_an_intensity_scene_with_a_no_data_border_known_to_qgis_as_intensity(
        plugin, test_iface, tmp_path):
    """An untagged intensity original whose -9999 border QGIS alone knows as no-data: its border, a fifth of its
    values, negative, said dB, and the maps of linear intensity were computed as if it were dB."""
    clean = tmp_path / "berlin_clean.tif"
    gdal.Translate(str(clean), str(DATA / "s1_iw_grd_berlin_512.tif")).SetMetadata({})  # the values decide
    recon = _smoothed_copy(clean, tmp_path / "berlin_reconstructed.tif", "intensity")
    original = tmp_path / "berlin.tif"
    ds = gdal.Translate(str(original), str(clean))
    for b in (1, 2):
        pixels = ds.GetRasterBand(b).ReadAsArray()
        pixels[:, :100] = FILL
        ds.GetRasterBand(b).WriteArray(pixels)
    ds = None
    layer = add_raster(original)
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(FILL, FILL)])
    result = wait_for_task(plugin, plugin.quality_maps(add_raster(recon, "berlin (reconstructed)"), layer))
    assert result.ok, messages(test_iface)
    assert result.value.domain == "intensity"


def test_quality_maps_take_a_no_data_value_set_in_qgis_beside_the_files_own(plugin, test_iface, project, tmp_path):
    """The original's file has a no-data value of its own (-32768) and the analyst set -9999, its border, on the
    layer too. The maps mask both (each is masked where it is found), yet the pair was refused with the
    compression's rule: "a compressed file keeps one per band; remove one"."""
    import processing
    from processing.core.Processing import Processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    path = _db_copy(tmp_path, fill_columns=100)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in (1, 2):
        ds.GetRasterBand(b).SetNoDataValue(-32768.0)
    ds = None
    recon = _smoothed_copy(DATA / DB_SCENE, tmp_path / "ghana_reconstructed.tif", "db")
    original = add_raster(path, "ghana")
    for b in (1, 2):
        original.dataProvider().setUserNoDataValue(b, [QgsRasterRange(FILL, FILL)])
    result = wait_for_task(plugin, plugin.quality_maps(add_raster(recon, "ghana (reconstructed)"), original))
    assert result.ok, messages(test_iface)
    assert np.isnan(gdal.Open(result.value.epi_path).ReadAsArray()[:, :100]).all()
    Processing.initialize()
    context = QgsProcessingContext()
    context.setProject(project)
    done = processing.run("sarcompress:qualitymaps", {
        "ORIGINAL": original.id(), "RECONSTRUCTION": str(recon), "BAND": 1, "WINDOW": 15,
        "OUTPUT_ENL_RATIO": str(tmp_path / "alg_enl.tif"), "OUTPUT_EPI": str(tmp_path / "alg_epi.tif")},
        feedback=QgsProcessingFeedback(), context=context)
    assert np.isnan(gdal.Open(done["OUTPUT_EPI"]).ReadAsArray()[:, :100]).all()
