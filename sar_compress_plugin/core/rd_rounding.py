"""Rate-distortion optimised rounding of the latents, on the encoder side only.

Why: rounding y - mean to the nearest integer minimises the latents' error but ignores what each symbol costs.
When y - mean lies between two integers, the one nearer the mean is often much cheaper (the Gaussian's
peak), and taking it costs a little error. Per latent the encoder picks, of floor and ceil, the one with the
smaller

    bits(symbol | its scale index) + weight_c * (symbol - (y - mean))^2,

weight_c = SCALE * lambda(q) * 255^2 * d_c * inverse_gain_c(q)^2: the training loss's price of squared error
(lambda * 255^2 per unit of summed squared error in normalised dB), times d_c, the decoder's summed squared
response to a unit change of latent channel c (measured at export, export/distortion_weights.py), times the
gain that maps the gain-scaled symbol back to the decoder's latent.

The decoder is not touched: it reads whatever symbols the file holds, so files coded this way decode with
every version of the codec, and older files decode as before.

SCALE is measured, not derived. With SCALE = 1 the per-latent error model holds for isolated changes (within
1.1-1.65x of the decoder's real error, worst at quality 0), but taken together the choices shrink whole
regions toward the mean and the real error grows much faster: the default model then spent +4.1% bits against
plain rounding (BD-rate, held-out scenes). Over SCALE = 4, 8, 16 the BD-rate against plain rounding was -0.42,
-0.60, -0.49% on six training-side scenes (calibration) and -0.74, -0.85, -0.62% on the six held-out ones
(docs/results.md, session 11).
"""

from __future__ import annotations

import numpy as np

#: multiplies the modelled price of error; measured on the default model (see the module docstring)
SCALE = 8.0


def symbol_bits(counts: np.ndarray) -> np.ndarray:
    """(tables, symbols) float32 code lengths in bits of every symbol under every table."""
    c = np.asarray(counts, dtype=np.float64)
    return (-np.log2(c / c.sum(axis=1, keepdims=True))).astype(np.float32)


def error_weights(distortion_weights: np.ndarray, lam: float, inverse_gain: np.ndarray) -> np.ndarray:
    """(M,) float32 bits per squared symbol error, per latent channel, at a quality with trade-off `lam` and
    (M,) inverse gains."""
    d = np.asarray(distortion_weights, dtype=np.float64)
    inv = np.asarray(inverse_gain, dtype=np.float64).ravel()
    return (SCALE * float(lam) * 255.0 ** 2 * d * inv ** 2).astype(np.float32)


def rd_round(d: np.ndarray, indices: np.ndarray, bits: np.ndarray, weights: np.ndarray,
             y_min: int, y_max: int) -> np.ndarray:
    """int32 symbols for the (C, h, w) offsets `d` = y - mean coded with the tables `indices`: of floor(d) and
    floor(d) + 1 (clipped to the tables' range), the one of lower bits + weights[c] * error^2."""
    d = np.nan_to_num(np.asarray(d, dtype=np.float32))
    lo = np.clip(np.floor(d), y_min, y_max)
    hi = np.minimum(lo + 1, y_max)
    w = np.asarray(weights, dtype=np.float32)[:, None, None]
    k = indices.astype(np.intp)
    cost_lo = bits[k, (lo - y_min).astype(np.intp)] + w * (lo - d) ** 2
    cost_hi = bits[k, (hi - y_min).astype(np.intp)] + w * (hi - d) ** 2
    return np.where(cost_hi < cost_lo, hi, lo).astype(np.int32)
