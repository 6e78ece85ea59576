"""The content of a model bundle's files, plain or zstd-packed, and the SHA-256 that names it.

Why packing: every bundle the plugin ships stays in it so that the files it wrote keep decoding, and all of them
travel in each GPU call (64 MiB). An earlier default is kept decode-only with its decoder and hyperprior packed
with zstd (`<name>.zst`, export/retire.py): 8.6 MB become 4.4. A file names its model's parts by the SHA-256 of
their *content*, so a packed part is hashed unpacked and keeps the identity it had; nothing that names it changes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import zstandard

from .errors import ModelBundleError

PACKED_SUFFIX = ".zst"
#: No bundle part comes near this; a damaged or hostile frame that claims more is refused, not allocated.
MAX_UNPACKED_BYTES = 1 << 30

_hash_cache: dict[tuple[str, int, int], str] = {}


def is_packed(path: str | os.PathLike) -> bool:
    return Path(path).suffix == PACKED_SUFFIX


def read_bundle_file(path: str | os.PathLike, expected_sha256: str | None, what: str) -> tuple[bytes, str]:
    """(content, SHA-256 of the content) of a bundle file, read once and checked against the manifest."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ModelBundleError(f"{p}: cannot read {what} ({exc})") from None
    if is_packed(p):
        try:
            raw = zstandard.ZstdDecompressor().decompress(raw, max_output_size=MAX_UNPACKED_BYTES)
        except zstandard.ZstdError as exc:
            raise ModelBundleError(f"{p}: cannot unpack {what} ({exc}); the bundle is damaged") from None
    sha = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and sha != str(expected_sha256).lower():
        raise ModelBundleError(f"{p}: SHA-256 {sha[:12]}... does not match the manifest "
                               f"({str(expected_sha256)[:12]}...); the bundle is damaged")
    return raw, sha


def content_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a bundle file's content, cached by (path, size, mtime) because bundles are looked up per file
    opened. A packed file is unpacked whole (parts are a few MB); one that cannot be unpacked raises."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        if is_packed(p):
            _hash_cache[key] = read_bundle_file(p, None, "a bundle file")[1]
        else:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def onnx_source(path: str | os.PathLike, what: str) -> str | bytes:
    """What onnxruntime's InferenceSession is given for a bundle's network: the path of a plain file (it maps
    the file itself), or the unpacked bytes of a packed one."""
    return read_bundle_file(path, None, what)[0] if is_packed(path) else str(path)


def pack(content: bytes) -> bytes:
    """A packed part's bytes (zstd level 19: a retired bundle is written once and read rarely)."""
    return zstandard.ZstdCompressor(level=19).compress(content)
