"""The command lines on products whose bands carry a GDAL scale and offset (an int16 sigma0 product in hundredths
of a dB, a uint16 amplitude with a scale and an offset), as an archive operator and a power user meet them:
what sar-info says of such a file, what every reader refuses of a hand-edited one, what sar-compress --json
reports, the warning for bands that disagree about their domain, and the batch's checks before any work and
on a rerun over files written before the codec coded physical values."""

from __future__ import annotations

import hashlib
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin import cli
from sar_compress_plugin.batch.cli import compress_batch_main
from sar_compress_plugin.batch.inputs import Job
from sar_compress_plugin.batch.tasks import compress_scene
from sar_compress_plugin.core import container
from sar_compress_plugin.core.codec import CompressOptions, compress, read_header

from codec_fixtures import write_geotiff
from test_codec_errors import rewrite_header

N = 64


def _scaled(path: Path, stored: np.ndarray, scale: float, offset: float | None = None, nodata=None,
            names=None, unscaled_bands=()) -> Path:
    """A GeoTIFF of `stored` whose bands carry `scale` (and `offset`), except the 1-based `unscaled_bands`."""
    from osgeo import gdal

    write_geotiff(path, stored, nodata=nodata, names=names)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        if b not in unscaled_bands:
            ds.GetRasterBand(b).SetScale(scale)
            if offset is not None:
                ds.GetRasterBand(b).SetOffset(offset)
    ds = None
    return path


def _db_hundredths(seed: int = 0, bands: int = 2) -> np.ndarray:
    """int16 hundredths of a sigma0 dB: about -15 dB with speckle."""
    rng = np.random.default_rng(seed)
    return np.rint(100 * (-15 + 10 * np.log10(rng.gamma(4.0, 0.25, (bands, N, N))))).astype(np.int16)


@pytest.fixture(scope="module")
def products(tmp_path_factory, tiny_bundle):
    """(int16 dB product, its .sarc), (uint16 amplitude stored * 0.1 - 5 without band names, its .sarc)."""
    d = tmp_path_factory.mktemp("scaled")
    db = _scaled(d / "db.tif", _db_hundredths(), 0.01, nodata=-32768, names=["VV", "VH"])
    amp = np.sqrt(np.random.default_rng(1).gamma(1.0, 400.0, (2, N, N)))
    amp_tif = _scaled(d / "amp.tif", np.rint((amp + 5) / 0.1).astype(np.uint16), 0.1, -5.0, nodata=0)
    out = []
    for src in (db, amp_tif):
        sarc = d / f"{src.stem}.sarc"
        compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64))
        out.append((src, sarc))
    return out


def test_sar_info_says_a_band_is_coded_physical_with_its_scale_and_offset(products, capsys):
    """sar-info said nothing of a band's scale and offset: whether its clip range is in dB of the physical
    values (format 5) or of the stored numbers (files from before) was not to be told, and a raster without band
    descriptions printed its clip ranges as " 40.00..61.20,  34.57..56.52"."""
    (_, db_sarc), (_, amp_sarc) = products
    assert cli.info_main([str(db_sarc)]) == 0
    out = capsys.readouterr().out
    assert "sarc format 5" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("scaling"))
    assert "VV = stored * 0.01 + 0, VH = stored * 0.01 + 0 coded as physical values" in line, line
    assert "stored int16" in line
    lo, hi = read_header(db_sarc)["clip_db"][0]
    assert -40 < lo < hi < 10  # dB, not hundredths of one

    assert cli.info_main([str(amp_sarc)]) == 0
    out = capsys.readouterr().out
    assert "band 1 = stored * 0.1 - 5, band 2 = stored * 0.1 - 5 coded as physical values" in out, out
    clip = next(ln for ln in out.splitlines() if ln.strip().startswith("clip dB"))
    assert clip.split("clip dB")[1].strip().startswith("band 1 "), clip

    old = rewrite_header(db_sarc, db_sarc.parent / "old.sarc",
                         lambda h: [b.pop("coded") for b in h["raster"]["bands"]])  # as written before format 5
    assert cli.info_main([str(old)]) == 0
    assert "VV = stored * 0.01 + 0, VH = stored * 0.01 + 0 coded as stored values" in capsys.readouterr().out


def _forge(sarc: Path, dst: Path, band: int, **fields) -> Path:
    return rewrite_header(sarc, dst, lambda h: h["raster"]["bands"][band].update(fields))


@pytest.mark.parametrize("fields, says", [
    ({"scale": 0}, "band 2 is coded physical with scale 0"),
    ({"coded": "logarithmic"}, "band 2 is coded 'logarithmic', which this codec does not know")])
