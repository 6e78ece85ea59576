"""A trained hyperprior -> the bundle files the codec codes with: hyper_encoder.onnx and hyperprior.npz.

The codec must make the same scale choice for every latent on every machine, so h_s becomes an integer network
(core/hyper_decoder.py): weights scaled by a power of two and rounded to 16-bit integers, biases to the
accumulator's scale, activations requantised by rounding right shifts to a power-of-two scale chosen from the
float network's activation range on real tiles (with 4x headroom before saturation). Its output, a scale in
fixed point, is compared with integer thresholds: floor(scale_table[k] * 2^F), computed here once in float64.

The probability tables are integers too: for z, each channel's trained FactorizedPrior evaluated in float64 at
the integer bins of the symbol range; for y, a discretised zero-mean Gaussian per scale of the table, its tails
beyond the range folded into the end symbols (the codec clips there). Every count is at least 1.

How close the integer h_s is to the float one is measured on the calibration tiles and written to the
manifest: the fraction of latents whose scale index matches, and the estimated rate with either index.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sar_compress_plugin.core.hyper_decoder import CONV, DECONV, IntegerHyperDecoder
from sar_compress_plugin.core.hyperprior import HYPERPRIOR_NAME, load_hyperprior, save_hyperprior
from trainer.hyperprior import HyperpriorModel, scale_table

log = logging.getLogger(__name__)

HYPER_ENCODER_NAME = "hyper_encoder.onnx"
WEIGHT_BITS = 15          # |integer weight| <= 2^15 - 1
ACTIVATION_BITS = 22      # the calibrated activation maximum maps to about 2^22 ...
ACT_MAX = (1 << 24) - 1   # ... and activations saturate 4x above it
TABLE_TOTAL = 1 << 20     # counts are probabilities times this (then >= 1)
SYMBOL_MIN, SYMBOL_MAX = -127, 127


class _AbsThenHa(nn.Module):
    """What the codec's hyper-encoder computes: h_a(|y|)."""

    def __init__(self, h_a: nn.Module):
        super().__init__()
        self.h_a = h_a

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.h_a(torch.abs(y))


def _layers(h_s: nn.Sequential) -> list[tuple[int, nn.Module]]:
    """[(kind, conv module)] of h_s, which must be (conv or stride-2 transposed conv, ReLU) pairs."""
    mods = list(h_s)
    if len(mods) % 2 or not all(isinstance(r, nn.ReLU) for r in mods[1::2]):
        raise ValueError("h_s must alternate convolution and ReLU layers")
    out = []
    for m in mods[0::2]:
        k = m.kernel_size[0]
        if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2) and m.padding == (k // 2,) * 2 \
                and m.output_padding == (1, 1) and m.groups == 1 and m.dilation == (1, 1):
            out.append((DECONV, m))
        elif isinstance(m, nn.Conv2d) and m.stride == (1, 1) and m.padding == (k // 2,) * 2 and m.groups == 1 \
                and m.dilation == (1, 1):
            out.append((CONV, m))
        else:
            raise ValueError(f"h_s layer {m} has no integer counterpart")
    return out


def _direct_weight(kind: int, m: nn.Module) -> np.ndarray:
    """(out, in, k, k) float64 weights of the equivalent direct convolution (transposed: swap and flip)."""
    w = m.weight.detach().double().numpy()
    return np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]) if kind == DECONV else w


@torch.no_grad()
def integerise_h_s(h_s: nn.Sequential, z_calibration: torch.Tensor, z_min: int, z_max: int,
                   scales: list[float]) -> tuple[IntegerHyperDecoder, int]:
    """(integer network, fraction bits F of its output) for a float h_s, its activation scales chosen from its
    activations on `z_calibration` (rounded z)."""
    layers = _layers(h_s)
    x = z_calibration.float()
    a_in = 0
    weights, biases, shifts = [], [], []
    for kind, m in layers:
        x = torch.relu(m(x))
        w = _direct_weight(kind, m)
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
        w_exp = int(math.floor(math.log2(((1 << WEIGHT_BITS) - 1) / max(float(np.abs(w).max()), 1e-12))))
        a_out = int(math.floor(math.log2((1 << ACTIVATION_BITS) / max(float(x.max()), 1e-6))))
        a_out = max(0, min(a_out, a_in + w_exp))
        weights.append(np.rint(w * 2.0 ** w_exp).astype(np.int64))
        biases.append(np.rint(b * 2.0 ** (a_in + w_exp)).astype(np.int64))
        shifts.append(a_in + w_exp - a_out)
        a_in = a_out
    thresholds = np.floor(np.asarray(scales[:-1], dtype=np.float64) * 2.0 ** a_in).astype(np.int64)
    if (np.diff(thresholds) <= 0).any():
        raise ValueError(f"output scale 2^-{a_in} is too coarse to tell the scale table's entries apart")
    decoder = IntegerHyperDecoder([k for k, _ in layers], weights, biases, shifts, ACT_MAX, thresholds, z_min, z_max)
    return decoder, a_in


def _counts(p: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.rint(p * TABLE_TOTAL)).astype(np.int64)


@torch.no_grad()
def z_counts(model: HyperpriorModel) -> np.ndarray:
    """(N, symbols) counts of the z prior at integer bins SYMBOL_MIN..SYMBOL_MAX, evaluated in float64."""
    prior = copy.deepcopy(model.prior).double().eval()
    n = model.hyper_channels
    bins = torch.arange(SYMBOL_MIN, SYMBOL_MAX + 1, dtype=torch.float64)
    p = prior.likelihood(bins.view(1, 1, -1, 1).expand(1, n, -1, 1).contiguous())[0, :, :, 0].numpy()
    return _counts(p)


