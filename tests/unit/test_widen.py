"""Widening a trained model's latent (trainer/widen.py): the wide model starts as exactly the narrow one."""

from __future__ import annotations

import pytest
import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.registry import available_models, create_model
from trainer.widen import widen_latent

CONFIG = {"channels": 8, "latent_channels": 8, "hyper_channels": 6, "lambdas": [0.001, 0.01]}


@pytest.mark.parametrize("variant", available_models())
def test_widened_model_reconstructs_and_codes_the_old_channels_as_before(variant):
    torch.manual_seed(0)
    narrow = create_model(variant, **CONFIG).eval()
    wide = create_model(variant, **{**CONFIG, "latent_channels": 12}).eval()
    widen_latent(wide, narrow.state_dict(), 8)
    x = torch.rand(2, 1, 64, 64)
    level = torch.tensor([0.0, 0.7])
    with torch.no_grad():
        a, b = narrow(x, level), wide(x, level)
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"][:, :8])


def test_new_channels_get_gradients_from_the_first_step():
    torch.manual_seed(0)
    narrow = create_model("baseline", **CONFIG)
    wide = create_model("baseline", **{**CONFIG, "latent_channels": 12}).train()
    widen_latent(wide, narrow.state_dict(), 8)
    out = wide(torch.rand(2, 1, 64, 64), torch.tensor([0.0, 1.0]))
    loss = out["x_hat"].square().mean() - out["likelihoods"]["y"].log().mean()
    loss.backward()
    assert wide.g_s[0].weight.grad[8:].abs().sum() > 0
    assert wide.g_a[-1].weight.grad[8:].abs().sum() > 0


def test_only_a_narrower_latent_of_the_same_model_widens():
    narrow = create_model("baseline", **CONFIG)
    with pytest.raises(ModelMismatchError):
        widen_latent(create_model("baseline", **CONFIG), narrow.state_dict(), 8)
    other = create_model("baseline", **{**CONFIG, "latent_channels": 12, "channels": 10})
    with pytest.raises(ModelMismatchError):
        widen_latent(other, narrow.state_dict(), 8)
