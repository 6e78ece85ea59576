"""Inputs whose invalid pixels a GDAL mask marks (internal mask, .msk file, alpha band) rather than a nodata
value, and inputs named by GDAL virtual paths (/vsizip/, /vsigzip/): real GeoTIFFs, the tiny test model."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pytest
from osgeo import gdal

from sar_compress_plugin import cli
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.errors import InputRasterError, OutputPathError
from sar_compress_plugin.core.raster_io import RasterReader, read_raster_info

from codec_fixtures import write_geotiff

W, H = 200, 150


def _opts(bundle, **kw) -> CompressOptions:
    return CompressOptions(model_dir=bundle, device="cpu", tile_size=64, **kw)


def _speckle(bands: int, dtype=np.float32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.gamma(4.0, 0.25, size=(bands, H, W)) * np.linspace(0.05, 0.5, W)[None, None, :]
    if np.dtype(dtype).kind in "iu":
        return np.clip(np.rint(np.sqrt(x) * 400), 1, 60000).astype(dtype)  # amplitude DNs, none 0
    return x.astype(dtype)


def _scene_mask() -> np.ndarray:
    """Valid (True) except a ragged scene edge on the left, a strip at the bottom and a hole across tile borders."""
    valid = np.ones((H, W), dtype=bool)
    edge = (np.arange(H) * 37 % 23) + 5
    for r in range(H):
        valid[r, :edge[r]] = False
    valid[140:, :] = False
    valid[50:80, 60:140] = False
    return valid


def _with_garbage(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bright positive garbage under the mask: valid-looking values a reader ignoring the mask takes for data."""
    x = x.copy()
    junk = (np.arange(H * W).reshape(H, W) % 97 + 1) * (1000 if x.dtype.kind == "f" else 600)
    x[:, ~valid] = junk[~valid].astype(x.dtype)
    return x


def _add_mask(path, valid: np.ndarray, internal: bool = True) -> None:
    """A per-dataset GDAL mask (0 = invalid, 255 = valid), inside the GeoTIFF or in a .msk beside it."""
    gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES" if internal else "NO")
    try:
        ds = gdal.Open(str(path), gdal.GA_Update)
        assert ds.CreateMaskBand(gdal.GMF_PER_DATASET) == 0
        ds.GetRasterBand(1).GetMaskBand().WriteArray(valid.astype(np.uint8) * 255)
        ds = None
    finally:
        gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)


def _add_alpha(path, data: np.ndarray, valid: np.ndarray):
    """A GeoTIFF of `data`'s bands plus an alpha band (0 = transparent) of the same type."""
    bands = np.concatenate([data, np.where(valid, 255, 0).astype(data.dtype)[None]])
    write_geotiff(path, bands)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.GetRasterBand(bands.shape[0]).SetColorInterpretation(gdal.GCI_AlphaBand)
    ds = None
    return path


def _mask_of(path) -> tuple[int, np.ndarray]:
    ds = gdal.Open(str(path))
    b = ds.GetRasterBand(1)
    return b.GetMaskFlags(), b.GetMaskBand().ReadAsArray()


def _all(path) -> np.ndarray:
    with RasterReader(path) as r:
        i = r.info
        return np.stack([r.read(b, 0, 0, i.width, i.height) for b in range(i.band_count)])


