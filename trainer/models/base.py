"""The one codec API every variant shares (CompressAI style): variants differ only in `g_a` and `g_s`.

Export takes `g_a` (encoder) and `g_s` (decoder) directly, and the tiler pads to `downsampling_factor`.
"""

from __future__ import annotations

import torch
from torch import nn


class SarAutoencoder(nn.Module):
    """1-channel [0,1] image -> latent (latent_channels, H/16, W/16) -> 1-channel [0,1] reconstruction.

    Subclasses build `self.g_a` and `self.g_s` in `_build()`. `self.config` holds the constructor arguments,
    which is all a checkpoint needs (with the registry name) to rebuild the model.
    """

    model_name = "base"

    def __init__(self, latent_channels: int = 16, base_channels: int = 64):
        super().__init__()
        if latent_channels < 1 or base_channels < 1:
            raise ValueError("latent_channels and base_channels must be positive")
        self.config = {"latent_channels": int(latent_channels), "base_channels": int(base_channels)}
        self.latent_channels = int(latent_channels)
        self.base_channels = int(base_channels)
        self.g_a, self.g_s = self._build(self.latent_channels, self.base_channels)

    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        raise NotImplementedError

    @property
    def downsampling_factor(self) -> int:
        return 16

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.g_a(x)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        return self.g_s(y)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.g_a(x)
        return {"x_hat": self.g_s(y), "y": y}

    def count_parameters(self) -> dict[str, int]:
        enc = sum(p.numel() for p in self.g_a.parameters())
        dec = sum(p.numel() for p in self.g_s.parameters())
        return {"total": sum(p.numel() for p in self.parameters()), "encoder": enc, "decoder": dec}
