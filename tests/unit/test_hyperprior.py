"""The mean-scale hyperprior: integer h_s, the range-meanscale-int16 tile coder, the hyperprior file, gains and
quality levels, decoding across onnxruntime configurations, and rate control (quality, --bpp, --target-db-rmse)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec_fixtures import write_geotiff
from export.hyperprior_export import Y_SYMBOL_MAX, Y_SYMBOL_MIN, y_counts
from sar_compress_plugin import cli
from sar_compress_plugin.core import container as C
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.entropy_coding import ChannelTables
from sar_compress_plugin.core.errors import (ContainerFormatError, ModelBundleError, ModelMismatchError,
                                             SarCompressError)
from sar_compress_plugin.core.hyper_decoder import CONV, DECONV, IntegerHyperDecoder
from sar_compress_plugin.core.hyperprior import (HYPERPRIOR_NAME, HyperpriorCoder, interpolate_levels,
                                                 load_hyperprior, save_hyperprior)
from sar_compress_plugin.core.metrics import db_rmse
from sar_compress_plugin.core.raster_io import RasterReader
from sar_compress_plugin.core.runtime import OnnxCodecModel
from trainer.models.codec import scale_table

FRANKFURT = "s1_iw_grd_frankfurt_512.tif"
M = 4  # latent channels of the random coder; its h_s outputs 2M (scales, means)


def _random_decoder(seed: int = 0, n: int = 6, m: int = M) -> IntegerHyperDecoder:
    """A small integer h_s (deconv, ReLU, deconv, ReLU, linear conv to 2m) from numpy's generator alone, so its
    outputs do not depend on torch: hidden weights centred above zero so the scales spread over many table
    indices; the last layer's mean half centred at zero so means come out of both signs."""
    rng = np.random.default_rng(seed)
    last = rng.integers(-900, 1400, size=(2 * m, n, 3, 3))
    last[m:] = rng.integers(-1200, 1200, size=(m, n, 3, 3))
    weights = [rng.integers(-900, 1400, size=(n, n, 5, 5)), rng.integers(-900, 1400, size=(n, n, 5, 5)), last]
    biases = [rng.integers(-5000, 5000, size=w.shape[0]) for w in weights]
    thresholds = np.floor(np.asarray(scale_table()[:-1]) * 2.0**12).astype(np.int64)
    return IntegerHyperDecoder([DECONV, DECONV, CONV], weights, biases, [6, 10, 8], (1 << 24) - 1, thresholds,
                               -127, 127)


def _random_coder(seed: int = 0, levels: int = 3) -> HyperpriorCoder:
    dec = _random_decoder(seed)
    k = np.arange(-127, 128)
    zc = np.stack([np.rint(1e5 * np.exp(-np.abs(k) / (1.0 + c))).astype(np.int64) + 1 for c in range(dec.in_channels)])
    log_gain = np.linspace(-1.0, 1.0, levels)[:, None] * np.linspace(0.5, 1.0, M)[None]
    return HyperpriorCoder("0" * 64, dec, ChannelTables(zc, -127), ChannelTables(y_counts(scale_table()), Y_SYMBOL_MIN),
                           12, log_gain.astype(np.float32), (-log_gain).astype(np.float32))


def _z(seed: int = 1, shape=(6, 3, 4)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-4, 5, size=shape).astype(np.int16)


# --- the integer hyper-decoder ----------------------------------------------------------------------------

