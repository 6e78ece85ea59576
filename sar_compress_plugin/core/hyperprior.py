"""The `range-hyperprior-int8` latent coder: a tile's side information z and its latents y, range-coded with the
bundle's integer tables and integer hyper-decoder (docs/format.md).

Per tile: z (hyper_channels, ceil(h/4), ceil(w/4)) is coded channel by channel with a static factorized table
per channel; the integer h_s turns the z symbols into one scale index per latent; the latents are then coded
grouped by scale index (for each index k present, ascending: every latent with index k in C order, with table
k). Decoding needs only integers: the z symbols, the indices computed from them in int64, and integer counts,
all held in one file of the bundle (hyperprior.npz) whose SHA-256 every file coded this way records.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .container import HYPERPRIOR_LATENT_CODER as HYPERPRIOR_CODER  # noqa: F401 (the name files record)
from .entropy_coding import ChannelTables, read_bundle_file
from .errors import ContainerFormatError, ModelBundleError
from .hyper_decoder import IntegerHyperDecoder

HYPERPRIOR_NAME = "hyperprior.npz"
HYPERPRIOR_FORMAT_VERSION = 1
_PREFIX = struct.Struct("<I")  # number of 32-bit words of the z stream; the y stream follows it


@dataclass
class HyperpriorCoder:
    """Everything that decides hyperprior decoding, loaded from one bundle file and named by its SHA-256."""

    sha256: str
    decoder: IntegerHyperDecoder
    z_tables: ChannelTables  # one row per z channel
    y_tables: ChannelTables  # one row per scale index

    def __post_init__(self) -> None:
        d = self.decoder
        if self.z_tables.channels != d.in_channels or self.y_tables.channels != d.levels:
            raise ModelBundleError(f"hyperprior: {self.z_tables.channels} z tables for {d.in_channels} z channels, "
                                   f"{self.y_tables.channels} y tables for {d.levels} scale indices")
        z_max = self.z_tables.qmin + self.z_tables.counts.shape[1] - 1
        if (self.z_tables.qmin, z_max) != (d.z_min, d.z_max):
            raise ModelBundleError("hyperprior: the z tables' symbol range differs from the hyper-decoder's")

    @property
    def latent_channels(self) -> int:
        return self.decoder.out_channels

    def z_shape(self, h: int, w: int) -> tuple[int, int, int]:
        f = self.decoder.upsampling
        return self.decoder.in_channels, -(-h // f), -(-w // f)

    def quantize_z(self, z: np.ndarray) -> np.ndarray:
        """Unrounded z from the hyper-encoder -> int16 symbols inside the tables' range."""
        z = np.nan_to_num(np.rint(np.asarray(z, dtype=np.float32)), nan=0.0)
        return np.clip(z, self.decoder.z_min, self.decoder.z_max).astype(np.int16)

    def indices(self, z_symbols: np.ndarray, h: int, w: int) -> np.ndarray:
        """Scale index of every latent of an (h, w) tile, from its z symbols (cropped from the padded grid)."""
        return self.decoder.scale_indices(z_symbols)[:, :h, :w]

    def _groups(self, idx: np.ndarray):
        """(C-order positions sorted by scale index, raster order kept within an index; count per index)."""
        flat = idx.ravel()
        return np.argsort(flat, kind="stable"), np.bincount(flat, minlength=self.decoder.levels)

    def encode(self, q: np.ndarray, z: np.ndarray) -> bytes:
        """(C, h, w) int8 latents and the tile's unrounded z -> one latent chunk."""
        q = np.asarray(q)
        c, h, w = q.shape
        if c != self.latent_channels:
            raise ValueError(f"latents have {c} channels, the hyperprior {self.latent_channels}")
        zq = self.quantize_z(z)
        if zq.shape != self.z_shape(h, w):
            raise ValueError(f"z of shape {zq.shape} does not fit a {h} x {w} latent tile")
        z_words = self.z_tables.encode(zq)
        order, counts = self._groups(self.indices(zq, h, w))
        sym = q.ravel()[order]
        bounds = np.cumsum(counts)
        groups = [(k, sym[bounds[k] - counts[k]:bounds[k]]) for k in np.flatnonzero(counts)]
        return _PREFIX.pack(len(z_words) // 4) + z_words + self.y_tables.encode_groups(groups)

    def decode(self, data: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
        """Inverse of encode: (C, h, w) int8. Damage gives ContainerFormatError or in-range symbols (the chunk
        CRC is what detects damage), never a crash or an allocation beyond the tile's shape."""
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
        # z_tables.decode returns int8; the range is inside int8 by construction (checked at load)
        order, counts = self._groups(self.indices(zq, h, w))
        parts = self.y_tables.decode_groups(data[z_end:], [(k, counts[k]) for k in np.flatnonzero(counts)], what)
        q = np.empty(c * h * w, dtype=np.int8)
        q[order] = np.concatenate(parts) if parts else np.empty(0, np.int32)
        return q.reshape(shape)


def load_hyperprior(path: str | os.PathLike, expected_sha256: str | None = None) -> HyperpriorCoder:
    """Read hyperprior.npz (numpy arrays only, no pickles); a bad file is a ModelBundleError."""
    p = Path(path)
    raw, sha = read_bundle_file(p, expected_sha256, "the hyperprior")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:  # the bytes whose SHA-256 was checked
            a = {k: npz[k] for k in npz.files}
        if int(a["format_version"]) > HYPERPRIOR_FORMAT_VERSION:
            raise ValueError(f"format version {int(a['format_version'])} is newer than this codec reads")
        kinds = a["layer_kinds"]
        n = len(kinds)
        decoder = IntegerHyperDecoder(kinds, [a[f"weight_{i}"] for i in range(n)], [a[f"bias_{i}"] for i in range(n)],
                                      a["shifts"], int(a["act_max"]), a["scale_thresholds"], int(a["z_qmin"]),
                                      int(a["z_qmin"]) + a["z_counts"].shape[1] - 1)
        if not (-128 <= int(a["z_qmin"]) and decoder.z_max <= 127 and -128 <= int(a["y_qmin"])
                and int(a["y_qmin"]) + a["y_counts"].shape[1] - 1 <= 127):
            raise ValueError("symbol ranges must fit int8")
        return HyperpriorCoder(sha, decoder, ChannelTables(a["z_counts"], int(a["z_qmin"])),
                               ChannelTables(a["y_counts"], int(a["y_qmin"])))
    except (KeyError, TypeError, ValueError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise ModelBundleError(f"{p}: hyperprior file is malformed ({exc})") from None


def save_hyperprior(path: str | os.PathLike, decoder: IntegerHyperDecoder, z_counts: np.ndarray, z_qmin: int,
                    y_counts: np.ndarray, y_qmin: int) -> None:
    """Write the arrays load_hyperprior reads (export uses this; kept here so the layout has one owner)."""
    arrays = {"format_version": np.int64(HYPERPRIOR_FORMAT_VERSION), "layer_kinds": np.asarray(decoder.kinds, np.int64),
              "shifts": np.asarray(decoder.shifts, np.int64), "act_max": np.int64(decoder.act_max),
              "scale_thresholds": decoder.thresholds.astype(np.int64), "z_qmin": np.int64(z_qmin),
              "z_counts": np.asarray(z_counts, np.int64), "y_qmin": np.int64(y_qmin),
              "y_counts": np.asarray(y_counts, np.int64)}
    for i, (w, b) in enumerate(zip(decoder.weights, decoder.biases)):
        arrays[f"weight_{i}"] = w.astype(np.int32)
        arrays[f"bias_{i}"] = b.astype(np.int64)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
