"""The channel context of the latents (Minnen & Singh 2020), as the codec runs it: slice s of the latent
channels is coded after slices 0..s-1, and its scales and means are corrected from them.

Why it is split this way:
* The scale decides how a symbol is entropy-decoded, so its correction must be the same integer on every
  machine. It is computed from the earlier slices' *symbols* (integers, identical on both sides of the file)
  by an integer network (core/hyper_decoder.py's IntegerNetwork), whose output is in the same fixed point as
  h_s's scales: the two add exactly before the scale thresholds.
* The mean only shifts the reconstruction, so its correction is a plain float32 network on the earlier slices'
  reconstructed latents: a machine that computes it a hair differently decodes the very same symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelBundleError
from .hyper_decoder import CONV, ConvLayers, IntegerNetwork, same_taps, tap_sum


class ScaleContextNetwork(IntegerNetwork):
    """A slice's scale correction: stride-1 integer convolutions over the symbols of the earlier slices."""

    what = "channel context scale network"


@dataclass
class FloatConvNet(ConvLayers):
    """Stride-1 'same' convolutions with ReLU between them (not after the last): (C, h, w) -> (O, h, w)."""

    weights: list  # float32 (out, in, k, k), odd k
    biases: list   # float32 (out,)

    def __post_init__(self) -> None:
        try:
            self.weights = [np.asarray(w, dtype=np.float32) for w in self.weights]
            self.biases = [np.asarray(b, dtype=np.float32) for b in self.biases]
        except (TypeError, ValueError) as exc:
            raise ModelBundleError(f"mean context: malformed parameters ({exc})") from None
        channels = None
        if not self.weights or len(self.weights) != len(self.biases):
            raise ModelBundleError("mean context: layer lists are empty or of different lengths")
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0 or b.shape != (w.shape[0],) \
                    or (channels is not None and w.shape[1] != channels):
                raise ModelBundleError(f"mean context: layer {i} has shape {w.shape}, bias {b.shape}")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise ModelBundleError(f"mean context: layer {i} is not finite")
            channels = w.shape[0]
        # (k, k, out, in): each tap one contiguous matrix for BLAS
        self._taps = [np.ascontiguousarray(w.transpose(2, 3, 0, 1)) for w in self.weights]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self._taps, self.biases)):
            x = _same_conv(x, w, b)
            if i < last:
                np.maximum(x, 0, out=x)
        return x


def _same_conv(x: np.ndarray, taps: np.ndarray, b: np.ndarray) -> np.ndarray:
    c, h, wd = x.shape
    p = taps.shape[0] // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    return (tap_sum(xp, taps, same_taps(taps.shape[0]), h, wd) + b[:, None]).reshape(taps.shape[2], h, wd)


@dataclass
class ChannelContext:
    """Per slice s = 1..S-1: an integer scale network and a float mean network, each taking the s * width
    channels of slices 0..s-1 and giving width channels."""

    slices: int
    scale_nets: list  # ScaleContextNetwork, fixed-point output in the hyper-decoder's fraction bits
    mean_nets: list   # FloatConvNet

    def validate(self, latent_channels: int, symbol_range: tuple[int, int]) -> None:
        s = self.slices
        if s < 2 or latent_channels % s:
            raise ModelBundleError(f"channel context: {s} slices do not divide {latent_channels} latent channels")
        if len(self.scale_nets) != s - 1 or len(self.mean_nets) != s - 1:
            raise ModelBundleError(f"channel context: {s} slices need {s - 1} scale and mean networks")
        width = latent_channels // s
        for i, (sc, mu) in enumerate(zip(self.scale_nets, self.mean_nets), start=1):
            if any(k != CONV for k in sc.kinds) or (sc.in_min, sc.in_max) != tuple(symbol_range):
                raise ModelBundleError(f"channel context {i}: the scale network must be stride-1 convolutions "
                                       f"over the latent symbol range {symbol_range}")
            for net in (sc, mu):
                if (net.in_channels, net.out_channels) != (i * width, width):
                    raise ModelBundleError(f"channel context {i}: takes {net.in_channels} and gives "
                                           f"{net.out_channels} channels; slice {i} needs {i * width} -> {width}")

    def scale_correction(self, s: int, symbols: np.ndarray) -> np.ndarray:
        """int64 fixed-point correction of slice s's scales from the integer symbols of slices < s."""
        return self.scale_nets[s - 1](symbols)

    def mean_correction(self, s: int, latents: np.ndarray) -> np.ndarray:
        """float32 correction of slice s's means from the reconstructed latents of slices < s."""
        return self.mean_nets[s - 1](latents)