def _torch_reference(dec: IntegerHyperDecoder, z: np.ndarray) -> np.ndarray:
    """The same integer network in torch float64 (exact at these magnitudes): ReLU on all but the last layer."""
    x = torch.from_numpy(z.astype(np.float64))[None]
    last = len(dec.kinds) - 1
    for i, (kind, w, b, s) in enumerate(zip(dec.kinds, dec.weights, dec.biases, dec.shifts)):
        wt = torch.from_numpy(w.astype(np.float64))
        if kind == DECONV:  # stored as the equivalent direct conv: back to torch's (in, out, k, k), unflipped
            acc = F.conv_transpose2d(x, wt.permute(1, 0, 2, 3).flip(2, 3), torch.from_numpy(b.astype(np.float64)),
                                     stride=2, padding=2, output_padding=1)
        else:
            acc = F.conv2d(x, wt, torch.from_numpy(b.astype(np.float64)), padding=w.shape[-1] // 2)
        a = acc[0].numpy().astype(np.int64)
        if i < last:
            a = np.maximum(a, 0)
        x = torch.from_numpy(np.clip((a + (1 << (s - 1))) >> s, -dec.act_max, dec.act_max).astype(np.float64))[None]
    return x[0].numpy().astype(np.int64)


def test_integer_layers_compute_what_torch_layers_define():
    """Each integer layer equals torch's (transposed) convolution on the same integers, then ReLU (not on the
    last layer), the rounding shift and the saturation: the dilation/flip is right."""
    dec = _random_decoder()
    assert np.array_equal(dec(_z()), _torch_reference(dec, _z()))


def test_last_layer_is_linear_so_means_can_be_negative():
    coder = _random_coder()
    dec = coder.decoder
    z = _z(shape=(6, 4, 4))
    out = dec(z)
    assert out.shape == (2 * M, 16, 16)
    assert (out[M:] < 0).any() and (out[M:] > 0).any()  # a ReLU on the last layer would zero the negative half
    idx, means = coder.entropy_parameters(z.astype(np.int16), 16, 16)
    assert idx.dtype == np.uint8 and means.dtype == np.float32 and idx.shape == means.shape == (M, 16, 16)
    assert (means < 0).any() and (means > 0).any()
    assert np.array_equal(means, (out[M:] * 2.0**-12).astype(np.float32))
    assert np.array_equal(idx, dec.scale_indices(out[:M]))
    # scale_indices takes the scale half only; a negative scale is below every threshold: index 0
    assert dec.scale_indices(np.array([-5, 0, dec.thresholds[0], dec.thresholds[0] + 1])).tolist() == [0, 0, 0, 1]
    assert len(np.unique(idx)) >= 5


def test_float64_sums_give_the_int64_integers_and_are_used_only_where_provably_exact():
    """The fast path sums products in float64 (BLAS); where a layer's bound is below 2^53 every partial sum is
    an exactly representable integer, so it must equal the int64 path bit for bit, extreme inputs and the
    signed last layer included."""
    dec = _random_decoder()
    assert all(w is not None for w in dec._float_weights)  # this decoder's bounds allow the float path
    rng = np.random.default_rng(3)
    zs = [_z(), np.full((6, 5, 4), 127), np.full((6, 5, 4), -127), rng.integers(-127, 128, size=(6, 7, 3))]
    fast = [dec(z) for z in zs]
    assert any((f < 0).any() for f in fast)
    dec._float_weights = [None] * len(dec.weights)  # force int64 everywhere
    assert all(np.array_equal(f, dec(z)) for f, z in zip(fast, zs))
    big = IntegerHyperDecoder([CONV], [np.full((2, 2, 3, 3), 1 << 45)], [np.zeros(2, np.int64)], [45], (1 << 24) - 1,
                              np.array([1, 2]), -127, 127)
    assert big._float_weights[0] is None  # 18 * 2^45 * 127 > 2^53: summed in int64
    assert big(np.full((2, 3, 3), 127))[0, 1, 1] == 18 * 127
    assert big(np.full((2, 3, 3), -127))[0, 1, 1] == -18 * 127  # the only layer is the last: no ReLU


PINNED_DIGEST = "419c085121184c1c136b59c81adc4604edd253035048906d1153bd0163457b0c"  # numpy int64, any version


def _digest() -> str:
    coder = _random_coder()
    idx, means = coder.entropy_parameters(_z(shape=(6, 8, 8)), 32, 32)
    return hashlib.sha256(idx.tobytes() + means.tobytes()).hexdigest()


def test_entropy_parameters_are_pinned_and_independent_of_threads():
    """Integer sums are exact, so indices and means cannot depend on BLAS, threads or summation order; pinned so
    a change of the arithmetic (shift rounding, padding, the linear last layer) that would break files is
    noticed. A subprocess with single-threaded numpy gives the same digest."""
    digest = _digest()
    assert digest == PINNED_DIGEST
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(Path(__file__).parent)])
    out = subprocess.run([sys.executable, "-c", "import test_hyperprior as t; print(t._digest())"], env=env,
                         cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == digest


def test_decoder_refuses_parameters_that_could_overflow_or_are_malformed():
    dec = _random_decoder()
    with pytest.raises(ModelBundleError, match="overflow"):
        IntegerHyperDecoder(dec.kinds, [w * (1 << 40) for w in dec.weights], dec.biases, dec.shifts, dec.act_max,
                            dec.thresholds, -127, 127)
    with pytest.raises(ModelBundleError, match="increasing"):
        IntegerHyperDecoder(dec.kinds, dec.weights, dec.biases, dec.shifts, dec.act_max, dec.thresholds[::-1],
                            -127, 127)
    with pytest.raises(ValueError, match="outside"):
        dec(np.full((6, 2, 2), 200, dtype=np.int16))
    coder = _random_coder()
    with pytest.raises(ModelBundleError, match="even channel count"):
        odd = IntegerHyperDecoder(dec.kinds, dec.weights[:2] + [dec.weights[2][:7]], dec.biases[:2] + [dec.biases[2][:7]],
                                  dec.shifts, dec.act_max, dec.thresholds, -127, 127)
        HyperpriorCoder("0" * 64, odd, coder.z_tables, coder.y_tables, 12, coder.log_gain, coder.log_inverse_gain)
    with pytest.raises(ModelBundleError, match="log_gain"):
        HyperpriorCoder("0" * 64, dec, coder.z_tables, coder.y_tables, 12, coder.log_gain[:, :3],
                        coder.log_inverse_gain)


# --- the tile coder ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(M, 32, 32), (M, 5, 7), (M, 1, 1)])
def test_tile_round_trip_is_exact(shape):
    """decode(encode(ys)) gives back exactly the y_hat the encoder reported: the rounded residuals plus the
    integer means, each within half a step of the input (the extremes clip to the symbol range)."""
    coder = _random_coder()
    rng = np.random.default_rng(3)
    ys = rng.laplace(0, 6, size=shape).astype(np.float32)
    ys.ravel()[:2] = [-5000.0, 5000.0]  # beyond the symbol range: clipped, still decodable
    z = rng.normal(0, 2, size=coder.z_shape(*shape[1:]))
    chunk, y_hat = coder.encode(ys, z)
    assert y_hat.dtype == np.float32 and y_hat.shape == shape
    assert np.array_equal(coder.decode(chunk, shape, "t"), y_hat)
    inside = np.abs(ys) < 900
    assert np.abs(y_hat - ys)[inside].max() <= 0.5 + 1e-4
    _, means = coder.entropy_parameters(coder.quantize_z(z), *shape[1:])
    sym = y_hat - means
    assert np.abs(sym - np.rint(sym)).max() < 1e-3 and sym.min() >= Y_SYMBOL_MIN and sym.max() <= Y_SYMBOL_MAX


def test_damaged_chunks_give_the_projects_error():
    coder = _random_coder()
    ys = np.zeros((M, 8, 8), dtype=np.float32)
    data, _ = coder.encode(ys, np.ones(coder.z_shape(8, 8)))
    nz = int(np.frombuffer(data[:4], "<u4")[0])
    with pytest.raises(ContainerFormatError, match="too short"):
        coder.decode(data[:3], ys.shape, "t")
    with pytest.raises(ContainerFormatError, match="truncated"):
        coder.decode(data[:4 + 4 * nz - 4], ys.shape, "t")
    with pytest.raises(ContainerFormatError, match="32-bit words"):
        coder.decode(data + b"x", ys.shape, "t")
    with pytest.raises(ContainerFormatError, match="channels"):
        coder.decode(data, (M - 1, 8, 8), "t")


def test_gains_interpolate_geometrically_between_levels():
    coder = _random_coder(levels=3)
    table = coder.log_gain
    for level in range(3):
        assert np.allclose(coder.gain(level)[:, 0, 0], np.exp(table[level]), rtol=1e-6)
        assert np.allclose(coder.gain(level) * coder.inverse_gain(level), 1.0, rtol=1e-5)
    assert np.allclose(interpolate_levels(table, 0.5), np.sqrt(np.exp(table[0]) * np.exp(table[1])), rtol=1e-5)
    assert np.allclose(interpolate_levels(table, 2.0), np.exp(table[2]), rtol=1e-6)  # the top level is reachable
    assert coder.levels == 3 and coder.check_quality(1.25) == 1.25
    for bad in (-0.1, 2.01, float("nan"), float("inf")):
        with pytest.raises(SarCompressError, match="between 0 and 2"):
            coder.check_quality(bad)


def test_hyperprior_file_round_trips_and_rejects_damage_and_the_old_version(tmp_path):
    coder = _random_coder()
    p = tmp_path / HYPERPRIOR_NAME
    save_hyperprior(p, coder.decoder, 12, coder.z_tables.counts, -127, coder.y_tables.counts, Y_SYMBOL_MIN,
                    coder.log_gain, coder.log_inverse_gain)
    loaded = load_hyperprior(p)
    z = _z(shape=(6, 2, 3))
    for a, b in zip(loaded.entropy_parameters(z, 8, 12), coder.entropy_parameters(z, 8, 12)):
        assert np.array_equal(a, b)
    assert np.array_equal(loaded.gain(1.5), coder.gain(1.5)) and loaded.levels == 3
    with pytest.raises(ModelBundleError, match="does not match the manifest"):
        load_hyperprior(p, expected_sha256="0" * 64)
    with np.load(p) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["format_version"] = np.int64(1)
    old = tmp_path / "old.npz"
    with open(old, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ModelBundleError, match="retired scale-only"):
        load_hyperprior(old)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ModelBundleError, match="malformed"):
        load_hyperprior(p)


