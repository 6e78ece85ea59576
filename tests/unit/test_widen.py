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


def test_init_adds_a_channel_context_that_starts_silent(tmp_path):
    """`sar-train --init` from a model without channel context: the context starts at zero, so the model codes
    and reconstructs exactly as the checkpoint did, and training can then grow it."""
    from types import SimpleNamespace

    from trainer.checkpoint import make_checkpoint, save_checkpoint
    from trainer.train import _init_weights

    torch.manual_seed(0)
    plain = create_model("baseline", **CONFIG).eval()
    ckpt = make_checkpoint(plain, epoch=1, step=10, best_val_loss=1.0, history=[], preprocessing_params={},
                           config={}, data_summary={})
    del ckpt["model_config"]["context_slices"]  # as checkpoints from before the option have it
    save_checkpoint(ckpt, tmp_path / "plain.pth")
    sliced = create_model("baseline", **{**CONFIG, "context_slices": 4})
    _init_weights(sliced, SimpleNamespace(init=str(tmp_path / "plain.pth"), variant="baseline"), torch.device("cpu"))
    sliced.eval()
    x, level = torch.rand(2, 1, 64, 64), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        a, b = plain(x, level), sliced(x, level)
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
    sliced.train()
    out = sliced(x, level)
    (out["x_hat"].square().mean() - out["likelihoods"]["y"].log().mean()).backward()
    assert all(net[-1].weight.grad.abs().sum() > 0 for net in sliced.context_scale)
    assert all(net[-1].weight.grad.abs().sum() > 0 for net in sliced.context_mean)
