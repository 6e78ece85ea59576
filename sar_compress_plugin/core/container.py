"""The .sarc container: byte layout, chunk coders, integrity checks (docs/format.md is the reference).

Layout: a 16-byte preamble (magic, format version), independently addressable chunks, a JSON header (zstd
framed from format version 2, against a fixed dictionary from version 4: core/header_dictionary.py), and a
fixed 60-byte footer (header offset/length, header CRC32, SHA-256 of everything before the footer).
The header sits at the end so compression can stream chunks to disk without knowing their sizes in advance,
and carries the tile index so a reader can fetch any tile's chunks with one seek each.

Every size read from a file is checked against the file itself before anything is allocated, and every
failure (bad magic, newer version, truncation, checksum, absurd sizes) is a ContainerFormatError.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import zstandard

from . import header_schema
from .header_dictionary import HEADER_DICTIONARY
from .errors import ContainerFormatError, OutputPathError
from .sarc_magic import MAGIC  # in a module of its own: the raster reader checks it without zstandard

log = logging.getLogger(__name__)

FORMAT_VERSION = 5  # the newest read. 3: variable-rate mean-scale hyperprior ("rate" replaces "quantization");
#                     4: header dictionary; 5: bands coded as physical values (`version_for`)
PHYSICAL_BANDS_SINCE = 5  # a band coded as stored * scale + offset (header raster.bands[b].coded == "physical")
ZSTD_HEADER_SINCE = 2  # versions before this store the header as plain JSON
DICTIONARY_HEADER_SINCE = 4  # from this version the header's zstd frame uses HEADER_DICTIONARY
PREAMBLE = struct.Struct("<8sHHI")  # magic, version, flags, reserved
FOOTER = struct.Struct("<QQI32s8s")  # header offset, header length, header crc32, body sha256, end magic
FOOTER_MAGIC = b"SARCEND\x00"

LATENT_CODER = header_schema.LATENT_CODER  # core.hyperprior; needs the bundle's hyperprior.npz
MASK_CODER = "packbits-zstd"
OUTLIER_CODER = "zstd-int32-byteplanes"
RETIRED_LATENT_CODERS = header_schema.RETIRED_LATENT_CODERS

MAX_HEADER_BYTES = 256 << 20
MAX_PIXELS = header_schema.MAX_PIXELS
MAX_BANDS = header_schema.MAX_BANDS
ZSTD_LEVEL = 10

_HEADER_DICT = zstandard.ZstdCompressionDict(HEADER_DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def zstd_compress(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(data)


def zstd_decompress(data: bytes, cap: int, what: str, with_header_dictionary: bool = False) -> bytes:
    """Decompress at most `cap` bytes: a hostile frame that claims more is rejected, never allocated.

    A new decompressor per call (8 us): one must not be used by two threads at once, and the codec decodes
    tiles on several (core/pipeline.py); a shared one read concurrent outlier chunks as "Data corruption"."""
    try:
        dctx = zstandard.ZstdDecompressor(dict_data=_HEADER_DICT) if with_header_dictionary \
            else zstandard.ZstdDecompressor()
        reader = dctx.stream_reader(io.BytesIO(data))
        parts, total = [], 0
        while True:
            block = reader.read(min(cap + 1 - total, 1 << 22))
            if not block:
                break
            parts.append(block)
            total += len(block)
            if total > cap:
                raise ContainerFormatError(f"{what}: decompresses to more than the {cap} bytes expected")
    except zstandard.ZstdError as exc:
        raise ContainerFormatError(f"{what}: corrupt compressed data ({exc})") from None
    return b"".join(parts)


def encode_header(text: bytes) -> bytes:
    """The header's bytes as this version stores them."""
    return zstandard.ZstdCompressor(level=19, dict_data=_HEADER_DICT).compress(text)


def decode_header(raw: bytes, version: int, cap: int, what: str) -> bytes:
    """The header's JSON bytes from a file of `version` (plain JSON, zstd, or zstd against the dictionary)."""
    if version >= DICTIONARY_HEADER_SINCE:
        return zstd_decompress(raw, cap, what, with_header_dictionary=True)
    if version >= ZSTD_HEADER_SINCE:
        return zstd_decompress(raw, cap, what)
    if len(raw) > cap:
        raise ContainerFormatError(f"{what} of {len(raw)} bytes is too large for this file")
    return raw


# --- chunk coders -----------------------------------------------------------------------------------------

def encode_mask(valid: np.ndarray, exc_pos: np.ndarray, exc_values: np.ndarray) -> bytes:
    """Validity mask (packed bits) plus the exact raw values of invalid pixels that differ from the fill."""
    packed = np.packbits(valid.ravel()).tobytes()
    n = np.uint32(exc_pos.size).tobytes()
    return zstd_compress(packed + n + exc_pos.astype("<u4").tobytes() + exc_values.astype(
        exc_values.dtype.newbyteorder("<")).tobytes())


