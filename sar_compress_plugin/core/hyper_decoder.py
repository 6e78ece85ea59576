"""The hyperprior's synthesis transform h_s as an integer network: z symbols -> scale indices, bit-exact everywhere.

A range decoder must use exactly the probability model the encoder used, symbol by symbol; with a hyperprior
that model is chosen by h_s(z). Run in floating point, h_s could give a scale a hair above a table boundary on
one machine (GPU kernel, BLAS build, thread count, fused multiply-add) and a hair below on another, and the rest
of the tile would decode to garbage. So the codec never evaluates h_s in floating point: export
(export/hyperprior_export.py) quantises its weights to integers with power-of-two scales and this module runs it
in numpy int64, where every sum is exact and therefore independent of summation order, threads or hardware.

Each layer: acc = conv(x, W) + b in int64 (a transposed convolution is a convolution of the zero-dilated
input with the flipped kernel), a ReLU on every layer but the last, then a rounding right shift back to the
activation scale and a saturation at +-`act_max`. Export proves that no accumulator can leave int64 for any
input within the symbol range (`max_abs_accumulator`), and this loader checks it again.

numpy has no BLAS for integers, so the products are summed in float64 when a layer's bound allows: if every
|partial sum| stays below 2^53, every product and every partial sum is an integer float64 holds exactly, so
each addition is exact and any BLAS, thread count, blocking or FMA gives the same integers as int64 would.
A layer whose bound is larger falls back to int64. The last layer's output (no ReLU: means are signed) is
2M channels in fixed point: M scales, mapped to indices of the scale table by integer comparison against
integer thresholds, and M means. A channel context's scale branch (core/channel_context.py) is the same kind
of integer network, run on latent symbols.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelBundleError

CONV, DECONV = 0, 1  # layer kinds: stride-1 'same' convolution; stride-2 transposed convolution (k, pad k//2, out-pad 1)
INT64_SAFE = 1 << 62
FLOAT64_EXACT = 1 << 53  # every integer below this is a float64, so sums that stay below it are exact


class ConvLayers:
    """Channel counts of a stack of (out, in, k, k) weights: the integer networks and the float mean context."""

    weights: list

    @property
    def in_channels(self) -> int:
        return self.weights[0].shape[1]

    @property
    def out_channels(self) -> int:
        return self.weights[-1].shape[0]


class IntegerNetwork(ConvLayers):
    """Integer layers (int64 numpy arrays, from the bundle) over inputs in [in_min, in_max]: h_s on z symbols,
    and a channel context's scale branch on the latent symbols of earlier slices."""

    def __init__(self, kinds, weights, biases, shifts, act_max: int, in_min: int, in_max: int):
        try:
            self.kinds = [int(k) for k in kinds]
            self.weights = [np.asarray(w) for w in weights]
            self.biases = [np.asarray(b) for b in biases]
            self.shifts = [int(s) for s in shifts]
            self.act_max = int(act_max)
            self.in_min, self.in_max = int(in_min), int(in_max)
        except (TypeError, ValueError) as exc:
            raise ModelBundleError(f"{self.what}: malformed parameters ({exc})") from None
        self._validate()
        self.weights = [w.astype(np.int64) for w in self.weights]
        self.biases = [b.astype(np.int64) for b in self.biases]
        # per layer: weights as float64, laid out (k, k, out, in) so each tap is one contiguous matrix, when its
        # sums are provably exact there; else None (int64 path)
        self._float_weights = [np.ascontiguousarray(w.astype(np.float64).transpose(2, 3, 0, 1))
                               if bound < FLOAT64_EXACT else None
                               for w, bound in zip(self.weights, self.layer_bounds())]

    what = "integer network"

    def _fail(self, msg: str) -> ModelBundleError:
        return ModelBundleError(f"{self.what}: {msg}")

    def _validate(self) -> None:
        n = len(self.kinds)
        if n == 0 or not (len(self.weights) == len(self.biases) == len(self.shifts) == n):
            raise self._fail("layer lists are empty or of different lengths")
        channels = None
        for i, (kind, w, b, s) in enumerate(zip(self.kinds, self.weights, self.biases, self.shifts)):
            if kind not in (CONV, DECONV):
                raise self._fail(f"layer {i} has unknown kind {kind}")
            if w.dtype.kind not in "iu" or b.dtype.kind not in "iu" or w.ndim != 4 or w.shape[2] != w.shape[3] \
                    or w.shape[2] % 2 == 0 or b.shape != (w.shape[0],):
                raise self._fail(f"layer {i}: weights must be integer (out, in, k, k) with odd k and one bias per "
                                 f"output")
            if channels is not None and w.shape[1] != channels:
                raise self._fail(f"layer {i} takes {w.shape[1]} channels, the previous layer gives {channels}")
            if not 0 <= s < 63:
                raise self._fail(f"layer {i}: shift {s} out of range")
            channels = w.shape[0]
        if not (0 < self.act_max < 1 << 31) or not (-(1 << 15) <= self.in_min < self.in_max < 1 << 15):
            raise self._fail("act_max or the input symbol range is out of bounds")
        if self.max_abs_accumulator() >= INT64_SAFE:
            raise self._fail("an accumulator could overflow int64 for some input")

    @property
    def upsampling(self) -> int:
        return 2 ** sum(k == DECONV for k in self.kinds)

    def layer_bounds(self) -> list[int]:
        """Per layer, a bound on |sum of products| for every input in range (Python ints: exact)."""
        bound_in = max(abs(self.in_min), abs(self.in_max))
        bounds = []
        for w in self.weights:
            bounds.append(_max_abs_row_sum(w) * bound_in)
            bound_in = self.act_max
        return bounds

    def max_abs_accumulator(self) -> int:
        """A bound on |accumulator| (products and bias) over every layer and every input in range."""
        return max(p + _max_abs_row_sum(b.reshape(-1, 1)) for p, b in zip(self.layer_bounds(), self.biases))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(in_channels, h, w) integers -> (out_channels, upsampling*h, upsampling*w) int64 fixed point."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[0] != self.in_channels or x.dtype.kind not in "iu":
            raise ValueError(f"input must be integer ({self.in_channels}, h, w), got {x.dtype} {x.shape}")
        if x.size and (x.min() < self.in_min or x.max() > self.in_max):
            raise ValueError(f"input outside [{self.in_min}, {self.in_max}]")
        x = x.astype(np.int64)
        last = len(self.kinds) - 1
        layers = zip(self.kinds, self.weights, self._float_weights, self.biases, self.shifts)
        for i, (kind, w, wf, b, s) in enumerate(layers):
            x = _layer(x, kind, w, b, wf)
            if i < last:
                np.maximum(x, 0, out=x)
            if s:
                x = (x + (1 << (s - 1))) >> s  # round half up (an arithmetic shift floors negatives too)
            np.clip(x, -self.act_max, self.act_max, out=x)
        return x


