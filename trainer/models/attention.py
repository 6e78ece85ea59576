"""`attention` ("Variant C"): Variant B with CBAM re-weighting every residual branch.

Expected to help most where speckle statistics vary across a tile (field/water/urban borders). Channel
attention pools the whole input, so a tile's latent depends on the tile's extent: the codec's fixed tile size
keeps that extent the same in training and use.
"""

from __future__ import annotations

from torch import nn

from trainer.models.codec import SarCodecModel
from trainer.models.layers import CBAM, PreActResidualUnit, analysis, synthesis
from trainer.registry import register_model


def _unit(channels: int) -> nn.Module:
    return PreActResidualUnit(channels, attention=CBAM(channels))


@register_model("attention")
class AttentionCodec(SarCodecModel):
    def _build_transforms(self, channels: int, latent_channels: int, decoder_channels: int | None
                          ) -> tuple[nn.Module, nn.Module]:
        return analysis(channels, latent_channels, _unit), synthesis(channels, latent_channels, _unit,
                                                                     last=decoder_channels)
