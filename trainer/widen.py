"""Grow a trained codec model's latent from M0 to M channels (Net2Net-style widening), for `sar-train --init`.

Why: the high-rate end of the RD curve saturates with M = 128 (0.5 latent numbers per pixel at 1/16; speckle
needs nearly one per pixel at 1-2 bpp), and a wider model trained from scratch needs far more CPU steps than a
session has. Widening keeps everything the narrow model learned:
* old channels keep their weights in every layer that touches the latent (g_a's last convolution, g_s's first,
  h_a's first, all of h_s, the gain tables); they occupy the first M0 indices of each M-sized axis, and in h_s's
  output the first M0 of the scales and the first M0 of the means;
* new channels start as the wide model's fresh initialisation, so the encoder produces them and the hyperprior
  predicts them from the first step;
* every path from a new unit into an old output starts at zero: h_a's z, h_s's old scales and means and g_s's
  reconstruction are exactly the narrow model's at step 0. The new channels still receive gradients (their
  means are nonzero, so g_s's zero weights on them do), and training decides what they carry.
"""

from __future__ import annotations

import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.registry import create_model


def _latent_params(model) -> dict[str, str]:
    """Role -> state-dict key of each weight whose shape involves M (the biases follow their weights)."""
    return {"g_a_out": f"g_a.{len(model.g_a) - 1}", "g_s_in": "g_s.0", "h_a_in": "h_a.0",
            "h_s_0": "h_s.0", "h_s_1": "h_s.2", "h_s_out": "h_s.4"}


@torch.no_grad()
def widen_latent(model, narrow_state: dict[str, torch.Tensor], narrow_m: int) -> None:
    """Load `narrow_state` (a checkpoint's weights, latent width `narrow_m`) into the wider `model` in place."""
    m, m0 = model.latent_channels, int(narrow_m)
    if not 0 < m0 < m:
        raise ModelMismatchError(f"cannot widen a latent of {m0} channels to {m}")
    state = model.state_dict()
    expected = create_model(model.model_name, **{**model.config, "latent_channels": m0}).state_dict()
    if set(expected) != set(narrow_state) or any(expected[k].shape != v.shape for k, v in narrow_state.items()):
        raise ModelMismatchError(f"the checkpoint is not this {model.model_name} model with a {m0}-channel latent")
    keys = _latent_params(model)
    out_rows = torch.cat([torch.arange(m0), m + torch.arange(m0)])  # h_s output: old scales, old means
    for name, old in narrow_state.items():
        new = state[name]
        old = old.to(new.dtype)
        if name.startswith(keys["h_s_out"] + "."):
            if old.dim() == 1:
                new[out_rows] = old
            else:
                new[out_rows, :m0] = old
                new[out_rows, m0:] = 0  # new h_s units do not move the old scales and means
            continue
        new[tuple(slice(0, s) for s in old.shape)] = old
    state[keys["h_a_in"] + ".weight"][:, m0:] = 0       # z stays the narrow model's
    state[keys["h_s_1"] + ".weight"][m0:, :m0] = 0      # new h_s units feed only new units
    state[keys["g_s_in"] + ".weight"][m0:] = 0          # the reconstruction stays the narrow model's
    model.load_state_dict(state)