class IntegerHyperDecoder(IntegerNetwork):
    """The integer layers of h_s plus the scale thresholds that turn its fixed-point scales into indices."""

    what = "integer hyper-decoder"

    def __init__(self, kinds, weights, biases, shifts, act_max: int, thresholds, z_min: int, z_max: int):
        self.thresholds = np.asarray(thresholds)
        t = self.thresholds
        if t.ndim != 1 or t.size == 0 or t.dtype.kind not in "iu" or (np.diff(t.astype(np.int64)) <= 0).any():
            raise self._fail("scale thresholds must be a strictly increasing 1-D integer array")
        self.thresholds = t.astype(np.int64)
        super().__init__(kinds, weights, biases, shifts, act_max, z_min, z_max)

    @property
    def z_min(self) -> int:
        return self.in_min

    @property
    def z_max(self) -> int:
        return self.in_max

    @property
    def levels(self) -> int:
        """Number of scale indices (thresholds + 1)."""
        return int(self.thresholds.size) + 1

    def scale_indices(self, scales: np.ndarray) -> np.ndarray:
        """Fixed-point scales (any shape, int64) -> uint8 indices into the scale table: how many thresholds
        lie strictly below each scale (a negative scale, below every threshold, takes index 0)."""
        return np.searchsorted(self.thresholds, scales, side="left").astype(np.uint8)


