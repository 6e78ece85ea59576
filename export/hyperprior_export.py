"""A trained codec model's entropy model -> the bundle files the codec codes with: hyper_encoder.onnx and
hyperprior.npz.

The codec must make the same scale choice for every latent on every machine, so h_s becomes an integer network
(core/hyper_decoder.py): weights scaled by a power of two and rounded to 16-bit integers, biases to the
accumulator's scale, activations requantised by rounding right shifts to a power-of-two scale chosen from the
float network's activation range on real tiles at every quality level (with 4x headroom before saturation).
Its output is 2M channels in fixed point: M scales, compared with integer thresholds floor(scale_table[k] *
2^F) computed here once in float64, and M means.

The probability tables are integers too: for z, each channel's trained FactorizedPrior evaluated in float64 at
the integer bins of the symbol range; for y, a discretised zero-mean Gaussian per scale of the table, its tails
beyond the range folded into the end symbols (the codec clips there). Every count is at least 1. The gain
vectors of the quality levels are stored beside them (float32: they scale values, they decide no symbol).

How close the integer h_s is to the float one is measured on the calibration tiles at every level and written
to the manifest: the fraction of latents whose scale index matches, the largest mean difference, and the
estimated rate with either.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sar_compress_plugin.core.channel_context import ChannelContext, FloatConvNet, ScaleContextNetwork
from sar_compress_plugin.core.hyper_decoder import CONV, DECONV, IntegerHyperDecoder
from sar_compress_plugin.core.hyperprior import HYPERPRIOR_NAME, load_hyperprior, save_hyperprior
from trainer.models.codec import SarCodecModel, scale_table

log = logging.getLogger(__name__)

HYPER_ENCODER_NAME = "hyper_encoder.onnx"
WEIGHT_BITS = 15          # |integer weight| <= 2^15 - 1
ACTIVATION_BITS = 22      # the calibrated activation maximum maps to about 2^22 ...
ACT_MAX = (1 << 24) - 1   # ... and activations saturate 4x above it
MAX_ACCUMULATOR_FRACTION_BITS = 48  # keeps shifts and scaled biases far from int64's limits
TABLE_TOTAL = 1 << 20     # counts are probabilities times this (then >= 1)
SYMBOL_MIN, SYMBOL_MAX = -127, 127          # z
Y_SYMBOL_MIN, Y_SYMBOL_MAX = -1023, 1023    # y - mean: wide enough for the top quality's gains


def _layers(h_s: nn.Sequential) -> list[tuple[int, nn.Module]]:
    """[(kind, conv module)] of h_s, which must be (conv or stride-2 transposed conv, ReLU) pairs and a last
    convolution without activation."""
    mods = list(h_s)
    if len(mods) % 2 != 1 or not all(isinstance(r, nn.ReLU) for r in mods[1::2]):
        raise ValueError("h_s must alternate convolution and ReLU layers and end with a convolution")
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
def _integerise(net: nn.Sequential, x_calibration: torch.Tensor, out_fraction_bits: int | None = None):
    """(kinds, weights, biases, shifts, output fraction bits) of the integer counterpart of `net` (see _layers),
    its activation scales chosen from its activations on `x_calibration` (integers, fraction bits 0). The
    output's fraction bits come from the calibration too, unless `out_fraction_bits` forces them (a context's
    scale correction must be in h_s's fixed point to add to it)."""
    layers = _layers(net)
    x = x_calibration.float()
    a_in = 0
    weights, biases, shifts = [], [], []
    for i, (kind, m) in enumerate(layers):
        x = m(x)
        last = i == len(layers) - 1
        x = x.abs() if last else torch.relu(x)
        w = _direct_weight(kind, m)
        b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
        w_exp = int(math.floor(math.log2(((1 << WEIGHT_BITS) - 1) / max(float(np.abs(w).max()), 1e-12))))
        w_exp = min(w_exp, MAX_ACCUMULATOR_FRACTION_BITS - a_in)  # all-zero weights (a silent context) included
        if last and out_fraction_bits is not None:
            a_out = out_fraction_bits
            if a_out > a_in + w_exp:
                raise ValueError(f"the output needs 2^-{a_out} resolution; this layer's weights give 2^-{a_in + w_exp}")
        else:
            a_out = int(math.floor(math.log2((1 << ACTIVATION_BITS) / max(float(x.max()), 1e-6))))
            a_out = max(0, min(a_out, a_in + w_exp))
        weights.append(np.rint(w * 2.0 ** w_exp).astype(np.int64))
        biases.append(np.rint(b * 2.0 ** (a_in + w_exp)).astype(np.int64))
        shifts.append(a_in + w_exp - a_out)
        a_in = a_out
    return [k for k, _ in layers], weights, biases, shifts, a_in


