"""A variant's transform plus a learned factorized prior, for rate-distortion training (`sar-train --lmbda`).

The wrapper keeps the plain models' codec API (`g_a`, `g_s`, `encode`, `decode`, `downsampling_factor`,
`count_parameters`, `model_name`, `config`), so checkpoints, evaluation and export treat it like any variant;
only the extra `prior.*` weights and the `likelihoods` output set it apart. `g_a` and `g_s` sit at the top
level, so its state dict is the plain variant's plus `prior.*`.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.entropy_model import FactorizedPrior


class RateDistortionModel(nn.Module):
    """x -> (x_hat from quantised latents, likelihoods of those latents).

    Training adds uniform noise to the latents and evaluation rounds them (see FactorizedPrior.forward), so
    the decoder learns to work from the integer latents that export's step-1 quantiser will give it.
    """

    def __init__(self, transform: nn.Module, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.model_name = transform.model_name
        self.config = dict(transform.config)
        self.latent_channels = int(transform.latent_channels)
        self._downsampling_factor = int(transform.downsampling_factor)
        self.g_a = transform.g_a
        self.g_s = transform.g_s
        self.prior = FactorizedPrior(self.latent_channels, filters, init_scale)

    @property
    def entropy_model_config(self) -> dict:
        """What a checkpoint stores (as "entropy_model") to rebuild this wrapper around its variant."""
        return self.prior.config

    @property
    def downsampling_factor(self) -> int:
        return self._downsampling_factor

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.g_a(x)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        return self.g_s(y)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.g_a(x)
        # The prior runs in float32 even under autocast: the likelihoods feed log2 in the loss, and half
        # precision cannot hold the small masses of the tails.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y_hat, likelihoods = self.prior(y.float())
        return {"x_hat": self.g_s(y_hat), "y": y, "likelihoods": likelihoods}

    def count_parameters(self) -> dict[str, int]:
        enc = sum(p.numel() for p in self.g_a.parameters())
        dec = sum(p.numel() for p in self.g_s.parameters())
        prior = sum(p.numel() for p in self.prior.parameters())
        return {"total": sum(p.numel() for p in self.parameters()), "encoder": enc, "decoder": dec,
                "entropy_model": prior}