def _max_abs_row_sum(w: np.ndarray) -> int:
    """max over output rows of sum |w| as an exact Python int: in int64 when no sum can overflow it (entries
    below 2^31, fewer than 2^31 per row: the export's 16-bit weights), else with Python integers."""
    rows = w.reshape(w.shape[0], -1)
    if rows.size and rows.shape[1] < 1 << 31 and int(np.abs(rows.astype(np.float64)).max()) < 1 << 31:
        return int(np.abs(rows.astype(np.int64)).sum(axis=1).max())
    return max((sum(abs(int(v)) for v in row) for row in rows.tolist()), default=0)


def tap_sum(xp: np.ndarray, w_taps: np.ndarray, taps, h: int, wd: int) -> np.ndarray:
    """sum over taps ((a, oy), (b, ox)) of w_taps[a, b] @ xp[:, oy:oy + h, ox:ox + wd] -> (O, h * wd), in the
    arrays' float dtype: one BLAS product per kernel tap (w_taps laid out (k, k, O, C)), no im2col copy."""
    c = xp.shape[0]
    acc = np.zeros((w_taps.shape[2], h * wd), dtype=xp.dtype)
    for (a, oy), (b, ox) in taps:
        acc += w_taps[a, b] @ np.ascontiguousarray(xp[:, oy:oy + h, ox:ox + wd]).reshape(c, h * wd)
    return acc


def same_taps(k: int) -> list:
    """The taps of a stride-1 'same' convolution with a k x k kernel on an input padded by k // 2."""
    return [((a, a), (b, b)) for a in range(k) for b in range(k)]


def _conv_taps(xp: np.ndarray, w: np.ndarray, w_float: np.ndarray | None, taps, h: int, wd: int) -> np.ndarray:
    """sum over taps ((a, oy), (b, ox)) of w[:, :, a, b] @ xp[:, oy:oy + h, ox:ox + wd] -> (O, h * wd) int64.

    With float64 weights ((k, k, O, C); a layer whose every partial sum is proven below 2^53) the sum is
    accumulated tap by tap in float64: every prefix of the sum is itself such a partial sum, so each addition is
    exact and the result is the same integers in any order; no im2col copy is made. Otherwise int64 im2col,
    exact as well.
    """
    c = xp.shape[0]
    if w_float is not None:
        return tap_sum(xp.astype(np.float64), w_float, taps, h, wd).astype(np.int64)
    cols = np.stack([xp[:, oy:oy + h, ox:ox + wd] for (_, oy), (_, ox) in taps], axis=1)  # (C, taps, h, w)
    sub = np.stack([w[:, :, a, b] for (a, _), (b, _) in taps], axis=2)  # (O, C, taps)
    return sub.reshape(w.shape[0], -1) @ cols.reshape(c * len(taps), h * wd)


def _phase_taps(k: int, parity: int) -> list[tuple[int, int]]:
    """(kernel tap, input offset) pairs that reach output positions of one parity in a stride-2 transposed
    convolution written as a convolution of the zero-dilated input: the other taps only ever meet the zeros."""
    lead = k - 1 - k // 2  # zeros padded before the dilated input
    return [(a, (parity + a - lead) // 2) for a in range(k) if (parity + a - lead) % 2 == 0]


def _layer(x: np.ndarray, kind: int, w: np.ndarray, b: np.ndarray, w_float: np.ndarray | None = None) -> np.ndarray:
    k = w.shape[-1]
    p = k // 2
    o = w.shape[0]
    c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    if kind == DECONV:
        # The transposed convolution (stride 2, padding p, output padding 1) equals a convolution of the input
        # dilated with zeros; computed per output phase (row parity x column parity) with only the taps that
        # meet real inputs, it skips the 3/4 of the products that are zeros, and sums the very same integers.
        out = np.empty((o, 2 * h, 2 * wd), dtype=np.int64)
        for ry in (0, 1):
            for rx in (0, 1):
                taps = [((a, p + oy), (bb, p + ox)) for a, oy in _phase_taps(k, ry) for bb, ox in _phase_taps(k, rx)]
                out[:, ry::2, rx::2] = (_conv_taps(xp, w, w_float, taps, h, wd) + b[:, None]).reshape(o, h, wd)
        return out
    return (_conv_taps(xp, w, w_float, same_taps(k), h, wd) + b[:, None]).reshape(o, h, wd)