@pytest.mark.parametrize("internal", [True, False], ids=["internal-mask", "msk-file"])
def test_masked_pixels_are_invalid_and_the_reconstruction_masks_them(tmp_path, tiny_bundle, internal):
    valid = _scene_mask()
    x = _with_garbage(_speckle(2), valid)
    src = write_geotiff(tmp_path / "masked.tif", x, names=["VV", "VH"])
    _add_mask(src, valid, internal)
    assert (tmp_path / "masked.tif.msk").exists() != internal
    assert _mask_of(src)[0] == gdal.GMF_PER_DATASET

    sarc = tmp_path / "m.sarc"
    res = compress(src, sarc, _opts(tiny_bundle, domain="intensity"))
    h = read_header(sarc)
    assert h["invalid_pixels"] == 2 * int((~valid).sum())
    # the clip range comes from the scene, not from the garbage (>= 30 dB) under the mask
    assert all(hi < 10.0 for _, hi in res.clip_db)
    assert h["raster"]["gdal_mask"] == "per_dataset" and h["raster"]["band_count"] == 2

    rec = tmp_path / "rec.tif"
    reconstruct(sarc, rec, model_dirs=[tiny_bundle], device="cpu")
    assert not (tmp_path / "rec.tif.msk").exists()  # one file: the mask is inside it
    flags, mask = _mask_of(rec)
    assert flags == gdal.GMF_PER_DATASET
    np.testing.assert_array_equal(mask, np.where(valid, 255, 0))
    out = _all(rec)
    np.testing.assert_array_equal(out[:, ~valid], x[:, ~valid])  # restored bit for bit, like nodata pixels
    assert read_raster_info(rec).nodata == (None, None)
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        np.testing.assert_array_equal(cr.read(), out)

    # a window reconstruction carries its part of the mask
    part = tmp_path / "part.tif"
    reconstruct(sarc, part, window=(30, 20, 130, 100), model_dirs=[tiny_bundle], device="cpu")
    np.testing.assert_array_equal(_mask_of(part)[1], np.where(valid[20:120, 30:160], 255, 0))


def test_the_scene_layer_cache_hides_masked_pixels(tmp_path, tiny_bundle):
    from sar_compress_plugin.core.scene_cache import SceneCache  # noqa: PLC0415

    valid = _scene_mask()
    x = _with_garbage(_speckle(1, np.uint16), valid)
    src = write_geotiff(tmp_path / "s.tif", x)
    _add_mask(src, valid)
    sarc = tmp_path / "s.sarc"
    compress(src, sarc, _opts(tiny_bundle))
    cache = SceneCache(sarc, tmp_path / "cache", model_dirs=[tiny_bundle], device="cpu")
    cache.decode(range(cache.grid.count))
    ds = gdal.Open(str(cache.tiff_path))
    shown, nodata = ds.ReadAsArray(), ds.GetRasterBand(1).GetNoDataValue()
    ds = None
    assert nodata == 0
    assert (shown[~valid] == 0).all() and (shown[valid] > 0).all()


def test_integer_raster_with_nodata_and_mask_keeps_both(tmp_path, tiny_bundle):
    valid = _scene_mask()
    x = _with_garbage(_speckle(1, np.uint16), valid)
    x[0, 100:110, 150:170] = 7  # nodata inside the valid area
    src = write_geotiff(tmp_path / "dn.tif", x, nodata=7)
    _add_mask(src, valid)
    sarc = tmp_path / "dn.sarc"
    compress(src, sarc, _opts(tiny_bundle, target_bpp=2.0))  # the rate search samples valid pixels only
    rec = tmp_path / "dn_rec.tif"
    reconstruct(sarc, rec, model_dirs=[tiny_bundle], device="cpu")
    assert read_raster_info(rec).nodata == (7.0,)
    flags, mask = _mask_of(rec)
    both = valid & (x[0] != 7)
    np.testing.assert_array_equal(mask, np.where(both, 255, 0))
    out = _all(rec)[0]
    np.testing.assert_array_equal(out[~both], x[0][~both])


def test_window_reads_of_the_mask_match_the_whole_mask(tmp_path):
    valid = _scene_mask()
    src = write_geotiff(tmp_path / "w.tif", _speckle(2))
    _add_mask(src, valid)
    with RasterReader(src) as r:
        for c, rr, w, h in [(0, 0, W, H), (13, 40, 64, 64), (150, 100, 50, 50)]:
            np.testing.assert_array_equal(r.read_valid(1, c, rr, w, h), valid[rr:rr + h, c:c + w])
        assert r.info.gdal_mask == "per_dataset" and r.has_mask(0) and r.has_mask(1)


