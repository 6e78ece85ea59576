"""The benchmarks measure a band's physical values (stored * GDAL scale + offset), as the demo and sar-eval do:
rate_distortion.py and jpeg2000.py scored the stored numbers, so a scaled product (an int16 sigma0 product in
hundredths of a dB) was measured as values 100 times too wide."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import jpeg2000  # noqa: E402
import rate_distortion as rd  # noqa: E402
from codec_fixtures import write_geotiff  # noqa: E402

H, W = 64, 64


def _db_chip() -> np.ndarray:
    """sigma0 in dB, rounded to hundredths, so an int16 product under a scale of 0.01 holds it exactly."""
    rng = np.random.default_rng(0)
    return np.round(-15.0 + 4.0 * rng.standard_normal((H, W)), 2)


def _int16_product(path: Path, db: np.ndarray) -> Path:
    """`db` as a quantized sigma0 product: int16 hundredths of a dB under a GDAL scale of 0.01, nodata -32768 in
    its first 8 rows."""
    from osgeo import gdal

    stored = np.rint(db / 0.01).astype(np.int16)
    stored[:8] = -32768
    write_geotiff(path, stored, nodata=-32768)
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.GetRasterBand(1).SetScale(0.01)
    ds = None
    return path


def _scene(path: Path) -> dict:
    return {"name": path.stem, "path": str(path), "domain": "db", "bands": ["VV"]}


def _twin_products(tmp_path: Path) -> tuple[Path, Path, Path]:
    """One dB chip as an int16 product in hundredths of a dB and as float32 dB (its first rows no-data in both),
    and an empty work folder: a benchmark that measures physical values gives both the same figures."""
    db = _db_chip()
    floats = db.astype(np.float32)
    floats[:8] = np.nan
    scaled = _int16_product(tmp_path / "int16.tif", db)
    plain = write_geotiff(tmp_path / "float32.tif", floats, nodata=float("nan"))
    work = tmp_path / "work"
    work.mkdir()
    return scaled, plain, work


def test_a_scaled_band_is_measured_in_its_physical_values(tmp_path, tiny_bundle):
    scaled, plain, work = _twin_products(tmp_path)
    got = {}
    for name, path in (("scaled", scaled), ("plain", plain)):
        for sb in rd.scene_bands(_scene(path), work):
            got[name] = (sb.values, sb.valid, sb.clip,
                         rd.learned_point(sb.src, sb.values, sb.domain, sb.clip, sb.nodata, 1.0, tiny_bundle, "cpu",
                                          work),
                         sb.jpeg2000(1.0, work))
    (s_values, s_valid, s_clip, s_learned, s_jp2), (p_values, p_valid, p_clip, p_learned, p_jp2) = \
        got["scaled"], got["plain"]
    assert not s_valid[:8].any() and s_valid[8:].all()  # the stored nodata, -32768, is no -327.68 dB
    np.testing.assert_allclose(s_values[8:], _db_chip()[8:], atol=1e-9)  # physical, not hundredths
    assert s_clip == pytest.approx(p_clip, abs=1e-4)
    for s, p in ((s_learned, p_learned), (s_jp2, p_jp2)):
        assert s["valid_pixels"] == p["valid_pixels"] == (H - 8) * W
        for key in ("db_rmse", "psnr", "ssim"):
            assert s[key] == pytest.approx(p[key], rel=0.02, abs=2e-3), key  # the int16 rounding
        assert 0 < s["db_rmse"] < 10  # hundredths of a dB taken for dB: errors of hundreds of "dB"


def test_jpeg2000_on_a_file_measures_its_physical_values(tmp_path, capsys):
    db = _db_chip()
    floats = db.astype(np.float32)
    floats[:8] = np.nan
    assert jpeg2000.main([str(_int16_product(tmp_path / "int16.tif", db)), "--domain", "db", "--bpp", "1"]) == 0
    scaled = capsys.readouterr().out
    assert jpeg2000.main([str(write_geotiff(tmp_path / "float32.tif", floats, nodata=float("nan"))),
                          "--domain", "db", "--bpp", "1"]) == 0
    assert scaled == capsys.readouterr().out  # the same line, figure for figure


def _int8_decoder(scene: dict, bundle: Path, work: Path, monkeypatch) -> dict:
    import int8_decoder  # noqa: PLC0415

    monkeypatch.setattr(int8_decoder, "grd_scenes", lambda *args, **kwargs: [scene])
    row = int8_decoder.error_rows(bundle, bundle / "decoder.onnx", [1.0], work, log=lambda *_: None)[0]
    return {k: row[k] for k in ("db_rmse_float32", "db_rmse_int8")}


def _residual_layer(scene: dict, bundle: Path, work: Path, monkeypatch) -> dict:
    import residual_layer  # noqa: PLC0415

    rows = residual_layer.run_scene(scene, [1.0], [1.0], [], bundle, work, lambda *_: None)
    return {r["setting"]: r["db_rmse"] for r in rows}


def _outlier_margin(scene: dict, bundle: Path, work: Path, monkeypatch) -> dict:
    import outlier_margin  # noqa: PLC0415

    for sb in rd.scene_bands(scene, work):
        m = outlier_margin.measure(sb, 1.0, 4.0, bundle, work)
        return {"valid": m["valid"], "db_rmse": float(np.sqrt(m["sse_db2"] / m["valid"]))}


def _seams(scene: dict, bundle: Path, work: Path, monkeypatch) -> dict:
    import seams  # noqa: PLC0415

    (rec_db,) = seams.reconstruct_db(Path(scene["path"]), 64, bundle, work, "db", 1)
    return {"mean_db": float(rec_db[8:].mean()), "std_db": float(rec_db[8:].std())}


@pytest.mark.parametrize("measured", [_int8_decoder, _residual_layer, _outlier_margin, _seams],
                         ids=lambda f: f.__name__.strip("_"))
def test_the_other_codec_benchmarks_score_a_scaled_band_in_its_physical_values(tmp_path, tiny_bundle, monkeypatch,
                                                                                measured):
    """int8_decoder.py, residual_layer.py, outlier_margin.py and seams.py read the reconstruction's stored values
    (`RasterReader.read`, `CompressedRaster.read`) against physical ones: an int16 dB product's hundredths of a dB
    scored as dB. Each now gives the figures of the same band held as float32 dB (to the int16 rounding)."""
    scaled, plain, work = _twin_products(tmp_path)
    s, p = (measured(_scene(path), tiny_bundle, work, monkeypatch) for path in (scaled, plain))
    assert s.keys() == p.keys()
    for key in p:
        assert s[key] == pytest.approx(p[key], rel=0.02, abs=2e-3), key
