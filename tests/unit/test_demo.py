"""The README's main command: sar-demo on the bundled sample, and the figures it computes."""

import json

import numpy as np
import pytest

from sar_compress_plugin import demo
from sar_compress_plugin.core.codec import read_header
from sar_compress_plugin.core.evaluation import aggregate, band_quality


def test_band_quality_of_perfect_and_offset_reconstructions():
    rng = np.random.default_rng(0)
    intensity = rng.gamma(1.0, 100.0, size=(64, 64)).astype(np.float32)
    intensity[0, 0] = 0.0  # invalid: excluded everywhere
    perfect = band_quality(intensity, intensity.copy(), "intensity", (10.0, 30.0))
    assert perfect["db_rmse"] == 0.0 and perfect["psnr"] == float("inf")
    assert perfect["enl_ratio"] == pytest.approx(1.0) and perfect["epi"] == pytest.approx(1.0)
    assert perfect["valid_pixels"] == 64 * 64 - 1 and perfect["validity_mask_identical"]
    # +1 dB everywhere: dB RMSE is exactly 1, ENL (scale invariant) unchanged
    louder = np.where(intensity > 0, intensity * 10 ** 0.1, 0).astype(np.float32)
    q = band_quality(intensity, louder, "intensity", (10.0, 30.0))
    assert q["db_rmse"] == pytest.approx(1.0, abs=1e-4)
    assert q["enl_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert q["out_of_range_pixels"] == int(((10 * np.log10(intensity[intensity > 0]) < 10) |
                                            (10 * np.log10(intensity[intensity > 0]) > 30)).sum())
    agg = aggregate([perfect, q])
    assert agg["db_rmse"] == pytest.approx(np.sqrt(0.5), abs=1e-4)


def test_demo_compresses_and_reconstructs_the_sample(tmp_path, tiny_bundle, capsys):
    assert demo.SAMPLE.is_file()
    rc = demo.main(["--out", str(tmp_path), "--model", str(tiny_bundle), "--device", "cpu", "--json"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    size = (tmp_path / "s1_iw_grd_frankfurt_512.sarc").stat().st_size
    assert res["compressed_bytes"] == size
    assert res["bpp"] == pytest.approx(8 * size / (512 * 512))
    assert res["ratio"] == pytest.approx(2 * 512 * 512 * 4 / size)
    assert [b["band"] for b in res["bands"]] == ["Intensity_VV", "Intensity_VH"]  # GeoTIFF descriptions
    assert all(b["validity_mask_identical"] for b in res["bands"])
    assert res["provider"] == "CPUExecutionProvider"
    assert 0 < res["overall"]["db_rmse"] < 20
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert res["model"]["name"] == manifest["name"] and res["model"]["path"] == str(tiny_bundle)
    assert res["quality"] == read_header(tmp_path / "s1_iw_grd_frankfurt_512.sarc")["rate"]["quality"]


def test_demo_reports_missing_model_clearly(tmp_path, capsys):
    rc = demo.main(["--out", str(tmp_path), "--model", str(tmp_path / "nope")])
    assert rc == 2
    assert capsys.readouterr().err.startswith("error:")


@pytest.mark.parametrize("out", ["a_file", "a_file/sub"])
def test_an_output_folder_that_cannot_be_made_is_one_error_line(tmp_path, tiny_bundle, out, capsys):
    """--out naming a file (or a folder under one) raised FileExistsError / NotADirectoryError from mkdir: a
    traceback and status 1, where every other command line gives one "error:" line and status 2."""
    (tmp_path / "a_file").write_text("not a folder")
    rc = demo.main(["--out", str(tmp_path / out), "--model", str(tiny_bundle), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_a_one_pixel_raster_gives_strict_json_and_n_a(tmp_path, tiny_bundle, capsys):
    """A 1 x 1 band has no ENL ratio (no window) and no EPI (no edge): --json wrote NaN, which strict JSON readers
    refuse, and the table printed nan where the overall row said n/a."""
    from codec_fixtures import write_geotiff

    src = write_geotiff(tmp_path / "flat.tif", np.full((1, 1, 1), 0.05, np.float32))

    def refuse(const):
        raise ValueError(f"non-standard JSON constant {const}")

    assert demo.main(["--input", str(src), "--out", str(tmp_path / "o"), "--model", str(tiny_bundle),
                      "--device", "cpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert res["bands"][0]["enl_ratio"] is None and res["bands"][0]["epi"] is None
    assert demo.main(["--input", str(src), "--out", str(tmp_path / "o2"), "--model", str(tiny_bundle),
                      "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "nan" not in table and "n/a" in table.splitlines()[6]  # the band row, under the header


def test_the_demo_says_which_model_and_quality_its_figures_come_from(tmp_path, tiny_bundle, capsys):
    """The README quotes the demo's figures: without the model, its training and the quality they cannot be
    told apart from another model's (benchmarks/results/demo_cpu.json recorded neither)."""
    assert demo.main(["--out", str(tmp_path), "--model", str(tiny_bundle), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    quality = read_header(tmp_path / "s1_iw_grd_frankfurt_512.sarc")["rate"]["quality"]
    name = json.loads((tiny_bundle / "manifest.json").read_text())["name"]
    line = [ln for ln in out.splitlines() if ln.startswith("model ")]
    assert len(line) == 1 and name in line[0] and line[0].endswith(f"quality {quality:g}")


def test_the_bundled_models_line_counts_its_training():
    line = demo._model_line({"name": "m", "steps": 161359, "patches": 1275740})
    assert line == "m (161,359 steps, 1,275,740 patches)"
    assert demo._model_line({"name": "m", "steps": None, "patches": None}) == "m"


def test_the_demo_of_an_int16_db_product_gives_the_figures_of_its_db(tmp_path, tiny_bundle, sar_data, capsys):
    """An int16 sigma0 product (hundredths of a dB under a GDAL scale of 0.01) is coded as its dB; the demo took its
    stored values for dB: all at the -100 dB noise floor, "perfect" (SSIM 1.0, 0.03 and 0.0 dB RMSE where the
    same dB as float32 gave 2.1 and 2.3). Its figures are those of the same values stored as float32 dB."""
    from codec_fixtures import GHANA_DB, int16_db_product, write_geotiff
    from osgeo import gdal

    scaled = int16_db_product(sar_data / GHANA_DB, tmp_path / "int16.tif")
    stored = gdal.Open(str(scaled)).ReadAsArray()
    floats = write_geotiff(tmp_path / "float32.tif", np.where(stored == -32768, np.nan, stored * 0.01).astype(
        np.float32), nodata=float("nan"))
    results = []
    for src in (scaled, floats):
        assert demo.main(["--input", str(src), "--out", str(tmp_path / src.stem), "--model", str(tiny_bundle),
                          "--device", "cpu", "--json"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    got, want = results
    assert got["domain"] == want["domain"] == "db"
    for g, w in zip(got["bands"] + [got["overall"]], want["bands"] + [want["overall"]]):
        assert g["valid_pixels"] == w["valid_pixels"]
        for key in ("db_rmse", "psnr", "ssim", "enl_ratio", "epi"):
            assert g[key] == pytest.approx(w[key], rel=0.02, abs=1e-3), key  # the int16 rounding
    assert got["overall"]["valid_pixels"] == 2 * (512 * 512 - 32 * 32)  # the nodata block
    assert got["overall"]["db_rmse"] > 0.5