def test_a_hand_edited_coding_is_refused_by_every_reader_in_one_line(products, tmp_path, tiny_bundle, fields,
                                                                     says, capsys):
    """A header whose band claims "coded": "physical" with scale 0 was described and --verify'd "OK" by
    sar-info while sar-reconstruct refused it, with a message naming no band; a `coded` this codec does not
    know was decoded as stored values, so the reconstruction was wrong without a word."""
    (_, sarc), _ = products
    bad = _forge(sarc, tmp_path / "bad.sarc", 1, **fields)
    out = tmp_path / "out"
    out.mkdir()
    runs = [lambda: cli.info_main([str(bad)]), lambda: cli.info_main([str(bad), "--verify"]),
            lambda: cli.info_main([str(bad), "--json"]),
            lambda: cli.reconstruct_main([str(bad), str(out / "r.tif"), "--model-dir", str(tiny_bundle),
                                          "--device", "cpu", "-q"]),
            lambda: cli.reconstruct_main([str(bad), str(out / "w.tif"), "--model-dir", str(tiny_bundle),
                                          "--device", "cpu", "-q", "--window", "0", "0", "16", "16"])]
    for run in runs:
        rc = run()
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and says in lines[0] and str(bad) in lines[0], captured.err
        assert "verify: OK" not in captured.out
    assert list(out.iterdir()) == []


def test_an_extreme_scale_in_a_header_reconstructs_without_runtime_warnings(products, tmp_path, tiny_bundle,
                                                                           capsys):
    """A scale so small that decoded values overflow on their way back to stored ones printed numpy's
    "RuntimeWarning: overflow encountered in divide" with its source line, around the run's own line."""
    (_, sarc), _ = products
    bad = _forge(sarc, tmp_path / "tiny.sarc", 0, scale=1e-320)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc = cli.reconstruct_main([str(bad), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                   "--device", "cpu", "-q"])
    assert rc == 0 and not [w for w in seen if issubclass(w.category, RuntimeWarning)], [str(w) for w in seen]
    assert capsys.readouterr().err == ""


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_sar_compress_json_says_the_format_version_the_coding_and_whether_a_target_was_met(products, tmp_path,
                                                                                          tiny_bundle, capsys):
    """--json gave the quality alone: not whether a --target-db-rmse was met on the sample tiles (only a
    WARNING line on stderr said so), nor that the file is format 5, which older readers refuse, with its bands
    coded as physical values."""
    (src, _), _ = products
    rc = cli.compress_main([str(src), str(tmp_path / "t.sarc"), "--model", str(tiny_bundle), "--device", "cpu",
                            "--tile", "64", "-q", "--json", "--target-db-rmse", "0.001"])
    doc = _strict(capsys.readouterr().out)
    assert rc == 0 and doc["format_version"] == 5 and doc["coded_physical"] == [True, True]
    assert doc["rate"]["chosen_by"] == "db_rmse" and doc["rate"]["target"] == 0.001
    assert doc["rate"]["target_met_on_samples"] is False and doc["rate"]["quality"] == doc["quality"]


def test_bands_that_disagree_about_their_domain_are_warned_of(tmp_path, tiny_bundle, caplog):
    """A file has one domain, inferred from band 1: band 1 int16 hundredths of a dB under a scale beside a band 2
    of plain int16 digital numbers coded band 2's numbers as dB without a word (the warning for an integer
    raster taken as dB looked at band 1's scale only)."""
    stored = _db_hundredths(bands=2)
    stored[1] = np.random.default_rng(2).integers(50, 1000, (N, N))
    src = _scaled(tmp_path / "mixed.tif", stored, 0.01, nodata=-32768, unscaled_bands=(2,))
    with caplog.at_level("WARNING"):
        res = compress(src, tmp_path / "mixed.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu",
                                                                      tile_size=64))
    assert res.domain == "db"
    told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(told) == 1 and "band 2 looks like amplitude" in told[0], told
    caplog.clear()
    with caplog.at_level("WARNING"):  # the domain given: the integer band without a scale taken as dB is told
        compress(src, tmp_path / "mixed_db.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu",
                                                                   tile_size=64, domain="db"))
    told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("integer raster treated as dB (band 2 without a scale or offset)" in t for t in told), told


@pytest.mark.parametrize("args, says", [
    (["--quality", "nan"], "quality nan must be a finite number"),
    (["--bpp", "inf"], "target bpp inf must be a finite number"),
    (["--target-db-rmse", "-1"], "target dB RMSE -1.0 must be a finite number"),
    (["--quality", "9"], "quality 9.0 must be between 0 and 2 for this model"),
    (["--tile", "100"], "tile size 100 must be a multiple of 16"),
    (["--model", "{missing}"], "not a model bundle")])
