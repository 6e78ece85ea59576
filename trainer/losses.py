"""Training losses: the distortion 0.7·MSE + 0.3·(1 − SSIM) on the normalised [0,1] dB image, and the
rate-distortion loss that adds the latents' estimated bits (`sar-train --lmbda`).

Computed in float32 whatever the autocast dtype: the owner's earlier runs went NaN under mixed precision,
and SSIM's variance terms (differences of small squares) are the first thing to lose precision in fp16.
The evaluation metrics live in core.metrics; this SSIM is only the differentiable training surrogate with the
same window (Gaussian 11, sigma 1.5, K1=0.01, K2=0.03, data range 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    k = k / k.sum()
    return (k[:, None] * k[None, :])[None, None]  # (1, 1, size, size)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM over 'valid' windows (no padding, like core.metrics.ssim) of (B, C, H, W) tensors."""
    x = x.float()
    y = y.float()
    c = x.shape[1]
    w = gaussian_window(size, sigma, x.device).expand(c, 1, size, size)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return smap.mean()


class SarLoss(nn.Module):
    """Distortion loss returning every term by name (CompressAI style), so the loop logs them all."""

    def __init__(self, mse_weight: float = 0.7, ssim_weight: float = 0.3):
        super().__init__()
        self.mse_weight = float(mse_weight)
        self.ssim_weight = float(ssim_weight)

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        x_hat = x_hat.float()
        target = target.float()
        mse = F.mse_loss(x_hat, target)
        s = ssim(x_hat, target)
        loss = self.mse_weight * mse + self.ssim_weight * (1.0 - s)
        return {"loss": loss, "mse": mse, "ssim": s}


class RateDistortionLoss(nn.Module):
    """lmbda·D + R, with D the SarLoss distortion and R the latents' estimated bits per pixel.

    R is in bits per (single-band) pixel, the unit the codec reports, so lmbda reads as "bits worth one unit
    of distortion". Every term comes back by name, with SarLoss's keys unchanged, so the loop logs rate and
    distortion like any other term.
    """

    def __init__(self, lmbda: float, mse_weight: float = 0.7, ssim_weight: float = 0.3):
        super().__init__()
        if not lmbda > 0:
            raise ValueError(f"lmbda must be > 0, got {lmbda}")
        self.lmbda = float(lmbda)
        self.distortion = SarLoss(mse_weight, ssim_weight)

    def forward(self, x_hat: torch.Tensor, target: torch.Tensor,
                likelihoods: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`likelihoods` is one tensor (factorized prior) or a dict of them (hyperprior: {"y", "z"}); a dict's
        parts are also reported one by one as bpp_<name>, so the log shows what the side information costs."""
        terms = self.distortion(x_hat, target)
        pixels = target.shape[0] * target.shape[-2] * target.shape[-1]
        parts = likelihoods if isinstance(likelihoods, dict) else {"": likelihoods}
        bits = {k: -torch.log2(v.float()).sum() / pixels for k, v in parts.items()}
        bpp = sum(bits.values())
        out = {"loss": self.lmbda * terms["loss"] + bpp, "distortion": terms["loss"], "mse": terms["mse"],
               "ssim": terms["ssim"], "bpp": bpp}
        if isinstance(likelihoods, dict):
            out.update({f"bpp_{k}": v for k, v in bits.items()})
        return out
