"""`residual` ("Variant B"): pre-activation residual blocks, whose untouched skip path trains more stably."""

from __future__ import annotations

from torch import nn

from trainer.models._residual_codec import build_decoder, build_encoder
from trainer.models.base import SarAutoencoder
from trainer.models.layers import PreActResidualBlock
from trainer.registry import register_model


@register_model("residual")
class PreActResidualAutoencoder(SarAutoencoder):
    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        return (build_encoder(PreActResidualBlock, latent_channels, base_channels),
                build_decoder(PreActResidualBlock, latent_channels, base_channels))
