"""Bands with a GDAL scale and offset (physical = stored * scale + offset): the codec codes, measures and reports
the physical values, and its reconstruction writes the stored dtype back under the same scale and offset.

Each scaled raster is compared with the same physical values stored unscaled as float32: the codec must see the
two alike. Before, it coded the stored values: an int16 sigma0 product (hundredths of a dB) had its clip range,
outlier margins and dB targets 100 times off and every value below -1 dB clamped at the -100 "dB" noise floor (on
a 256 x 256 Sen1Floods11 chip 8.8 and 15.7 dB RMSE against 0.40 and 0.43), and a linear band was taken to the
log before its offset (stored = intensity - 10000: the pixels under 10000 stored negative, coded as invalid
pixels bit for bit, a file 8.8 times larger)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sar_compress_plugin.core import codec, container
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.container import ContainerFormatError
from sar_compress_plugin.core.metrics import db_rmse
from sar_compress_plugin.core.preprocessing import explain_domain
from sar_compress_plugin.core.raster_io import RasterReader, physical_values

from codec_fixtures import write_geotiff
from test_codec_errors import rewrite_header

GHANA_DB = "s1_iw_grd_sen1floods11_ghana_53713_vv_vh_db.tif"
FRANKFURT = "s1_iw_grd_frankfurt_512.tif"
N = 128
INT16_NODATA = -32768


def _scene(sar_data: Path, name: str) -> np.ndarray:
    return gdal.Open(str(sar_data / name)).ReadAsArray()[:, :N, :N].astype(np.float64)


def _write(path: Path, stored: np.ndarray, nodata=None, scale=None, offset=None, domain=None) -> Path:
    write_geotiff(path, stored, nodata=nodata)
    ds = gdal.Open(str(path), gdal.GA_Update)
    if domain:
        ds.SetMetadata({"VALUE_DOMAIN": domain})
    for b in range(ds.RasterCount):
        if scale is not None:
            ds.GetRasterBand(b + 1).SetScale(scale)
        if offset is not None:
            ds.GetRasterBand(b + 1).SetOffset(offset)
    ds = None
    return path


def _physical(path: Path) -> np.ndarray:
    """Every band as GDAL means it, stored * scale + offset, nodata NaN (float64)."""
    with RasterReader(path) as r:
        i = r.info
        out = []
        for b in range(i.band_count):
            values, nodata = r.physical(b, r.read(b, 0, 0, i.width, i.height))
            values = np.asarray(values, dtype=np.float64)
            if nodata is not None:
                values = np.where(values == nodata, np.nan, values)
            out.append(values)
        return np.stack(out)


def _opts(bundle, **kw) -> CompressOptions:
    return CompressOptions(model_dir=bundle, device="cpu", tile_size=64, **kw)


def _to_db(values: np.ndarray, domain: str) -> np.ndarray:
    return values if domain == "db" else (10 if domain == "intensity" else 20) * np.log10(values)


def _round_trip(src: Path, bundle, tmp_path: Path, **kw):
    sarc, rec = tmp_path / f"{src.stem}.sarc", tmp_path / f"{src.stem}_rec.tif"
    res = compress(src, sarc, _opts(bundle, **kw))
    reconstruct(sarc, rec, model_dirs=[bundle], device="cpu")
    return res, read_header(sarc), rec


def _rmse(original: Path, rec: Path, domain: str) -> list[float]:
    a, b = _physical(original), _physical(rec)
    valid = np.isfinite(a)
    assert np.array_equal(valid, np.isfinite(b))  # nodata stays nodata, and nothing else becomes it
    return [db_rmse(_to_db(a[k][valid[k]], domain), _to_db(b[k][valid[k]], domain)) for k in range(len(a))]


@pytest.fixture(scope="module")
def db_pair(tmp_path_factory, sar_data):
    """The Ghana chip's sigma0 dB as int16 hundredths of a dB (scale 0.01, nodata -32768, a nodata corner) and
    the same physical values as float32 (NaN nodata)."""
    d = tmp_path_factory.mktemp("db")
    stored = np.clip(np.rint(_scene(sar_data, GHANA_DB) / 0.01), -32767, 32767).astype(np.int16)
    stored[:, :8, :8] = INT16_NODATA
    physical = np.where(stored == INT16_NODATA, np.nan, stored * 0.01).astype(np.float32)
    return (_write(d / "db_f32.tif", physical, nodata=float("nan"), domain="sigma0_db"),
            _write(d / "db_i16.tif", stored, nodata=INT16_NODATA, scale=0.01, domain="sigma0_db"))


def test_an_int16_db_product_is_coded_and_reported_in_db(db_pair, tiny_bundle, tmp_path):
    float_copy, scaled = db_pair
    (tmp_path / "f").mkdir()
    f_res, f_head, f_rec = _round_trip(float_copy, tiny_bundle, tmp_path / "f", quality=1.0)
    s_res, s_head, s_rec = _round_trip(scaled, tiny_bundle, tmp_path, quality=1.0)
    assert s_res.domain == f_res.domain == "db"
    np.testing.assert_allclose(s_head["clip_db"], f_head["clip_db"], atol=1e-4)
    assert s_head["outliers"] == f_head["outliers"] and s_head["invalid_pixels"] == f_head["invalid_pixels"] == 128
    assert s_head["raster"]["bands"][0]["coded"] == "physical" and "coded" not in f_head["raster"]["bands"][0]
    # version 5 only where a band is coded physical: a version-4 reader would apply the scale to it twice
    assert (s_head["format_version"], f_head["format_version"]) == (5, 4)
    assert [container.PREAMBLE.unpack(p.read_bytes()[:container.PREAMBLE.size])[1]
            for p in (tmp_path / f"{scaled.stem}.sarc", tmp_path / "f" / f"{float_copy.stem}.sarc")] == [5, 4]
    np.testing.assert_allclose(_rmse(scaled, s_rec, "db"), _rmse(float_copy, f_rec, "db"), atol=0.01)
    ds = gdal.Open(str(s_rec))
    out = ds.GetRasterBand(1)
    assert gdal.GetDataTypeName(out.DataType) == "Int16"
    assert (out.GetScale(), out.GetOffset(), out.GetNoDataValue()) == (0.01, 0.0, INT16_NODATA)
    assert (out.ReadAsArray()[:8, :8] == INT16_NODATA).all()


def test_a_db_rmse_target_on_an_int16_db_product_is_in_db(db_pair, tiny_bundle, tmp_path):
    """The search's estimate on the sample tiles and the quality it picks are those of the float32 copy."""
    float_copy, scaled = db_pair
    f = compress(float_copy, tmp_path / "f.sarc", _opts(tiny_bundle, target_db_rmse=2.5))
    s = compress(scaled, tmp_path / "s.sarc", _opts(tiny_bundle, target_db_rmse=2.5))
    f_rate, s_rate = read_header(tmp_path / "f.sarc")["rate"], read_header(tmp_path / "s.sarc")["rate"]
    assert s.quality == f.quality
    assert s_rate["sample_estimate"] == pytest.approx(f_rate["sample_estimate"], rel=1e-3)
    assert 1.0 < s_rate["sample_estimate"] < 10.0


