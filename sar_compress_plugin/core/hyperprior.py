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
* decoding adds the means back and multiplies by the quality's inverse gains before the decoder network.

Only integers decide how symbols decode: the z symbols, the indices computed from them in int64, and integer
counts, all held in one bundle file (hyperprior.npz) whose SHA-256 every file records. The means and gains are
floats, but they only shift and scale the reconstruction (the encoder derives its symbols from the very same
integer means), so a machine that computes them a hair differently decodes the same symbols.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .entropy_coding import ChannelTables, read_bundle_file
from .errors import ContainerFormatError, ModelBundleError, SarCompressError
from .hyper_decoder import IntegerHyperDecoder

HYPERPRIOR_NAME = "hyperprior.npz"
#: 2: mean-scale with gain vectors. Version 1 (scale only, fixed rate) belonged to the retired model.
HYPERPRIOR_FORMAT_VERSION = 2
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

    @property
    def latent_channels(self) -> int:
        return self.decoder.out_channels // 2

    @property
    def levels(self) -> int:
        """Trained quality levels; a quality is any float in [0, levels - 1]."""
        return int(self.log_gain.shape[0])

    def check_quality(self, quality: float) -> float:
        q = float(quality)
        if not (math.isfinite(q) and 0.0 <= q <= self.levels - 1):
            raise SarCompressError(f"quality {quality} must be between 0 and {self.levels - 1} for this model")
        return q

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

    def entropy_parameters(self, z_symbols: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale indices uint8, means float32), each (M, h, w), of an (h, w) latent tile from its z symbols."""
        out = self.decoder(z_symbols)[:, :h, :w]
        m = self.latent_channels
        means = (out[m:].astype(np.float64) * 2.0 ** -self.fraction_bits).astype(np.float32)
        return self.decoder.scale_indices(out[:m]), means

    def _groups(self, idx: np.ndarray):
        """(C-order positions sorted by scale index, raster order kept within an index; count per index)."""
        flat = idx.ravel()
        return np.argsort(flat, kind="stable"), np.bincount(flat, minlength=self.decoder.levels)

    def encode(self, ys: np.ndarray, z: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(M, h, w) gain-scaled latents and the tile's unrounded z -> (one latent chunk, the scaled latents
        the decoder will get back from it)."""
        ys = np.asarray(ys, dtype=np.float32)
        c, h, w = ys.shape
        if c != self.latent_channels:
            raise ValueError(f"latents have {c} channels, the hyperprior {self.latent_channels}")
        zq = self.quantize_z(z)
        if zq.shape != self.z_shape(h, w):
            raise ValueError(f"z of shape {zq.shape} does not fit a {h} x {w} latent tile")
        z_words = self.z_tables.encode(zq)
        idx, means = self.entropy_parameters(zq, h, w)
        sym = np.clip(np.rint(np.nan_to_num(ys - means)), self.y_min, self.y_max).astype(np.int32)
        order, counts = self._groups(idx)
        flat = sym.ravel()[order]
        bounds = np.cumsum(counts)
        groups = [(k, flat[bounds[k] - counts[k]:bounds[k]]) for k in np.flatnonzero(counts)]
        chunk = _PREFIX.pack(len(z_words) // 4) + z_words + self.y_tables.encode_groups(groups)
        return chunk, sym.astype(np.float32) + means

    def decode(self, data: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
        """Inverse of encode: the (M, h, w) float32 gain-scaled latents. Damage gives ContainerFormatError or
        in-range symbols (the chunk CRC is what detects damage), never a crash or an allocation beyond the
        tile's shape."""
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
        idx, means = self.entropy_parameters(zq, h, w)
        order, counts = self._groups(idx)
        parts = self.y_tables.decode_groups(data[z_end:], [(k, counts[k]) for k in np.flatnonzero(counts)], what)
        sym = np.empty(c * h * w, dtype=np.float32)
        sym[order] = np.concatenate(parts) if parts else np.empty(0, np.float32)
        return sym.reshape(shape) + means


def load_hyperprior(path: str | os.PathLike, expected_sha256: str | None = None) -> HyperpriorCoder:
    """Read hyperprior.npz (numpy arrays only, no pickles); a bad file is a ModelBundleError."""
    p = Path(path)
    raw, sha = read_bundle_file(p, expected_sha256, "the hyperprior")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:  # the bytes whose SHA-256 was checked
            a = {k: npz[k] for k in npz.files}
        version = int(a["format_version"])
        if version < HYPERPRIOR_FORMAT_VERSION:
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
                               a["log_gain"], a["log_inverse_gain"])
    except (KeyError, TypeError, ValueError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise ModelBundleError(f"{p}: hyperprior file is malformed ({exc})") from None


def save_hyperprior(path: str | os.PathLike, decoder: IntegerHyperDecoder, fraction_bits: int,
                    z_counts: np.ndarray, z_qmin: int, y_counts: np.ndarray, y_qmin: int,
                    log_gain: np.ndarray, log_inverse_gain: np.ndarray) -> None:
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
    with open(path, "wb") as f:
        np.savez(f, **arrays)
