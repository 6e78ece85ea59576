"""`attention` ("Variant C"): Variant B with CBAM re-weighting every residual branch.

Expected to help most where speckle statistics vary across a tile (field/water/urban borders). Channel
attention pools the whole input, so tile size matters at inference (see layers.ChannelAttention).
"""

from __future__ import annotations

from torch import nn

from trainer.models._residual_codec import build_decoder, build_encoder
from trainer.models.base import SarAutoencoder
from trainer.models.layers import CBAM, PreActResidualBlock
from trainer.registry import register_model


def _block(channels: int) -> nn.Module:
    return PreActResidualBlock(channels, attention=CBAM(channels))


@register_model("attention")
class AttentionAutoencoder(SarAutoencoder):
    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        return (build_encoder(_block, latent_channels, base_channels),
                build_decoder(_block, latent_channels, base_channels))