@torch.no_grad()
def integerise_h_s(h_s: nn.Sequential, z_calibration: torch.Tensor, z_min: int, z_max: int,
                   scales: list[float]) -> tuple[IntegerHyperDecoder, int]:
    """(integer network, fraction bits F of its output) for a float h_s, its activation scales chosen from its
    activations on `z_calibration` (rounded z)."""
    kinds, weights, biases, shifts, fraction_bits = _integerise(h_s, z_calibration)
    thresholds = np.floor(np.asarray(scales[:-1], dtype=np.float64) * 2.0 ** fraction_bits).astype(np.int64)
    if (np.diff(thresholds) <= 0).any():
        raise ValueError(f"output scale 2^-{fraction_bits} is too coarse to tell the scale table's entries apart")
    decoder = IntegerHyperDecoder(kinds, weights, biases, shifts, ACT_MAX, thresholds, z_min, z_max)
    return decoder, fraction_bits


@torch.no_grad()
def integerise_context(model: SarCodecModel, symbols: torch.Tensor, fraction_bits: int) -> ChannelContext | None:
    """The codec's channel context for a model with context slices: each slice's scale branch as an integer
    network on the earlier slices' symbols (calibrated on `symbols`, the coded symbols of the calibration
    tiles, clipped to the y range), its output in h_s's `fraction_bits`; the mean branch as float32 weights."""
    n = model.context_slices
    if n == 1:
        return None
    width = model.latent_channels // n
    x = symbols.clamp(Y_SYMBOL_MIN, Y_SYMBOL_MAX)
    scale_nets, mean_nets = [], []
    for s in range(1, n):
        kinds, weights, biases, shifts, _ = _integerise(model.context_scale[s - 1], x[:, :s * width], fraction_bits)
        scale_nets.append(ScaleContextNetwork(kinds, weights, biases, shifts, ACT_MAX, Y_SYMBOL_MIN, Y_SYMBOL_MAX))
        convs = [m for m in model.context_mean[s - 1] if isinstance(m, nn.Conv2d)]
        mean_nets.append(FloatConvNet([m.weight.detach().numpy() for m in convs],
                                      [m.bias.detach().numpy() for m in convs]))
    return ChannelContext(n, scale_nets, mean_nets)


def _counts(p: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.rint(p * TABLE_TOTAL)).astype(np.int64)


@torch.no_grad()
def z_counts(model: SarCodecModel) -> np.ndarray:
    """(N, symbols) counts of the z prior at integer bins SYMBOL_MIN..SYMBOL_MAX, evaluated in float64."""
    prior = copy.deepcopy(model.prior).double().eval()
    n = prior.channels
    bins = torch.arange(SYMBOL_MIN, SYMBOL_MAX + 1, dtype=torch.float64)
    p = prior.likelihood(bins.view(1, 1, -1, 1).expand(1, n, -1, 1).contiguous())[0, :, :, 0].numpy()
    return _counts(p)


def y_counts(scales: list[float]) -> np.ndarray:
    """(levels, symbols) counts of a discretised zero-mean Gaussian per scale; mass beyond the ends folded in."""
    q = np.arange(Y_SYMBOL_MIN, Y_SYMBOL_MAX + 1, dtype=np.float64)
    edges = np.append(q - 0.5, q[-1] + 0.5)
    rows = []
    for s in scales:
        cdf = 0.5 * _erfc(-edges / (s * math.sqrt(2)))
        p = np.diff(cdf)
        p[0] += cdf[0]
        p[-1] += 1.0 - cdf[-1]
        rows.append(p)
    return _counts(np.stack(rows))


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.array([math.erfc(v) for v in x.ravel()]).reshape(x.shape)


def _bits(counts: np.ndarray, rows: np.ndarray, symbols: np.ndarray, qmin: int) -> float:
    p = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.log2(p[rows.ravel(), symbols.ravel() - qmin]).sum())


