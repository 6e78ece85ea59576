"""The `range-meanscale-int16` latent coder: a tile's side information z and its latents y, range-coded with
the bundle's integer tables and integer hyper-decoder (docs/format.md).

Per tile, at quality q:
* the encoder's latents are multiplied by the quality's gain vector (the model's variable rate: one gain per
  latent channel, interpolated geometrically between trained levels);
* z (hyper_channels, ceil(h/4), ceil(w/4)) is coded channel by channel with a static factorized table per
  channel;
* the integer h_s turns the z symbols into a scale index and a mean per latent; the symbols are the rounded
  differences y - mean, coded grouped by scale index (for each index k present, ascending: every symbol with
  index k in C order, with table k);
* with a channel context (core/channel_context.py) the channels are coded in slices, one after the other in
  the same stream, each slice's scales and means corrected from the slices before it;
* decoding adds the means back and multiplies by the quality's inverse gains before the decoder network.

Only integers decide how symbols decode: the z symbols and the earlier slices' symbols, the indices computed
from them in int64, and integer counts, all held in one bundle file (hyperprior.npz) whose SHA-256 every file records. The means and gains are
floats, but they only shift and scale the reconstruction (the encoder derives its symbols from the very same
means), so a machine that computes them a hair differently decodes the same symbols.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .channel_context import ChannelContext, FloatConvNet, ScaleContextNetwork
from .bundle_files import read_bundle_file
from .entropy_coding import ChannelTables
from .errors import ContainerFormatError, ModelBundleError, SarCompressError
from .hyper_decoder import CONV, IntegerHyperDecoder
from .rd_rounding import rd_round, symbol_bits

HYPERPRIOR_NAME = "hyperprior.npz"
#: 3: mean-scale with gain vectors and an optional channel context; 2 (the same without the context) still
#: reads. Version 1 (scale only, fixed rate) belonged to the retired model.
HYPERPRIOR_FORMAT_VERSION = 3
OLDEST_READABLE_VERSION = 2
_PREFIX = struct.Struct("<I")  # number of 32-bit words of the z stream; the y stream follows it


def interpolate_levels(table: np.ndarray, quality: float) -> np.ndarray:
    """exp of the row-wise linear interpolation of log-gains `table` (levels, M) at float `quality`: the same
    rule as the trainer's SarCodecModel.gains."""
    levels = table.shape[0]
    q = min(max(float(quality), 0.0), levels - 1.0)
    lo = min(int(math.floor(q)), max(levels - 2, 0))
    hi = min(lo + 1, levels - 1)
    t = np.float32(q - lo)
    return np.exp((np.float32(1) - t) * table[lo] + t * table[hi]).astype(np.float32)


def interpolate_lambda(lambdas, quality: float) -> float:
    """The rate-distortion trade-off at a float quality of a model trained at `lambdas` per level
    (log-interpolated between levels, as the gains are)."""
    return float(interpolate_levels(np.log(np.asarray(lambdas, dtype=np.float32))[:, None], quality)[0])


def check_quality(quality, levels: int) -> float:
    """`quality` as a float, or SarCompressError unless it lies in [0, levels - 1]: a model trained at `levels`
    levels covers only that range. A loaded coder and a manifest's `rate.levels` (codec.check_compress_options)
    are checked alike."""
    q = float(quality)
    if not (math.isfinite(q) and 0.0 <= q <= levels - 1):
        raise SarCompressError(f"quality {quality} must be between 0 and {levels - 1} for this model")
    return q


