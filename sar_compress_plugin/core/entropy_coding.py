"""Range coding of latent symbols with a static factorized prior: one integer frequency table per channel.

zstd sees the int8 latents as bytes and knows nothing of their distribution; a range coder driven by each
channel's measured symbol frequencies spends close to the entropy instead. The tables are integer counts
shipped with the model bundle (entropy_tables.json, fitted on training scenes by export/entropy_tables.py) and
named by SHA-256 in every file that uses them, so decoding depends only on integers and on constriction's
documented fixed-point construction (`perfect=False`, pinned version): no float computed at decode time by a
GPU or a libm decides a symbol.

Tables are fitted per quantisation quality because the step changes the symbol distribution; a quality with
no table is coded with zstd (`container.LATENT_CODER`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .container import RANGE_LATENT_CODER as RANGE_CODER
from .errors import ContainerFormatError, ModelBundleError

TABLES_FORMAT = "sar-compress-entropy-tables"
TABLES_VERSION = 1
TABLES_NAME = "entropy_tables.json"


def quality_key(quality: float) -> str:
    """How a quality names its table: the shortest repr, so 1.0 -> '1', 0.25 -> '0.25'."""
    return f"{float(quality):g}"


@dataclass
class ChannelTables:
    """Frequencies of symbols qmin..qmax for each latent channel; every symbol has a count of at least 1."""

    counts: np.ndarray  # (channels, qmax - qmin + 1) int64
    qmin: int
    _models: list = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.counts)
        if c.ndim != 2 or c.size == 0 or c.dtype.kind not in "iu" or (c < 1).any():
            raise ModelBundleError("entropy tables: counts must be a non-empty (channels, symbols) array of "
                                   "integers >= 1")
        self.counts = c.astype(np.int64)

    @property
    def channels(self) -> int:
        return self.counts.shape[0]

    def _categoricals(self) -> list:
        if not self._models:
            import constriction  # noqa: PLC0415 (only files that use this coder need it)

            # counts / total in float64 is correctly rounded, so every machine hands constriction the same floats
            self._models = [constriction.stream.model.Categorical(row / row.sum(), perfect=False)
                            for row in self.counts.astype(np.float64)]
        return self._models

    def encode(self, q: np.ndarray) -> bytes:
        """(channels, h, w) int8 symbols -> range-coded 32-bit words, little-endian."""
        q = np.asarray(q)
        if q.ndim != 3 or q.shape[0] != self.channels:
            raise ValueError(f"latents of shape {q.shape} do not match {self.channels}-channel tables")
        return self.encode_groups([(c, q[c].ravel()) for c in range(self.channels)])

    def encode_groups(self, groups) -> bytes:
        """[(table row, symbols), ...] -> one range-coded stream of 32-bit words, little-endian: each group's
        symbols coded in order with its row's model (a row is a channel here, a scale index for the hyperprior)."""
        import constriction  # noqa: PLC0415 (only files that use this coder need it)

        models = self._categoricals()
        enc = constriction.stream.queue.RangeEncoder()
        for row, symbols in groups:
            sym = np.asarray(symbols).astype(np.int32).ravel() - self.qmin
            if sym.size and (sym.min() < 0 or sym.max() >= self.counts.shape[1]):
                raise ValueError("latent symbol outside the tables' range")
            enc.encode(np.ascontiguousarray(sym), models[row])
        return enc.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
        """Inverse of encode; damaged data gives ContainerFormatError or wrong-but-in-range symbols (the
        chunk CRC is what detects damage), never a crash or an allocation beyond `shape`."""
        c, h, w = shape
        if c != self.channels:
            raise ContainerFormatError(f"{what}: file has {c} latent channels, entropy tables {self.channels}")
        parts = self.decode_groups(data, [(ch, h * w) for ch in range(c)], what)
        return np.stack(parts).astype(np.int8).reshape(shape) if c else np.empty(shape, np.int8)

    def decode_groups(self, data: bytes, groups, what: str) -> list[np.ndarray]:
        """Inverse of encode_groups for [(table row, symbol count), ...]: int32 symbol values per group."""
        import constriction  # noqa: PLC0415

        if len(data) % 4:
            raise ContainerFormatError(f"{what}: range-coded chunk is not a whole number of 32-bit words")
        models = self._categoricals()
        out = []
        try:
            dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))
            for row, n in groups:
                out.append(np.asarray(dec.decode(models[row], int(n)), dtype=np.int32) + self.qmin)
        except Exception as exc:  # constriction raises its own types on exhausted/invalid streams
            raise ContainerFormatError(f"{what}: range-coded chunk cannot be decoded ({exc})") from None
        return out


