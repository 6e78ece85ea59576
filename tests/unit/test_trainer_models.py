"""Every registered variant of the codec model: geometry, likelihoods, gradients, variable rate, ONNX export."""

import math

import numpy as np
import pytest
import torch

from trainer.entropy_model import FactorizedPrior
from trainer.losses import RateDistortionLoss
from trainer.models.codec import SarCodecModel, gaussian_likelihood, scale_table
from trainer.registry import MODELS, available_models, create_model, register_model

VARIANTS = available_models()
SMALL = {"channels": 8, "latent_channels": 16, "hyper_channels": 8}


def test_registry_lists_the_four_variants():
    assert set(VARIANTS) == {"baseline", "resnet_lite", "residual", "attention"}
    with pytest.raises(KeyError, match="unknown model variant 'nope'"):
        create_model("nope")


def test_register_refuses_a_second_class_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register_model("baseline")(type("Other", (SarCodecModel,), {}))
    assert MODELS["baseline"].__name__ == "BaselineCodec"


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_backward_geometry_and_likelihoods(name):
    torch.manual_seed(0)
    model = create_model(name, **SMALL)
    x = torch.rand(2, 1, 64, 128)
    level = torch.tensor([0.0, 3.0])
    out = model(x, level)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 16, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 8, 1, 2)
    for v in out["likelihoods"].values():
        assert float(v.detach().min()) > 0 and float(v.detach().max()) <= 1
    terms = RateDistortionLoss()(out["x_hat"], x, out["likelihoods"], model.lambda_of(level))
    assert set(terms) == {"loss", "mse", "bpp", "bpp_y", "bpp_z"}
    terms["loss"].backward()
    for part in (model.g_a, model.g_s, model.h_a, model.h_s, model.prior):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads)
    assert model.log_gain.grad is not None and float(model.log_gain.grad.abs().sum()) > 0


def test_level_weights_scale_each_patch_loss_by_its_level_and_only_when_levels_are_given():
    torch.manual_seed(0)
    model = create_model("baseline", **SMALL)
    x = torch.rand(2, 1, 64, 64)
    level = torch.tensor([0.0, 2.0])
    with torch.no_grad():
        out = model(x, level)
    args = (out["x_hat"], x, out["likelihoods"], model.lambda_of(level))
    per_patch = [RateDistortionLoss()(out["x_hat"][i:i + 1], x[i:i + 1],
                                      {k: v[i:i + 1] for k, v in out["likelihoods"].items()},
                                      model.lambda_of(level[i:i + 1]))["loss"] for i in range(2)]
    weighted = RateDistortionLoss([3.0, 1.0, 0.5] + [1.0] * 3)
    assert float(weighted(*args, level)["loss"]) == pytest.approx(float(3.0 * per_patch[0] + 0.5 * per_patch[1]) / 2)
    assert float(weighted(*args)["loss"]) == pytest.approx(float(RateDistortionLoss()(*args)["loss"]))
    assert float(RateDistortionLoss()(*args, level)["loss"]) == pytest.approx(float(per_patch[0] + per_patch[1]) / 2)


@pytest.mark.parametrize("name", VARIANTS)
def test_default_width_parameter_counts(name):
    counts = create_model(name).count_parameters()
    assert counts["total"] > counts["encoder"] + counts["decoder"] + counts["entropy_model"]  # plus the gains
    expected = {"baseline": (1.8e6, 2.3e6)}.get(name, (2.1e6, 2.6e6))
    assert expected[0] < counts["total"] < expected[1], counts


def test_eval_rounds_the_latents_the_codec_sends():
    """In eval mode y_hat = round(y - mean) + mean and the likelihoods are those of the integer symbols."""
    torch.manual_seed(0)
    model = create_model("baseline", **SMALL).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        lv = torch.tensor([2.0])
        gain, inverse = model.gains(lv)
        y = model.g_a(x) * gain
        z_hat = torch.round(model.h_a(model.pad_to_hyper_grid(y)))
        scales, means = model.entropy_parameters(z_hat, y.shape[-2:])
        symbols = torch.round(y - means)
        expected = model.g_s((symbols + means) * inverse)
        out = model(x, lv)
    assert torch.allclose(out["x_hat"], expected, atol=1e-6)
    assert torch.allclose(out["likelihoods"]["y"], gaussian_likelihood(symbols, scales))