@dataclass
class HyperpriorCoder:
    """Everything that decides decoding (integer h_s, tables) plus the gains, from one bundle file named by its
    SHA-256."""

    sha256: str
    decoder: IntegerHyperDecoder
    z_tables: ChannelTables   # one row per z channel
    y_tables: ChannelTables   # one row per scale index
    fraction_bits: int        # h_s's output is fixed point with this many fraction bits
    log_gain: np.ndarray      # (levels, M) float32
    log_inverse_gain: np.ndarray
    context: ChannelContext | None = None  # None: the latents are one slice
    _bits: np.ndarray | None = field(default=None, init=False, repr=False)  # code lengths, for rd_round

    def __post_init__(self) -> None:
        d = self.decoder
        if d.out_channels % 2:
            raise ModelBundleError("hyperprior: h_s must output scales and means (an even channel count)")
        if self.z_tables.channels != d.in_channels or self.y_tables.channels != d.levels:
            raise ModelBundleError(f"hyperprior: {self.z_tables.channels} z tables for {d.in_channels} z channels, "
                                   f"{self.y_tables.channels} y tables for {d.levels} scale indices")
        z_max = self.z_tables.qmin + self.z_tables.counts.shape[1] - 1
        if (self.z_tables.qmin, z_max) != (d.z_min, d.z_max):
            raise ModelBundleError("hyperprior: the z tables' symbol range differs from the hyper-decoder's")
        m = self.latent_channels
        for name in ("log_gain", "log_inverse_gain"):
            a = np.asarray(getattr(self, name), dtype=np.float32)
            if a.ndim != 2 or a.shape[1] != m or a.shape[0] < 1 or not np.isfinite(a).all() or np.abs(a).max() > 20:
                raise ModelBundleError(f"hyperprior: {name} must be finite (levels, {m}) log-gains")
            setattr(self, name, a)
        if self.log_gain.shape != self.log_inverse_gain.shape:
            raise ModelBundleError("hyperprior: gain and inverse-gain tables differ in shape")
        if not 0 <= self.fraction_bits < 40:
            raise ModelBundleError(f"hyperprior: fraction bits {self.fraction_bits} out of range")
        self.y_min = self.y_tables.qmin
        self.y_max = self.y_tables.qmin + self.y_tables.counts.shape[1] - 1
        if self.context is not None:
            self.context.validate(m, (self.y_min, self.y_max))

    @property
    def slices(self) -> int:
        """Latent slices coded one after the other (1: no channel context)."""
        return 1 if self.context is None else self.context.slices

    @property
    def latent_channels(self) -> int:
        return self.decoder.out_channels // 2

    @property
    def levels(self) -> int:
        """Trained quality levels; a quality is any float in [0, levels - 1]."""
        return int(self.log_gain.shape[0])

    def check_quality(self, quality: float) -> float:
        return check_quality(quality, self.levels)

    def gain(self, quality: float) -> np.ndarray:
        """(M, 1, 1) float32 gains applied to the encoder's latents at `quality`."""
        return interpolate_levels(self.log_gain, quality)[:, None, None]

    def inverse_gain(self, quality: float) -> np.ndarray:
        """(M, 1, 1) float32 gains applied to the decoded latents before the decoder network."""
        return interpolate_levels(self.log_inverse_gain, quality)[:, None, None]

    def z_shape(self, h: int, w: int) -> tuple[int, int, int]:
        f = self.decoder.upsampling
        return self.decoder.in_channels, -(-h // f), -(-w // f)

    def quantize_z(self, z: np.ndarray) -> np.ndarray:
        """Unrounded z from the hyper-encoder -> int16 symbols inside the tables' range."""
        z = np.nan_to_num(np.rint(np.asarray(z, dtype=np.float32)), nan=0.0)
        return np.clip(z, self.decoder.z_min, self.decoder.z_max).astype(np.int16)

    def _hyper_outputs(self, z_symbols: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """h_s's (fixed-point scales int64, means float32), each (M, h, w), of an (h, w) latent tile."""
        out = self.decoder(z_symbols)[:, :h, :w]
        m = self.latent_channels
        means = (out[m:].astype(np.float64) * 2.0 ** -self.fraction_bits).astype(np.float32)
        return out[:m], means

    def entropy_parameters(self, z_symbols: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale indices uint8, means float32), each (M, h, w), of an (h, w) latent tile from its z symbols, as
        h_s gives them: before any channel context corrects them (`analyse` gives the coded ones)."""
        scales, means = self._hyper_outputs(z_symbols, h, w)
        return self.decoder.scale_indices(scales), means

    def _code_slices(self, z_symbols: np.ndarray, h: int, w: int, symbols_of):
        """Slice by slice: the scale indices and means of slice s (corrected by the context from slices < s),
        then `symbols_of(s, indices, means)` gives its int32 symbols. Returns (indices, means, symbols), each
        (M, h, w): the encoder and the decoder run this very loop, so both derive the same indices."""
        scales, means = self._hyper_outputs(z_symbols, h, w)
        n = self.slices
        width = self.latent_channels // n
        idx_parts, mean_parts, sym_parts = [], [], []
        for s in range(n):
            sc, mu = scales[s * width:(s + 1) * width], means[s * width:(s + 1) * width]
            if s:
                earlier = np.concatenate(sym_parts)
                sc = sc + self.context.scale_correction(s, earlier)
                mu = mu + self.context.mean_correction(s, earlier.astype(np.float32) + np.concatenate(mean_parts))
            idx = self.decoder.scale_indices(sc)
            idx_parts.append(idx)
            mean_parts.append(mu)
            sym_parts.append(symbols_of(s, idx, mu))
        return np.concatenate(idx_parts), np.concatenate(mean_parts), np.concatenate(sym_parts)

    def _groups(self, idx: np.ndarray):
        """(C-order positions sorted by scale index, raster order kept within an index; count per index)."""
        flat = idx.ravel()
        return np.argsort(flat, kind="stable"), np.bincount(flat, minlength=self.decoder.levels)

    def analyse(self, ys: np.ndarray, z_symbols: np.ndarray, rounding: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scale indices uint8, means float32, symbols int32), each (M, h, w), for (M, h, w) gain-scaled
        latents and their z symbols: what encode codes (export measures the integer path with it).

        `rounding`: None rounds y - mean to the nearest integer; (M,) error weights (core/rd_rounding.py)
        choose each symbol by rate plus weighted error instead. Either way the decoder reads the same format."""
        ys = np.asarray(ys, dtype=np.float32)
        _, h, w = ys.shape
        width = self.latent_channels // self.slices
        if rounding is not None:
            if self._bits is None:
                self._bits = symbol_bits(self.y_tables.counts)
            rounding = np.asarray(rounding, dtype=np.float32).ravel()
            if rounding.shape != (self.latent_channels,):
                raise ValueError(f"{rounding.size} rounding weights for {self.latent_channels} latent channels")

        def symbols_of(s, idx, mu):
            d = np.nan_to_num(ys[s * width:(s + 1) * width] - mu)
            if rounding is not None:
                return rd_round(d, idx, self._bits, rounding[s * width:(s + 1) * width], self.y_min, self.y_max)
            return np.clip(np.rint(d), self.y_min, self.y_max).astype(np.int32)

        return self._code_slices(z_symbols, h, w, symbols_of)

    def encode(self, ys: np.ndarray, z: np.ndarray, rounding: np.ndarray | None = None) -> tuple[bytes, np.ndarray]:
        """(M, h, w) gain-scaled latents and the tile's unrounded z -> (one latent chunk, the scaled latents
        the decoder will get back from it). `rounding` as for `analyse`."""
        ys = np.asarray(ys, dtype=np.float32)
        c, h, w = ys.shape
        if c != self.latent_channels:
            raise ValueError(f"latents have {c} channels, the hyperprior {self.latent_channels}")
        zq = self.quantize_z(z)
        if zq.shape != self.z_shape(h, w):
            raise ValueError(f"z of shape {zq.shape} does not fit a {h} x {w} latent tile")
        idx, means, sym = self.analyse(ys, zq, rounding)
        return self.pack(zq, idx, sym), sym.astype(np.float32) + means

    def pack(self, z_symbols: np.ndarray, idx: np.ndarray, sym: np.ndarray) -> bytes:
        """One latent chunk: the z symbols, then each slice's symbols grouped by their scale indices, slices in
        order. Only the range coder runs here (benchmarks/gpu_codec.py times it alone, the indices computed on a
        GPU)."""
        z_words = self.z_tables.encode(z_symbols)
        groups = []
        width = self.latent_channels // self.slices
        for s in range(self.slices):
            part = slice(s * width, (s + 1) * width)
            order, counts = self._groups(idx[part])
            flat = sym[part].ravel()[order]
            bounds = np.cumsum(counts)
            groups += [(k, flat[bounds[k] - counts[k]:bounds[k]]) for k in np.flatnonzero(counts)]
        return _PREFIX.pack(len(z_words) // 4) + z_words + self.y_tables.encode_groups(groups)

    def decode(self, data: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
        """Inverse of encode: the (M, h, w) float32 gain-scaled latents. Damage gives ContainerFormatError or
        in-range symbols (the chunk CRC is what detects damage), never a crash or an allocation beyond the
        tile's shape."""
        _, h, w = shape
        zq, stream = self.open_chunk(data, shape, what)
        _, means, sym = self._code_slices(zq, h, w, lambda s, idx, mu: self.read_slice(stream, idx))
        return sym.astype(np.float32) + means

    def open_chunk(self, data: bytes, shape: tuple[int, int, int], what: str):
        """(the z symbols, the latent symbols' stream) of a chunk of an (M, h, w) latent tile."""
        c, h, w = shape
        if c != self.latent_channels:
            raise ContainerFormatError(f"{what}: file has {c} latent channels, the hyperprior {self.latent_channels}")
        if len(data) < _PREFIX.size:
            raise ContainerFormatError(f"{what}: hyperprior chunk is too short")
        (nz,) = _PREFIX.unpack_from(data)
        if _PREFIX.size + 4 * nz > len(data):
            raise ContainerFormatError(f"{what}: hyperprior chunk is truncated (z stream of {nz} words)")
        z_end = _PREFIX.size + 4 * nz
        zq = self.z_tables.decode(data[_PREFIX.size:z_end], self.z_shape(h, w), what).astype(np.int16)
        return zq, self.y_tables.open_stream(data[z_end:], what)

    def read_slice(self, stream, idx: np.ndarray) -> np.ndarray:
        """The next slice's int32 symbols from `stream`, shaped as its scale indices `idx`."""
        order, counts = self._groups(idx)
        parts = stream.read([(k, counts[k]) for k in np.flatnonzero(counts)])
        sym = np.empty(idx.size, dtype=np.int32)
        sym[order] = np.concatenate(parts) if parts else np.empty(0, np.int32)
        return sym.reshape(idx.shape)


def load_hyperprior(path: str | os.PathLike, expected_sha256: str | None = None) -> HyperpriorCoder:
    """Read hyperprior.npz (numpy arrays only, no pickles); a bad file is a ModelBundleError."""
    p = Path(path)
    raw, sha = read_bundle_file(p, expected_sha256, "the hyperprior")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:  # the bytes whose SHA-256 was checked
            a = {k: npz[k] for k in npz.files}
        version = int(a["format_version"])
        if version < OLDEST_READABLE_VERSION:
            raise ValueError(f"format version {version} is the retired scale-only hyperprior; re-export the model "
                             f"with this version's sar-export")
        if version > HYPERPRIOR_FORMAT_VERSION:
            raise ValueError(f"format version {version} is newer than this codec reads")
        kinds = a["layer_kinds"]
        n = len(kinds)
        decoder = IntegerHyperDecoder(kinds, [a[f"weight_{i}"] for i in range(n)], [a[f"bias_{i}"] for i in range(n)],
                                      a["shifts"], int(a["act_max"]), a["scale_thresholds"], int(a["z_qmin"]),
                                      int(a["z_qmin"]) + a["z_counts"].shape[1] - 1)
        if not (-128 <= int(a["z_qmin"]) and decoder.z_max <= 127):
            raise ValueError("the z symbol range must fit int8")
        y_qmin, y_n = int(a["y_qmin"]), a["y_counts"].shape[1]
        if not (-(1 << 15) <= y_qmin and y_qmin + y_n - 1 < 1 << 15):
            raise ValueError("the y symbol range must fit int16")
        return HyperpriorCoder(sha, decoder, ChannelTables(a["z_counts"], int(a["z_qmin"])),
                               ChannelTables(a["y_counts"], y_qmin), int(a["fraction_bits"]),
                               a["log_gain"], a["log_inverse_gain"],
                               _load_context(a, decoder.act_max, y_qmin, y_qmin + y_n - 1) if version >= 3 else None)
    except (KeyError, TypeError, ValueError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise ModelBundleError(f"{p}: hyperprior file is malformed ({exc})") from None


def _load_context(a: dict, act_max: int, y_min: int, y_max: int) -> ChannelContext | None:
    slices = int(a["context_slices"])
    if slices == 1:
        return None
    scale_nets, mean_nets = [], []
    for s in range(1, slices):
        n = int(a[f"context_{s}_layers"])
        scale_nets.append(ScaleContextNetwork([CONV] * n, [a[f"context_{s}_scale_weight_{i}"] for i in range(n)],
                                              [a[f"context_{s}_scale_bias_{i}"] for i in range(n)],
                                              a[f"context_{s}_scale_shifts"], act_max, y_min, y_max))
        mean_nets.append(FloatConvNet([a[f"context_{s}_mean_weight_{i}"] for i in range(n)],
                                      [a[f"context_{s}_mean_bias_{i}"] for i in range(n)]))
    return ChannelContext(slices, scale_nets, mean_nets)


def save_hyperprior(path: str | os.PathLike, decoder: IntegerHyperDecoder, fraction_bits: int,
                    z_counts: np.ndarray, z_qmin: int, y_counts: np.ndarray, y_qmin: int,
                    log_gain: np.ndarray, log_inverse_gain: np.ndarray, context: ChannelContext | None = None) -> None:
    """Write the arrays load_hyperprior reads (export uses this; kept here so the layout has one owner)."""
    arrays = {"format_version": np.int64(HYPERPRIOR_FORMAT_VERSION), "layer_kinds": np.asarray(decoder.kinds, np.int64),
              "shifts": np.asarray(decoder.shifts, np.int64), "act_max": np.int64(decoder.act_max),
              "scale_thresholds": decoder.thresholds.astype(np.int64), "fraction_bits": np.int64(fraction_bits),
              "z_qmin": np.int64(z_qmin), "z_counts": np.asarray(z_counts, np.int64),
              "y_qmin": np.int64(y_qmin), "y_counts": np.asarray(y_counts, np.int64),
              "log_gain": np.asarray(log_gain, np.float32), "log_inverse_gain": np.asarray(log_inverse_gain, np.float32)}
    for i, (w, b) in enumerate(zip(decoder.weights, decoder.biases)):
        arrays[f"weight_{i}"] = w.astype(np.int32)
        arrays[f"bias_{i}"] = b.astype(np.int64)
    arrays["context_slices"] = np.int64(1 if context is None else context.slices)
    for s, (sc, mu) in enumerate(zip(context.scale_nets, context.mean_nets) if context else [], start=1):
        if len(sc.weights) != len(mu.weights):
            raise ValueError("a slice's scale and mean context networks must have the same number of layers")
        arrays[f"context_{s}_layers"] = np.int64(len(sc.weights))
        arrays[f"context_{s}_scale_shifts"] = np.asarray(sc.shifts, np.int64)
        for i, (w, b, wm, bm) in enumerate(zip(sc.weights, sc.biases, mu.weights, mu.biases)):
            arrays[f"context_{s}_scale_weight_{i}"] = w.astype(np.int32)
            arrays[f"context_{s}_scale_bias_{i}"] = b.astype(np.int64)
            arrays[f"context_{s}_mean_weight_{i}"] = np.asarray(wm, np.float32)
            arrays[f"context_{s}_mean_bias_{i}"] = np.asarray(bm, np.float32)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