# --- the bundle and the codec -----------------------------------------------------------------------------

def test_bundle_integer_h_s_matches_the_float_one(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["version"] == 2 and m["rate"]["levels"] == 3 and m["rate"]["default_quality"] == 1.0
    assert "quantization" not in m and {"hyper_encoder", "hyperprior"} <= set(m["files"])
    levels = m["hyperprior"]["integer_vs_float"]["levels"]
    assert [v["level"] for v in levels] == [0, 1, 2]
    for v in levels:
        assert v["index_match_fraction"] > 0.99 and v["mean_max_abs_diff"] < 0.01
        assert v["symbols_clipped_fraction"] == 0.0
    assert levels[0]["bpp_y_integer"] < levels[1]["bpp_y_integer"] < levels[2]["bpp_y_integer"]


def _scene(tmp_path, seed=7, shape=(1, 96, 112)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]]
    scene = 1000.0 * (1.5 + np.sin(xx / 13.0) * np.cos(yy / 19.0))
    return write_geotiff(tmp_path / "in.tif", (scene[None] * rng.gamma(4.0, 1 / 4.0, size=shape)).astype(np.float32))


_DECODE_DIGEST = """
import hashlib, sys
import numpy as np
from sar_compress_plugin.core.codec import CompressedRaster
with CompressedRaster(sys.argv[1], model_dirs=[sys.argv[2]], device="cpu") as cr:
    lat = b"".join(cr.latents(0, t).tobytes() for t in cr.grid)
    print(hashlib.sha256(lat).hexdigest(), hashlib.sha256(cr.read().tobytes()).hexdigest())
"""


