"""Fuzzing the .sarc reader: whatever the bytes, only SarCompressError may escape (never a crash or a hang),
memory stays bounded and no reconstruction leaves a file behind.

Flips, truncations, insertions, splices, and forged headers whose CRC and SHA-256 are recomputed (a hostile file
passes every checksum; only the header schema stands between it and the decoder). Default: a few hundred
examples per kind (CI). `-m campaign` runs test_fuzz_campaign: >= 10,000 cases, counts in benchmarks/results/fuzz/.
More hypothesis examples with SARC_FUZZ_EXAMPLES=5000.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import resource
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sar_compress_plugin.core import container
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.errors import SarCompressError
from sar_compress_plugin.core.runtime import OnnxCodecModel

from codec_fixtures import write_geotiff

EXAMPLES = int(os.environ.get("SARC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("SARC_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
#: One case (header, full read, verify, reconstruction) of the 20 x 36 test file takes milliseconds; seconds
#: mean a header made the reader work beyond the file's real size.
MAX_SECONDS_PER_CASE = 5.0
#: Peak RSS of the whole test process: a forged tile size or band count must not reach gigabytes.
MAX_RSS_BYTES = 3 << 30
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "fuzz"


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
    (d / "out").mkdir()
    return sarc.read_bytes(), OnnxCodecModel(tiny_bundle, device="cpu"), d, tiny_bundle


def _exercise(data: bytes, valid_file, name: str) -> str:
    """Read, decode, verify and reconstruct one mutated file; returns the outcome ('ok' or the error class)."""
    _, model, d, bundle = valid_file
    path, out = d / name, d / "out"
    path.write_bytes(data)
    t0 = time.perf_counter()
    outcome = "ok"
    try:
        read_header(path)
        with CompressedRaster(path, device="cpu") as cr:
            cr._model = model  # reuse one session: the bundle lookup is tested elsewhere
            cr.read()
            cr.verify()
        reconstruct(path, out / "rec.tif", model_dirs=[bundle], device="cpu")
    except SarCompressError as exc:
        outcome = type(exc).__name__
    assert time.perf_counter() - t0 < MAX_SECONDS_PER_CASE
    left = set(os.listdir(out)) - {"rec.tif"}
    assert not left, f"left behind: {left}"
    if (out / "rec.tif").exists():
        (out / "rec.tif").unlink()
    return outcome


def _check_memory() -> None:
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < MAX_RSS_BYTES


class _Hypo:
    """Draws from hypothesis (shrinking, CI)."""

    def __init__(self, data):
        self.data = data

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def pick(self, seq):
        return self.data.draw(st.sampled_from(seq))

    def bytes(self, lo, hi):
        return self.data.draw(st.binary(min_size=lo, max_size=hi))

    def json(self):
        return self.data.draw(_json)


class _Rng:
    """The same draws from a numpy generator (the long campaign: fast, no shrinking needed for counting)."""

    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi, endpoint=True)) if hi - lo < 2**62 else int(self.rng.choice(
            [lo, hi, 0, -1, 2**31, 2**32 + 16, 2**63 - 1]))

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def bytes(self, lo, hi):
        return self.rng.bytes(int(self.rng.integers(lo, hi, endpoint=True)))

    def json(self, depth=0):
        k = self.int(0, 9 if depth < 2 else 7)
        if k == 8:
            return [self.json(depth + 1) for _ in range(self.int(0, 3))]
        if k == 9:
            return {"a": self.json(depth + 1)}
        return [None, True, self.int(-2**40, 2**40), float(self.rng.normal() * 1e6), "x", "nan",
                self.int(0, 2**20), float(self.rng.choice([1e308, -1e308, 0.5]))][k]


def mutate_bytes(raw: bytes, draw) -> bytes:
    buf = bytearray(raw)
    kind = draw.pick(["flip", "truncate", "insert", "splice"])
    if kind == "flip":
        for _ in range(draw.int(1, 8)):
            buf[draw.int(0, len(buf) - 1)] = draw.int(0, 255)
    elif kind == "truncate":
        buf = buf[:draw.int(0, len(buf) - 1)]
    elif kind == "insert":
        i = draw.int(0, len(buf))
        buf[i:i] = draw.bytes(1, 16)
    else:
        i = draw.int(0, len(buf) - 1)
        j = draw.int(i, min(len(buf), i + 64))
        buf[i:j] = draw.bytes(0, 64)
    return bytes(buf)


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False)
                     | st.text(max_size=8), lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                           max_size=3), max_leaves=8)

#: Fields that size allocations or loops: forged with integers of every magnitude.
SIZE_FIELDS = [("raster", "width"), ("raster", "height"), ("raster", "band_count"), ("tiling", "tile_size"),
               ("tiling", "halo"), ("tiling", "cols"), ("model", "latent_channels"), ("rate", "levels")]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, prefix + (i,))


def forge_header(raw: bytes, draw) -> bytes:
    """Change 1-3 header fields (random JSON, or a big integer in a size field), re-forge CRC and SHA-256."""
    off, length, *_ = container.FOOTER.unpack(raw[-container.FOOTER.size:])
    header = json.loads(container.decode_header(raw[off:off + length], container.FORMAT_VERSION, 1 << 24,
                                                "valid header"))
    paths = [p for p in _paths(header) if p]
    for _ in range(draw.int(1, 3)):
        if draw.int(0, 2) == 0:
            p, value = draw.pick(SIZE_FIELDS), draw.pick([0, 1, 16, 4096, 65536, 10**9, 10**11, 2**63 - 1, -16])
        else:
            p, value = draw.pick(paths), draw.json()
        node = header
        try:
            for k in p[:-1]:
                node = node[k]
            if draw.int(0, 1) and isinstance(node, dict):
                node.pop(p[-1], None)
            else:
                node[p[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass
    body = raw[:off] + container.encode_header(json.dumps(header).encode())
    footer = container.FOOTER.pack(off, len(body) - off, zlib.crc32(body[off:]), hashlib.sha256(body).digest(),
                                   container.FOOTER_MAGIC)
    return body + footer


@FUZZ
@given(st.data())
def test_mutated_bytes_only_raise_container_errors(valid_file, data):
    _exercise(mutate_bytes(valid_file[0], _Hypo(data)), valid_file, "m.sarc")
    _check_memory()


@FUZZ
@given(st.data())
def test_crafted_headers_with_valid_checksums_only_raise_container_errors(valid_file, data):
    """A hostile file can carry correct checksums: header semantics are validated on their own."""
    _exercise(forge_header(valid_file[0], _Hypo(data)), valid_file, "h.sarc")
    _check_memory()


@pytest.mark.campaign
def test_fuzz_campaign(valid_file):
    """>= 10,000 cases (half byte mutations, half forged headers); outcome counts go to benchmarks/results."""
    n = int(os.environ.get("SARC_FUZZ_CAMPAIGN", "10000"))
    draw = _Rng(np.random.default_rng(18))
    counts = {"bytes": collections.Counter(), "forged_header": collections.Counter()}
    t0 = time.perf_counter()
    slowest = 0.0
    for i in range(n):
        kind = "bytes" if i % 2 else "forged_header"
        raw = mutate_bytes(valid_file[0], draw) if kind == "bytes" else forge_header(valid_file[0], draw)
        t = time.perf_counter()
        counts[kind][_exercise(raw, valid_file, "c.sarc")] += 1
        slowest = max(slowest, time.perf_counter() - t)
    _check_memory()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_campaign.json").write_text(json.dumps({
        "cases": n, "seed": 18, "seconds": round(time.perf_counter() - t0, 1), "slowest_case_s": round(slowest, 3),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "outcomes": {k: dict(v) for k, v in counts.items()},
        "note": "every case ended in 'ok' or a SarCompressError subclass, within the time bound, nothing left"}, indent=1))
