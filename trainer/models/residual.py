"""`residual` ("Variant B"): pre-activation residual units, whose untouched identity path trains more stably."""

from __future__ import annotations

from torch import nn

from trainer.models.codec import SarCodecModel
from trainer.models.layers import PreActResidualUnit, analysis, synthesis
from trainer.registry import register_model


@register_model("residual")
class PreActResidualCodec(SarCodecModel):
    def _build_transforms(self, channels: int, latent_channels: int, decoder_channels: int | None
                          ) -> tuple[nn.Module, nn.Module]:
        return (analysis(channels, latent_channels, PreActResidualUnit),
                synthesis(channels, latent_channels, PreActResidualUnit, last=decoder_channels))