def test_encode_optimised_decode_unoptimised_and_single_threaded(tiny_bundle, tmp_path):
    """A file encoded with onnxruntime's graph optimisations on decodes to the same latents and the same pixels
    with them off, and in a single-threaded subprocess. Decoding never creates the hyper-encoder session."""
    sarc = tmp_path / "a.sarc"
    compress(_scene(tmp_path), sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64))
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as a, \
            CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as b:
        b._model = OnnxCodecModel(tiny_bundle, device="cpu", threads=1, optimize=False)
        assert b._model._session_options.graph_optimization_level.name == "ORT_DISABLE_ALL"
        lat_a = [a.latents(0, t) for t in a.grid]  # edge tiles included (96 x 112 px at 64-px tiles)
        lat_b = [b.latents(0, t) for t in b.grid]
        assert len(lat_a) == 4 and all(np.array_equal(x, y) for x, y in zip(lat_a, lat_b))
        assert all(x.dtype == np.float32 for x in lat_a)
        rec = a.read()
        assert np.array_equal(rec, b.read())
        assert a.model._hyper_enc is None and b.model._hyper_enc is None
    want = (hashlib.sha256(b"".join(x.tobytes() for x in lat_a)).hexdigest(), hashlib.sha256(rec.tobytes()).hexdigest())
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "SAR_COMPRESS_THREADS": "1", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", _DECODE_DIGEST, str(sarc), str(tiny_bundle)], env=env, cwd=root,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert tuple(out.stdout.split()) == want


def test_unoptimised_encoder_writes_a_file_that_decodes_the_same_everywhere(tiny_bundle, tmp_path):
    """The other direction: the encoder's floats (optimisations off, one thread) choose the stored symbols; any
    decoder configuration then decodes the same latents from them."""
    from sar_compress_plugin.core import codec as codec_mod

    src = _scene(tmp_path, seed=8)
    sarc = tmp_path / "u.sarc"
    orig = codec_mod._load_model
    try:
        codec_mod._load_model = lambda d, dev: OnnxCodecModel(d, device=dev, threads=1, optimize=False)
        compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64))
    finally:
        codec_mod._load_model = orig
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as a, \
            CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as b:
        b._model = OnnxCodecModel(tiny_bundle, device="cpu", optimize=False)
        assert all(np.array_equal(a.latents(0, t), b.latents(0, t)) for t in a.grid)
        assert np.array_equal(a.read(), b.read())


