"""Round trips, random access, seams and determinism of the codec core (tiny test model, CPU)."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin.core import codec, container
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, reconstruct
from sar_compress_plugin.core.errors import InputRasterError
from sar_compress_plugin.core.runtime import OnnxCodecModel
from sar_compress_plugin.core.metrics import db_rmse, seam_ratio
from sar_compress_plugin.core.raster_io import RasterReader, read_raster_info

from codec_fixtures import build_tiny_bundle, write_geotiff

BERLIN = "s1_iw_grd_berlin_512.tif"
NIGERIA = "s1_iw_grd_sen1floods11_nigeria_812045_vv_vh_db.tif"


def _read_all(path) -> np.ndarray:
    with RasterReader(path) as r:
        i = r.info
        return np.stack([r.read(b, 0, 0, i.width, i.height) for b in range(i.band_count)])


@pytest.fixture(scope="module")
def berlin_sarc(tmp_path_factory, tiny_bundle, sar_data):
    out = tmp_path_factory.mktemp("berlin") / "berlin.sarc"
    res = compress(sar_data / BERLIN, out, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=128))
    return out, res


def test_real_scene_round_trip_keeps_georeferencing(berlin_sarc, sar_data, tmp_path, tiny_bundle):
    sarc, res = berlin_sarc
    src = read_raster_info(sar_data / BERLIN)
    out = tmp_path / "rec.tif"
    rr = reconstruct(sarc, out, model_dirs=[tiny_bundle], device="cpu")
    rec = read_raster_info(out)
    assert (rec.width, rec.height, rec.band_count, rec.dtype) == (src.width, src.height, src.band_count, src.dtype)
    assert rec.crs_wkt == src.crs_wkt and rec.geotransform == src.geotransform
    assert rec.band_names == src.band_names and rec.nodata == src.nodata
    assert rr.provider == "CPUExecutionProvider" == res.provider
    a, b = _read_all(sar_data / BERLIN), _read_all(out)
    for band in range(2):
        err = db_rmse(10 * np.log10(a[band]), 10 * np.log10(b[band]))
        assert err < 6.0  # the untrained tiny model is a low-pass filter; this checks plumbing, not quality


def test_bpp_and_ratio_are_measured_from_the_file(berlin_sarc, sar_data):
    sarc, res = berlin_sarc
    size = Path(sarc).stat().st_size
    assert res.output_bytes == size
    assert res.pixels == 512 * 512 and res.bands == 2
    assert res.bpp == pytest.approx(8 * size / (512 * 512))
    assert res.bpp_per_band == pytest.approx(res.bpp / 2)
    assert res.input_raw_bytes == 512 * 512 * 2 * 4
    assert res.ratio == pytest.approx(res.input_raw_bytes / size)


def test_nan_nodata_scene_restores_mask_exactly(sar_data, tiny_bundle, tmp_path):
    src = sar_data / NIGERIA
    a = _read_all(src)
    assert np.isnan(a).any()
    sarc = tmp_path / "n.sarc"
    res = compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=256))
    assert res.domain == "db"
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        b = cr.read()
    assert b.dtype == a.dtype
    assert np.array_equal(np.isnan(a), np.isnan(b))
    valid = ~np.isnan(a)
    assert db_rmse(a[valid], b[valid]) < 6.0


def test_invalid_values_and_integer_dtype_restored(tmp_path, tiny_bundle):
    rng = np.random.default_rng(1)
    amp = (np.sqrt(rng.gamma(1.0, 1.0, (2, 70, 100))) * 300).astype(np.uint16) + 1
    amp[:, :10, :10] = 0           # nodata
    amp[0, 50:, 80:] = 0
    src = write_geotiff(tmp_path / "dn.tif", amp, nodata=0, names=["VV", "VH"])
    sarc = tmp_path / "dn.sarc"
    res = compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=32))
    assert res.domain == "amplitude"
    out = tmp_path / "dn_rec.tif"
    reconstruct(sarc, out, model_dirs=[tiny_bundle], device="cpu")
    b = _read_all(out)
    assert b.dtype == np.uint16 and b.shape == amp.shape
    assert np.array_equal(b == 0, amp == 0)
    assert read_raster_info(out).band_names == ("VV", "VH")


def test_odd_invalid_values_come_back_bit_exact(tmp_path, tiny_bundle):
    rng = np.random.default_rng(2)
    x = rng.gamma(1.0, 0.05, (1, 48, 40)).astype(np.float32)
    x[0, 0, :5] = [0.0, -1.5, np.inf, np.nan, -0.0]
    x[0, 20:30, 20:30] = -9999.0
    src = write_geotiff(tmp_path / "odd.tif", x, nodata=-9999.0)
    sarc = tmp_path / "odd.sarc"
    compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16, domain="intensity"))
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        y = cr.read(band=0)
    inv = ~(np.isfinite(x[0]) & (x[0] > 0) & (x[0] != -9999.0))
    assert np.array_equal(x[0][inv].view(np.uint32), y[inv].view(np.uint32))


def test_point_targets_and_dark_pixels_come_back_within_1_db(tmp_path, tiny_bundle):
    rng = np.random.default_rng(3)
    bg = 0.05
    x = (bg * rng.gamma(1.0, 1.0, (128, 160))).astype(np.float32)  # single-look multiplicative speckle
    targets = [(10, 10), (64, 80), (127, 159), (0, 0), (40, 130), (100, 17)]
    for r, c in targets:
        x[r, c] = bg * 1000.0  # +30 dB
    x[70:73, 30:33] = bg * 1000.0  # a 3x3 bright target
    x[5, 100] = bg * 1e-4  # -40 dB dark pixel
    src = write_geotiff(tmp_path / "pt.tif", x)
    sarc = tmp_path / "pt.sarc"
    res = compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64))
    assert res.outlier_pixels >= len(targets) + 10
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        y = cr.read(band=0)
    for r, c in targets + [(71, 31), (5, 100)]:
        assert abs(10 * np.log10(y[r, c]) - 10 * np.log10(x[r, c])) < 1.0, (r, c)


def test_outlier_margin_follows_the_operating_points_lambda():
    lambdas = [0.00025, 0.0008, 0.0025, 0.008, 0.025, 0.08]
    margins = [codec.outlier_margin_db(q, lambdas) for q in np.linspace(0, 5, 21)]
    assert all(a >= b for a, b in zip(margins, margins[1:]))  # more bits buy smaller corrections
    lam3 = codec.OUTLIER_MARGIN_SCALE_DB / np.sqrt(255.0 ** 2 * 0.008)
    assert codec.outlier_margin_db(3, lambdas) == pytest.approx(max(lam3, codec.MIN_OUTLIER_MARGIN_DB))
    # between levels lambda is log-interpolated, as the gains are
    assert codec.outlier_margin_db(2.5, lambdas) == pytest.approx(
        codec.OUTLIER_MARGIN_SCALE_DB / np.sqrt(255.0 ** 2 * np.sqrt(0.0025 * 0.008)))
    assert codec.outlier_margin_db(5, [10.0] * 6) == codec.MIN_OUTLIER_MARGIN_DB


def test_moderate_outliers_are_coded_at_high_quality_and_left_clipped_at_low(tmp_path, tiny_bundle):
    """A pixel 6 dB beyond the clip range: worth 16 bits where the quality buys errors far below 6 dB, not
    where the quality's own pixels are off by more."""
    rng = np.random.default_rng(5)
    x = (0.05 * rng.gamma(4.0, 0.25, (128, 128))).astype(np.float32)
    hi = np.percentile(10 * np.log10(x), 99.5)
    spots = [(16, 16), (40, 90), (100, 30), (77, 77)]
    for r, c in spots:
        x[r, c] = 10 ** ((hi + 6.0) / 10)
    src = write_geotiff(tmp_path / "six.tif", x)
    coded = {}
    for q in (0.0, 2.0):  # the tiny model's lambdas 0.001 .. 0.1: margins 8.4 and 0.84 -> floor dB
        margin = codec.outlier_margin_db(q, [0.001, 0.01, 0.1])
        res = compress(src, tmp_path / f"q{q:g}.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu",
                                                                        tile_size=64, quality=q))
        assert codec.read_header(tmp_path / f"q{q:g}.sarc")["outliers"]["margin_db"] == pytest.approx(margin)
        coded[q] = res.outlier_pixels
    assert coded[0.0] < len(spots) <= coded[2.0]


