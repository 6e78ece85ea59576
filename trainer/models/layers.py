"""Building blocks shared by the variants.

Choices made for export and tiling:
* BatchNorm, not GroupNorm/InstanceNorm: in eval mode it is a per-pixel affine map, so a tile's output does
  not depend on the tile's extent (only CBAM's channel attention does, see `ChannelAttention`).
* Upsampling is nearest-neighbour resize + conv rather than transposed conv: no checkerboard artefacts, and
  ONNX `Resize` with a scale factor keeps H and W dynamic.
* Global pooling is written as `mean`/`amax` over (H, W) so it exports as ReduceMean/ReduceMax with dynamic
  shapes (adaptive max pooling does not export everywhere).
"""

from __future__ import annotations

import torch
from torch import nn


def conv(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """'Same' convolution (stride 2 halves H and W exactly when they are even)."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=bias)


class ConvBlock(nn.Sequential):
    """Conv -> BatchNorm -> LeakyReLU, the baseline's only block."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 5, stride: int = 1):
        super().__init__(conv(in_ch, out_ch, kernel, stride, bias=False), nn.BatchNorm2d(out_ch),
                         nn.LeakyReLU(0.2, inplace=True))


class UpBlock(nn.Sequential):
    """x2 nearest upsampling then a ConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 5):
        super().__init__(nn.Upsample(scale_factor=2.0, mode="nearest"), ConvBlock(in_ch, out_ch, kernel))


class ResidualBlock(nn.Module):
    """Classic (post-activation) ResNet basic block: conv-BN-ReLU-conv-BN, add, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3, bias=False), nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, inplace=True),
            conv(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class PreActResidualBlock(nn.Module):
    """Pre-activation block (He et al. 2016): BN-act-conv-BN-act-conv, identity skip left untouched.

    An untouched identity path keeps gradients healthy in deep stacks; `attention` optionally re-weights the
    residual branch (CBAM) before the addition.
    """

    def __init__(self, channels: int, attention: nn.Module | None = None):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels), nn.LeakyReLU(0.2), conv(channels, channels, 3, bias=False),
            nn.BatchNorm2d(channels), nn.LeakyReLU(0.2), conv(channels, channels, 3),
        )
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP on global average- and max-pooled features.

    It pools over the whole input, so a tile's output depends on the tile's extent; the codec's tiling must
    account for that (halos, fixed tile size).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

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