def decode_mask(data: bytes, shape: tuple[int, int], dtype: np.dtype, what: str):
    npx = shape[0] * shape[1]
    nbits = (npx + 7) // 8
    cap = nbits + 4 + npx * (4 + dtype.itemsize)
    raw = zstd_decompress(data, cap, what)
    if len(raw) < nbits + 4:
        raise ContainerFormatError(f"{what}: mask chunk is too short")
    valid = np.unpackbits(np.frombuffer(raw, np.uint8, nbits))[:npx].astype(bool).reshape(shape)
    n = int(np.frombuffer(raw, "<u4", 1, nbits)[0])
    if n > npx or len(raw) != nbits + 4 + n * (4 + dtype.itemsize):
        raise ContainerFormatError(f"{what}: mask chunk exception list is inconsistent")
    pos = np.frombuffer(raw, "<u4", n, nbits + 4).astype(np.int64)
    vals = np.frombuffer(raw, dtype.newbyteorder("<"), n, nbits + 4 + 4 * n).astype(dtype)
    if n and (pos.max() >= npx or valid.ravel()[pos].any()):
        raise ContainerFormatError(f"{what}: mask chunk exception positions are out of range")
    return valid, pos, vals


def _byte_planes(values: np.ndarray) -> bytes:
    """Little-endian int32/uint32 split into 4 planes (all low bytes, then the next...): the high planes of
    small deltas and of values near the clip bounds are nearly constant, which zstd codes in almost nothing."""
    return np.ascontiguousarray(values.astype("<u4", copy=False).view(np.uint8).reshape(-1, 4).T).tobytes()


def _from_byte_planes(raw: bytes, n: int, dtype: str) -> np.ndarray:
    planes = np.frombuffer(raw, np.uint8, 4 * n).reshape(4, n)
    return np.ascontiguousarray(planes.T).view(dtype).ravel()


def encode_outliers(pos: np.ndarray, steps: np.ndarray) -> bytes:
    """Sorted flat positions (delta-coded) and values in outlier steps of dB, as int32 byte planes."""
    pos = np.asarray(pos, dtype=np.int64)
    deltas = np.diff(pos, prepend=0).astype("<u4")
    return zstd_compress(np.uint32(pos.size).tobytes() + _byte_planes(deltas) + _byte_planes(steps.astype("<i4")))