def test_file_needs_the_hyperprior_it_was_coded_with(tiny_bundle, tmp_path):
    sarc = tmp_path / "a.sarc"
    compress(_scene(tmp_path, shape=(1, 64, 64)), sarc, CompressOptions(model_dir=tiny_bundle, device="cpu"))
    h = read_header(sarc)
    assert h["coders"]["latent"] == C.LATENT_CODER == "range-meanscale-int16"
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    coder = load_hyperprior(other / HYPERPRIOR_NAME)
    assert h["hyperprior"]["sha256"] == coder.sha256
    yc = coder.y_tables.counts.copy()
    yc[0, -Y_SYMBOL_MIN] += 1  # same decoder ONNX, one count different
    save_hyperprior(other / HYPERPRIOR_NAME, coder.decoder, coder.fraction_bits, coder.z_tables.counts,
                    coder.z_tables.qmin, yc, Y_SYMBOL_MIN, coder.log_gain, coder.log_inverse_gain)
    m = json.loads((other / "manifest.json").read_text())
    m["files"]["hyperprior"]["sha256"] = hashlib.sha256((other / HYPERPRIOR_NAME).read_bytes()).hexdigest()
    (other / "manifest.json").write_text(json.dumps(m))
    with CompressedRaster(sarc, model_dirs=[other], device="cpu") as cr:
        with pytest.raises(ModelMismatchError, match="hyperprior"):
            cr.read()
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        assert cr.read().shape == (1, 64, 64)


# --- quality and rate control on a real scene -------------------------------------------------------------

def _latent_bpp(sarc) -> float:
    """Latent bits per pixel per band, from the file's own chunk index."""
    h = read_header(sarc)
    r = h["raster"]
    return 8 * sum(e[1] for e in h["chunks"]["latent"]) / (r["width"] * r["height"] * r["band_count"])


@pytest.fixture(scope="module")
def frankfurt_by_quality(tmp_path_factory, tiny_bundle, sar_data):
    d = tmp_path_factory.mktemp("frankfurt")
    out = {}
    for q in (0.0, 0.5, 1.0, 1.5, 2.0):
        sarc = d / f"q{q}.sarc"
        res = compress(sar_data / FRANKFURT, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu",
                                                                   tile_size=256, quality=q))
        out[q] = (sarc, res)
    return out


def test_bpp_increases_with_quality_on_a_real_scene(frankfurt_by_quality):
    qs = sorted(frankfurt_by_quality)
    latent = [_latent_bpp(frankfurt_by_quality[q][0]) for q in qs]
    files = [frankfurt_by_quality[q][1].bpp for q in qs]
    assert all(b > a for a, b in zip(latent, latent[1:])), latent
    assert all(b > a for a, b in zip(files, files[1:])), files
    assert latent[-1] > 2 * latent[0]
    for q in qs:
        sarc, res = frankfurt_by_quality[q]
        assert res.quality == q and read_header(sarc)["rate"] == {"quality": q, "levels": 3, "chosen_by": "quality",
                                                                          "rounding": "rate_distortion"}


def test_default_quality_is_the_bundles(frankfurt_by_quality, tiny_bundle, sar_data, tmp_path):
    sarc = tmp_path / "d.sarc"
    res = compress(sar_data / FRANKFURT, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=256))
    assert res.quality == 1.0 and read_header(sarc)["rate"]["chosen_by"] == "default"
    assert sarc.read_bytes()[C.PREAMBLE.size:] == frankfurt_by_quality[1.0][0].read_bytes()[C.PREAMBLE.size:] or \
        _latent_bpp(sarc) == _latent_bpp(frankfurt_by_quality[1.0][0])


