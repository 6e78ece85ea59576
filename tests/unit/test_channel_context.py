"""The channel context in the codec: export of a context model, slice-by-slice coding in one stream,
decoding that does not depend on float means, the hyperprior file's context section, a real-scene round trip."""

import json
from dataclasses import replace

import numpy as np
import pytest

from codec_fixtures import build_tiny_bundle
from sar_compress_plugin.core.channel_context import ChannelContext, FloatConvNet
from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct
from sar_compress_plugin.core.errors import ModelBundleError
from sar_compress_plugin.core.hyperprior import load_hyperprior, save_hyperprior
from sar_compress_plugin.core.metrics import db_rmse
from sar_compress_plugin.core.raster_io import RasterReader

BERLIN = "s1_iw_grd_berlin_512.tif"
CHANNELS = 8


@pytest.fixture(scope="module")
def context_bundle(tmp_path_factory):
    return build_tiny_bundle(tmp_path_factory.mktemp("ctx") / "ctx", channels=CHANNELS, context_slices=2)


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory):
    """The same tiny model without a context: the reference the context bundle is measured against."""
    return build_tiny_bundle(tmp_path_factory.mktemp("plain") / "plain", channels=CHANNELS)


def _coder(bundle):
    return load_hyperprior(bundle / "hyperprior.npz")


def _tile(coder, seed=0, h=6, w=5):
    """Gain-scaled latents near the tiny model's (means near 0, scales near 3) and z symbols for them."""
    rng = np.random.default_rng(seed)
    ys = rng.normal(0.0, 4.0, size=(coder.latent_channels, h, w)).astype(np.float32)
    z = rng.integers(-3, 4, size=coder.z_shape(h, w)).astype(np.float32)
    return ys, z


def test_export_writes_the_context_and_the_integer_path_matches_the_float_model(context_bundle):
    manifest = json.loads((context_bundle / "manifest.json").read_text())
    hp = manifest["hyperprior"]
    assert hp["context_slices"] == 2
    coder = _coder(context_bundle)
    assert coder.slices == 2 and len(coder.context.scale_nets) == 1
    for level in hp["integer_vs_float"]["levels"]:
        # the integer scale context sums with h_s exactly; the float model sees unquantised weights
        assert level["index_match_fraction"] >= 0.99, level
        assert level["bpp_y_integer"] == pytest.approx(level["bpp_y_float"], rel=0.02)


def test_the_context_changes_the_coded_parameters(context_bundle):
    coder = _coder(context_bundle)
    ys, z = _tile(coder)
    zq = coder.quantize_z(z)
    idx, means, _ = coder.analyse(ys, zq)
    idx0, means0 = coder.entropy_parameters(zq, *ys.shape[1:])
    half = CHANNELS // 2
    # slice 0 is coded from h_s alone; slice 1's scales and means are corrected from slice 0
    assert np.array_equal(idx[:half], idx0[:half]) and np.array_equal(means[:half], means0[:half])
    assert (idx[half:] != idx0[half:]).mean() > 0.2 and np.abs(means[half:] - means0[half:]).max() > 0.05


def test_slices_decode_from_one_stream_to_what_the_encoder_kept(context_bundle):
    coder = _coder(context_bundle)
    for seed in range(3):
        ys, z = _tile(coder, seed)
        chunk, kept = coder.encode(ys, z)
        back = coder.decode(chunk, ys.shape, "tile")
        assert np.array_equal(back, kept)
        assert np.abs(back - ys).max() <= 0.5 + 1e-5  # within half a step: every symbol decoded right


def test_means_computed_a_hair_differently_decode_the_same_symbols(context_bundle):
    """The mean context is float: a machine whose products differ in the last bits must still decode every
    symbol (only the reconstruction moves, by as much as the means do)."""
    coder = _coder(context_bundle)
    ys, z = _tile(coder, 5)
    chunk, kept = coder.encode(ys, z)
    nets = [FloatConvNet([w * np.float32(1 + 1e-6) for w in n.weights], n.biases) for n in coder.context.mean_nets]
    other = replace(coder, context=ChannelContext(2, coder.context.scale_nets, nets))
    back = other.decode(chunk, ys.shape, "tile")
    assert np.abs(back - kept).max() < 1e-3  # a wrong symbol would be off by 1 or more


