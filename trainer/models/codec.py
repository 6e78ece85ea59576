"""The codec model every variant shares (CompressAI style): the variant's transforms g_a / g_s plus one
entropy model, a mean-scale hyperprior (Minnen et al. 2018 without the spatial context model) with an optional
channel context (Minnen & Singh 2020, `context_slices`), and per-quality gain vectors on the latent for
variable rate (Cui et al. 2021, "asymmetric gained" variable rate).

Why this shape:
* The latent is wide (M = 128-320 channels at 1/16 resolution): speckle is most of a SAR image's information,
  and a narrow bottleneck can only drop it (the old 16-channel model's floor was the speckle's own 2.2 dB).
  The entropy model, not the latent's shape, decides how many bits are spent.
* h_a sends side information z (1/64 resolution) from which h_s predicts a mean and a scale for every latent.
  Only the scale decides how symbols are entropy-decoded, and the codec computes it with an integer network
  (core/hyper_decoder.py), so decoding is bit-exact on every machine; the means only shift the
  reconstruction, so float rounding in them cannot break decoding.
* One model covers the whole rate range: quality level l has a gain vector g_l (applied to y before
  quantisation) and an inverse gain g'_l (applied before g_s), and is trained with its own lambda; levels are
  drawn per sample, so every batch trains several rates. A continuous quality between two levels
  interpolates the gains geometrically.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trainer.entropy_model import LIKELIHOOD_BOUND, FactorizedPrior, LowerBound
from trainer.models.layers import conv, deconv

#: Smallest scale of the Gaussian conditional (CompressAI's): narrower ones would give the rate term
#: near-infinite gradients for latents that are not exactly on their mean.
SCALE_BOUND = 0.11
#: The scales the codec codes with: 64 log-spaced from 0.11 to 256 (CompressAI's default table).
SCALE_TABLE_MIN, SCALE_TABLE_MAX, SCALE_TABLE_LEVELS = 0.11, 256.0, 64
#: Default rate-distortion trade-offs, one per quality level: loss = lambda * 255^2 * MSE + bpp on the
#: normalised [0, 1] dB image. Measured on Sentinel-1 GRD, 0.002 gives about 0.37 bpp and 0.02 about 1.2 bpp;
#: the ends are chosen to span 0.1-2 bpp.
DEFAULT_LAMBDAS = (0.00025, 0.0008, 0.0025, 0.008, 0.025, 0.08)


def scale_table() -> list[float]:
    """The codec's scales as plain floats (export stores the integers derived from them)."""
    lo, hi, n = math.log(SCALE_TABLE_MIN), math.log(SCALE_TABLE_MAX), SCALE_TABLE_LEVELS
    return [math.exp(lo + (hi - lo) * k / (n - 1)) for k in range(n)]


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Mass of [v - 0.5, v + 0.5) under N(0, scale) for values v = y - mean (same shape).

    Evaluated on -|v| (the distribution is symmetric) so the difference of the two CDF values is taken in the
    left tail, where both are small and the subtraction keeps its precision.
    """
    scales = LowerBound.apply(scales, SCALE_BOUND)
    v = -torch.abs(values)
    half = math.sqrt(0.5)
    upper = 0.5 * torch.erfc(-half * (v + 0.5) / scales)
    lower = 0.5 * torch.erfc(-half * (v - 0.5) / scales)
    return LowerBound.apply(upper - lower, LIKELIHOOD_BOUND)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding whose gradient is the identity: the decoder trains on the integers the codec will send."""
    return x + (torch.round(x) - x).detach()


def hyper_analysis(m: int, n: int) -> nn.Sequential:
    """h_a: scaled latents (M channels, H and W multiples of 4) -> z (N channels, a quarter of each)."""
    return nn.Sequential(conv(m, n, 3), nn.LeakyReLU(0.2), conv(n, n, 5, 2), nn.LeakyReLU(0.2), conv(n, n, 5, 2))


def hyper_synthesis(m: int, n: int) -> nn.Sequential:
    """h_s: z -> (scales, means), 2M channels at 4x z's size. Convolutions, stride-2 transposed convolutions
    and ReLUs only, the layers export/hyperprior_export.py turns into an integer network; the last layer has
    no activation (means are signed; a scale below the table's first entry simply takes index 0)."""
    return nn.Sequential(deconv(n, m), nn.ReLU(), deconv(m, m), nn.ReLU(), conv(m, 2 * m, 3))


