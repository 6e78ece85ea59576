"""Range coding of integer symbols with static integer frequency tables (constriction's range coder).

The hyperprior coder (core/hyperprior.py) codes z with one table per channel and y with one table per scale
index. The tables are integer counts shipped in the model bundle and named by SHA-256 in every file that uses
them, so decoding depends only on integers and on constriction's documented fixed-point construction
(`perfect=False`, pinned version): no float computed at decode time by a GPU or a libm decides a symbol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ContainerFormatError, ModelBundleError


@dataclass
class ChannelTables:
    """Frequencies of symbols qmin..qmax, one row per table; every symbol has a count of at least 1."""

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
        """(channels, h, w) integer symbols, row c coded with table c -> range-coded 32-bit words, little-endian."""
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
        return np.stack(parts).astype(np.int16).reshape(shape) if c else np.empty(shape, np.int16)

    def decode_groups(self, data: bytes, groups, what: str) -> list[np.ndarray]:
        """Inverse of encode_groups for [(table row, symbol count), ...]: int32 symbol values per group."""
        return self.open_stream(data, what).read(groups)

    def open_stream(self, data: bytes, what: str) -> "GroupStream":
        """A decoder over one stream that encode_groups wrote, read in several calls: the channel context needs
        one slice's symbols before it knows how the next slice's are coded."""
        return GroupStream(self, data, what)


class GroupStream:
    """One range-coded stream, decoded group list by group list in the order it was encoded."""

    def __init__(self, tables: ChannelTables, data: bytes, what: str):
        import constriction  # noqa: PLC0415

        if len(data) % 4:
            raise ContainerFormatError(f"{what}: range-coded chunk is not a whole number of 32-bit words")
        self._models = tables._categoricals()
        self._qmin = tables.qmin
        self._what = what
        self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def read(self, groups) -> list[np.ndarray]:
        """[(table row, symbol count), ...] -> int32 symbol values per group."""
        out = []
        try:
            for row, n in groups:
                out.append(np.asarray(self._decoder.decode(self._models[row], int(n)), dtype=np.int32) + self._qmin)
        except Exception as exc:  # constriction raises its own types on exhausted/invalid streams
            raise ContainerFormatError(f"{self._what}: range-coded chunk cannot be decoded ({exc})") from None
        return out
