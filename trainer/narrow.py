"""Start a cheaper decoder from a trained one, for `sar-train --init CKPT --decoder-channels N`.

Why: on a CPU without AVX-512 reconstruct runs at 1.25 MP/s (target 2), and post-training int8 buys 1.24x for
most of the codec's lead over JPEG-2000 (benchmarks/int8_decoder.py). What is left is less arithmetic, and
most of it sits in one place: g_s's N -> N layer into 1/2 resolution does 9,216 of its 14,416 multiply-adds
per pixel (N = 64, as exported: a 3 x 3 convolution to 4 x 64 channels at 1/4 resolution, export/subpixel.py).
Its cost is proportional to the width at 1/2 resolution, so that width is what narrows.

Narrowing keeps what the wide decoder learned: every other layer keeps its weights, and of the 1/2-resolution
channels the strongest are kept (weight norm into the channel times weight norm out of it: a channel that is
fed weakly or read weakly adds little to the output), with their inverse GDN's terms among themselves. The
dropped channels' share of the output is then learned back; with `--decoder-only` only g_s and the inverse
gains train, so the symbols, and the files of the init model's bundle, stay the same.
"""

from __future__ import annotations

import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.registry import create_model


def _half_resolution_layers(model) -> tuple[int, int, int]:
    """g_s indices of the layer into 1/2 resolution, its inverse GDN and the output layer: g_s's last three in
    every variant (residual units sit at 1/8 and 1/4 only)."""
    n = len(model.g_s)
    return n - 3, n - 2, n - 1


@torch.no_grad()
def narrow_decoder(model, wide_state: dict[str, torch.Tensor], wide_channels: int | None) -> list[int]:
    """Load `wide_state` (a checkpoint's weights, g_s width `wide_channels` at 1/2 resolution, None meaning
    its `channels`) into `model`, whose width there is smaller, in place. Returns the kept channels' indices."""
    wide_config = {**model.config, "decoder_channels": wide_channels}
    expected = create_model(model.model_name, **wide_config).state_dict()
    if set(expected) != set(wide_state) or any(expected[k].shape != v.shape for k, v in wide_state.items()):
        raise ModelMismatchError(f"the checkpoint is not this {model.model_name} model with decoder width "
                                 f"{wide_channels or model.config['channels']}")
    into, gdn, out = (f"g_s.{i}" for i in _half_resolution_layers(model))
    width = model.g_s[-1].weight.shape[0]
    wide = wide_state[f"{out}.weight"].shape[0]
    if not 0 < width < wide:
        raise ModelMismatchError(f"cannot narrow a decoder of {wide} channels at 1/2 resolution to {width}")
    w_in, w_out = wide_state[f"{into}.weight"], wide_state[f"{out}.weight"]  # (in, wide, k, k), (wide, 1, k, k)
    strength = w_in.transpose(0, 1).flatten(1).norm(dim=1) * w_out.flatten(1).norm(dim=1)
    kept = torch.sort(torch.topk(strength, width).indices).values
    state = dict(wide_state)
    state[f"{into}.weight"] = w_in[:, kept]
    state[f"{into}.bias"] = wide_state[f"{into}.bias"][kept]
    state[f"{gdn}.beta_root"] = wide_state[f"{gdn}.beta_root"][kept]
    state[f"{gdn}.gamma_root"] = wide_state[f"{gdn}.gamma_root"][kept][:, kept]
    state[f"{out}.weight"] = w_out[kept]
    model.load_state_dict(state)
    return kept.tolist()