def test_gaussian_likelihoods_sum_to_one_over_integer_bins():
    bins = torch.arange(-60, 61, dtype=torch.float64)
    for s in (0.11, 1.0, 7.5):
        p = gaussian_likelihood(bins, torch.full_like(bins, s))
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)


def test_prior_likelihoods_over_integer_bins_sum_to_one_per_channel():
    torch.manual_seed(0)
    prior = FactorizedPrior(3).double()
    bins = torch.arange(-200, 201, dtype=torch.float64).view(1, 1, -1, 1).expand(1, 3, -1, 1)
    p = prior.likelihood(bins.contiguous())
    assert torch.allclose(p.sum(dim=2), torch.ones(1, 3, 1, dtype=torch.float64), atol=1e-6)


def test_gains_interpolate_geometrically_between_levels():
    model = create_model("baseline", **SMALL)
    with torch.no_grad():
        model.log_gain.normal_()
    g = lambda q: model.gains(torch.tensor([q]))[0][0, :, 0, 0]  # noqa: E731
    for level in range(model.levels):
        assert torch.allclose(g(float(level)), torch.exp(model.log_gain[level]))
    assert torch.allclose(g(1.25), torch.exp(0.75 * model.log_gain[1] + 0.25 * model.log_gain[2]))
    assert torch.allclose(g(-1.0), g(0.0)) and torch.allclose(g(99.0), g(model.levels - 1.0))
    lam = model.lambda_of(torch.tensor([0.0, 0.5, 5.0]))
    lams = model.config["lambdas"]
    assert lam[0] == pytest.approx(lams[0]) and lam[2] == pytest.approx(lams[5])
    assert float(lam[1]) == pytest.approx(math.sqrt(lams[0] * lams[1]), rel=1e-5)


def test_gains_start_apart_so_levels_differ_in_rate_from_the_first_step():
    """Initial gains follow sqrt(lambda): the top level quantises its latents far finer than the bottom one."""
    model = create_model("baseline", **SMALL)
    lams = model.config["lambdas"]
    g0, g5 = (float(torch.exp(model.log_gain[i, 0].detach())) for i in (0, 5))
    assert g5 / g0 == pytest.approx(math.sqrt(lams[5] / lams[0]), rel=1e-5)
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        bits = [sum(float(-torch.log2(v).sum()) for v in model.eval()(x, torch.full((2,), q))["likelihoods"].values())
                for q in (0.0, 5.0)]
    assert bits[1] > 2 * bits[0]


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="strictly increasing"):
        create_model("baseline", lambdas=[0.1, 0.01])
    with pytest.raises(ValueError, match="positive"):
        create_model("baseline", latent_channels=0)


def test_scale_table_is_log_spaced():
    t = np.array(scale_table())
    assert t[0] == pytest.approx(0.11) and t[-1] == pytest.approx(256.0) and len(t) == 64
    assert np.allclose(np.diff(np.log(t)), np.log(t[1] / t[0]))


@pytest.mark.parametrize("name", VARIANTS)
def test_transforms_export_to_onnx_with_dynamic_shapes(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from export.onnx_export import _export_module

    torch.manual_seed(0)
    model = create_model(name, **SMALL).eval()
    enc, dec = tmp_path / "enc.onnx", tmp_path / "dec.onnx"
    _export_module(model.g_a, torch.rand(1, 1, 64, 64), enc, "x", "y", 17)
    _export_module(model.g_s, torch.rand(1, 16, 4, 4), dec, "y", "x_hat", 17)
    x = torch.rand(2, 1, 96, 48)
    (y,) = ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref = model.g_a(x)
        (xh,) = ort.InferenceSession(str(dec), providers=["CPUExecutionProvider"]).run(None, {"y": ref.numpy()})
        ref_x = model.g_s(ref).numpy()
    assert y.shape == (2, 16, 6, 3) and xh.shape == (2, 1, 96, 48)
    assert abs(y - ref.numpy()).max() < 1e-4 * max(1.0, float(ref.abs().max()))
    assert abs(xh - ref_x).max() < 1e-4
