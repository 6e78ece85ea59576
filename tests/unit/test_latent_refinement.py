"""benchmarks/latent_refinement.py: its coding is the model's, and what it reports is never worse than rounding."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import latent_refinement as lr  # noqa: E402
from trainer.registry import create_model  # noqa: E402

SMALL = {"channels": 8, "latent_channels": 16, "hyper_channels": 8, "lambdas": [0.001, 0.01]}


def _model(slices: int = 2):
    torch.manual_seed(0)
    model = create_model("baseline", **SMALL, context_slices=slices).eval()
    with torch.no_grad():  # context layers start at zero; give them weight so the test sees them used
        for net in (*model.context_scale, *model.context_mean):
            net[-1].weight.normal_(0, 0.1)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_hard_rounding_codes_the_symbols_and_bits_of_the_model():
    model = _model()
    x = torch.rand(2, 1, 64, 64)
    c = model.code(x, torch.ones(2))
    y_hat, bits = lr.coded_bits(model, c["y"], *model.entropy_parameters(
        torch.round(model.h_a(model.pad_to_hyper_grid(c["y"]))), c["y"].shape[-2:]))
    assert torch.equal(y_hat, c["y_hat"])
    assert torch.allclose(bits, -torch.log2(c["likelihoods"]).sum((1, 2, 3)), rtol=1e-5)


def test_soft_rounding_stays_between_floor_and_ceil_and_hardens_as_it_cools():
    torch.manual_seed(0)
    v = torch.randn(10_000) * 3
    for tau in (0.5, 0.05):
        s = lr.soft_round(v, tau)
        assert torch.all(s >= torch.floor(v)) and torch.all(s <= torch.floor(v) + 1)
    hot = (lr.soft_round(v, 0.5) - torch.round(v)).abs().mean()
    cold = (lr.soft_round(v, 0.01) - torch.round(v)).abs().mean()
    assert cold < 0.05 < hot


def test_refined_points_never_cost_more_than_rounding_in_the_loss_they_minimise():
    model = _model()
    x = torch.rand(3, 1, 64, 64)
    for level in (0, 1):
        lam = float(model.lambda_of(torch.tensor([float(level)]))[0])
        points = lr.refine(model, x, level, steps=[5, 10], lr=0.05)
        loss = {s: lam * 255 ** 2 * rmse ** 2 + bpp for s, (bpp, rmse) in points.items()}
        assert set(points) == {0, 5, 10}
        assert loss[10] <= loss[5] + 1e-6 <= loss[0] + 2e-6
