"""Fuzzing the .sarc reader: whatever the bytes, only SarCompressError may escape (never a crash or a hang).

Default: a few hundred examples. More with SARC_FUZZ_EXAMPLES=5000.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_compress_plugin.core import container
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header
from sar_compress_plugin.core.errors import SarCompressError
from sar_compress_plugin.core.runtime import OnnxCodecModel

from codec_fixtures import write_geotiff

EXAMPLES = int(os.environ.get("SARC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SARC_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory, tiny_bundle):
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 0.05, (2, 20, 36)).astype(np.float32)
    x[0, :3, :3] = np.nan
    x[1, 7, 7] = 100.0
    src = write_geotiff(d / "f.tif", x)
    sarc = d / "f.sarc"
    compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))
    return sarc.read_bytes(), OnnxCodecModel(tiny_bundle, device="cpu"), d


def _exercise(data: bytes, model, path) -> None:
    path.write_bytes(data)
    try:
        read_header(path)
        with CompressedRaster(path, device="cpu") as cr:
            cr._model = model  # reuse one session: the bundle lookup is tested elsewhere
            cr.read()
            cr.verify()
    except SarCompressError:
        pass


@FUZZ
@given(st.data())
def test_mutated_bytes_only_raise_container_errors(valid_file, data):
    raw, model, d = valid_file
    buf = bytearray(raw)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        buf = buf[:data.draw(st.integers(0, len(buf) - 1))]
    elif kind == "insert":
        i = data.draw(st.integers(0, len(buf)))
        buf[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        i = data.draw(st.integers(0, len(buf) - 1))
        j = data.draw(st.integers(i, min(len(buf), i + 64)))
        buf[i:j] = data.draw(st.binary(max_size=64))
    _exercise(bytes(buf), model, d / "m.sarc")


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False)
                     | st.text(max_size=8), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                           max_size=3), max_leaves=8)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, prefix + (i,))


@FUZZ
@given(st.data())
def test_crafted_headers_with_valid_checksums_only_raise_container_errors(valid_file, data):
    """A hostile file can carry correct checksums: header semantics are validated on their own."""
    raw, model, d = valid_file
    off, length, *_ = container.FOOTER.unpack(raw[-container.FOOTER.size:])
    header = json.loads(container.zstd_decompress(raw[off:off + length], 1 << 24, "valid header"))
    paths = [p for p in _paths(header) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        p = data.draw(st.sampled_from(paths))
        node = header
        try:
            for k in p[:-1]:
                node = node[k]
            if data.draw(st.booleans()) and isinstance(node, dict):
                node.pop(p[-1], None)
            else:
                node[p[-1]] = data.draw(_json)
        except (KeyError, IndexError, TypeError):
            pass
    body = raw[:off] + container.zstd_compress(json.dumps(header).encode())
    footer = container.FOOTER.pack(off, len(body) - off, zlib.crc32(body[off:]), hashlib.sha256(body).digest(),
                                   container.FOOTER_MAGIC)
    _exercise(body + footer, model, d / "h.sarc")