def y_counts(scales: list[float]) -> np.ndarray:
    """(levels, symbols) counts of a discretised zero-mean Gaussian per scale; mass beyond the ends folded in."""
    q = np.arange(SYMBOL_MIN, SYMBOL_MAX + 1, dtype=np.float64)
    rows = []
    for s in scales:
        cdf = np.array([0.5 * math.erfc(-v / (s * math.sqrt(2))) for v in np.append(q - 0.5, q[-1] + 0.5)])
        p = np.diff(cdf)
        p[0] += cdf[0]
        p[-1] += 1.0 - cdf[-1]
        rows.append(p)
    return _counts(np.stack(rows))


def _bits(counts: np.ndarray, rows: np.ndarray, symbols: np.ndarray, qmin: int) -> float:
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log2(p[rows.ravel(), symbols.ravel() - qmin]).sum())


@torch.no_grad()
def export_hyperprior(model: HyperpriorModel, work: Path, latents: np.ndarray, export_module, opset: int,
                      atol: float) -> tuple[dict, dict]:
    """Write hyper_encoder.onnx and hyperprior.npz into `work`; returns (files entries, manifest section).

    `latents` are the float latents (N, C, h, w) of the calibration tiles; `export_module` is the bundle's own
    ONNX writer, so the hyper-encoder is exported exactly like the encoder and decoder.
    """
    import onnxruntime as ort  # noqa: PLC0415

    from export.onnx_export import sha256_of  # noqa: PLC0415 (circular at import time)

    y = torch.from_numpy(latents).float()
    y_pad = HyperpriorModel.pad_to_hyper_grid(y)
    z_float = model.hyper_encode(y_pad)
    z = torch.clamp(torch.round(z_float), SYMBOL_MIN, SYMBOL_MAX)

    enc_path = work / HYPER_ENCODER_NAME
    export_module(_AbsThenHa(model.h_a).eval(), y_pad[:1], enc_path, "y", "z", opset)
    sess = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    z_onnx = sess.run(None, {"y": y_pad.numpy()})[0]
    enc_diff = float(np.abs(z_onnx - z_float.numpy()).max())
    if enc_diff > atol:
        raise ValueError(f"hyper-encoder ONNX output differs from PyTorch by {enc_diff:.2e} > {atol}")

    scales = scale_table()
    decoder, fraction_bits = integerise_h_s(model.h_s, z, SYMBOL_MIN, SYMBOL_MAX, scales)
    zc, yc = z_counts(model), y_counts(scales)
    npz = work / HYPERPRIOR_NAME
    save_hyperprior(npz, decoder, zc, SYMBOL_MIN, yc, SYMBOL_MIN)
    coder = load_hyperprior(npz)  # what was written must read back

    # integer vs float h_s on the calibration tiles
    h, w = latents.shape[-2:]
    zi = z.numpy().astype(np.int16)
    idx_int = np.stack([coder.indices(t, h, w) for t in zi])
    sigma = model.h_s(z)[..., :h, :w].numpy()
    idx_float = np.searchsorted(np.asarray(scales[:-1]), sigma, side="left")
    q = np.clip(np.rint(latents), SYMBOL_MIN, SYMBOL_MAX).astype(np.int64)
    pixels = latents.shape[0] * h * w * 16 * 16
    zbits = _bits(zc, np.broadcast_to(np.arange(zc.shape[0])[None, :, None, None], zi.shape), zi.astype(np.int64),
                  SYMBOL_MIN)
    report = {
        "z_channels": int(model.hyper_channels), "z_symbols": [SYMBOL_MIN, SYMBOL_MAX],
        "z_prior_mass_outside_symbols": max(0.0, 1.0 - _prior_mass(model)),
        "scale_table": {"min": scales[0], "max": scales[-1], "levels": len(scales), "spacing": "log"},
        "table_total": TABLE_TOTAL, "activation_saturation": ACT_MAX,
        "output_fraction_bits": fraction_bits,
        "max_abs_accumulator": int(decoder.max_abs_accumulator()),
        "hyper_encoder_max_abs_diff": enc_diff,
        "integer_vs_float": {
            "tiles": int(latents.shape[0]), "latents": int(idx_int.size),
            "index_match_fraction": float((idx_int == idx_float).mean()),
            "index_max_abs_diff": int(np.abs(idx_int.astype(int) - idx_float).max()),
            "bpp_y_integer_indices": _bits(yc, idx_int, q, SYMBOL_MIN) / pixels,
            "bpp_y_float_indices": _bits(yc, idx_float, q, SYMBOL_MIN) / pixels,
            "bpp_z": zbits / pixels,
        },
    }
    log.info("hyperprior: integer h_s vs float on %d tiles: %s", latents.shape[0], report["integer_vs_float"])
    files = {"hyper_encoder": {"path": enc_path.name, "sha256": sha256_of(enc_path)},
             "hyperprior": {"path": npz.name, "sha256": sha256_of(npz)}}
    return files, report


@torch.no_grad()
def _prior_mass(model: HyperpriorModel) -> float:
    """The smallest per-channel mass of the z prior inside the symbol range (float64)."""
    prior = copy.deepcopy(model.prior).double().eval()
    n = model.hyper_channels
    ends = torch.tensor([SYMBOL_MIN - 0.5, SYMBOL_MAX + 0.5], dtype=torch.float64).view(1, 1, 2)
    c = torch.sigmoid(prior._logits_cumulative(ends.expand(n, 1, 2).contiguous()))[:, 0]
    return float((c[:, 1] - c[:, 0]).min())
