"""A variant's transform plus a scale hyperprior (Ballé et al. 2018, "Variational image compression with a scale
hyperprior"), for rate-distortion training (`sar-train --lmbda L --entropy-model hyperprior`).

The factorized prior gives every latent of a channel the same distribution, however busy or flat the area it
describes; a hyperprior sends a little side information z (a quarter of the latent resolution) from which the
decoder predicts a scale per latent, so flat areas' latents are coded with narrow Gaussians and busy ones with
wide ones. z itself is coded with the existing FactorizedPrior.

Like RateDistortionModel, `g_a` and `g_s` sit at the top level, so the state dict is the plain variant's plus
`h_a.*`, `h_s.*` and `prior.*` (the prior of z), and a plain checkpoint warm-starts the transform.
The codec never runs `h_s` in floating point: export turns it into an integer network
(export/hyperprior_export.py, core/hyper_decoder.py) so the decoder's scale choices are bit-exact everywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.entropy_model import LIKELIHOOD_BOUND, FactorizedPrior, _LowerBound
from trainer.models.base import SarAutoencoder

#: Smallest scale the Gaussian conditional uses (as CompressAI): narrower Gaussians would give the rate term
#: near-infinite gradients for latents that are not exactly 0.
SCALE_BOUND = 0.11
#: The scale table the codec codes with: 64 log-spaced scales from 0.11 to 256 (CompressAI's default range).
SCALE_TABLE_MIN, SCALE_TABLE_MAX, SCALE_TABLE_LEVELS = 0.11, 256.0, 64
#: Where h_s's predicted scales start (the bias of its last convolution). A fresh h_s otherwise predicts scales
#: near 0, i.e. the 0.11 bound, and a warm-started transform's latents (std about 2.5-3.5 for the default
#: model) then cost 1.4 bpp until h_s catches up: the first 40 of a 120-step run went on that.
SCALE_INIT = 3.0


def scale_table() -> list[float]:
    """The codec's scales, as plain floats (export stores the derived integers; decoding never recomputes)."""
    lo, hi, n = math.log(SCALE_TABLE_MIN), math.log(SCALE_TABLE_MAX), SCALE_TABLE_LEVELS
    return [math.exp(lo + (hi - lo) * k / (n - 1)) for k in range(n)]


def gaussian_likelihood(y: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Mass of [y - 0.5, y + 0.5) under a zero-mean Gaussian of the given scale (same shape as y).

    Evaluated on -|y| (the distribution is symmetric) so the difference of the two CDF values is taken in the
    left tail, where both are small and the subtraction keeps its precision.
    """
    scales = _LowerBound.apply(scales, SCALE_BOUND)
    v = -torch.abs(y)
    normal = torch.distributions.Normal(0.0, 1.0)
    mass = normal.cdf((v + 0.5) / scales) - normal.cdf((v - 0.5) / scales)
    return _LowerBound.apply(mass, LIKELIHOOD_BOUND)


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5) -> nn.ConvTranspose2d:
    """Exactly doubles the size (k 5, stride 2, padding 2, output padding 1), undoing one stride-2 _conv."""
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)


def build_hyper_analysis(latent_channels: int, hyper_channels: int) -> nn.Sequential:
    """h_a: |y| (M channels, h x w, multiples of 4) -> z (N channels, h/4 x w/4)."""
    m, n = latent_channels, hyper_channels
    return nn.Sequential(_conv(m, n, 3), nn.ReLU(), _conv(n, n, 5, 2), nn.ReLU(), _conv(n, n, 5, 2))


def build_hyper_synthesis(latent_channels: int, hyper_channels: int) -> nn.Sequential:
    """h_s: z -> scales (M channels, 4x z's size). Only convolutions, transposed convolutions and ReLUs, the
    last one included (the scales must be >= 0): the layers export/hyperprior_export.py can make integer."""
    m, n = latent_channels, hyper_channels
    return nn.Sequential(_deconv(n, n), nn.ReLU(), _deconv(n, n), nn.ReLU(), _conv(n, m, 3), nn.ReLU())


class HyperpriorModel(SarAutoencoder):
    """x -> (x_hat from quantised y, likelihoods {"y", "z"}); training adds uniform noise to y and z, evaluation
    rounds both, as the codec does (step 1, offset 0)."""

    def __init__(self, transform: SarAutoencoder, hyper_channels: int = 32, filters: tuple[int, ...] = (3, 3, 3),
                 init_scale: float = 10.0):
        self._transform = (transform.g_a, transform.g_s)  # handed to _build; a tuple, so not a submodule
        super().__init__(**transform.config)
        del self._transform
        self.model_name = transform.model_name
        if hyper_channels < 1:
            raise ValueError("hyper_channels must be positive")
        self.hyper_channels = int(hyper_channels)
        self.h_a = build_hyper_analysis(self.latent_channels, self.hyper_channels)
        self.h_s = build_hyper_synthesis(self.latent_channels, self.hyper_channels)
        nn.init.constant_(self.h_s[-2].bias, SCALE_INIT)
        self.prior = FactorizedPrior(self.hyper_channels, filters, init_scale)

    def _build(self, latent_channels: int, base_channels: int) -> tuple[nn.Module, nn.Module]:
        return self._transform

    @property
    def entropy_model_config(self) -> dict:
        """What a checkpoint stores (as "entropy_model"); "kind" tells checkpoint.load_model which wrapper."""
        return {"kind": "hyperprior", "hyper_channels": self.hyper_channels, **self.prior.config}

    def hyper_encode(self, y: torch.Tensor) -> torch.Tensor:
        """Latents (h, w multiples of 4) -> unrounded z."""
        return self.h_a(torch.abs(y))

    @staticmethod
    def pad_to_hyper_grid(y: torch.Tensor) -> torch.Tensor:
        """Zero rows/columns at the bottom/right up to multiples of 4, exactly as the codec pads a latent tile."""
        return F.pad(y, (0, -y.shape[-1] % 4, 0, -y.shape[-2] % 4))

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        with torch.autocast(device_type=y.device.type, enabled=False):  # rates in float32 (see RateDistortionModel)
            y = y.float()
            z_hat, z_likelihoods = self.prior(self.hyper_encode(self.pad_to_hyper_grid(y)))
            scales = self.h_s(z_hat)[..., :y.shape[-2], :y.shape[-1]]
            if self.training:
                y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
            else:
                y_hat = torch.round(y)
            y_likelihoods = gaussian_likelihood(y_hat, scales)
        return {"x_hat": self.g_s(y_hat), "y": y, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def count_parameters(self) -> dict[str, int]:
        extra = sum(p.numel() for m in (self.h_a, self.h_s, self.prior) for p in m.parameters())
        return {**super().count_parameters(), "entropy_model": extra}
