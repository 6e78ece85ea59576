"""Every registered variant: geometry, gradients, parameter counts, latent sizes, ONNX export."""

import pytest
import torch

from trainer.losses import SarLoss, ssim
from trainer.models.base import SarAutoencoder
from trainer.registry import MODELS, available_models, create_model, register_model

VARIANTS = available_models()


def test_registry_lists_the_four_variants():
    assert set(VARIANTS) == {"baseline", "resnet_lite", "residual", "attention"}
    with pytest.raises(KeyError, match="unknown model variant 'nope'"):
        create_model("nope")


def test_register_refuses_a_second_class_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register_model("baseline")(type("Other", (SarAutoencoder,), {}))
    assert MODELS["baseline"].__name__ == "BaselineAutoencoder"


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_backward_default_geometry(name):
    torch.manual_seed(0)
    model = create_model(name, base_channels=8)
    assert isinstance(model, SarAutoencoder) and model.downsampling_factor == 16
    x = torch.rand(2, 1, 64, 96)
    out = model(x)
    assert set(out) == {"x_hat", "y"}
    assert out["y"].shape == (2, 16, 4, 6)
    assert out["x_hat"].shape == x.shape
    assert 0 <= float(out["x_hat"].detach().min()) and float(out["x_hat"].detach().max()) <= 1
    assert torch.equal(model.encode(x), out["y"]) or model.training  # BN in train mode re-normalises per call
    loss = SarLoss()(out["x_hat"], x)["loss"]
    loss.backward()
    grads = [p.grad for p in model.g_a.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("name", VARIANTS)
def test_default_width_parameter_counts(name):
    counts = create_model(name).count_parameters()
    assert counts["total"] == counts["encoder"] + counts["decoder"]
    expected = {"baseline": (2.0e6, 2.6e6)}.get(name, (3.5e6, 7e6))
    assert expected[0] < counts["total"] < expected[1], counts


@pytest.mark.parametrize("latent", [8, 16, 32])
def test_latent_channels_element_ratio(latent):
    model = create_model("baseline", latent_channels=latent, base_channels=8).eval()
    x = torch.rand(1, 1, 128, 128)
    y = model.encode(x)
    assert y.shape == (1, latent, 8, 8)
    assert x.numel() / y.numel() == pytest.approx(256 / latent)
    assert model.config == {"latent_channels": latent, "base_channels": 8}
    assert model.decode(y).shape == x.shape


def test_latent_is_unbounded():
    """No activation on the last encoder layer: the latent takes negative values and values above 1."""
    torch.manual_seed(0)
    y = create_model("baseline", base_channels=8).eval().encode(torch.rand(1, 1, 64, 64) * 4)
    assert float(y.min()) < 0


def test_loss_terms():
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    terms = SarLoss()(x, x)
    assert float(terms["ssim"]) == pytest.approx(1.0, abs=1e-5)
    assert float(terms["mse"]) == 0.0 and float(terms["loss"]) == pytest.approx(0.0, abs=1e-5)
    assert terms["loss"].dtype == torch.float32
    y = torch.clamp(x + 0.1, 0, 1)
    t = SarLoss(0.7, 0.3)(y.half(), x)
    assert float(t["loss"]) == pytest.approx(0.7 * float(t["mse"]) + 0.3 * (1 - float(t["ssim"])), rel=1e-5)
    assert float(ssim(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))) < 0.2


def test_ssim_matches_core_metrics():
    import numpy as np

    from sar_compress_plugin.core import metrics

    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    b = np.clip(a + 0.05 * rng.standard_normal((40, 40)), 0, 1)
    ours = float(ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]))
    assert ours == pytest.approx(metrics.ssim(a, b), abs=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_export_dynamic_shapes(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = create_model(name, base_channels=8).eval()
    path = tmp_path / "enc.onnx"
    batch, h, w = torch.export.Dim("batch"), torch.export.Dim("h"), torch.export.Dim("w")
    torch.onnx.export(model.g_a, (torch.rand(1, 1, 64, 64),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=18, dynamo=True,
                      dynamic_shapes=({0: batch, 2: 16 * h, 3: 16 * w},))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 1, 96, 48)
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref = model.g_a(x).numpy()
    assert y.shape == (2, 16, 6, 3)
    assert abs(y - ref).max() < 1e-4
