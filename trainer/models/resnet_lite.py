"""`resnet_lite`: the baseline plus one post-activation residual unit at 1/4 and 1/8 resolution, each way."""

from __future__ import annotations

from torch import nn

from trainer.models.codec import SarCodecModel
from trainer.models.layers import ResidualUnit, analysis, synthesis
from trainer.registry import register_model


@register_model("resnet_lite")
class ResNetLiteCodec(SarCodecModel):
    def _build_transforms(self, channels: int, latent_channels: int, decoder_channels: int | None
                          ) -> tuple[nn.Module, nn.Module]:
        return (analysis(channels, latent_channels, ResidualUnit),
                synthesis(channels, latent_channels, ResidualUnit, last=decoder_channels))
