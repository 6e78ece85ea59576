"""The scale hyperprior: training wrapper, integer hyper-decoder, range-hyperprior-int8 coder, export, codec."""

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
from export.hyperprior_export import y_counts
from export.onnx_export import export_bundle
from sar_compress_plugin.core import container as C
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header
from sar_compress_plugin.core.entropy_coding import ChannelTables
from sar_compress_plugin.core.errors import ContainerFormatError, ModelMismatchError, SarCompressError
from sar_compress_plugin.core.hyper_decoder import CONV, DECONV, IntegerHyperDecoder
from sar_compress_plugin.core.hyperprior import (HYPERPRIOR_CODER, HYPERPRIOR_NAME, HyperpriorCoder, load_hyperprior,
                                                 save_hyperprior)
from sar_compress_plugin.core.quantization import quantize
from sar_compress_plugin.core.runtime import OnnxCodecModel
from trainer.checkpoint import load_model, make_checkpoint, save_checkpoint
from trainer.config import ConfigError, TrainConfig, resolve
from trainer.hyperprior import HyperpriorModel, gaussian_likelihood, scale_table
from trainer.losses import RateDistortionLoss
from trainer.registry import create_model
from trainer.train import _init_weights, _model_and_loss


def _random_decoder(seed: int = 0, n: int = 6, m: int = 4) -> IntegerHyperDecoder:
    """A small integer h_s (deconv, deconv, conv) from numpy's generator alone, so its outputs do not depend on
    torch: its weights are centred above zero so the scales spread over many table indices."""
    rng = np.random.default_rng(seed)
    weights = [rng.integers(-900, 1400, size=(n, n, 5, 5)), rng.integers(-900, 1400, size=(n, n, 5, 5)),
               rng.integers(-900, 1400, size=(m, n, 3, 3))]
    biases = [rng.integers(-5000, 5000, size=w.shape[0]) for w in weights]
    thresholds = np.floor(np.asarray(scale_table()[:-1]) * 2.0**12).astype(np.int64)
    return IntegerHyperDecoder([DECONV, DECONV, CONV], weights, biases, [6, 10, 8], (1 << 24) - 1, thresholds,
                               -127, 127)


def _random_coder(seed: int = 0) -> HyperpriorCoder:
    dec = _random_decoder(seed)
    k = np.arange(-127, 128)
    zc = np.stack([np.rint(1e5 * np.exp(-np.abs(k) / (1.0 + c))).astype(np.int64) + 1 for c in range(dec.in_channels)])
    return HyperpriorCoder("0" * 64, dec, ChannelTables(zc, -127), ChannelTables(y_counts(scale_table()), -127))


def _z(seed: int = 1, shape=(6, 3, 4)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-4, 5, size=shape).astype(np.int16)


def _speckled(seed, shape=(1, 96, 112)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]]
    scene = 1000.0 * (1.5 + np.sin(xx / 13.0) * np.cos(yy / 19.0))
    return (scene[None] * rng.gamma(4.0, 1 / 4.0, size=shape)).astype(np.float32)


# --- the integer hyper-decoder ----------------------------------------------------------------------------

