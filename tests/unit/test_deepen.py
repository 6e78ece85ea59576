"""Starting a residual variant from a trained baseline (trainer/deepen.py): the deep model starts as exactly the
baseline, and its new units learn from the first step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.checkpoint import make_checkpoint, save_checkpoint
from trainer.deepen import UNITS, deepen_from_baseline
from trainer.registry import available_models, create_model
from trainer.train import _init_weights

CONFIG = {"channels": 8, "latent_channels": 8, "hyper_channels": 6, "lambdas": [0.001, 0.01], "context_slices": 2}
DEEP = [v for v in available_models() if v != "baseline"]


def _trained_baseline() -> torch.nn.Module:
    """A baseline whose weights are not an initialisation (so a missed copy would show)."""
    torch.manual_seed(0)
    model = create_model("baseline", **CONFIG)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("variant", DEEP)
def test_deepened_model_codes_and_reconstructs_as_the_baseline(variant):
    base = _trained_baseline()
    deep = create_model(variant, **CONFIG)
    deepen_from_baseline(deep, base.state_dict())
    deep.eval()
    x, level = torch.rand(2, 1, 64, 64), torch.tensor([0.0, 0.6])
    with torch.no_grad():
        a, b = base(x, level), deep(x, level)
    torch.testing.assert_close(b["x_hat"], a["x_hat"], rtol=0, atol=1e-6)
    torch.testing.assert_close(b["likelihoods"]["y"], a["likelihoods"]["y"], rtol=0, atol=1e-6)
    assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])


@pytest.mark.parametrize("variant", DEEP)
def test_every_unit_gets_gradients_from_the_first_step(variant):
    deep = create_model(variant, **CONFIG)
    deepen_from_baseline(deep, _trained_baseline().state_dict())
    deep.train()
    out = deep(torch.rand(2, 1, 64, 64), torch.tensor([0.0, 1.0]))
    (out["x_hat"].square().mean() - out["likelihoods"]["y"].log().mean()).backward()
    units = [layer for t in (deep.g_a, deep.g_s) for layer in t if isinstance(layer, UNITS)]
    assert units
    for unit in units:
        last = [m for m in unit.body if isinstance(m, torch.nn.Conv2d)][-1]
        assert last.weight.abs().sum() == 0 and last.weight.grad.abs().sum() > 0


def test_only_a_baseline_of_the_same_shape_deepens():
    with pytest.raises(ModelMismatchError):
        deepen_from_baseline(create_model("resnet_lite", **{**CONFIG, "channels": 10}), _trained_baseline().state_dict())
    with pytest.raises(ModelMismatchError):
        deepen_from_baseline(create_model("resnet_lite", **CONFIG), create_model("residual", **CONFIG).state_dict())
    with pytest.raises(ModelMismatchError):
        deepen_from_baseline(create_model("baseline", **CONFIG), _trained_baseline().state_dict())


def test_init_deepens_a_baseline_checkpoint_and_refuses_other_variants(tmp_path):
    base = _trained_baseline()
    ckpt = make_checkpoint(base, epoch=1, step=10, best_val_loss=1.0, history=[], preprocessing_params={},
                           config={}, data_summary={"patches_seen": 80})
    save_checkpoint(ckpt, tmp_path / "base.pth")
    deep = create_model("residual", **CONFIG)
    source = _init_weights(deep, SimpleNamespace(init=str(tmp_path / "base.pth"), variant="residual"),
                           torch.device("cpu"))
    assert source["step"] == 10
    x, level = torch.rand(1, 1, 64, 64), torch.tensor([1.0])
    with torch.no_grad():
        torch.testing.assert_close(deep.eval()(x, level)["x_hat"], base(x, level)["x_hat"], rtol=0, atol=1e-6)
    save_checkpoint(make_checkpoint(deep, epoch=1, step=10, best_val_loss=1.0, history=[], preprocessing_params={},
                                    config={}, data_summary={}), tmp_path / "residual.pth")
    with pytest.raises(ModelMismatchError):
        _init_weights(create_model("resnet_lite", **CONFIG),
                      SimpleNamespace(init=str(tmp_path / "residual.pth"), variant="resnet_lite"), torch.device("cpu"))