@torch.no_grad()
def export_hyperprior(model: SarCodecModel, work: Path, latents: np.ndarray, export_module, opset: int,
                      atol: float) -> tuple[dict, dict]:
    """Write hyper_encoder.onnx and hyperprior.npz into `work`; returns (files entries, manifest section).

    `latents` are the float latents g_a(x) (N, C, h, w) of the calibration tiles, before any gain;
    `export_module` is the bundle's own ONNX writer, so the hyper-encoder is exported like the encoder.
    """
    import onnxruntime as ort  # noqa: PLC0415

    from export.onnx_export import sha256_of  # noqa: PLC0415 (circular at import time)

    y = torch.from_numpy(latents).float()
    n = y.shape[0]
    scaled = []  # the calibration latents at every level, as the hyper-encoder sees them
    for level in range(model.levels):
        gain, _ = model.gains(torch.full((n,), float(level)))
        scaled.append(model.pad_to_hyper_grid(y * gain))
    y_all = torch.cat(scaled)
    z_float = model.h_a(y_all)
    z = torch.clamp(torch.round(z_float), SYMBOL_MIN, SYMBOL_MAX)

    enc_path = work / HYPER_ENCODER_NAME
    export_module(model.h_a.eval(), y_all[:1], enc_path, "y", "z", opset)
    sess = ort.InferenceSession(str(enc_path), providers=["CPUExecutionProvider"])
    z_onnx = sess.run(None, {"y": y_all.numpy()})[0]
    enc_diff = float(np.abs(z_onnx - z_float.numpy()).max()) / max(1.0, float(z_float.abs().max()))
    if not enc_diff <= atol:  # NaN too
        raise ValueError(f"hyper-encoder ONNX output differs from PyTorch by {enc_diff:.2e} (relative) > {atol}")

    scales = scale_table()
    decoder, fraction_bits = integerise_h_s(model.h_s, z, SYMBOL_MIN, SYMBOL_MAX, scales)
    h, w = latents.shape[-2:]
    ys_all = y_all[..., :h, :w]
    coded = model.code_slices(ys_all, *model.entropy_parameters(z, (h, w)))  # the float path, all levels
    context = integerise_context(model, coded["symbols"], fraction_bits)
    zc, yc = z_counts(model), y_counts(scales)
    npz = work / HYPERPRIOR_NAME
    save_hyperprior(npz, decoder, fraction_bits, zc, SYMBOL_MIN, yc, Y_SYMBOL_MIN,
                    model.log_gain.detach().numpy(), model.log_inverse_gain.detach().numpy(), context)
    coder = load_hyperprior(npz)  # what was written must read back

    # the integer path (h_s, channel context) against the float model on the calibration tiles, level by level
    pixels = n * h * w * 16 * 16
    levels = []
    for level in range(model.levels):
        part = slice(level * n, (level + 1) * n)
        ys = ys_all[part].numpy()
        zi = z[part].numpy().astype(np.int16)
        analysed = [coder.analyse(y_tile, z_tile) for y_tile, z_tile in zip(ys, zi)]
        idx_int = np.stack([a[0] for a in analysed])
        mean_int = np.stack([a[1] for a in analysed])
        sym_int = np.stack([a[2] for a in analysed]).astype(np.int64)
        idx_float = np.searchsorted(np.asarray(scales[:-1]), coded["scales"][part].numpy(), side="left")
        mean_f = coded["means"][part].numpy()
        sym_float = np.clip(coded["symbols"][part].numpy(), Y_SYMBOL_MIN, Y_SYMBOL_MAX).astype(np.int64)
        zbits = _bits(zc, np.broadcast_to(np.arange(zc.shape[0])[None, :, None, None], zi.shape),
                      zi.astype(np.int64), SYMBOL_MIN)
        levels.append({
            "level": level,
            "index_match_fraction": float((idx_int == idx_float).mean()),
            "mean_max_abs_diff": float(np.abs(mean_int - mean_f).max()),
            "bpp_y_integer": _bits(yc, idx_int, sym_int, Y_SYMBOL_MIN) / pixels,
            "bpp_y_float": _bits(yc, idx_float, sym_float, Y_SYMBOL_MIN) / pixels,
            "bpp_z": zbits / pixels,
            "symbols_clipped_fraction": float(((ys - mean_int) < Y_SYMBOL_MIN - 0.5).mean()
                                              + ((ys - mean_int) > Y_SYMBOL_MAX + 0.5).mean()),
        })
    report = {
        "z_channels": int(model.prior.channels), "z_symbols": [SYMBOL_MIN, SYMBOL_MAX],
        "y_symbols": [Y_SYMBOL_MIN, Y_SYMBOL_MAX],
        "z_prior_mass_outside_symbols": max(0.0, 1.0 - _prior_mass(model)),
        "scale_table": {"min": scales[0], "max": scales[-1], "levels": len(scales), "spacing": "log"},
        "table_total": TABLE_TOTAL, "activation_saturation": ACT_MAX,
        "output_fraction_bits": fraction_bits,
        "context_slices": int(model.context_slices),
        "max_abs_accumulator": int(decoder.max_abs_accumulator()),
        "hyper_encoder_max_rel_diff": enc_diff,
        "integer_vs_float": {"tiles": int(n), "latents_per_level": int(latents.size), "levels": levels},
    }
    log.info("hyperprior: integer h_s vs float on %d tiles x %d levels: index match %.5f-%.5f", n, model.levels,
             min(v["index_match_fraction"] for v in levels), max(v["index_match_fraction"] for v in levels))
    files = {"hyper_encoder": {"path": enc_path.name, "sha256": sha256_of(enc_path)},
             "hyperprior": {"path": npz.name, "sha256": sha256_of(npz)}}
    return files, report


@torch.no_grad()
def _prior_mass(model: SarCodecModel) -> float:
    """The smallest per-channel mass of the z prior inside the symbol range (float64)."""
    prior = copy.deepcopy(model.prior).double().eval()
    n = prior.channels
    ends = torch.tensor([SYMBOL_MIN - 0.5, SYMBOL_MAX + 0.5], dtype=torch.float64).view(1, 1, 2)
    c = torch.sigmoid(prior._logits_cumulative(ends.expand(n, 1, 2).contiguous()))[:, 0]
    return float((c[:, 1] - c[:, 0]).min())
