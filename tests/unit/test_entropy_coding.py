"""Range coding with integer frequency tables (core.entropy_coding.ChannelTables, what the hyperprior coder codes
z and y with) and the checked read of the bundle files that decide decoding."""

import hashlib
import shutil

import numpy as np
import pytest

from codec_fixtures import write_geotiff
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress
from sar_compress_plugin.core.entropy_coding import ChannelTables
from sar_compress_plugin.core.errors import ContainerFormatError, ModelBundleError
from sar_compress_plugin.core.hyperprior import HYPERPRIOR_NAME


def _laplace_tables(channels=3, qmin=-127, qmax=127, scale=3.0):
    k = np.arange(qmin, qmax + 1)
    counts = np.stack([np.rint(1e5 * np.exp(-np.abs(k) / (scale * (c + 1)))).astype(np.int64) + 1
                       for c in range(channels)])
    return ChannelTables(counts, qmin)


def test_round_trip_is_exact_for_every_symbol():
    tables = _laplace_tables()
    rng = np.random.default_rng(1)
    q = np.clip(np.rint(rng.laplace(0, 4, size=(3, 9, 11))), -127, 127).astype(np.int16)
    q[0, 0, :3] = [-127, 127, 0]  # the extremes stay codable
    data = tables.encode(q)
    out = tables.decode(data, q.shape, "t")
    assert out.dtype == np.int16 and np.array_equal(out, q)
    with pytest.raises(ValueError, match="outside"):
        tables.encode(np.full((3, 1, 1), 128))


def test_wide_symbol_ranges_and_grouped_streams_round_trip():
    """The y tables span -1023..1023 (int16 symbols): groups coded with any row, in any order, come back."""
    tables = _laplace_tables(channels=5, qmin=-1023, qmax=1023, scale=40.0)
    rng = np.random.default_rng(2)
    groups = [(4, rng.integers(-1023, 1024, 50)), (0, np.array([-1023, 1023, 0])), (2, np.empty(0, np.int64)),
              (4, rng.integers(-3, 4, 200))]
    data = tables.encode_groups(groups)
    back = tables.decode_groups(data, [(row, len(s)) for row, s in groups], "t")
    assert all(np.array_equal(b, s) for b, (_, s) in zip(back, groups))


def test_coded_bytes_are_pinned():
    """The bytes for a fixed input are part of the file format: a coder library change that alters them must
    be noticed (constriction is pinned in requirements.txt for this reason)."""
    tables = _laplace_tables()
    q = (np.arange(3 * 8 * 8).reshape(3, 8, 8) % 11 - 5).astype(np.int16)
    assert hashlib.sha256(tables.encode(q)).hexdigest() == PINNED_SHA256


PINNED_SHA256 = "0268bde090a11fcf21fef77936dc04f73272ace9708ff3ddb9598f19cecbc13d"  # constriction 0.5.0


def test_damaged_chunks_give_the_projects_error():
    tables = _laplace_tables()
    with pytest.raises(ContainerFormatError, match="32-bit words"):
        tables.decode(b"abc", (3, 2, 2), "t")
    with pytest.raises(ContainerFormatError, match="channels"):
        tables.decode(b"", (2, 2, 2), "t")
    rng = np.random.default_rng(0)
    for _ in range(50):  # garbage decodes to in-range symbols or a clear error, never a crash
        data = rng.integers(0, 256, size=4 * int(rng.integers(0, 8)), dtype=np.uint8).tobytes()
        try:
            out = tables.decode(data, (3, 4, 4), "t")
            assert out.shape == (3, 4, 4) and out.min() >= -127 and out.max() <= 127
        except ContainerFormatError:
            pass


def test_tables_reject_malformed_counts():
    for bad in (np.zeros((2, 5), np.int64), np.ones((0, 5), np.int64), np.ones(5, np.int64),
                np.ones((2, 5), np.float64)):
        with pytest.raises(ModelBundleError, match="counts"):
            ChannelTables(bad, 0)



def test_bundle_with_an_edited_hyperprior_is_refused_as_damaged(tiny_bundle, tmp_path):
    """The hyperprior decides how every symbol decodes: edited without its manifest entry, the bundle is
    refused before anything is decoded with it."""
    rng = np.random.default_rng(4)
    src = write_geotiff(tmp_path / "in.tif", rng.gamma(1.0, 0.05, (1, 48, 48)).astype(np.float32))
    sarc = tmp_path / "a.sarc"
    compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_bundle, damaged)
    with open(damaged / HYPERPRIOR_NAME, "ab") as f:
        f.write(b"\0")
    with CompressedRaster(sarc, model_dirs=[damaged], device="cpu") as cr:
        with pytest.raises(ModelBundleError, match="damaged"):
            cr.read()
