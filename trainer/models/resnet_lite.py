"""`resnet_lite`: classic post-activation residual blocks at every resolution."""

from __future__ import annotations

from torch import nn

from trainer.models._residual_codec import build_decoder, build_encoder
from trainer.models.base import SarAutoencoder
from trainer.models.layers import ResidualBlock
from trainer.registry import register_model


@register_model("resnet_lite")
class ResNetLiteAutoencoder(SarAutoencoder):
    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        return (build_encoder(ResidualBlock, latent_channels, base_channels),
                build_decoder(ResidualBlock, latent_channels, base_channels))
