"""The rate-distortion loss of the variable-rate codec model: per patch, lambda * 255^2 * MSE + bpp.

MSE on the normalised [0, 1] dB image is the distortion because dB RMSE is the figure users compare codecs
by (it is the normalised RMSE times the clip range); 255^2 keeps lambda on CompressAI's familiar scale.
Each patch carries the lambda of its own quality level, so one batch trains several rates.
Computed in float32 whatever the autocast dtype.

Optional per-level weights scale each patch's training loss. Without them a top-level patch's loss is about 18
times a bottom-level one's (lambda grows 320-fold over the levels), so the shared transforms learn mostly for the
high rates; weights rebalance that. Validation stays unweighted, so validation losses compare across runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DISTORTION_SCALE = 255.0 ** 2


class RateDistortionLoss(nn.Module):
    """Returns every term by name (CompressAI style), so the loop logs them without special cases:
    loss, mse, bpp (total) and bpp_y, bpp_z (latents and side information), all batch means."""

    def __init__(self, level_weights: Sequence[float] | None = None):
        super().__init__()
        self.level_weights = None if level_weights is None else torch.tensor([float(w) for w in level_weights])

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor, likelihoods: dict[str, torch.Tensor],
                lmbda: torch.Tensor, level: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`level` (the patches' integer quality levels) applies the level weights; without it, or without
        weights, the loss is unweighted."""
        x_hat, target = x_hat.float(), target.float()
        pixels = target.shape[-2] * target.shape[-1]
        mse = ((x_hat - target) ** 2).flatten(1).mean(1)
        bits = {k: -torch.log2(v.float()).flatten(1).sum(1) / pixels for k, v in likelihoods.items()}
        bpp = sum(bits.values())
        loss = lmbda.float() * DISTORTION_SCALE * mse + bpp
        if level is not None and self.level_weights is not None:
            loss = loss * self.level_weights.to(loss.device)[level.round().long()]
        out = {"loss": loss.mean(), "mse": mse.mean(), "bpp": bpp.mean()}
        out.update({f"bpp_{k}": v.mean() for k, v in bits.items()})
        return out
