"""The rate-distortion loss of the variable-rate codec model: per patch, lambda * 255^2 * MSE + bpp.

MSE on the normalised [0, 1] dB image is the distortion because dB RMSE is the figure users compare codecs
by (it is the normalised RMSE times the clip range); 255^2 keeps lambda on CompressAI's familiar scale.
Each patch carries the lambda of its own quality level, so one batch trains several rates.
Computed in float32 whatever the autocast dtype.
"""

from __future__ import annotations

import torch
from torch import nn

DISTORTION_SCALE = 255.0 ** 2


class RateDistortionLoss(nn.Module):
    """Returns every term by name (CompressAI style), so the loop logs them without special cases:
    loss, mse, bpp (total) and bpp_y, bpp_z (latents and side information), all batch means."""

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor, likelihoods: dict[str, torch.Tensor],
                lmbda: torch.Tensor) -> dict[str, torch.Tensor]:
        x_hat, target = x_hat.float(), target.float()
        pixels = target.shape[-2] * target.shape[-1]
        mse = ((x_hat - target) ** 2).flatten(1).mean(1)
        bits = {k: -torch.log2(v.float()).flatten(1).sum(1) / pixels for k, v in likelihoods.items()}
        bpp = sum(bits.values())
        loss = lmbda.float() * DISTORTION_SCALE * mse + bpp
        out = {"loss": loss.mean(), "mse": mse.mean(), "bpp": bpp.mean()}
        out.update({f"bpp_{k}": v.mean() for k, v in bits.items()})
        return out