def test_a_decoder_without_the_context_cannot_read_the_slices_right(context_bundle):
    coder = _coder(context_bundle)
    ys, z = _tile(coder, 2)
    chunk, kept = coder.encode(ys, z)
    try:
        back = replace(coder, context=None).decode(chunk, ys.shape, "tile")
    except Exception as exc:  # an exhausted stream is also a right answer
        assert "cannot be decoded" in str(exc)
    else:
        assert np.abs(back - kept).max() >= 1


def test_context_section_reads_back_and_is_validated(context_bundle, tmp_path):
    coder = _coder(context_bundle)
    p = tmp_path / "hp.npz"
    save_hyperprior(p, coder.decoder, coder.fraction_bits, coder.z_tables.counts, coder.z_tables.qmin,
                    coder.y_tables.counts, coder.y_tables.qmin, coder.log_gain, coder.log_inverse_gain, coder.context)
    again = load_hyperprior(p)
    ys, z = _tile(coder, 7)
    assert again.encode(ys, z)[0] == coder.encode(ys, z)[0]
    mean = coder.context.mean_nets[0]
    narrow = FloatConvNet([mean.weights[0][:, :2]] + mean.weights[1:], mean.biases)  # reads 2 channels, not 4
    with pytest.raises(ModelBundleError, match="needs 4 -> 4"):
        replace(coder, context=ChannelContext(2, coder.context.scale_nets, [narrow]))
    with pytest.raises(ModelBundleError, match="slices do not divide"):
        replace(coder, context=ChannelContext(3, coder.context.scale_nets * 2, coder.context.mean_nets * 2))


def test_a_real_scene_round_trips_through_the_context_bundle(context_bundle, plain_bundle, sar_data, tmp_path):
    """Berlin through compress and reconstruct with each bundle: the same transforms, so the same error to
    within the quantiser's noise, whatever the context does to the rate."""
    errors = {}
    for name, bundle in (("ctx", context_bundle), ("plain", plain_bundle)):
        sarc, out = tmp_path / f"{name}.sarc", tmp_path / f"{name}.tif"
        compress(sar_data / BERLIN, sarc, CompressOptions(model_dir=bundle, device="cpu", tile_size=128))
        reconstruct(sarc, out, model_dirs=[bundle], device="cpu")
        with RasterReader(sar_data / BERLIN) as a, RasterReader(out) as b:
            i = a.info
            errors[name] = db_rmse(10 * np.log10(a.read(0, 0, 0, i.width, i.height)),
                                   10 * np.log10(b.read(0, 0, 0, i.width, i.height)))
    assert np.isfinite(errors["ctx"]) and errors["ctx"] == pytest.approx(errors["plain"], rel=0.05)


def test_the_scale_context_is_exact_at_the_ends_of_the_symbol_range(context_bundle):
    """Its products are summed in float64 only where provably exact: at symbols +-1023 (the largest inputs it
    can meet) the fast path must equal int64 bit for bit."""
    net = _coder(context_bundle).context.scale_nets[0]
    assert all(w is not None for w in net._float_weights)
    rng = np.random.default_rng(4)
    inputs = [np.full((net.in_channels, 5, 4), 1023), np.full((net.in_channels, 5, 4), -1023),
              rng.integers(-1023, 1024, size=(net.in_channels, 6, 7))]
    fast = [net(x) for x in inputs]
    net._float_weights = [None] * len(net.weights)
    assert all(np.array_equal(f, net(x)) for f, x in zip(fast, inputs))
    with pytest.raises(ValueError, match="outside"):
        net(np.full((net.in_channels, 2, 2), 1024))