def test_target_bpp_is_met_or_reported_unreachable(frankfurt_by_quality, tiny_bundle, sar_data, tmp_path):
    lo, hi = _latent_bpp(frankfurt_by_quality[0.0][0]), _latent_bpp(frankfurt_by_quality[2.0][0])
    target = 0.5 * (lo + hi)
    sarc = tmp_path / "t.sarc"
    res = compress(sar_data / FRANKFURT, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=256,
                                                               target_bpp=target))
    rate = read_header(sarc)["rate"]
    assert rate["chosen_by"] == "bpp" and rate["target"] == target and rate["target_met_on_samples"] is True
    assert 0.0 < res.quality < 2.0 and rate["quality"] == res.quality
    got = _latent_bpp(sarc)
    assert abs(got - target) / target < 0.08, (got, target)  # a bisection of 8 steps on all 4 tiles of the scene
    assert abs(got - rate["sample_estimate"]) / got < 0.05
    # unreachable either way: the nearest end, and the header says whether the samples met it
    low = compress(sar_data / FRANKFURT, tmp_path / "low.sarc", CompressOptions(
        model_dir=tiny_bundle, device="cpu", tile_size=256, target_bpp=lo / 4))
    assert low.quality == 0.0 and read_header(tmp_path / "low.sarc")["rate"]["target_met_on_samples"] is False
    high = compress(sar_data / FRANKFURT, tmp_path / "high.sarc", CompressOptions(
        model_dir=tiny_bundle, device="cpu", tile_size=256, target_bpp=hi * 4))
    assert high.quality == 2.0 and read_header(tmp_path / "high.sarc")["rate"]["target_met_on_samples"] is True


def _scene_db_rmse(src, sarc, tiny_bundle) -> float:
    with RasterReader(src) as r:
        a = np.stack([r.read(b, 0, 0, r.info.width, r.info.height) for b in range(r.info.band_count)])
    with CompressedRaster(sarc, model_dirs=[tiny_bundle], device="cpu") as cr:
        b = cr.read()
    ok = (a > 0) & (b > 0)
    return db_rmse(10 * np.log10(a[ok]), 10 * np.log10(b[ok]))


def test_target_db_rmse_picks_the_lowest_quality_that_reaches_it(tiny_bundle, sar_data, tmp_path):
    src = sar_data / FRANKFURT

    def run(target, name):
        sarc = tmp_path / f"{name}.sarc"
        res = compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=256,
                                                  target_db_rmse=target))
        return sarc, res, read_header(sarc)["rate"]

    _, easy, r_easy = run(100.0, "easy")  # any quality meets it: the cheapest
    assert easy.quality == 0.0 and r_easy["target_met_on_samples"] is True and r_easy["chosen_by"] == "db_rmse"
    _, hard, r_hard = run(0.01, "hard")   # none does: the best the model can, and the header says so
    assert hard.quality == 2.0 and r_hard["target_met_on_samples"] is False
    e_lo, e_hi = r_easy["sample_estimate"], r_hard["sample_estimate"]
    assert e_hi < e_lo  # the error falls with the quality
    target = 0.5 * (e_lo + e_hi)
    sarc, mid, r_mid = run(target, "mid")
    assert 0.0 < mid.quality < 2.0 and r_mid["target_met_on_samples"] is True
    assert r_mid["sample_estimate"] <= target
    measured = _scene_db_rmse(src, sarc, tiny_bundle)
    assert measured <= target + 0.05, (measured, target)  # outliers pasted back only lower the error


def test_rate_options_are_mutually_exclusive_and_checked(tiny_bundle, sar_data, tmp_path, capsys):
    src = sar_data / FRANKFURT
    for kw, msg in [(dict(quality=1.0, target_bpp=0.2), "not quality and target bpp"),
                    (dict(target_bpp=0.2, target_db_rmse=3.0), "not target bpp and target dB RMSE"),
                    (dict(quality=2.5), "between 0 and 2"), (dict(quality=-1.0), ">= 0"),
                    (dict(target_bpp=0.0), "> 0"), (dict(target_db_rmse=float("nan")), "finite")]:
        with pytest.raises(SarCompressError, match=msg):
            compress(src, tmp_path / "x.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", **kw))
        assert not (tmp_path / "x.sarc").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as ei:
        cli.compress_main([str(src), str(tmp_path / "x.sarc"), "--model", str(tiny_bundle), "--quality", "1",
                           "--bpp", "0.2", "-q"])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "not allowed with argument" in errors[0] and "Traceback" not in err
    assert cli.compress_main([str(src), str(tmp_path / "x.sarc"), "--model", str(tiny_bundle), "--quality", "7",
                              "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "quality 7.0 must be between 0 and 2" in err
    assert not (tmp_path / "x.sarc").exists()
