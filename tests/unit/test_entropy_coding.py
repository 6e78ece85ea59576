"""Range coding of latents with a bundle's integer entropy tables (core.entropy_coding, export.entropy_tables)."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from codec_fixtures import build_tiny_bundle, write_geotiff
from export.entropy_tables import fit_entropy_tables
from sar_compress_plugin.core import container as C
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header
from sar_compress_plugin.core.entropy_coding import (RANGE_CODER, TABLES_NAME, ChannelTables, load_tables,
                                                     quality_key, tables_document)
from sar_compress_plugin.core.errors import (ContainerFormatError, ModelBundleError, ModelMismatchError,
                                             SarCompressError)


def _laplace_tables(channels=3, qmin=-127, qmax=127, scale=3.0):
    k = np.arange(qmin, qmax + 1)
    counts = np.stack([np.rint(1e5 * np.exp(-np.abs(k) / (scale * (c + 1)))).astype(np.int64) + 1
                       for c in range(channels)])
    return ChannelTables(counts, qmin)


def _speckled(seed, shape=(2, 160, 200)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]]
    scene = 1000.0 * (1.5 + np.sin(xx / 17.0) * np.cos(yy / 23.0))
    return (scene[None] * rng.gamma(4.0, 1 / 4.0, size=shape)).astype(np.float32)


@pytest.fixture(scope="module")
def bundle_with_tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("et")
    bundle = build_tiny_bundle(d / "tiny_et")
    scenes = [(write_geotiff(d / f"train{i}.tif", _speckled(i)), "intensity") for i in range(2)]
    fit_entropy_tables(bundle, scenes, qualities=(1.0, 2.0))
    return bundle


def test_round_trip_is_exact_for_every_symbol():
    tables = _laplace_tables()
    rng = np.random.default_rng(1)
    q = np.clip(np.rint(rng.laplace(0, 4, size=(3, 9, 11))), -127, 127).astype(np.int8)
    q[0, 0, :3] = [-127, 127, 0]  # the extremes stay codable
    data = tables.encode(q)
    assert np.array_equal(tables.decode(data, q.shape, "t"), q)


def test_coded_bytes_are_pinned():
    """The bytes for a fixed input are part of the file format: a coder library change that alters them must
    be noticed (constriction is pinned in requirements.txt for this reason)."""
    tables = _laplace_tables()
    q = (np.arange(3 * 8 * 8).reshape(3, 8, 8) % 11 - 5).astype(np.int8)
    assert hashlib.sha256(tables.encode(q)).hexdigest() == PINNED_SHA256


PINNED_SHA256 = "0268bde090a11fcf21fef77936dc04f73272ace9708ff3ddb9598f19cecbc13d"  # constriction 0.5.0


def test_damaged_chunks_give_the_projects_error():
    tables = _laplace_tables()
    with pytest.raises(ContainerFormatError, match="32-bit words"):
        tables.decode(b"abc", (3, 2, 2), "t")
    with pytest.raises(ContainerFormatError, match="3 latent channels|channels"):
        tables.decode(b"", (2, 2, 2), "t")
    rng = np.random.default_rng(0)
    for _ in range(50):  # garbage decodes to in-range symbols or a clear error, never a crash
        data = rng.integers(0, 256, size=4 * int(rng.integers(0, 8)), dtype=np.uint8).tobytes()
        try:
            out = tables.decode(data, (3, 4, 4), "t")
            assert out.shape == (3, 4, 4) and out.dtype == np.int8
        except ContainerFormatError:
            pass


def test_tables_document_round_trips(tmp_path):
    counts = _laplace_tables(channels=2).counts
    doc = tables_document({1.0: counts, 0.5: counts[::-1]}, -127, 127, {"scenes": []})
    p = tmp_path / TABLES_NAME
    p.write_text(json.dumps(doc))
    loaded = load_tables(p)
    assert set(loaded.by_quality) == {"1", "0.5"} and quality_key(1.0) == "1"
    assert np.array_equal(loaded.for_quality(1).counts, counts)
    assert np.array_equal(loaded.for_quality(0.5).counts, counts[::-1])
    assert loaded.for_quality(3.0) is None
    with pytest.raises(ModelBundleError, match="does not match the manifest"):
        load_tables(p, expected_sha256="0" * 64)
    doc["tables"]["1"]["channels"][0]["first"] = 120  # runs past qmax
    p.write_text(json.dumps(doc))
    with pytest.raises(ModelBundleError, match="malformed"):
        load_tables(p)


def test_codec_uses_the_range_coder_and_decodes_like_zstd(bundle_with_tables, tmp_path):
    src = write_geotiff(tmp_path / "in.tif", _speckled(7, (2, 150, 170)))
    ranged, plain = tmp_path / "r.sarc", tmp_path / "z.sarc"
    compress(src, ranged, CompressOptions(model_dir=bundle_with_tables, device="cpu", tile_size=64))
    compress(src, plain, CompressOptions(model_dir=bundle_with_tables, device="cpu", tile_size=64,
                                         latent_coder=C.LATENT_CODER))
    h = read_header(ranged)
    assert h["coders"]["latent"] == RANGE_CODER and h["entropy_tables"]["quality"] == "1"
    assert read_header(plain)["coders"]["latent"] == C.LATENT_CODER and "entropy_tables" not in read_header(plain)
    with CompressedRaster(ranged, model_dirs=[bundle_with_tables], device="cpu") as a, \
            CompressedRaster(plain, model_dirs=[bundle_with_tables], device="cpu") as b:
        for t in a.grid:
            assert np.array_equal(a.latents(1, t), b.latents(1, t))
        assert np.array_equal(a.read(), b.read())
    # a quality without tables falls back to zstd; asking for the range coder there is a clear error
    q3 = tmp_path / "q3.sarc"
    compress(src, q3, CompressOptions(model_dir=bundle_with_tables, device="cpu", quality=3.0))
    assert read_header(q3)["coders"]["latent"] == C.LATENT_CODER
    with pytest.raises(SarCompressError, match="no entropy tables for quality 3"):
        compress(src, tmp_path / "x.sarc", CompressOptions(model_dir=bundle_with_tables, device="cpu",
                                                           quality=3.0, latent_coder=RANGE_CODER))
    assert not (tmp_path / "x.sarc").exists()


def test_file_needs_the_tables_it_was_coded_with(bundle_with_tables, tmp_path):
    src = write_geotiff(tmp_path / "in.tif", _speckled(3, (1, 96, 96)))
    sarc = tmp_path / "a.sarc"
    compress(src, sarc, CompressOptions(model_dir=bundle_with_tables, device="cpu"))
    other = tmp_path / "other"
    shutil.copytree(bundle_with_tables, other)
    t = json.loads((other / TABLES_NAME).read_text())
    t["fitted_on"]["scenes"] = ["something else"]  # same decoder, different tables file
    (other / TABLES_NAME).write_text(json.dumps(t))
    m = json.loads((other / "manifest.json").read_text())
    m["files"]["entropy_tables"]["sha256"] = hashlib.sha256((other / TABLES_NAME).read_bytes()).hexdigest()
    (other / "manifest.json").write_text(json.dumps(m))
    with CompressedRaster(sarc, model_dirs=[other], device="cpu") as cr:
        with pytest.raises(ModelMismatchError, match="entropy tables"):
            cr.read()
    # and a bundle whose tables were edited without updating the manifest is refused as damaged
    (bundle_copy := tmp_path / "damaged").mkdir()
    for f in bundle_with_tables.iterdir():
        shutil.copy(f, bundle_copy / f.name)
    (bundle_copy / TABLES_NAME).write_text((other / TABLES_NAME).read_text())
    with CompressedRaster(sarc, model_dirs=[bundle_copy], device="cpu") as cr:
        with pytest.raises(ModelBundleError, match="damaged"):
            cr.read()


def test_files_without_tables_still_decode_with_a_bundle_that_has_them(tiny_bundle, bundle_with_tables, tmp_path):
    """A zstd-coded file (what every file before the range coder was) decodes whatever tables the bundle has."""
    src = write_geotiff(tmp_path / "in.tif", _speckled(5, (1, 80, 90)))
    sarc = tmp_path / "old.sarc"
    compress(src, sarc, CompressOptions(model_dir=bundle_with_tables, device="cpu", latent_coder=C.LATENT_CODER))
    with CompressedRaster(sarc, model_dirs=[bundle_with_tables], device="cpu") as cr:
        assert cr.read().shape == (1, 80, 90)


@pytest.mark.parametrize("coder", ["zstd-int8", "range-factorized-int8"])
def test_cli_coder_choice_is_what_the_file_records(bundle_with_tables, tmp_path, coder):
    from sar_compress_plugin.cli import compress_main

    src = write_geotiff(tmp_path / "in.tif", _speckled(11, (1, 64, 64)))
    out = tmp_path / "c.sarc"
    assert compress_main([str(src), str(out), "--model", str(bundle_with_tables), "--device", "cpu",
                          "--coder", coder, "-q"]) == 0
    assert read_header(out)["coders"]["latent"] == coder