def channel_context(in_ch: int, out_ch: int, hidden: int = 64) -> nn.Sequential:
    """One slice's channel context (Minnen & Singh 2020): earlier slices -> a correction to this slice's scales
    or means. Convolutions and ReLU only, like h_s, so the scale branch can become an integer network; the last
    layer starts at zero, so a model warm-started without context codes exactly as before."""
    net = nn.Sequential(conv(in_ch, hidden, 3), nn.ReLU(), conv(hidden, out_ch, 3))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class SarCodecModel(nn.Module):
    """x (B, 1, H, W) in [0, 1], level (B,) float in [0, L-1] -> x_hat and the likelihoods {"y", "z"}.

    Subclasses (one per variant, in the registry) build `g_a` and `g_s` in `_build_transforms`. `config` holds
    the constructor arguments, which (with the registry name) is all a checkpoint needs to rebuild the model.
    """

    model_name = "base"
    downsampling_factor = 16   # the tiler pads tiles to multiples of this
    hyper_factor = 4           # and the latent grid to multiples of this

    def __init__(self, channels: int = 64, latent_channels: int = 128, hyper_channels: int = 64,
                 lambdas: tuple[float, ...] | list[float] = DEFAULT_LAMBDAS, context_slices: int = 1,
                 decoder_channels: int | None = None):
        super().__init__()
        if min(channels, latent_channels, hyper_channels, context_slices, decoder_channels or 1) < 1:
            raise ValueError("channel and slice counts must be positive")
        if latent_channels % context_slices:
            raise ValueError(f"{context_slices} context slices do not divide {latent_channels} latent channels")
        lambdas = [float(v) for v in lambdas]
        if not lambdas or min(lambdas) <= 0 or any(b <= a for a, b in zip(lambdas, lambdas[1:])):
            raise ValueError("lambdas must be positive and strictly increasing")
        self.config = {"channels": int(channels), "latent_channels": int(latent_channels),
                       "hyper_channels": int(hyper_channels), "lambdas": lambdas,
                       "context_slices": int(context_slices),
                       # as wide as `channels` is the same network: one shape, so --init and --resume match it
                       "decoder_channels": None if decoder_channels in (None, channels) else int(decoder_channels)}
        self.latent_channels = int(latent_channels)
        self.g_a, self.g_s = self._build_transforms(int(channels), self.latent_channels,
                                                    self.config["decoder_channels"])
        self.h_a = hyper_analysis(self.latent_channels, int(hyper_channels))
        self.h_s = hyper_synthesis(self.latent_channels, int(hyper_channels))
        self.prior = FactorizedPrior(int(hyper_channels))
        self.context_slices = int(context_slices)
        width = self.latent_channels // self.context_slices
        self.context_scale = nn.ModuleList(channel_context(s * width, width) for s in range(1, self.context_slices))
        self.context_mean = nn.ModuleList(channel_context(s * width, width) for s in range(1, self.context_slices))
        self.register_buffer("lambdas", torch.tensor(lambdas), persistent=False)
        # Gains start at the MSE-optimal step ratio, sqrt(lambda) relative to the middle level, so the levels
        # differ in rate from the first step; training then shapes them per channel.
        start = 0.5 * torch.log(torch.tensor(lambdas) / math.sqrt(lambdas[0] * lambdas[-1]))
        self.log_gain = nn.Parameter(start[:, None].repeat(1, self.latent_channels))
        self.log_inverse_gain = nn.Parameter(-start[:, None].repeat(1, self.latent_channels))

    def _build_transforms(self, channels: int, latent_channels: int, decoder_channels: int | None
                          ) -> tuple[nn.Module, nn.Module]:
        """(g_a, g_s); `decoder_channels` is g_s's width at 1/2 resolution (None: `channels`)."""
        raise NotImplementedError

    @property
    def levels(self) -> int:
        return len(self.config["lambdas"])

    def gains(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, inverse gain), each (B, M, 1, 1), for float levels (B,): geometric interpolation between
        the two nearest trained levels."""
        level = level.to(self.log_gain.dtype).clamp(0, self.levels - 1)
        lo = level.floor().long().clamp(max=self.levels - 2) if self.levels > 1 else level.long()
        t = (level - lo.to(level.dtype))[:, None]
        hi = (lo + 1).clamp(max=self.levels - 1)

        def mix(table: torch.Tensor) -> torch.Tensor:
            return torch.exp((1 - t) * table[lo] + t * table[hi])[:, :, None, None]

        return mix(self.log_gain), mix(self.log_inverse_gain)

    def lambda_of(self, level: torch.Tensor) -> torch.Tensor:
        """Each sample's lambda (geometric interpolation for fractional levels)."""
        log_l = torch.log(self.lambdas.to(level.device))
        lo = level.floor().long().clamp(0, max(self.levels - 2, 0))
        hi = (lo + 1).clamp(max=self.levels - 1)
        t = (level - lo.to(level.dtype)).clamp(0, 1)
        return torch.exp((1 - t) * log_l[lo] + t * log_l[hi])

    @classmethod
    def pad_to_hyper_grid(cls, y: torch.Tensor) -> torch.Tensor:
        """Zero rows/columns at the bottom/right up to multiples of 4, exactly as the codec pads a latent tile."""
        f = cls.hyper_factor
        return F.pad(y, (0, -y.shape[-1] % f, 0, -y.shape[-2] % f))

    def entropy_parameters(self, z_hat: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) of the scaled latents, cropped to the latent grid `shape`."""
        params = self.h_s(z_hat)[..., :shape[0], :shape[1]]
        return params[:, :self.latent_channels], params[:, self.latent_channels:]

    def code_slices(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor, rounding=torch.round) -> dict:
        """The latents coded slice by slice: slice s's scales are corrected from the integer symbols of slices
        < s (an integer network can reproduce that bit for bit) and its means from their reconstructed values
        (means may be float). Returns y_hat, likelihoods, and the coded scales, means and symbols (export
        calibrates the codec's integer context on them). `rounding` makes the symbols (the encoder's choice:
        benchmarks/model_limits.py measures a deadzone with it)."""
        y_hats, likelihoods, symbols, all_scales, all_means = [], [], [], [], []
        n = self.context_slices
        for s, (ys, sc, mu) in enumerate(zip(y.chunk(n, 1), scales.chunk(n, 1), means.chunk(n, 1))):
            if s:
                sc = sc + self.context_scale[s - 1](torch.cat(symbols, 1))
                mu = mu + self.context_mean[s - 1](torch.cat(y_hats, 1))
            sym = rounding(ys - mu).detach()
            if self.training:
                likelihoods.append(gaussian_likelihood(ys + torch.empty_like(ys).uniform_(-0.5, 0.5) - mu, sc))
                y_hats.append(round_ste(ys - mu) + mu)
            else:
                likelihoods.append(gaussian_likelihood(sym, sc))
                y_hats.append(sym + mu)
            symbols.append(sym)
            all_scales.append(sc)
            all_means.append(mu)
        return {"y_hat": torch.cat(y_hats, 1), "likelihoods": torch.cat(likelihoods, 1),
                "scales": torch.cat(all_scales, 1), "means": torch.cat(all_means, 1), "symbols": torch.cat(symbols, 1)}

    def code(self, x: torch.Tensor, level: torch.Tensor, rounding=torch.round) -> dict:
        """Everything between the transforms, for `forward` and for the benchmarks that look inside it: the
        gain-scaled latents `y`, `inverse_gain`, z's likelihoods, and code_slices' `y_hat`, `likelihoods`,
        scales and means."""
        gain, inverse_gain = self.gains(level)
        y = self.g_a(x) * gain
        # The entropy model runs in float32 even under autocast: its likelihoods feed log2, and half precision
        # cannot hold the small masses of the tails.
        with torch.autocast(device_type=y.device.type, enabled=False):
            y = y.float()
            z = self.h_a(self.pad_to_hyper_grid(y))
            if self.training:
                z_likelihoods = self.prior.likelihood(z + torch.empty_like(z).uniform_(-0.5, 0.5))
                z_hat = round_ste(z)
            else:
                z_hat = torch.round(z)
                z_likelihoods = self.prior.likelihood(z_hat)
            scales, means = self.entropy_parameters(z_hat, y.shape[-2:])
            coded = self.code_slices(y, scales, means, rounding)
        return {"y": y, "inverse_gain": inverse_gain, "z_likelihoods": z_likelihoods, **coded}

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> dict:
        c = self.code(x, level)
        x_hat = self.g_s(c["y_hat"] * c["inverse_gain"].float())
        return {"x_hat": x_hat, "likelihoods": {"y": c["likelihoods"], "z": c["z_likelihoods"]}}

    def count_parameters(self) -> dict[str, int]:
        def n(*mods: nn.Module) -> int:
            return sum(p.numel() for m in mods for p in m.parameters())

        return {"total": n(self), "encoder": n(self.g_a), "decoder": n(self.g_s),
                "entropy_model": n(self.h_a, self.h_s, self.prior, self.context_scale, self.context_mean)}
