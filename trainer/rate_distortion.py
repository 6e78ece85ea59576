"""A variant's transform plus a learned factorized prior, for rate-distortion training (`sar-train --lmbda`).

The wrapper is an SarAutoencoder built around a variant's `g_a` and `g_s`, so it keeps the plain models' codec
API and checkpoints, evaluation and export treat it like any variant;
only the extra `prior.*` weights and the `likelihoods` output set it apart. `g_a` and `g_s` sit at the top
level, so its state dict is the plain variant's plus `prior.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.entropy_model import FactorizedPrior
from trainer.models.base import SarAutoencoder


class RateDistortionModel(SarAutoencoder):
    """x -> (x_hat from quantised latents, likelihoods of those latents).

    Training adds uniform noise to the latents and evaluation rounds them (see FactorizedPrior.forward), so
    the decoder learns to work from the integer latents that export's step-1 quantiser will give it.
    """

    def __init__(self, transform: SarAutoencoder, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        self._transform = (transform.g_a, transform.g_s)  # handed to _build; a tuple, so not a submodule
        super().__init__(**transform.config)
        del self._transform
        self.model_name = transform.model_name
        self.prior = FactorizedPrior(self.latent_channels, filters, init_scale)

    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        return self._transform

    @property
    def entropy_model_config(self) -> dict:
        """What a checkpoint stores (as "entropy_model") to rebuild this wrapper around its variant."""
        return self.prior.config

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.g_a(x)
        # The prior runs in float32 even under autocast: the likelihoods feed log2 in the loss, and half
        # precision cannot hold the small masses of the tails.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y_hat, likelihoods = self.prior(y.float())
        return {"x_hat": self.g_s(y_hat), "y": y, "likelihoods": likelihoods}

    def count_parameters(self) -> dict[str, int]:
        return {**super().count_parameters(), "entropy_model": sum(p.numel() for p in self.prior.parameters())}