def test_integer_layers_compute_what_torch_layers_define():
    """Each integer layer equals torch's (transposed) convolution on the same integers (float64 is exact at
    these magnitudes), then ReLU, the rounding shift and the saturation: the dilation/flip is right."""
    dec = _random_decoder()
    x = torch.from_numpy(_z().astype(np.float64))[None]
    for kind, w, b, s in zip(dec.kinds, dec.weights, dec.biases, dec.shifts):
        wt = torch.from_numpy(w.astype(np.float64))
        if kind == DECONV:  # stored as the equivalent direct conv: back to torch's (in, out, k, k), unflipped
            acc = F.conv_transpose2d(x, wt.permute(1, 0, 2, 3).flip(2, 3), torch.from_numpy(b.astype(np.float64)),
                                     stride=2, padding=2, output_padding=1)
        else:
            acc = F.conv2d(x, wt, torch.from_numpy(b.astype(np.float64)), padding=w.shape[-1] // 2)
        a = np.maximum(acc[0].numpy().astype(np.int64), 0)
        x = torch.from_numpy(np.minimum((a + (1 << (s - 1))) >> s, dec.act_max).astype(np.float64))[None]
    assert np.array_equal(dec(_z()), x[0].numpy().astype(np.int64))


def test_float64_sums_give_the_int64_integers_and_are_used_only_where_provably_exact():
    """The fast path sums products in float64 (BLAS); where a layer's bound is below 2^53 every partial sum is
    an exactly representable integer, so it must equal the int64 path bit for bit, extreme inputs included."""
    dec = _random_decoder()
    assert all(w is not None for w in dec._float_weights)  # this decoder's bounds allow the float path
    rng = np.random.default_rng(3)
    zs = [_z(), np.full((6, 5, 4), 127), np.full((6, 5, 4), -127), rng.integers(-127, 128, size=(6, 7, 3))]
    fast = [dec(z) for z in zs]
    dec._float_weights = [None] * len(dec.weights)  # force int64 everywhere
    assert all(np.array_equal(f, dec(z)) for f, z in zip(fast, zs))
    big = IntegerHyperDecoder([CONV], [np.full((2, 2, 3, 3), 1 << 45)], [np.zeros(2, np.int64)], [45], (1 << 24) - 1,
                              np.array([1, 2]), -127, 127)
    assert big._float_weights[0] is None  # 18 * 2^45 * 127 > 2^53: summed in int64
    z = np.full((2, 3, 3), 127)
    assert big(z)[0, 1, 1] == 18 * 127  # the sum 18 * 127 * 2^45, exact in int64, shifted back by 45 bits


PINNED_INDICES_SHA256 = "4324ab782925f8adf80214935ec3baeb05b4887090e59acadffdb7fc779fc3e7"  # numpy int64, any version


def _indices_digest() -> str:
    idx = _random_decoder().scale_indices(_z(shape=(6, 8, 8)))
    return hashlib.sha256(idx.tobytes()).hexdigest()


def test_scale_indices_are_pinned_and_independent_of_threads():
    """Integer sums are exact, so the indices cannot depend on BLAS, threads or summation order; pinned so a
    change of the arithmetic (shift rounding, padding) that would break old files is noticed. A subprocess with
    single-threaded numpy gives the same digest."""
    idx = _random_decoder().scale_indices(_z(shape=(6, 8, 8)))
    assert idx.shape == (4, 32, 32) and len(np.unique(idx)) >= 10  # the scales really spread over the table
    digest = _indices_digest()
    assert digest == PINNED_INDICES_SHA256
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = "import test_hyperprior as t; print(t._indices_digest())"
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(Path(__file__).parent)])
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == digest


def test_decoder_refuses_parameters_that_could_overflow_or_are_malformed():
    dec = _random_decoder()
    with pytest.raises(Exception, match="overflow"):
        IntegerHyperDecoder(dec.kinds, [w * (1 << 40) for w in dec.weights], dec.biases, dec.shifts, dec.act_max,
                            dec.thresholds, -127, 127)
    with pytest.raises(Exception, match="increasing"):
        IntegerHyperDecoder(dec.kinds, dec.weights, dec.biases, dec.shifts, dec.act_max, dec.thresholds[::-1],
                            -127, 127)
    with pytest.raises(ValueError, match="outside"):
        dec(np.full((6, 2, 2), 200, dtype=np.int16))


# --- the tile coder ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 32, 32), (4, 5, 7), (4, 1, 1)])
def test_tile_round_trip_is_exact(shape):
    coder = _random_coder()
    rng = np.random.default_rng(3)
    q = np.clip(np.rint(rng.laplace(0, 6, size=shape)), -127, 127).astype(np.int8)
    q.ravel()[:2] = [-127, 127]
    z = rng.normal(0, 2, size=coder.z_shape(*shape[1:]))
    data = coder.encode(q, z)
    assert np.array_equal(coder.decode(data, shape, "t"), q)


def test_damaged_chunks_give_the_projects_error():
    coder = _random_coder()
    q = np.zeros((4, 8, 8), dtype=np.int8)
    data = coder.encode(q, np.ones(coder.z_shape(8, 8)))
    nz = int(np.frombuffer(data[:4], "<u4")[0])
    with pytest.raises(ContainerFormatError, match="too short"):
        coder.decode(data[:3], q.shape, "t")
    with pytest.raises(ContainerFormatError, match="truncated"):
        coder.decode(data[:4 + 4 * nz - 4], q.shape, "t")
    with pytest.raises(ContainerFormatError, match="32-bit words"):
        coder.decode(data + b"x", q.shape, "t")
    with pytest.raises(ContainerFormatError, match="channels"):
        coder.decode(data, (3, 8, 8), "t")


def test_hyperprior_file_round_trips_and_rejects_damage(tmp_path):
    coder = _random_coder()
    p = tmp_path / HYPERPRIOR_NAME
    save_hyperprior(p, coder.decoder, coder.z_tables.counts, -127, coder.y_tables.counts, -127)
    loaded = load_hyperprior(p)
    z = _z(shape=(6, 2, 3))
    assert np.array_equal(loaded.indices(z, 8, 12), coder.indices(z, 8, 12))
    with pytest.raises(Exception, match="does not match the manifest"):
        load_hyperprior(p, expected_sha256="0" * 64)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(Exception, match="malformed"):
        load_hyperprior(p)


