"""Building blocks of the variants' transforms, chosen for compression on a 2-core CPU.

* GDN / inverse GDN (Ballé et al. 2016) instead of BatchNorm + ReLU: a divisive normalisation that Gaussianises
  the transform's responses, which is what lets a factorised entropy model code them cheaply. It is per pixel,
  so a tile's output does not depend on the tile's extent (only CBAM's channel attention does).
* Stride-2 5x5 convolutions down and 5x5 transposed convolutions up (exactly doubling H and W), as in
  Ballé 2018 / Minnen 2018: the cheapest layout that reaches the 1/16 latent grid.
* Global pooling is written as `mean`/`amax` over (H, W) so it exports as ReduceMean/ReduceMax with dynamic
  shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 1) -> nn.Conv2d:
    """'Same' convolution (stride 2 halves H and W exactly when they are even)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5) -> nn.ConvTranspose2d:
    """Stride-2 transposed convolution that exactly doubles H and W (undoes one stride-2 `conv`)."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel, stride=2, padding=kernel // 2, output_padding=1)


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); `inverse=True` multiplies instead (IGDN, the decoder's).

    beta and gamma are stored as square roots and squared on use (with small floors), so plain gradient
    descent keeps them positive; the sum over j is a 1x1 convolution, which exports to ONNX as a Conv.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = bool(inverse)
        self.beta_min = float(beta_min)
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.sqrt(torch.eye(channels) * gamma_init + 1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta_root ** 2 + self.beta_min
        gamma = (self.gamma_root ** 2)[:, :, None, None]
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))
        return x * norm if self.inverse else x / norm


class ResidualUnit(nn.Module):
    """Post-activation residual unit: x + conv(lrelu(conv(x))), as in Cheng et al. 2020's transforms."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), nn.LeakyReLU(0.2), conv(channels, channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PreActResidualUnit(nn.Module):
    """Pre-activation unit (He et al. 2016): x + conv(lrelu(conv(lrelu(x)))), identity path untouched.

    `attention` optionally re-weights the residual branch (CBAM) before the addition.
    """

    def __init__(self, channels: int, attention: nn.Module | None = None):
        super().__init__()
        self.body = nn.Sequential(nn.LeakyReLU(0.2), conv(channels, channels, 3),
                                  nn.LeakyReLU(0.2), conv(channels, channels, 3))
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP on global average- and max-pooled features.

    It pools over the whole input, so a tile's output depends on the tile's extent; the codec codes fixed-size
    tiles, so that extent is the same in training and use.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: 7x7 conv over the channel-wise mean and max maps."""

    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = conv(2, 1, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Sequential):
    """Convolutional Block Attention Module (Woo et al. 2018): channel then spatial attention."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__(ChannelAttention(channels, reduction), SpatialAttention())


def analysis(n: int, m: int, unit=None) -> nn.Sequential:
    """g_a: 1 -> N -> N -> N -> M channels through four stride-2 convolutions with GDN between them; `unit`
    (a channels -> module factory) adds one residual unit after the GDN at 1/4 and 1/8 resolution, where it
    costs a sixteenth of what it would at full resolution."""
    extra = (lambda: [unit(n)]) if unit is not None else (lambda: [])
    return nn.Sequential(conv(1, n, 5, 2), GDN(n),
                         conv(n, n, 5, 2), GDN(n), *extra(),
                         conv(n, n, 5, 2), GDN(n), *extra(),
                         conv(n, m, 5, 2))


def synthesis(n: int, m: int, unit=None, last: int | None = None) -> nn.Sequential:
    """g_s: the mirror of `analysis` (transposed convolutions, inverse GDN); the output is unbounded (the
    codec clips to [0, 1]), so the loss sees the error the clip would hide.

    `last` (default n) is the width at 1/2 resolution. The N -> N layer into it does most of the decoder's
    multiply-adds (64 -> 4 x 64 sub-pixel at 1/4 resolution: 9,216 of 14,416 per pixel at N = 64), so a
    narrower `last` is what makes a cheaper decoder (trainer/narrow.py)."""
    last = n if last is None else last
    extra = (lambda: [unit(n)]) if unit is not None else (lambda: [])
    return nn.Sequential(deconv(m, n), GDN(n, inverse=True), *extra(),
                         deconv(n, n), GDN(n, inverse=True), *extra(),
                         deconv(n, last), GDN(last, inverse=True),
                         deconv(last, 1))
