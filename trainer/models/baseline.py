"""`baseline`: plain Conv-BN-LeakyReLU 5x5 encoder/decoder (the owner's first model, ~2.3M parameters)."""

from __future__ import annotations

from torch import nn

from trainer.models.base import SarAutoencoder
from trainer.models.layers import ConvBlock, UpBlock, conv
from trainer.registry import register_model


@register_model("baseline")
class BaselineAutoencoder(SarAutoencoder):
    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        c1, c2 = base_channels, 2 * base_channels
        g_a = nn.Sequential(
            ConvBlock(1, c1, 5, stride=2),
            ConvBlock(c1, c2, 5, stride=2),
            ConvBlock(c2, c2, 5, stride=2),
            ConvBlock(c2, c2, 5, stride=2),
            conv(c2, latent_channels, 5),  # unbounded latent: no activation
        )
        g_s = nn.Sequential(
            ConvBlock(latent_channels, c2, 5),
            UpBlock(c2, c2, 5),
            UpBlock(c2, c2, 5),
            UpBlock(c2, c1, 5),
            UpBlock(c1, c1, 5),
            conv(c1, 1, 5),
            nn.Sigmoid(),
        )
        return g_a, g_s