# --- training ---------------------------------------------------------------------------------------------

def _tiny_model(seed: int = 0) -> HyperpriorModel:
    torch.manual_seed(seed)
    model = HyperpriorModel(create_model("baseline", latent_channels=16, base_channels=8), hyper_channels=8)
    # training starts every scale at SCALE_INIT; spread them so an untrained model's z, which rounds to 0, still
    # picks many scale tables and the coding tests exercise more than one
    with torch.no_grad():
        model.h_s[-2].bias.uniform_(0.2, 30.0)
    return model


def test_gaussian_likelihoods_sum_to_one_and_the_rate_trains_every_part():
    y = torch.arange(-300, 301, dtype=torch.float32).view(1, 1, -1, 1)
    for s in (0.05, 0.11, 3.0, 60.0):
        assert abs(float(gaussian_likelihood(y, torch.full_like(y, s)).sum()) - 1) < 1e-3
    model = _tiny_model()
    x = torch.rand(2, 1, 80, 96)  # latents 5 x 6: not multiples of 4, padded for h_a like the codec does
    out = model(x)
    assert set(out["likelihoods"]) == {"y", "z"} and out["likelihoods"]["y"].shape == (2, 16, 5, 6)
    assert out["likelihoods"]["z"].shape == (2, 8, 2, 2)
    terms = RateDistortionLoss(1.0)(out["x_hat"], x, out["likelihoods"])
    assert {"bpp_y", "bpp_z"} <= set(terms)
    assert torch.isclose(terms["bpp"], terms["bpp_y"] + terms["bpp_z"])
    terms["bpp"].backward()  # the rate alone reaches the encoder, both hyper transforms and the prior of z
    for part in (model.g_a, model.h_a, model.h_s, model.prior):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0


def test_checkpoint_and_warm_start(tmp_path):
    model = _tiny_model()
    ckpt = make_checkpoint(model, epoch=1, step=2, best_val_loss=0.5, history=[], preprocessing_params={},
                           config={"variant": "baseline", "lmbda": 8.0}, data_summary={})
    assert ckpt["entropy_model"]["kind"] == "hyperprior"
    save_checkpoint(ckpt, tmp_path / "hp.pth")
    loaded, _ = load_model(tmp_path / "hp.pth")
    assert isinstance(loaded, HyperpriorModel) and loaded.hyper_channels == 8
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # --init from a plain checkpoint: the transform is copied, h_a/h_s/prior keep their initialisation
    plain = create_model("baseline", base_channels=8)
    save_checkpoint(make_checkpoint(plain, epoch=1, step=1, best_val_loss=0.5, history=[], preprocessing_params={},
                                    config={}, data_summary={}), tmp_path / "plain.pth")
    cfg = resolve({}, {"variant": "baseline", "base_channels": 8, "lmbda": 8.0, "entropy_model": "hyperprior",
                       "init": str(tmp_path / "plain.pth")})
    hp, _ = _model_and_loss(cfg)
    assert isinstance(hp, HyperpriorModel)
    _init_weights(hp, cfg, torch.device("cpu"))
    assert all(torch.equal(v, hp.state_dict()[k]) for k, v in plain.state_dict().items())
    with pytest.raises(ConfigError, match="needs --lmbda"):
        resolve({}, {"entropy_model": "hyperprior"})
    assert TrainConfig().entropy_model == "factorized"


# --- export and the codec ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hp_bundle(tmp_path_factory) -> Path:
    """A tiny random hyperprior model exported like a trained one (its h_s scaled up so the indices spread)."""
    model = _tiny_model(1)
    with torch.no_grad():
        model.h_s[4].bias.add_(1.5)
        model.g_a[-1].weight.mul_(40.0)  # latents of a few units, like a trained model's
    rng = np.random.default_rng(0)
    tiles = np.clip(0.5 + 0.15 * rng.standard_normal((3, 1, 64, 64)), 0, 1).astype(np.float32)
    out = tmp_path_factory.mktemp("hp") / "bundle"
    manifest = export_bundle(model, out, name="tiny-hp", variant="baseline",
                             preprocessing={"clip_db": [20.0, 50.0]}, calibration_tiles=tiles, halo=32,
                             rate_distortion={"lmbda": 8.0, "entropy_model": "hyperprior"})
    cmp = manifest["hyperprior"]["integer_vs_float"]
    assert cmp["index_match_fraction"] > 0.95 and cmp["index_max_abs_diff"] <= 1
    assert set(manifest["files"]) >= {"hyper_encoder", "hyperprior"}
    return out


