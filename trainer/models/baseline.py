"""`baseline`: Ballé et al. 2018's transforms, four stride-2 5x5 convolutions with GDN between them."""

from __future__ import annotations

from torch import nn

from trainer.models.codec import SarCodecModel
from trainer.models.layers import analysis, synthesis
from trainer.registry import register_model


@register_model("baseline")
class BaselineCodec(SarCodecModel):
    def _build_transforms(self, channels: int, latent_channels: int, decoder_channels: int | None
                          ) -> tuple[nn.Module, nn.Module]:
        return analysis(channels, latent_channels), synthesis(channels, latent_channels, last=decoder_channels)