def test_nodata_only_and_unmasked_rasters_are_unchanged(tmp_path, tiny_bundle):
    x = _speckle(1)
    x[0, :10, :10] = -1.0
    src = write_geotiff(tmp_path / "nd.tif", x, nodata=-1.0)
    with RasterReader(src) as r:  # GMF_NODATA alone is the nodata path's business
        assert r.info.gdal_mask == "" and not r.has_mask(0) and r.read_valid(0, 0, 0, 8, 8) is None
    sarc = tmp_path / "nd.sarc"
    compress(src, sarc, _opts(tiny_bundle))
    assert "gdal_mask" not in read_header(sarc)["raster"]
    rec = tmp_path / "nd.tif.out.tif"
    reconstruct(sarc, rec, model_dirs=[tiny_bundle], device="cpu")
    assert _mask_of(rec)[0] == gdal.GMF_NODATA


@pytest.mark.parametrize("bands", [1, 2])
def test_alpha_band_is_the_mask_and_is_not_coded(tmp_path, tiny_bundle, bands, capsys):
    """1 data band + alpha: GDAL itself reports GMF_ALPHA; 2 data bands + alpha: GDAL does not, but the
    band's colour interpretation says alpha all the same."""
    valid = _scene_mask()
    data = _with_garbage(_speckle(bands, np.uint16), valid)
    src = _add_alpha(tmp_path / "alpha.tif", data, valid)
    sarc = tmp_path / "alpha.sarc"
    res = compress(src, sarc, _opts(tiny_bundle))
    h = read_header(sarc)
    assert res.bands == bands and h["raster"]["band_count"] == bands and len(h["raster"]["band_names"]) == bands
    assert all(b["color_interp"] != "Alpha" for b in h["raster"]["bands"])
    assert h["invalid_pixels"] == bands * int((~valid).sum())
    assert h["raster"]["alpha_band"] == bands + 1 and h["raster"]["gdal_mask"] == "alpha"
    info = read_raster_info(src)
    assert (info.band_count, info.alpha_band, info.gdal_mask) == (bands, bands + 1, "alpha")
    capsys.readouterr()
    assert cli.info_main([str(sarc)]) == 0
    assert (f"invalid {bands * int((~valid).sum())} px over all bands (GDAL mask: alpha, alpha band {bands + 1} not coded; "
            "the reconstruction carries it)") in capsys.readouterr().out

    rec = tmp_path / "alpha_rec.tif"
    reconstruct(sarc, rec, model_dirs=[tiny_bundle], device="cpu")
    assert gdal.Open(str(rec)).RasterCount == bands
    flags, mask = _mask_of(rec)
    assert flags == gdal.GMF_PER_DATASET
    np.testing.assert_array_equal(mask, np.where(valid, 255, 0))
    np.testing.assert_array_equal(_all(rec)[:, ~valid], data[:, ~valid])