def test_a_batch_refuses_a_bad_rate_tile_or_model_before_any_work(products, tmp_path, tiny_bundle, args, says,
                                                                  capsys):
    """Each of these failed every scene alike, one by one on a started cluster, with exit status 1 (some inputs
    failed) rather than 2 (the batch could not run), and `--quality nan` or `--bpp inf` wrote NaN and Infinity
    into the report's JSON, which strict parsers refuse."""
    (src, _), _ = products
    out = tmp_path / "out"
    args = [a.format(missing=tmp_path / "no-model") for a in args]
    model = [] if "--model" in args else ["--model", str(tiny_bundle)]
    rc = compress_batch_main([str(src), "--out", str(out), *model, "--workers", "1", "-q", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not out.exists()


def _as_written_before_format_5(sarc: Path) -> None:
    """Rewrite `sarc` in place as the codec before format 5 wrote a scaled band's file: no `coded`, version 4."""
    with container.ContainerReader(sarc) as r:
        header = r.header
    raw = bytearray(sarc.read_bytes())
    off = container.FOOTER.unpack(bytes(raw[-container.FOOTER.size:]))[0]
    for band in header["raster"]["bands"]:
        band.pop("coded", None)
    header["format_version"] = 4
    raw[8:10] = struct.pack("<H", 4)
    body = bytes(raw[:off]) + container.encode_header(json.dumps(header).encode())
    sarc.write_bytes(body + container.FOOTER.pack(off, len(body) - off, zlib.crc32(body[off:]),
                                                  hashlib.sha256(body).digest(), container.FOOTER_MAGIC))


def test_a_batch_rerun_recompresses_a_scaled_scene_coded_as_its_stored_values(products, tmp_path, tiny_bundle):
    """A .sarc of a scaled product written before format 5 (its int16 hundredths of a dB coded as if they were
    dB: 8.8 dB RMSE where 0.4 is due) has the same model, quality, tile size and source stamp as one made now,
    so every rerun skipped it: the archive kept the bad files for good."""
    (src, _), _ = products
    out = tmp_path / "out" / "db.sarc"
    opts = CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64)
    assert compress_scene(Job(str(src), str(out)), opts)["status"] == "ok"
    assert compress_scene(Job(str(src), str(out)), opts)["status"] == "skipped"
    _as_written_before_format_5(out)
    assert read_header(out)["format_version"] == 4
    assert compress_scene(Job(str(src), str(out)), opts)["status"] == "ok"
    header = read_header(out)
    assert header["format_version"] == 5 and [b["coded"] for b in header["raster"]["bands"]] == ["physical"] * 2
    assert compress_scene(Job(str(src), str(out)), opts)["status"] == "skipped"


def test_a_sarc_given_to_sar_compress_is_told_to_be_reconstructed(products, tmp_path, tiny_bundle, capsys):
    """`sar-compress scene.sarc out.sarc` said "not a readable raster (unknown format)" of a file this very
    codec wrote."""
    (_, sarc), _ = products
    rc = cli.compress_main([str(sarc), str(tmp_path / "again.sarc"), "--model", str(tiny_bundle), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "is a compressed .sarc file" in err[0] and "sar-reconstruct" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_batch_rerun_recompresses_a_scene_whose_scale_changed_beside_the_file(tmp_path, tiny_bundle):
    """A band's scale kept in a GDAL .aux.xml beside the file (a product whose format cannot hold it, a scale
    set with GDAL on a read-only file) changes without the file's size or date: the rerun skipped the .sarc
    coded through the old scale, whose values mean other physical values now (100 times off here)."""
    from osgeo import gdal

    def scale_beside(path: Path, scale: float) -> None:
        ds = gdal.Open(str(path))  # read-only: GDAL keeps the scale in <name>.aux.xml
        ds.GetRasterBand(1).SetScale(scale)
        ds = None

    scene = write_geotiff(tmp_path / "db.tif", _db_hundredths(bands=1)[0], nodata=-32768)
    scale_beside(scene, 0.01)
    out = tmp_path / "out" / "db.sarc"
    opts = CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64, domain="db")
    assert compress_scene(Job(str(scene), str(out)), opts)["status"] == "ok"
    assert read_header(out)["raster"]["bands"][0]["scale"] == 0.01
    assert compress_scene(Job(str(scene), str(out)), opts)["status"] == "skipped"
    stamp = scene.stat()
    scale_beside(scene, 0.0001)
    assert (scene.stat().st_size, scene.stat().st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
    assert compress_scene(Job(str(scene), str(out)), opts)["status"] == "ok"
    assert read_header(out)["raster"]["bands"][0]["scale"] == 0.0001
    assert compress_scene(Job(str(scene), str(out)), opts)["status"] == "skipped"