def test_encode_on_one_onnx_configuration_decodes_on_another(hp_bundle):
    """Only CPU is available here (no CUDA), so the two configurations are onnxruntime with graph optimisation
    off and one thread (encoder) and the defaults (decoder). Whatever floats the encoder computed, the file holds
    integers, and decoding them needs no ONNX session: the decoding model never creates the hyper-encoder."""
    enc = OnnxCodecModel(hp_bundle, device="cpu", threads=1, optimize=False)
    dec = OnnxCodecModel(hp_bundle, device="cpu")
    x = np.clip(0.5 + 0.2 * np.random.default_rng(5).standard_normal((1, 1, 128, 96)), 0, 1).astype(np.float32)
    y = enc.encode(x)[0]
    q = quantize(y, enc.quantization)
    data = enc.hyperprior.encode(q, enc.hyper_encode(y))
    assert np.array_equal(dec.hyperprior.decode(data, q.shape, "t"), q)
    assert dec._hyper_enc is None
    assert len(np.unique(enc.hyperprior.indices(enc.hyperprior.quantize_z(enc.hyper_encode(y)), *q.shape[1:]))) > 1


def test_codec_round_trip_matches_zstd_and_quality_falls_back(hp_bundle, tmp_path):
    src = write_geotiff(tmp_path / "in.tif", _speckled(7))
    hp, plain = tmp_path / "hp.sarc", tmp_path / "z.sarc"
    compress(src, hp, CompressOptions(model_dir=hp_bundle, device="cpu", tile_size=64))
    compress(src, plain, CompressOptions(model_dir=hp_bundle, device="cpu", tile_size=64,
                                         latent_coder=C.LATENT_CODER))
    h = read_header(hp)
    assert h["coders"]["latent"] == HYPERPRIOR_CODER and "hyperprior" in h and "hyperprior" not in read_header(plain)
    with CompressedRaster(hp, model_dirs=[hp_bundle], device="cpu") as a, \
            CompressedRaster(plain, model_dirs=[hp_bundle], device="cpu") as b:
        for t in a.grid:  # edge tiles included (96 x 112 px at 64-px tiles)
            assert np.array_equal(a.latents(0, t), b.latents(0, t))
        assert np.array_equal(a.read(), b.read())
    q2 = tmp_path / "q2.sarc"
    compress(src, q2, CompressOptions(model_dir=hp_bundle, device="cpu", quality=2.0))
    assert read_header(q2)["coders"]["latent"] == C.LATENT_CODER
    with pytest.raises(SarCompressError, match="only at quality 1"):
        compress(src, tmp_path / "x.sarc", CompressOptions(model_dir=hp_bundle, device="cpu", quality=2.0,
                                                           latent_coder=HYPERPRIOR_CODER))


def test_file_needs_the_hyperprior_it_was_coded_with(hp_bundle, tmp_path):
    src = write_geotiff(tmp_path / "in.tif", _speckled(3, (1, 64, 64)))
    sarc = tmp_path / "a.sarc"
    compress(src, sarc, CompressOptions(model_dir=hp_bundle, device="cpu"))
    other = tmp_path / "other"
    shutil.copytree(hp_bundle, other)
    coder = load_hyperprior(other / HYPERPRIOR_NAME)
    yc = coder.y_tables.counts.copy()
    yc[0, 127] += 1  # same decoder ONNX, one count different
    save_hyperprior(other / HYPERPRIOR_NAME, coder.decoder, coder.z_tables.counts, -127, yc, -127)
    m = json.loads((other / "manifest.json").read_text())
    m["files"]["hyperprior"]["sha256"] = hashlib.sha256((other / HYPERPRIOR_NAME).read_bytes()).hexdigest()
    (other / "manifest.json").write_text(json.dumps(m))
    with CompressedRaster(sarc, model_dirs=[other], device="cpu") as cr:
        with pytest.raises(ModelMismatchError, match="hyperprior"):
            cr.read()
    with CompressedRaster(sarc, model_dirs=[hp_bundle], device="cpu") as cr:
        assert cr.read().shape == (1, 64, 64)


@pytest.mark.slow
def test_throughput_benchmark_times_the_hyperprior_coder(hp_bundle, sar_data, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import throughput  # noqa: PLC0415

    rc = throughput.main(["--model", str(hp_bundle), "--source", str(sar_data / "s1_iw_grd_berlin_512.tif"),
                          "--size", "0", "--repeats", "1", "--device", "cpu", "--only", "latents_hyperprior",
                          "latents_zstd", "--out", str(tmp_path)])
    assert rc == 0
    got = {r["what"]: r for r in json.loads((tmp_path / "throughput.json").read_text())["results"]}
    hp, zs = got["latents_hyperprior"], got["latents_zstd"]
    assert hp["symbols"] == zs["symbols"] > 0 and hp["latent_bytes"] > 0  # decoded symbols were checked equal
    assert hp["mp_s"] > 0 and hp["encode_s"][0] > 0 and hp["decode_s"][0] > 0