def test_an_untagged_int16_db_product_is_taken_as_db(db_pair, tiny_bundle, tmp_path):
    """Integers are amplitude by default, but physical values mostly negative are not: the stored ones were
    read as amplitude and every pixel was invalid ("band 1 has no valid pixels")."""
    _, scaled = db_pair
    untagged = gdal.Translate(str(tmp_path / "untagged.tif"), str(scaled))
    untagged.SetMetadata({})
    untagged = None
    res = compress(tmp_path / "untagged.tif", tmp_path / "u.sarc", _opts(tiny_bundle, quality=1.0))
    assert res.domain == "db" and "int16 data with a scale/offset" in res.domain_reason
    sample = np.array([5.0, 7.0, 100.0])
    assert explain_domain("uint16", sample, scaled=True)[0] == "amplitude"
    assert explain_domain("uint16", -sample)[0] == "amplitude"  # unscaled integers: as before


def test_a_linear_band_with_an_offset_is_logged_after_the_offset(sar_data, tiny_bundle, tmp_path):
    intensity = _scene(sar_data, FRANKFURT)
    stored = (intensity - 10000.0).astype(np.float32)
    assert (stored < 0).mean() > 0.05  # those were invalid "intensities"
    scaled = _write(tmp_path / "off.tif", stored, offset=10000.0, domain="intensity")
    float_copy = _write(tmp_path / "phys.tif", (stored.astype(np.float64) + 10000.0).astype(np.float32),
                        domain="intensity")
    (tmp_path / "f").mkdir()
    f_res, f_head, f_rec = _round_trip(float_copy, tiny_bundle, tmp_path / "f", quality=1.0)
    s_res, s_head, s_rec = _round_trip(scaled, tiny_bundle, tmp_path, quality=1.0)
    assert s_head["invalid_pixels"] == f_head["invalid_pixels"] == 0
    np.testing.assert_allclose(s_head["clip_db"], f_head["clip_db"], atol=1e-4)
    assert s_res.output_bytes < 1.1 * f_res.output_bytes
    np.testing.assert_allclose(_rmse(scaled, s_rec, "intensity"), _rmse(float_copy, f_rec, "intensity"), atol=0.01)
    ds = gdal.Open(str(s_rec))
    out = ds.GetRasterBand(1)
    assert gdal.GetDataTypeName(out.DataType) == "Float32" and out.GetOffset() == 10000.0