def test_rasters_of_alpha_bands_only_are_one_clear_error(tmp_path, tiny_bundle, capsys):
    valid = _scene_mask()
    only = _add_alpha(tmp_path / "only.tif", np.zeros((0, H, W), np.uint8), valid)
    with pytest.raises(InputRasterError, match="only band is an alpha band"):
        compress(only, tmp_path / "o.sarc", _opts(tiny_bundle))
    two = write_geotiff(tmp_path / "two.tif", np.concatenate([_speckle(1, np.uint16)] + 2 * [
        np.where(valid, 255, 0).astype(np.uint16)[None]]))
    ds = gdal.Open(str(two), gdal.GA_Update)
    for i in (2, 3):
        ds.GetRasterBand(i).SetColorInterpretation(gdal.GCI_AlphaBand)
    ds = None
    assert cli.compress_main([str(two), str(tmp_path / "t.sarc"), "--model", str(tiny_bundle), "--device",
                              "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 alpha bands (2, 3)" in err
    assert not list(tmp_path.glob("*.sarc"))


def test_a_fully_masked_band_is_refused(tmp_path, tiny_bundle):
    src = write_geotiff(tmp_path / "all.tif", _speckle(1))
    _add_mask(src, np.zeros((H, W), dtype=bool))
    with pytest.raises(InputRasterError, match="no valid pixels"):
        compress(src, tmp_path / "all.sarc", _opts(tiny_bundle))
    assert not (tmp_path / "all.sarc").exists()


# --- GDAL virtual file systems ------------------------------------------------------------------------------

@pytest.fixture
def plain(tmp_path):
    return write_geotiff(tmp_path / "scene.tif", _speckle(1, seed=3), names=["VV"])


def test_vsizip_and_vsigzip_inputs_compress_like_the_file(plain, tmp_path, tiny_bundle, capsys):
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as z:
        z.write(plain, "inner/scene.tif")
    (tmp_path / "scene.tif.gz").write_bytes(gzip.compress(plain.read_bytes()))
    ref = tmp_path / "ref.sarc"
    compress(plain, ref, _opts(tiny_bundle))
    for name, vpath in [("zip", f"/vsizip/{tmp_path}/archive.zip/inner/scene.tif"),
                        ("zip2", f"/vsizip//{str(tmp_path).lstrip('/')}/archive.zip/inner/scene.tif"),
                        ("gz", f"/vsigzip/{tmp_path}/scene.tif.gz")]:
        assert read_raster_info(vpath).width == W
        out = tmp_path / f"{name}.sarc"
        assert cli.compress_main([vpath, str(out), "--model", str(tiny_bundle), "--device", "cpu", "--tile", "64",
                                  "-q"]) == 0, capsys.readouterr().err
        assert out.read_bytes() == ref.read_bytes()


def test_missing_virtual_paths_and_virtual_outputs_are_one_clear_line(plain, tmp_path, tiny_bundle, capsys):
    with zipfile.ZipFile(tmp_path / "archive.zip", "w") as z:
        z.write(plain, "scene.tif")
    args = ["--model", str(tiny_bundle), "--device", "cpu", "-q"]
    for bad, words in [(f"/vsizip/{tmp_path}/archive.zip/missing.tif", "not found (a GDAL virtual path"),
                       (f"/vsizip/{tmp_path}/nothere.zip/scene.tif", "not found (a GDAL virtual path"),
                       ("/vsistdin/", "save the raster to a file first")]:
        assert cli.compress_main([bad, str(tmp_path / "x.sarc"), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "does not exist" not in err, err
    with pytest.raises(OutputPathError, match="can be read but not written"):
        compress(f"/vsizip/{tmp_path}/archive.zip/scene.tif", "/vsimem/out.sarc", _opts(tiny_bundle))
    assert cli.compress_main([str(plain), "/vsimem/out.sarc", *args]) == 2
    assert "give a local file as the output" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.sarc"))


def test_quality_maps_leave_out_what_the_masks_mark_invalid(tmp_path, tiny_bundle):
    """The codec restores masked pixels bit for bit and marks them in the reconstruction's mask; the quality maps
    read nodata only, so the garbage under the mask entered them as perfectly kept speckle (ENL ratio 1, EPI 1)."""
    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    valid = _scene_mask()
    src = write_geotiff(tmp_path / "masked.tif", _with_garbage(_speckle(1), valid))
    _add_mask(src, valid)
    sarc, rec = tmp_path / "m.sarc", tmp_path / "rec.tif"
    compress(src, sarc, _opts(tiny_bundle, domain="intensity"))
    reconstruct(sarc, rec, model_dirs=[tiny_bundle], device="cpu")
    enl, epi = tmp_path / "enl.tif", tmp_path / "epi.tif"
    compute_quality_maps(src, rec, enl, epi, domain="intensity", window=7)
    for path in (enl, epi):
        m = gdal.Open(str(path)).ReadAsArray()
        assert np.isnan(m[~valid]).all(), path
        assert np.isfinite(m[valid]).mean() > 0.9, path
