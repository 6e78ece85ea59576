"""Rate-distortion optimised rounding (core/rd_rounding.py) and the distortion weights export measures for it
(export/distortion_weights.py). The decoder is untouched, so every test that decodes uses the unchanged reader."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from codec_fixtures import write_geotiff
from export.distortion_weights import distortion_weights
from export.distortion_weights import main as weights_main
from sar_compress_plugin.core.codec import CompressOptions, CompressedRaster, compress, read_header
from sar_compress_plugin.core.errors import ModelBundleError
from sar_compress_plugin.core.raster_io import RasterReader
from sar_compress_plugin.core.rd_rounding import error_weights, rd_round, symbol_bits
from sar_compress_plugin.core.runtime import OnnxCodecModel, default_model_dir


def test_symbol_bits_are_the_code_lengths_of_the_counts():
    bits = symbol_bits(np.array([[1, 1, 1, 1], [1, 2, 4, 1]]))
    assert bits[0] == pytest.approx([2.0] * 4)
    assert bits[1] == pytest.approx(-np.log2(np.array([1, 2, 4, 1]) / 8.0))


def test_rd_round_trades_bits_for_error_and_never_strays_past_the_two_neighbours():
    bits = symbol_bits(np.array([[1, 1, 98, 1, 1]]))  # symbols -2..2; 0 costs 0.03 bits, the others 6.6
    d = np.array([[[0.8, -0.7, 1.6, -2.4, 0.3]]], np.float32)
    idx = np.zeros(d.shape, np.uint8)
    free = rd_round(d, idx, bits, np.zeros(1), -2, 2)   # error costs nothing: the cheaper neighbour
    assert free.tolist() == [[[0, 0, 1, -2, 0]]]
    exact = rd_round(d, idx, bits, np.full(1, 1e6), -2, 2)  # error costs everything: the nearest symbol
    assert exact.tolist() == np.rint(d).astype(int).tolist()
    mid = rd_round(d, idx, bits, np.full(1, 20.0), -2, 2)
    # 0.8 -> 0 saves 6.6 bits for 20 * (0.64 - 0.04) = 12 bits of error: not worth it; 0.3 -> 0 is nearest anyway
    assert mid.tolist() == [[[1, -1, 2, -2, 0]]]
    assert (np.abs(mid - d) < 1).all()
    clipped = rd_round(np.array([[[7.5, -9.0]]], np.float32), np.zeros((1, 1, 2), np.uint8), bits, np.ones(1), -2, 2)
    assert clipped.tolist() == [[[2, -2]]]


def test_error_weights_scale_with_lambda_and_the_squared_inverse_gain():
    w = error_weights(np.array([0.5, 2.0]), 0.01, np.array([1.0, 3.0]))
    assert w[1] / w[0] == pytest.approx(4.0 * 9.0)
    assert error_weights(np.array([0.5, 2.0]), 0.02, np.array([1.0, 3.0])) == pytest.approx(2 * w)


def test_weights_of_a_linear_decoder_are_its_squared_impulse_responses():
    """Non-overlapping 16 x 16 responses: the random-sign estimate is then exact, not just unbiased."""
    rng = np.random.default_rng(3)
    kernels = rng.normal(size=(5, 16, 16)) * np.arange(1, 6)[:, None, None]

    def decode(y):
        _, m, h, w = y.shape
        return np.einsum("mij,mab->iajb", y[0], kernels).reshape(1, 1, 16 * h, 16 * w)

    w = distortion_weights(decode, rng.normal(size=(3, 5, 4, 6)).astype(np.float32))
    assert w == pytest.approx((kernels ** 2).sum(axis=(1, 2)), rel=1e-4)


def test_export_measures_the_weights_and_the_codec_uses_them(tiny_bundle, tmp_path):
    m = OnnxCodecModel(tiny_bundle, device="cpu")
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert len(manifest["rounding"]["distortion_weights"]) == m.latent_channels
    assert m.rounding_weights(1.0).shape == (m.latent_channels,)
    # a bundle exported before the weights existed rounds to the nearest symbol, and says so in its files
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    del manifest["rounding"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert OnnxCodecModel(old, device="cpu").rounding_weights(1.0) is None
    src = write_geotiff(tmp_path / "in.tif", np.random.default_rng(0).gamma(4.0, 0.25, (1, 96, 80)).astype("f4"))
    compress(src, tmp_path / "old.sarc", CompressOptions(model_dir=old, device="cpu"))
    assert read_header(tmp_path / "old.sarc")["rate"]["rounding"] == "nearest"
    for bad in ([1.0] * (m.latent_channels - 1), [-1.0] * m.latent_channels, "x"):
        manifest["rounding"] = {"distortion_weights": bad}
        (old / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelBundleError, match="distortion_weights"):
            OnnxCodecModel(old, device="cpu")


def test_adding_weights_to_an_older_bundle_keeps_its_files(tiny_bundle, sar_data, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    want = manifest.pop("rounding")["distortion_weights"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.name != "manifest.json"}
    assert weights_main([str(old), "--calibration", str(sar_data / "s1_iw_grd_berlin_512.tif"), "--tile", "128"]) == 0
    got = json.loads((old / "manifest.json").read_text())
    assert {k: v for k, v in got.items() if k != "rounding"} == manifest
    assert np.corrcoef(got["rounding"]["distortion_weights"], want)[0, 1] > 0.99  # other tiles, same decoder
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.name != "manifest.json"} == before
    assert "4 distortion weights" in capsys.readouterr().out
    assert weights_main([str(tmp_path / "none"), "--calibration", str(sar_data / "s1_iw_grd_berlin_512.tif")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_default_model_spends_fewer_bits_and_decodes_exactly_what_was_chosen(sar_data, tmp_path):
    """On a real scene with the bundled model: RD rounding is in the default bundle, saves bits at every level,
    and the unchanged decoder reads back the very latents the encoder kept."""
    with RasterReader(sar_data / "s1_iw_grd_frankfurt_512.tif") as r:
        a = r.read(0, 0, 0, 256, 256)
    src = write_geotiff(tmp_path / "frankfurt.tif", a.astype("f4"))
    model = OnnxCodecModel(default_model_dir(), device="cpu")
    assert model.distortion_weights is not None
    for q in (0.0, 2.5, 5.0):
        sizes = {}
        for rd in (True, False):
            out = tmp_path / f"q{q}_{rd}.sarc"
            sizes[rd] = compress(src, out, CompressOptions(model_dir=default_model_dir(), device="cpu", quality=q,
                                                           rd_rounding=rd)).output_bytes
            assert read_header(out)["rate"]["rounding"] == ("rate_distortion" if rd else "nearest")
        assert sizes[True] < sizes[False]
    coder = model.hyperprior
    x = np.clip((10 * np.log10(np.maximum(a, 1e-10)) - 40) / 25, 0, 1).astype(np.float32)[None, None]
    ys = model.encode(x)[0] * coder.gain(1.0)
    z = model.hyper_encode(ys)
    rounding = model.rounding_weights(1.0)
    chunk, kept = coder.encode(ys, z, rounding)
    _, means, sym = coder.analyse(ys, coder.quantize_z(z), rounding)
    assert np.array_equal(coder.decode(chunk, ys.shape, "tile"), kept)
    assert np.array_equal(kept, sym.astype(np.float32) + means)
    nearest = coder.analyse(ys, coder.quantize_z(z))[2]
    assert 0 < (sym != nearest).mean() < 0.5 and (np.abs(sym - nearest) <= 1).all()
    with CompressedRaster(tmp_path / "q2.5_True.sarc", model_dirs=[default_model_dir()]) as r:
        assert np.isfinite(r.read(band=0)).all()


def test_adding_weights_reads_unlisted_calibration_files_in_the_runs_domain(tiny_bundle, tmp_path, capsys):
    """`python -m export.distortion_weights` read calibration files no MANIFEST.json lists as linear intensity,
    whatever the run's --domain: a dB chip's negative values were thrown out as invalid and the bundle got no
    weights ("all pixels are invalid"). They are read in the domain the run recorded, as sar-export reads them."""
    bundle = tmp_path / "db_run"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"] = {"config": {"domain": "sigma0_db"}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    chips = tmp_path / "chips"  # no MANIFEST.json
    chips.mkdir()
    chip = np.random.default_rng(0).uniform(-25.0, -5.0, (128, 128)).astype(np.float32)  # sigma0 in dB
    write_geotiff(chips / "chip.tif", chip)
    assert weights_main([str(bundle), "--calibration", str(chips / "chip.tif"), "--tile", "64"]) == 0, \
        capsys.readouterr().err
    assert len(json.loads((bundle / "manifest.json").read_text())["rounding"]["distortion_weights"]) == 4