def decode_outliers(data: bytes, npx: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    raw = zstd_decompress(data, 4 + 8 * npx, what)
    if len(raw) < 4:
        raise ContainerFormatError(f"{what}: outlier chunk is too short")
    n = int(np.frombuffer(raw, "<u4", 1)[0])
    if n > npx or len(raw) != 4 + 8 * n:
        raise ContainerFormatError(f"{what}: outlier chunk length does not match its count")
    pos = np.cumsum(_from_byte_planes(raw[4:4 + 4 * n], n, "<u4").astype(np.int64))
    vals = _from_byte_planes(raw[4 + 4 * n:], n, "<i4")
    if n and pos[-1] >= npx:
        raise ContainerFormatError(f"{what}: outlier positions are out of range")
    return pos, vals


# --- writing ----------------------------------------------------------------------------------------------

def version_for(physical_bands: bool) -> int:
    """The version a file is written as: the lowest that reads it right. A version-4 reader would write a band
    coded as physical values back as stored ones, under its scale and offset a second time; every other file
    stays version 4, which such readers decode as before."""
    return PHYSICAL_BANDS_SINCE if physical_bands else PHYSICAL_BANDS_SINCE - 1


class ContainerWriter:
    """Streams chunks into an open (temporary) file, then the header and footer."""

    def __init__(self, fileobj, version: int):
        """`version`: `version_for` the file's bands. No default: the newest (5) would mark a file without
        physical bands as one that version-4 readers refuse."""
        self._f = fileobj
        self._sha = hashlib.sha256()
        self._pos = 0
        self._write(PREAMBLE.pack(MAGIC, version, 0, 0))

    def _write(self, b: bytes) -> None:
        self._f.write(b)
        self._sha.update(b)
        self._pos += len(b)

    def add_chunk(self, data: bytes) -> list[int]:
        """Append one chunk; returns its index entry [offset, length, crc32]."""
        entry = [self._pos, len(data), zlib.crc32(data)]
        self._write(data)
        return entry

    def finish(self, header: dict, where: str = "output") -> int:
        """Write header and footer, after checking the header exactly as a reader will (parsed back from the
        bytes written): the writer never produces a file its own reader refuses."""
        try:
            text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except ValueError as exc:
            raise ContainerFormatError(f"{where}: cannot store the header ({exc}); nothing written") from None
        offset = self._pos
        size = offset + FOOTER.size  # lower bound of the final file size, which sets the reader's cap
        if len(text) > header_schema.header_cap(size, MAX_HEADER_BYTES):
            raise ContainerFormatError(f"{where}: header of {len(text)} bytes (metadata?) is too large to store")
        try:
            validate_header(header_schema.parse(text), offset, where)
        except ContainerFormatError as exc:
            raise ContainerFormatError(f"refusing to write a file the reader would refuse: {exc}") from None
        body = encode_header(text)
        self._write(body)
        footer = FOOTER.pack(offset, len(body), zlib.crc32(body), self._sha.digest(), FOOTER_MAGIC)
        self._f.write(footer)
        self._pos += len(footer)
        return self._pos


# --- reading ----------------------------------------------------------------------------------------------

class ContainerReader:
    """Checked access to one .sarc file: header on open, one chunk per read, full SHA-256 on verify()."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.bytes_read = 0
        self._lock = threading.Lock()
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode) and not self.path.is_dir():
                # opening a FIFO blocks until something writes to it; a device reads garbage
                raise ContainerFormatError(f"{self.path}: is not a regular file (FIFO, device or socket)")
            self._f = open(self.path, "rb")
        except FileNotFoundError:
            raise ContainerFormatError(f"{self.path}: file does not exist") from None
        except IsADirectoryError:
            raise ContainerFormatError(f"{self.path}: is a folder, not a compressed file") from None
        except OSError as exc:
            raise ContainerFormatError(f"{self.path}: cannot open ({exc.strerror or exc})") from None
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    def _fail(self, msg: str) -> ContainerFormatError:
        return ContainerFormatError(f"{self.path}: {msg}")

    def _pread(self, offset: int, length: int) -> bytes:
        with self._lock:  # a decoder may read latent chunks in a worker thread while the caller reads others
            self._f.seek(offset)
            b = self._f.read(length)
            self.bytes_read += len(b)
        if len(b) != length:
            raise self._fail("file is truncated")
        return b

    def _read_header(self) -> dict:
        if self.size < PREAMBLE.size + FOOTER.size:
            raise self._fail(f"file is too small ({self.size} bytes) to be a .sarc file; truncated?")
        magic, version, _flags, _ = PREAMBLE.unpack(self._pread(0, PREAMBLE.size))
        if magic != MAGIC:
            raise self._fail("not a .sarc file (wrong magic bytes)")
        if version > FORMAT_VERSION:
            raise self._fail(f"format version {version} is newer than this codec supports "
                             f"(<= {FORMAT_VERSION}); update sar-compress")
        if version < 1:
            raise self._fail(f"invalid format version {version}")
        self.format_version = version
        off, length, crc, sha, end = FOOTER.unpack(self._pread(self.size - FOOTER.size, FOOTER.size))
        if end != FOOTER_MAGIC:
            raise self._fail("footer is missing or damaged (file truncated or corrupted)")
        self.body_length = self.size - FOOTER.size
        self.body_sha256 = sha
        if length > MAX_HEADER_BYTES or off < PREAMBLE.size or off + length != self.body_length:
            raise self._fail(f"header position {off}+{length} is inconsistent with the file size {self.size}")
        raw = self._pread(off, length)
        if zlib.crc32(raw) != crc:
            raise self._fail("header checksum mismatch (file corrupted)")
        cap = header_schema.header_cap(self.size, MAX_HEADER_BYTES)
        raw = decode_header(raw, version, cap, f"{self.path}: header")
        try:
            header = header_schema.parse(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise self._fail(f"header is not valid JSON ({str(exc)[:120]})") from None
        validate_header(header, off, str(self.path))
        return header

    def read_chunk(self, entry, what: str) -> bytes:
        """One chunk, CRC-checked; `what` names it in errors, file first (the decoders' errors share it)."""
        off, length, crc = entry
        data = self._pread(off, length)
        if zlib.crc32(data) != crc:
            raise ContainerFormatError(f"{what}: chunk checksum mismatch (file corrupted)")
        return data

    def verify(self) -> None:
        """Check the SHA-256 of the whole file body (reads the whole file once)."""
        h = hashlib.sha256()
        self._f.seek(0)
        left = self.body_length
        while left:
            b = self._f.read(min(left, 1 << 22))
            if not b:
                raise self._fail("file is truncated")
            h.update(b)
            left -= len(b)
        if h.digest() != self.body_sha256:
            raise self._fail("SHA-256 of the file does not match the footer (file corrupted)")

    def close(self) -> None:
        f, self._f = getattr(self, "_f", None), None
        if f is not None:
            f.close()

    def __enter__(self) -> "ContainerReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def validate_header(h, chunks_end: int, path: str) -> None:
    """The shared header schema (core.header_schema): types, ranges, counts and chunk bounds, before any use."""
    header_schema.validate(h, chunks_end, path)


def encode_nodata(v):
    """JSON cannot hold NaN: nodata is stored as a number, null, or the strings 'nan', 'inf', '-inf'."""
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def decode_nodata(v):
    if v is None:
        return None
    if isinstance(v, str):
        if v not in ("nan", "inf", "-inf"):
            raise ContainerFormatError(f"nodata value {v!r} is invalid")
        return float(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    raise ContainerFormatError(f"nodata value {v!r} is invalid")


def open_for_write(path: Path):
    try:
        return open(path, "wb")
    except OSError as exc:
        raise OutputPathError(f"{path}: cannot create file ({exc.strerror or exc})") from None
