"""The hyperprior's entropy parameters on a torch device, batched over tiles (issue 17, the codec call).

Why: session 17 measured the codec on one H200 at 51 / 56 MP/s end to end, bound by the CPU entropy stage on the
device's 16 cores, and 80-90% of that stage is not the range coder but the integer h_s and the channel context's
integer scale networks (exact float64 products in numpy, core/hyper_decoder.py). Those networks are sums of
integer products, and the bundle proves per layer that every partial sum stays below 2^53. So float64 arithmetic
gives the very same integers on any device and in any summation order, as long as the convolution only multiplies
and adds: the GEMM-based kernels do; cuDNN may pick FFT or Winograd algorithms, so it is switched off here. This
module runs core/hyperprior.py's slice loop (`_code_slices`: h_s, then per slice the context's corrections, the
scale indices and the symbols) on the device for a batch of tiles at once, so that the benchmark can check every
scale index against the CPU's and time the range coder alone on the CPU cores.

The means stay float (float32 networks, TF32 off): they shift the reconstruction, never decide decoding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sar_compress_plugin.core.hyper_decoder import CONV, FLOAT64_EXACT, IntegerNetwork
from sar_compress_plugin.core.hyperprior import HyperpriorCoder
from sar_compress_plugin.core.rd_rounding import symbol_bits


class DeviceIntegerNetwork:
    """An IntegerNetwork on (B, C, h, w) integer-valued float64 tensors: the same integers as its numpy run."""

    def __init__(self, net: IntegerNetwork, device: torch.device):
        if net.max_abs_accumulator() >= FLOAT64_EXACT:
            raise ValueError(f"{net.what}: an accumulator may reach 2^53, so float64 would not be exact")
        self.act_max, self.in_min, self.in_max = net.act_max, net.in_min, net.in_max
        self.layers = []
        for kind, w, b, s in zip(net.kinds, net.weights, net.biases, net.shifts):
            wt = torch.from_numpy(w.astype(np.float64))
            if kind != CONV:  # the numpy path convolves the zero-dilated input with w: a transposed convolution
                wt = wt.flip(-1, -2).transpose(0, 1).contiguous()  # with the kernel flipped, in and out swapped
            self.layers.append((kind, wt.to(device), torch.from_numpy(b.astype(np.float64)).to(device), s))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() and (x.min() < self.in_min or x.max() > self.in_max):
            raise ValueError(f"input outside [{self.in_min}, {self.in_max}]")
        x = x.to(torch.float64)
        last = len(self.layers) - 1
        with torch.backends.cudnn.flags(enabled=False):
            for i, (kind, w, b, s) in enumerate(self.layers):
                p = w.shape[-1] // 2
                x = (F.conv2d(x, w, padding=p) if kind == CONV
                     else F.conv_transpose2d(x, w, stride=2, padding=p, output_padding=1)) + b[:, None, None]
                if i < last:
                    x = x.clamp_min(0)
                if s:
                    x = torch.floor((x + 2.0 ** (s - 1)) * 2.0 ** -s)  # round half up, as the int64 shift
                x = x.clamp(-self.act_max, self.act_max)
        return x


class DeviceFloatNetwork:
    """A channel context's float32 mean network (core/channel_context.FloatConvNet), TF32 off."""

    def __init__(self, net, device: torch.device):
        self.layers = [(torch.from_numpy(w).to(device), torch.from_numpy(b).to(device))
                       for w, b in zip(net.weights, net.biases)]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            for i, (w, b) in enumerate(self.layers):
                x = F.conv2d(x, w, b, padding=w.shape[-1] // 2)
                if i < last:
                    x = x.clamp_min(0)
        return x


class DeviceHyperprior:
    """A HyperpriorCoder's h_s, channel context and symbol choice, on `device`, for a batch of tiles."""

    def __init__(self, coder: HyperpriorCoder, device: torch.device):
        self.coder, self.device = coder, device
        self.h_s = DeviceIntegerNetwork(coder.decoder, device)
        self.thresholds = torch.from_numpy(coder.decoder.thresholds.astype(np.float64)).to(device)
        context = coder.context
        self.scale_nets = [DeviceIntegerNetwork(n, device) for n in context.scale_nets] if context else []
        self.mean_nets = [DeviceFloatNetwork(n, device) for n in context.mean_nets] if context else []
        self.bits = torch.from_numpy(symbol_bits(coder.y_tables.counts).astype(np.float32)).to(device)

    def scale_indices(self, scales: torch.Tensor) -> torch.Tensor:
        """How many thresholds lie strictly below each fixed-point scale (numpy's searchsorted, side left)."""
        return torch.searchsorted(self.thresholds, scales.contiguous(), right=False)

    def hyper_outputs(self, z_symbols: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(fixed-point scales float64, means float32), each (B, M, h, w)."""
        out = self.h_s(z_symbols)[..., :h, :w]
        m = self.coder.latent_channels
        return out[:, :m], (out[:, m:] * 2.0 ** -self.coder.fraction_bits).to(torch.float32)

    def code_slices(self, ys: torch.Tensor, z_symbols: torch.Tensor, rounding: np.ndarray | None = None,
                    given_symbols: torch.Tensor | None = None):
        """(scale indices, means, symbols), each (B, M, h, w), of gain-scaled latents `ys` (B, M, h, w) and their
        z symbols: the encoder's loop. With `given_symbols` the context reads those instead of the ones chosen
        here, as a decoder would: the indices must then equal the CPU's for the same symbols, bit for bit."""
        _, _, h, w = ys.shape
        scales, means = self.hyper_outputs(z_symbols, h, w)
        n = self.coder.slices
        width = self.coder.latent_channels // n
        weights = None if rounding is None else torch.from_numpy(np.asarray(rounding, np.float32)).to(self.device)
        idx_parts, mean_parts, sym_parts = [], [], []
        for s in range(n):
            part = slice(s * width, (s + 1) * width)
            sc, mu = scales[:, part], means[:, part]
            if s:
                earlier = torch.cat(sym_parts, 1)
                sc = sc + self.scale_nets[s - 1](earlier)
                mu = mu + self.mean_nets[s - 1](earlier.to(torch.float32) + torch.cat(mean_parts, 1))
            idx = self.scale_indices(sc)
            d = torch.nan_to_num(ys[:, part] - mu)
            sym = (self._rd_round(d, idx, weights[part]) if weights is not None
                   else torch.round(d).clamp(self.coder.y_min, self.coder.y_max))
            idx_parts.append(idx)
            mean_parts.append(mu)
            sym_parts.append(sym if given_symbols is None else given_symbols[:, part].to(sym.dtype))
        return torch.cat(idx_parts, 1), torch.cat(mean_parts, 1), torch.cat(sym_parts, 1)

    def _rd_round(self, d: torch.Tensor, idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """core/rd_rounding.rd_round on the device: of floor(d) and floor(d) + 1, the one of lower bits plus
        weighted squared error (a float32 tie may go the other way than on the CPU: the encoder's choice, which
        the decoder reads as it is)."""
        y_min, y_max = self.coder.y_min, self.coder.y_max
        lo = torch.floor(d).clamp(y_min, y_max)
        hi = (lo + 1).clamp(max=y_max)
        w = weights[None, :, None, None]
        cost_lo = self.bits[idx, (lo - y_min).long()] + w * (lo - d) ** 2
        cost_hi = self.bits[idx, (hi - y_min).long()] + w * (hi - d) ** 2
        return torch.where(cost_hi < cost_lo, hi, lo)