def test_overview_is_stored_for_rasters_over_a_megapixel_or_when_asked(tmp_path, tiny_bundle):
    from sar_compress_plugin.core.overview import MIN_OVERVIEW_PIXELS

    rng = np.random.default_rng(7)
    small = write_geotiff(tmp_path / "small.tif", rng.gamma(4.0, 0.01, (1, 96, 80)).astype(np.float32))
    big = write_geotiff(tmp_path / "big.tif", rng.gamma(4.0, 0.01, (1, 1040, 1024)).astype(np.float32))
    assert 96 * 80 <= MIN_OVERVIEW_PIXELS < 1040 * 1024
    for src, ask, stored in ((small, None, False), (small, True, True), (big, None, True), (big, False, False)):
        out = tmp_path / f"{src.stem}_{ask}.sarc"
        compress(src, out, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=256, overview=ask))
        with CompressedRaster(out, model_dirs=[tiny_bundle], device="cpu") as cr:
            assert ("overview" in cr.info) is stored
            assert (cr.overview(0) is not None) is stored
            assert cr.read((0, 0, 16, 16)).shape == (1, 16, 16)


def test_overview_holds_the_block_means_of_linear_intensity(tmp_path, tiny_bundle):
    """Each overview sample is the mean linear intensity of the valid pixels of its factor x factor block, in
    dB, to within half of its 8-bit step; blocks cut by the raster's edge and by nodata included."""
    rng = np.random.default_rng(11)
    h, w = 1000, 1090  # neither a multiple of the 256-px tiles nor of the overview's 32-px blocks
    x = rng.gamma(4.0, 0.01, (h, w)).astype(np.float32) * np.linspace(0.2, 5.0, w, dtype=np.float32)
    x[300:340, 500:700] = -9999.0  # nodata across tile and block borders
    x[0:32, 0:32] = -9999.0  # one whole block without a valid pixel
    src = write_geotiff(tmp_path / "s.tif", x[None], nodata=-9999.0)
    out = tmp_path / "s.sarc"
    compress(src, out, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=256, overview=True))
    with CompressedRaster(out, model_dirs=[tiny_bundle], device="cpu") as cr:
        ov, info = cr.overview(0), cr.info["overview"]
    f = info["factor"]
    lo, hi = info["db_range"][0]
    assert ov.shape == (-(-h // f), -(-w // f))
    valid = x != -9999.0
    want = np.full(ov.shape, np.nan)
    for i in range(ov.shape[0]):
        for j in range(ov.shape[1]):
            block, ok = x[i * f:(i + 1) * f, j * f:(j + 1) * f], valid[i * f:(i + 1) * f, j * f:(j + 1) * f]
            if ok.any():
                want[i, j] = 10 * np.log10(block[ok].astype(np.float64).mean())
    assert np.isnan(ov[0, 0]) and np.array_equal(np.isnan(ov), np.isnan(want))
    inside = ~np.isnan(want) & (want > lo) & (want < hi)
    assert inside.mean() > 0.9
    np.testing.assert_array_less(np.abs(ov[inside] - want[inside]), 0.5 * (hi - lo) / 254 + 1e-4)


def test_window_reads_equal_full_reconstruction_bit_for_bit(berlin_sarc, tiny_bundle):
    sarc, _ = berlin_sarc
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        full = cr.read()
        for win in [(128, 128, 128, 128), (100, 120, 60, 50), (511, 511, 1, 1), (0, 0, 1, 1), (384, 0, 128, 512),
                    (0, 500, 512, 12), (127, 255, 2, 2), (0, 0, 512, 512)]:
            c, r, w, h = win
            part = cr.read(win)
            assert np.array_equal(part, full[:, r:r + h, c:c + w]), win
            assert np.array_equal(cr.read(win, band=1), full[1, r:r + h, c:c + w]), win


def test_window_read_touches_only_needed_chunks(berlin_sarc, tiny_bundle):
    sarc, _ = berlin_sarc
    size = Path(sarc).stat().st_size
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        before = cr.bytes_read
        cr.read((0, 0, 16, 16), band=0)
        assert cr.bytes_read - before < size / 4


def test_reconstruct_window_shifts_geotransform(berlin_sarc, tiny_bundle, tmp_path):
    sarc, _ = berlin_sarc
    out = tmp_path / "win.tif"
    res = reconstruct(sarc, out, window=(100, 50, 64, 32), model_dirs=[tiny_bundle], device="cpu")
    info = read_raster_info(out)
    gt = codec.read_header(sarc)["raster"]["geotransform"]
    assert (info.width, info.height, res.width, res.height) == (64, 32, 64, 32)
    assert info.geotransform[0] == pytest.approx(gt[0] + 100 * gt[1])
    assert info.geotransform[3] == pytest.approx(gt[3] + 50 * gt[5])
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        assert np.array_equal(_read_all(out), cr.read((100, 50, 64, 32)))


@pytest.mark.parametrize("win", [(500, 0, 20, 10), (-1, 0, 5, 5), (0, 0, 0, 5), (512, 512, 1, 1), "abc"])
def test_window_outside_raster_is_a_clear_error(berlin_sarc, tiny_bundle, win):
    sarc, _ = berlin_sarc
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        with pytest.raises(InputRasterError, match="window"):
            cr.read(win)


def test_no_seams_with_small_tiles(sar_data, tiny_bundle, tmp_path):
    """The 64-px tile grid is no more visible in a tiled reconstruction than in a single-tile one (the same
    statistic on the same grid, so the image's own texture cancels out)."""
    ratios = []
    for tile in (64, 512):
        sarc = tmp_path / f"s{tile}.sarc"
        compress(sar_data / BERLIN, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=tile))
        with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
            ratios.append(seam_ratio(10 * np.log10(cr.read(band=0).astype(np.float64)), 64))
    assert ratios[0] < ratios[1] + 0.05, ratios


def test_seam_statistic_detects_missing_halo(sar_data, tmp_path):
    """The seam check has teeth: without halo context the same model shows tile seams."""
    bundle = build_tiny_bundle(tmp_path / "nohalo", halo=0)
    sarc = tmp_path / "s0.sarc"
    compress(sar_data / BERLIN, sarc, CompressOptions(model_dir=bundle, device="cpu", tile_size=64))
    with CompressedRaster(sarc, model_dirs=[bundle], device="cpu") as cr:
        img = 10 * np.log10(cr.read(band=0).astype(np.float64))
    assert seam_ratio(img, 64) > 1.05


def test_decoding_is_deterministic_across_sessions(berlin_sarc, tiny_bundle):
    sarc, _ = berlin_sarc
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as a:
        x = a.read((0, 0, 256, 256))
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as b:
        y = b.read((0, 0, 256, 256))
    assert x.tobytes() == y.tobytes()


def test_latents_are_the_decoder_inputs_of_the_hyperprior(berlin_sarc, tiny_bundle):
    """CompressedRaster.latents gives float32 decoder inputs: integer symbols plus the integer h_s's means, times
    the quality's inverse gains; undoing the gains and means gives back integers within the symbol range."""
    sarc, res = berlin_sarc
    assert res.quality == 1.0
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        hp = cr.model.hyperprior
        y = cr.latents(1, 5)
        assert y.dtype == np.float32 and y.shape == (4, 8, 8)
        data = cr._reader.read_chunk(cr.info["chunks"]["latent"][cr.grid.count + 5], "t")
        zq_words = int(np.frombuffer(data[:4], "<u4")[0])
        zq = hp.z_tables.decode(data[4:4 + 4 * zq_words], hp.z_shape(8, 8), "t").astype(np.int16)
        _, means = hp.entropy_parameters(zq, 8, 8)
        sym = y * hp.gain(1.0) - means
        assert np.abs(sym - np.rint(sym)).max() < 1e-3 and np.abs(sym).max() <= 1023
        assert np.array_equal(hp.decode(data, (4, 8, 8), "t") * hp.inverse_gain(1.0), y)


def test_decoding_modules_are_pure_numpy():
    core = Path(codec.__file__).parent
    for name in ("hyperprior.py", "hyper_decoder.py", "entropy_coding.py", "container.py"):
        src = (core / name).read_text()
        assert "onnxruntime" not in src and "torch" not in src.replace("torch layers", ""), name


def test_compressed_raster_is_picklable(berlin_sarc, tiny_bundle):
    sarc, _ = berlin_sarc
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        first = cr.read((10, 10, 20, 20))
        clone = pickle.loads(pickle.dumps(cr))
    with clone:
        assert np.array_equal(clone.read((10, 10, 20, 20)), first)


def test_header_records_everything_needed(berlin_sarc):
    sarc, res = berlin_sarc
    h = codec.read_header(sarc)
    assert h["format_version"] == container.version_for(physical_bands=False) == 4
    assert h["coders"]["latent"] == container.LATENT_CODER == "range-meanscale-int16"
    assert h["rate"] == {"quality": 1.0, "levels": 3, "chosen_by": "default", "rounding": "rate_distortion"}
    assert "quantization" not in h
    assert len(h["hyperprior"]["sha256"]) == 64
    assert len(h["model"]["decoder_sha256"]) == 64
    assert h["raster"]["band_names"] == ["Intensity_VV", "Intensity_VH"]
    assert h["clip_db"] == res.clip_db
    assert h["tiling"]["tile_size"] == 128 and h["tiling"]["halo"] == 32
    assert len(h["chunks"]["latent"]) == 16 * 2


def test_header_is_zstd_framed_against_the_frozen_dictionary(berlin_sarc):
    import hashlib
    import zstandard
    from sar_compress_plugin.core import header_dictionary

    sarc, _ = berlin_sarc
    raw = sarc.read_bytes()
    assert container.PREAMBLE.unpack(raw[:container.PREAMBLE.size])[1] == container.version_for(physical_bands=False) == 4
    off, length, *_ = container.FOOTER.unpack(raw[-container.FOOTER.size:])
    body = raw[off:off + length]
    assert body[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    # the dictionary is part of format 4: its bytes may never change
    assert hashlib.sha256(header_dictionary.HEADER_DICTIONARY).hexdigest() == \
        header_dictionary.HEADER_DICTIONARY_SHA256 == \
        "67ffb854fb9e27e19625c59cce74aa2984e72f1068381e2c633921c1f11436d7"
    with pytest.raises(zstandard.ZstdError):  # not decodable without it
        zstandard.ZstdDecompressor().decompress(body)
    text = container.decode_header(body, 4, 1 << 24, "h")
    assert len(body) < 0.6 * len(container.zstd_compress(text, 19))


def test_format_3_files_with_plain_zstd_headers_still_read(berlin_sarc, tmp_path, tiny_bundle):
    import hashlib
    import zlib

    sarc, _ = berlin_sarc
    raw = sarc.read_bytes()
    off, length, *_ = container.FOOTER.unpack(raw[-container.FOOTER.size:])
    text = container.decode_header(raw[off:off + length], 4, 1 << 24, "h").replace(b'"format_version":4',
                                                                                  b'"format_version":3')
    body = container.PREAMBLE.pack(container.MAGIC, 3, 0, 0) + raw[container.PREAMBLE.size:off]
    body += container.zstd_compress(text, 19)
    old = tmp_path / "v3.sarc"
    old.write_bytes(body + container.FOOTER.pack(off, len(body) - off, zlib.crc32(body[off:]),
                                                 hashlib.sha256(body).digest(), container.FOOTER_MAGIC))
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as a, \
            CompressedRaster(old, model_dirs=[tiny_bundle], device="cpu") as b:
        assert b.info["format_version"] == 3
        assert np.array_equal(a.read((100, 120, 60, 50)), b.read((100, 120, 60, 50)))


def test_core_imports_neither_qgis_nor_torch():
    core = Path(codec.__file__).parent
    for f in core.glob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in ("qgis", "torch", "PyQt5", "rasterio"), f"{f.name} imports {n}"


def test_calibration_offset_does_not_change_rate_or_distortion(sar_data, tiny_bundle, tmp_path):
    """The same scene 30 dB up (x1000 in intensity) compresses to the same bits and error: per-file bounds."""
    with RasterReader(sar_data / BERLIN) as r:
        info = r.info
        vv = r.read(0, 0, 0, info.width, info.height)
    figures = []
    for gain in (1.0, 1000.0):
        src = write_geotiff(tmp_path / f"vv_{gain:g}.tif", (vv * gain).astype(np.float32))
        res = compress(src, tmp_path / f"vv_{gain:g}.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu",
                                                                           domain="intensity"))
        reconstruct(tmp_path / f"vv_{gain:g}.sarc", tmp_path / f"vv_{gain:g}_rec.tif", model_dirs=[tiny_bundle])
        rec = _read_all(tmp_path / f"vv_{gain:g}_rec.tif")[0]
        figures.append((res.output_bytes, db_rmse(10 * np.log10(vv * gain), 10 * np.log10(rec)), res.clip_db[0]))
    (bytes_1, rmse_1, clip_1), (bytes_1000, rmse_1000, clip_1000) = figures
    assert np.allclose(np.array(clip_1000) - np.array(clip_1), 30.0, atol=1e-3)  # bounds follow the data
    assert abs(bytes_1000 - bytes_1) / bytes_1 < 0.02
    assert rmse_1000 == pytest.approx(rmse_1, abs=0.01)


def test_sar_info_shows_where_the_bytes_go(berlin_sarc, capsys):
    import re

    from sar_compress_plugin.cli import info_main

    path, res = berlin_sarc
    assert info_main([str(path)]) == 0
    text = capsys.readouterr().out
    parts = {k: int(v) for k, v in re.findall(r"(latent|mask|outlier|header\+index) (\d+) \(", text)}
    assert set(parts) == {"latent", "mask", "outlier", "header+index"}
    assert sum(parts.values()) == path.stat().st_size
    assert f"outliers {res.outlier_pixels} px" in text


def test_sessions_keep_no_per_shape_memory_plans(tiny_bundle):
    """Edge tiles give several input shapes; with memory patterns on, onnxruntime keeps a buffer plan per shape
    (measured on the default decoder: 954 MB instead of 461 MB after 6 shapes). Memory itself is a benchmark
    (benchmarks/codec_memory.py); this pins the setting."""
    m = OnnxCodecModel(tiny_bundle, device="cpu")
    assert m._enc.get_session_options().enable_mem_pattern is False
    assert m._dec.get_session_options().enable_mem_pattern is False