def test_a_uint16_amplitude_band_with_a_scale_offset_and_nodata_0_round_trips(sar_data, tiny_bundle, tmp_path):
    """Stored 0 is nodata and means 40 physical: a dark pixel decoded near 40 must come back as stored 1, not
    as nodata; every valid pixel stays valid, and the window read equals the full reconstruction's window."""
    amplitude = np.sqrt(_scene(sar_data, FRANKFURT))
    stored = np.clip(np.rint((amplitude - 40.0) / 0.05), 1, 65535).astype(np.uint16)
    stored[:, :, :8] = 0
    scaled = _write(tmp_path / "amp.tif", stored, nodata=0, scale=0.05, offset=40.0, domain="amplitude")
    float_copy = _write(tmp_path / "phys.tif", np.where(stored == 0, np.nan, stored * 0.05 + 40.0).astype(np.float32),
                        nodata=float("nan"), domain="amplitude")
    (tmp_path / "f").mkdir()
    _, _, f_rec = _round_trip(float_copy, tiny_bundle, tmp_path / "f", quality=1.0)
    _, header, s_rec = _round_trip(scaled, tiny_bundle, tmp_path, quality=1.0)
    np.testing.assert_allclose(_rmse(scaled, s_rec, "amplitude"), _rmse(float_copy, f_rec, "amplitude"),
                               atol=0.01)
    with CompressedRaster(tmp_path / "amp.sarc", model_dirs=[tiny_bundle], device="cpu") as cr:
        assert cr.scaling == [(0.05, 40.0), (0.05, 40.0)]
        assert cr.to_raster_values(np.array([20 * np.log10(40.01), np.nan]), 0).tolist() == [1, 0]
        window = (37, 5, 70, 90)
        c, r, w, h = window
        np.testing.assert_array_equal(cr.read(window), gdal.Open(str(s_rec)).ReadAsArray()[:, r:r + h, c:c + w])
    assert header["raster"]["nodata"] == [0, 0]


def test_a_stored_integer_is_kept_where_its_physical_value_is_positive():
    assert codec._positive_stored_range(0, 65535, None) == (1, 65535)
    assert codec._positive_stored_range(0, 65535, (1.0, -100.0)) == (101, 65535)
    assert codec._positive_stored_range(-32768, 32767, (-0.5, 10.0)) == (-32768, 19)
    assert codec._positive_stored_range(0, 255, (1.0, 10.0)) == (0, 255)


def test_physical_values_mask_the_stored_nodata_first():
    values, nodata = physical_values(np.array([-32768, 0, -1500], np.int16), -32768.0, (0.01, 0.0))
    assert nodata is None and np.isnan(values[0]) and values[1:].tolist() == [0.0, -15.0]
    stored = np.array([3, 4], np.uint16)
    assert physical_values(stored, 3.0, None) == (stored, 3.0)


def test_files_written_before_keep_decoding_their_stored_values(db_pair, tiny_bundle, tmp_path):
    """A band with a scale but no `coded` (every file before the codec read scales) was coded as stored values and
    decodes so; a `coded` band with scale 0 is a damaged header."""
    _, scaled = db_pair
    compress(scaled, tmp_path / "new.sarc", _opts(tiny_bundle, quality=1.0))

    def drop(h):
        for band in h["raster"]["bands"]:
            del band["coded"]

    old = rewrite_header(tmp_path / "new.sarc", tmp_path / "old.sarc", drop)
    with CompressedRaster(tmp_path / "new.sarc", model_dirs=[tiny_bundle], device="cpu") as new, \
            CompressedRaster(old, model_dirs=[tiny_bundle], device="cpu") as before:
        assert before.scaling == [None, None] and new.scaling == [(0.01, 0.0), (0.01, 0.0)]
        stored, as_before = new.read(band=0), before.read(band=0)
        valid = stored != INT16_NODATA
        assert np.abs(as_before[valid] - np.rint(stored[valid] * 0.01)).max() <= 1

    def zero(h):
        h["raster"]["bands"][0]["scale"] = 0.0

    with pytest.raises(ContainerFormatError, match="scale"):
        CompressedRaster(rewrite_header(tmp_path / "new.sarc", tmp_path / "zero.sarc", zero))


def test_a_band_with_scale_0_is_refused(tmp_path, tiny_bundle):
    src = _write(tmp_path / "z.tif", np.ones((16, 16), np.uint16), scale=0.0)
    with pytest.raises(codec.InputRasterError, match="scale 0"):
        compress(src, tmp_path / "z.sarc", _opts(tiny_bundle))
