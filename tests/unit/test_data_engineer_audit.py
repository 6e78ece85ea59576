"""The codec as a SAR data engineer meets it on real products: a Sentinel-1 measurement GeoTIFF georeferenced
by ground control points only, a raster with no georeferencing at all, an original under the name of an output,
a .sarc with an overview described and checked by sar-info, a complex SLC given by mistake, and bands with
different nodata values. Real GeoTIFFs and the tiny test model."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
from osgeo import gdal, osr

from sar_compress_plugin import cli
from sar_compress_plugin.batch.inputs import Job
from sar_compress_plugin.batch.tasks import compress_scene, reconstruct_scene
from sar_compress_plugin.core.codec import CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.errors import InputRasterError

from codec_fixtures import half_masked_geotiff, write_geotiff

W, H = 96, 80


def _opts(bundle, **kw) -> CompressOptions:
    return CompressOptions(model_dir=bundle, device="cpu", tile_size=64, **kw)


def _speckle(bands: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(4.0, 0.25, (bands, H, W)).astype(np.float32)


def _utm_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def _gcp_raster(path, x: np.ndarray):
    """A GeoTIFF georeferenced as Sentinel-1 GRD measurement files are: a grid of GCPs, no geotransform."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), W, H, x.shape[0], gdal.GDT_Float32)
    gcps = [gdal.GCP(500000.0 + 10 * p + 3 * ln, 5800000.0 - 10 * ln + 2 * p, 0.0, p, ln)
            for p in (0, W // 2, W - 1) for ln in (0, H // 2, H - 1)]
    ds.SetGCPs(gcps, _utm_wkt())
    for b in range(x.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(x[b])
    ds = None
    return path


def _points(ds) -> list:
    return [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ) for g in ds.GetGCPs()]


def test_ground_control_points_come_back_in_full_and_window_reconstructions(tmp_path, tiny_bundle):
    """A raster whose only georeferencing is its GCPs (a Sentinel-1 GRD measurement GeoTIFF) came back at pixel
    coordinates: the GCPs were dropped and GDAL's placeholder geotransform written instead."""
    src = _gcp_raster(tmp_path / "s1.tif", _speckle())
    sarc = tmp_path / "s1.sarc"
    compress(src, sarc, _opts(tiny_bundle))
    original = gdal.Open(str(src))
    reconstruct(sarc, tmp_path / "full.tif", model_dirs=[tiny_bundle], device="cpu")
    full = gdal.Open(str(tmp_path / "full.tif"))
    assert full.GetGCPCount() == original.GetGCPCount() == 9
    assert _points(full) == _points(original)
    assert osr.SpatialReference(full.GetGCPProjection()).IsSame(osr.SpatialReference(_utm_wkt()))
    assert full.GetGeoTransform(can_return_null=True) is None

    reconstruct(sarc, tmp_path / "win.tif", window=(10, 20, 40, 30), model_dirs=[tiny_bundle], device="cpu")
    win = gdal.Open(str(tmp_path / "win.tif"))
    assert _points(win) == [(p - 10, ln - 20, x, y, z) for p, ln, x, y, z in _points(original)]

    # A map box is mapped through the GCPs (GDAL's placeholder geotransform would map it to nonsense; it was
    # refused): the window reconstructed covers it, with the GCPs moved to the window.
    assert cli.reconstruct_main([str(sarc), str(tmp_path / "box.tif"), "--bbox", "500150", "5799600", "500350",
                                 "5799800", "--model-dir", str(tiny_bundle), "-q"]) == 0
    box = gdal.Open(str(tmp_path / "box.tif"))
    assert box.RasterXSize < W and box.RasterYSize < H
    [(c, r)] = {(p - q, ln - m) for (p, ln, *_), (q, m, *_) in zip(_points(original), _points(box))}
    assert _points(box) == [(p - c, ln - r, x, y, z) for p, ln, x, y, z in _points(original)]
    corners, _ok = gdal.Transformer(box, None, []).TransformPoints(
        0, [(0.0, 0.0), (box.RasterXSize, 0.0), (0.0, box.RasterYSize), (box.RasterXSize, box.RasterYSize)])
    xs, ys = [x for x, _y, _z in corners], [y for _x, y, _z in corners]
    assert min(xs) <= 500150 and max(xs) >= 500350 and min(ys) <= 5799600 and max(ys) >= 5799800


def test_the_batches_and_sar_info_keep_ground_control_points(tmp_path, tiny_bundle, capsys):
    """What sar-compress-batch and sar-reconstruct-batch run per scene (their workers' tasks, here in process) on
    a raster placed by GCPs only: the reconstruction has them back, a rerun skips both, and sar-info shows them."""
    src = _gcp_raster(tmp_path / "s1.tif", _speckle())
    sarc = tmp_path / "out" / "s1.sarc"
    compressed, rebuilt = Job(str(src), str(sarc)), Job(str(sarc), str(tmp_path / "rec" / "s1.tif"))
    for status in ("ok", "skipped"):
        assert compress_scene(compressed, _opts(tiny_bundle))["status"] == status
        assert reconstruct_scene(rebuilt, model_dirs=[tiny_bundle], device="cpu", verify=True)["status"] == status
    assert _points(gdal.Open(rebuilt.output)) == _points(gdal.Open(str(src)))
    assert cli.info_main([compressed.output, "--json"]) == 0
    gcps = json.loads(capsys.readouterr().out)["raster"]["gcps"]
    assert [tuple(p) for p in gcps["points"]] == _points(gdal.Open(str(src)))
    assert osr.SpatialReference(gcps["crs_wkt"]).IsSame(osr.SpatialReference(_utm_wkt()))


def test_a_raster_without_georeferencing_gets_none_invented(tmp_path, tiny_bundle):
    """GDAL's stand-in geotransform (0, 1, 0, 0, 0, 1) was written into the reconstruction of a raster that had
    none, which then claimed to be georeferenced at pixel coordinates, south up."""
    src = tmp_path / "plain.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(src), W, H, 1, gdal.GDT_Float32)
    ds.GetRasterBand(1).WriteArray(_speckle(1)[0])
    ds = None
    assert gdal.Open(str(src)).GetGeoTransform(can_return_null=True) is None
    compress(src, tmp_path / "plain.sarc", _opts(tiny_bundle))
    reconstruct(tmp_path / "plain.sarc", tmp_path / "rec.tif", model_dirs=[tiny_bundle], device="cpu")
    assert gdal.Open(str(tmp_path / "rec.tif")).GetGeoTransform(can_return_null=True) is None


def test_the_command_lines_never_replace_an_original_raster(tmp_path, tiny_bundle, capsys):
    """`sar-reconstruct scene.sarc scene.tif` beside the original replaced it by its lossy reconstruction
    with a WARNING line and exit status 0; an earlier reconstruction is still replaced."""
    src = write_geotiff(tmp_path / "scene.tif", _speckle())
    sarc = tmp_path / "scene.sarc"
    assert cli.compress_main([str(src), str(sarc), "--model", str(tiny_bundle), "--tile", "64", "-q"]) == 0
    before = src.read_bytes()
    capsys.readouterr()
    assert cli.reconstruct_main([str(sarc), str(src), "--model-dir", str(tiny_bundle), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "not a reconstruction" in err and len(err.strip().splitlines()) == 1
    assert src.read_bytes() == before

    rec = tmp_path / "rec.tif"
    for _ in range(2):  # the second run replaces the first one's output
        assert cli.reconstruct_main([str(sarc), str(rec), "--model-dir", str(tiny_bundle), "-q"]) == 0

    # a raster under the name of a .sarc (e.g. an ENVI .img given as the output by mistake) is kept too
    other = tmp_path / "vh.img"
    other.write_bytes(src.read_bytes())
    assert cli.compress_main([str(src), str(other), "--model", str(tiny_bundle), "--tile", "64", "-q"]) == 2
    assert "not a .sarc file" in capsys.readouterr().err and other.read_bytes() == before
    # an earlier .sarc is replaced as before
    assert cli.compress_main([str(src), str(sarc), "--model", str(tiny_bundle), "--tile", "64", "-q"]) == 0


def test_sar_info_counts_the_overview_and_verify_names_its_damage(tmp_path, tiny_bundle, capsys):
    """The overview chunks' bytes were printed as "header+index", and --verify found a damaged overview only
    by the file's SHA-256, naming no band."""
    src = write_geotiff(tmp_path / "in.tif", _speckle())
    sarc = tmp_path / "in.sarc"
    compress(src, sarc, _opts(tiny_bundle, overview=True))
    h = read_header(sarc)
    overview = sum(e[1] for e in h["overview"]["chunks"])
    assert cli.info_main([str(sarc)]) == 0
    parts = {k: int(v) for k, v in re.findall(r"(latent|mask|outlier|overview|header\+index) (\d+) \(",
                                              capsys.readouterr().out)}
    assert parts["overview"] == overview
    assert sum(parts.values()) == sarc.stat().st_size
    assert parts["header+index"] < sarc.stat().st_size - h["overview"]["chunks"][0][0]  # header and footer only

    data = bytearray(sarc.read_bytes())
    off, length, _ = h["overview"]["chunks"][1]
    data[off + length // 2] ^= 0x10
    bad = tmp_path / "bad.sarc"
    bad.write_bytes(bytes(data))
    assert cli.info_main([str(bad), "--verify"]) == 2
    assert "overview band 2" in capsys.readouterr().err


@pytest.mark.parametrize("gdal_type, name", [(gdal.GDT_CInt16, "CInt16"), (gdal.GDT_CFloat32, "CFloat32")])
def test_a_complex_slc_is_named_by_its_gdal_type(tmp_path, tiny_bundle, gdal_type, name):
    """A CInt16 SLC was refused as "data type complex64", a type the file never had."""
    path = tmp_path / "slc.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 32, 32, 1, gdal_type)
    ds = None
    with pytest.raises(InputRasterError, match=f"data type {name} is complex.*intensity"):
        compress(path, tmp_path / "slc.sarc", _opts(tiny_bundle))


def test_bands_with_different_nodata_are_warned_about(tmp_path, tiny_bundle, caplog):
    """A GeoTIFF holds one nodata value: the reconstruction of a source whose bands had different ones
    tagged every band with the last band's, silently."""
    x = _speckle()
    x[0, :8] = -9999.0
    x[1, :, :8] = 0.0
    write_geotiff(tmp_path / "a.tif", x)
    vrt = tmp_path / "a.vrt"
    gdal.Translate(str(vrt), str(tmp_path / "a.tif"), format="VRT")
    ds = gdal.Open(str(vrt), gdal.GA_Update)
    ds.GetRasterBand(1).SetNoDataValue(-9999.0)
    ds.GetRasterBand(2).SetNoDataValue(0.0)
    ds = None
    compress(vrt, tmp_path / "a.sarc", _opts(tiny_bundle))
    with caplog.at_level(logging.WARNING):
        reconstruct(tmp_path / "a.sarc", tmp_path / "rec.tif", model_dirs=[tiny_bundle], device="cpu")
    assert "different nodata values" in caplog.text and "band 1 -9999" in caplog.text
    rec = gdal.Open(str(tmp_path / "rec.tif")).ReadAsArray()
    assert (rec[0, :8] == -9999.0).all() and (rec[1, :, :8] == 0.0).all()  # the values come back as they were


def test_epi_ignores_the_step_at_a_nodata_border():
    """Nodata pixels are the noise floor (-100 dB) in both images, so the Laplacian across their border is the
    same huge step in both: counted, it made the EPI of any scene with nodata 0.8-0.9 (sar-demo printed 0.83 for
    a uint16 GRD with no-data rows and a model that keeps no edge at all, 0.03 without those rows)."""
    from sar_compress_plugin.core import metrics

    rng = np.random.default_rng(3)
    ref, test = rng.normal(0, 3, (2, 64, 64)) - 10
    valid = np.ones((64, 64), dtype=bool)
    valid[:, :20] = False
    ref[~valid] = test[~valid] = -100.0
    assert abs(metrics.epi(ref, test, valid)) < 0.1  # uncorrelated where the data is
    assert metrics.epi(ref, ref, valid) == pytest.approx(1.0)


def test_the_demo_leaves_out_the_pixels_a_gdal_mask_hides(tmp_path, tiny_bundle):
    """Pixels under a GDAL mask come back bit for bit, and the demo counted them: on a half-masked scene it
    printed a dB RMSE of 2.6 and an SSIM of 0.56 where its valid pixels had 3.6 and 0.12."""
    from sar_compress_plugin import demo
    from sar_compress_plugin.core import metrics
    from sar_compress_plugin.core.preprocessing import to_db

    x = _speckle()
    src = tmp_path / "masked.tif"
    valid = half_masked_geotiff(src, x)
    res = demo.run_demo(src, tmp_path / "out", tiny_bundle, "cpu")
    rec = gdal.Open(res["reconstruction"]).ReadAsArray()
    for b, row in enumerate(res["bands"]):
        ref_db, _ = to_db(x[b], "intensity")
        rec_db, _ = to_db(rec[b], "intensity")
        assert row["valid_pixels"] == valid.sum()
        assert row["db_rmse"] == pytest.approx(metrics.db_rmse(ref_db, rec_db, valid), rel=1e-6)
        assert row["band"] == f"band {b + 1}"  # a band without a description is named, not left blank
