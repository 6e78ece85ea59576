"""A learned factorized prior (Ballé et al. 2018, "Variational image compression with a scale hyperprior",
appendix 6.1), in plain PyTorch: the density of the hyperprior's side information z.

Training needs a differentiable estimate of how many bits the quantised z will cost; this model gives each z
channel its own flexible univariate density. The codec codes z with integer tables that export evaluates from
this very density in float64 (export/hyperprior_export.py), so the rate the training saw is the rate the files
pay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOOD_BOUND = 1e-9


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would raise x.

    A plain clamp gives zero gradient to every value below the bound, so a latent far outside the density's
    support would cost a constant ~30 bits that nothing can learn to reduce; letting the upward gradient
    through lets the density widen (and the encoder shrink) towards such values.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad_output < 0)
        return grad_output * pass_through.to(grad_output.dtype), None


class FactorizedPrior(nn.Module):
    """Per-channel cumulative density c(y) = f_K ∘ ... ∘ f_1(y), one independent chain per latent channel.

    f_k(x) = x' + a_k ⊙ tanh(x') with x' = H_k x + b_k for k < K, and f_K = sigmoid(H_K x + b_K). H_k are
    softplus-constrained (positive) and a_k tanh-constrained (> -1), which makes every f_k monotonic: c is a
    valid cumulative distribution whatever the parameters, so plain gradient descent can fit it.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        if channels < 1 or not filters or min(filters) < 1 or init_scale <= 0:
            raise ValueError("channels and filters must be positive and init_scale > 0")
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        dims = (1, *self.filters, 1)
        # Initialised so the density starts as a wide bump of about init_scale around 0 (the tfc/CompressAI
        # recipe): too narrow and early latents fall in the tails, where the rate gradient vanishes.
        scale = self.init_scale ** (1 / (len(self.filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for k in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[k + 1], 1)))

    @property
    def config(self) -> dict:
        """Constructor arguments as plain types, so a checkpoint can rebuild the prior."""
        return {"filters": list(self.filters), "init_scale": self.init_scale}

    def _logits_cumulative(self, v: torch.Tensor) -> torch.Tensor:
        """(C, 1, N) values -> (C, 1, N) logits of the cumulative density (sigmoid not yet applied)."""
        logits = v
        for k, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(matrix), logits) + self.biases[k]
            if k < len(self.factors):
                logits = logits + torch.tanh(self.factors[k]) * torch.tanh(logits)
        return logits

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """Probability mass of [y - 0.5, y + 0.5) per element of (B, C, H, W) latents, same shape.

        The cumulative densities of both ends are close to 1 in the right tail, where their difference loses
        all precision; evaluating there with negated logits (sigmoid(-l) = 1 - sigmoid(l)) subtracts two small
        numbers instead. (torch.where rather than -sign(): an exact zero sum must not zero the mass.)
        """
        b, c, h, w = y.shape
        if c != self.channels:
            raise ValueError(f"prior has {self.channels} channels, latents have {c}")
        v = y.to(self.matrices[0].dtype).permute(1, 0, 2, 3).reshape(c, 1, -1)  # float32 unless made double
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        sign = torch.where(lower + upper > 0, -1.0, 1.0).detach()
        mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        mass = LowerBound.apply(mass, LIKELIHOOD_BOUND)
        return mass.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_hat, likelihoods of y_hat).

        Training adds uniform noise instead of rounding: its density is the prior convolved with a unit box,
        a differentiable stand-in for the rounded latents' probability mass. Evaluation rounds, as the codec
        does with step 1 and offset 0, so the likelihoods then estimate the real rate.
        """
        if self.training:
            y_hat = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        else:
            y_hat = torch.round(y)
        return y_hat, self.likelihood(y_hat)