@dataclass
class EntropyTables:
    """The contents of a bundle's entropy_tables.json: ChannelTables per quality key, and the file's SHA-256."""

    sha256: str
    qmin: int
    qmax: int
    by_quality: dict[str, ChannelTables]

    def for_quality(self, quality: float) -> ChannelTables | None:
        return self.by_quality.get(quality_key(quality))


def tables_document(counts_by_quality: dict[float, np.ndarray], qmin: int, qmax: int, fitted_on: dict) -> dict:
    """The JSON document for entropy_tables.json; counts stored from the first to the last observed symbol."""
    tables = {}
    for quality, counts in sorted(counts_by_quality.items()):
        counts = np.asarray(counts, dtype=np.int64)
        rows = []
        for row in counts:
            nz = np.flatnonzero(row > 1)
            lo, hi = (int(nz[0]), int(nz[-1])) if nz.size else (0, 0)
            rows.append({"first": lo + qmin, "counts": [int(v) for v in row[lo:hi + 1]]})
        tables[quality_key(quality)] = {"quality": float(quality), "symbols": int(counts.sum() - counts.size),
                                        "channels": rows}
    return {"format": TABLES_FORMAT, "version": TABLES_VERSION, "coder": RANGE_CODER,
            "coder_library": "constriction (queue.RangeEncoder, Categorical perfect=False)",
            "qmin": int(qmin), "qmax": int(qmax),
            "note": "counts are observed symbol frequencies + 1; symbols outside [first, first+len) count 1",
            "fitted_on": fitted_on, "tables": tables}


def read_bundle_file(path: str | os.PathLike, expected_sha256: str | None, what: str) -> tuple[bytes, str]:
    """(bytes, SHA-256) of a bundle file that decides decoding, read once and checked against the manifest."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ModelBundleError(f"{p}: cannot read {what} ({exc})") from None
    sha = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and sha != str(expected_sha256).lower():
        raise ModelBundleError(f"{p}: SHA-256 {sha[:12]}... does not match the manifest "
                               f"({str(expected_sha256)[:12]}...); the bundle is damaged")
    return raw, sha


def load_tables(path: str | os.PathLike, expected_sha256: str | None = None) -> EntropyTables:
    p = Path(path)
    raw, sha = read_bundle_file(p, expected_sha256, "entropy tables")
    try:
        doc = json.loads(raw)
        if doc.get("format") != TABLES_FORMAT or int(doc.get("version", 0)) > TABLES_VERSION:
            raise ValueError(f"not a version <= {TABLES_VERSION} {TABLES_FORMAT} file")
        qmin, qmax = int(doc["qmin"]), int(doc["qmax"])
        n = qmax - qmin + 1
        if not (-128 <= qmin < qmax <= 127):
            raise ValueError("qmin/qmax do not fit int8")
        by_quality = {}
        for key, t in doc["tables"].items():
            counts = np.ones((len(t["channels"]), n), dtype=np.int64)
            for c, row in enumerate(t["channels"]):
                first, vals = int(row["first"]) - qmin, np.asarray(row["counts"], dtype=np.int64)
                if first < 0 or first + vals.size > n:
                    raise ValueError(f"table {key} channel {c} reaches outside [{qmin}, {qmax}]")
                counts[c, first:first + vals.size] = vals
            by_quality[str(key)] = ChannelTables(counts, qmin)
    except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"{p}: entropy tables are malformed ({exc})") from None
    return EntropyTables(sha, qmin, qmax, by_quality)
