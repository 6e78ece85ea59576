"""Every bad input gives a clear SarCompressError, a non-zero CLI exit and no partial output."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin import cli
from sar_compress_plugin.core import container
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header, reconstruct
from sar_compress_plugin.core.errors import (CancelledError, ContainerFormatError, InputRasterError,
                                             ModelBundleError, ModelMismatchError, OutputPathError)
from sar_compress_plugin.core.runtime import OnnxCodecModel

from codec_fixtures import build_tiny_bundle, write_geotiff


@pytest.fixture(scope="module")
def small(tmp_path_factory, tiny_bundle):
    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    x = rng.gamma(1.0, 0.05, (2, 40, 48)).astype(np.float32)
    x[:, :4, :4] = np.nan
    x[0, 5, 5] = 500.0
    src = write_geotiff(d / "small.tif", x)
    sarc = d / "small.sarc"
    compress(src, sarc, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))
    return src, sarc


def _listing(d: Path) -> set[str]:
    return set(os.listdir(d))


def rewrite_header(src: Path, dst: Path, mutate) -> Path:
    """Copy a .sarc with its header changed by `mutate(dict)`, with valid CRC and SHA-256 (a crafted file)."""
    with container.ContainerReader(src) as r:
        header, off = r.header, r.header_offset if hasattr(r, "header_offset") else None
    raw = src.read_bytes()
    off, length, *_ = container.FOOTER.unpack(raw[-container.FOOTER.size:])
    mutate(header)
    body = raw[:off] + container.encode_header(json.dumps(header).encode())
    footer = container.FOOTER.pack(off, len(body) - off, zlib.crc32(body[off:]), hashlib.sha256(body).digest(),
                                   container.FOOTER_MAGIC)
    dst.write_bytes(body + footer)
    return dst


def _expect_reconstruct_error(sarc, tmp_path, tiny_bundle, exc, match=None):
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    before = _listing(out_dir)
    with pytest.raises(exc, match=match):
        reconstruct(sarc, out_dir / "rec.tif", model_dirs=[tiny_bundle], device="cpu")
    assert _listing(out_dir) == before
    rc = cli.reconstruct_main([str(sarc), str(out_dir / "rec.tif"), "--model-dir", str(tiny_bundle),
                               "--device", "cpu", "-q"])
    assert rc == 2 and _listing(out_dir) == before


def test_truncated_file(small, tmp_path, tiny_bundle):
    _, sarc = small
    raw = sarc.read_bytes()
    for n in (0, 10, len(raw) // 2, len(raw) - 1):
        bad = tmp_path / f"t{n}.sarc"
        bad.write_bytes(raw[:n])
        _expect_reconstruct_error(bad, tmp_path, tiny_bundle, ContainerFormatError)


def test_flipped_byte_is_caught_by_checksums(small, tmp_path, tiny_bundle):
    _, sarc = small
    raw = bytearray(sarc.read_bytes())
    h = read_header(sarc)
    off = h["chunks"]["latent"][3][0]
    raw[off + 2] ^= 0x40
    bad = tmp_path / "flip.sarc"
    bad.write_bytes(bytes(raw))
    _expect_reconstruct_error(bad, tmp_path, tiny_bundle, ContainerFormatError, "SHA-256|checksum")
    with CompressedRaster(bad, model_dirs=[tiny_bundle], device="cpu") as cr:  # random access: chunk CRC
        with pytest.raises(ContainerFormatError, match="checksum"):
            cr.read()
    assert cli.info_main([str(bad), "--verify"]) == 2


def test_a_file_refused_by_its_checksums_is_closed(small, tmp_path, recwarn):
    """Opening with verify=True raised on a damaged body and left the file open (a ResourceWarning; the plugin
    and a batch open many files in one long process)."""
    import gc

    _, sarc = small
    raw = bytearray(sarc.read_bytes())
    raw[read_header(sarc)["chunks"]["latent"][0][0] + 1] ^= 0x10
    bad = tmp_path / "flip.sarc"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ContainerFormatError):
        CompressedRaster(bad, verify=True)
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


def test_wrong_magic(small, tmp_path, tiny_bundle):
    _, sarc = small
    bad = tmp_path / "magic.sarc"
    bad.write_bytes(b"GIF89a!!" + sarc.read_bytes()[8:])
    _expect_reconstruct_error(bad, tmp_path, tiny_bundle, ContainerFormatError, "magic")


def test_newer_format_version_is_named(small, tmp_path, tiny_bundle):
    _, sarc = small
    raw = bytearray(sarc.read_bytes())
    struct.pack_into("<H", raw, 8, 7)
    bad = tmp_path / "v7.sarc"
    bad.write_bytes(bytes(raw))
    _expect_reconstruct_error(bad, tmp_path, tiny_bundle, ContainerFormatError, "version 7")


def test_absurd_header_sizes(small, tmp_path, tiny_bundle):
    _, sarc = small

    def huge(h):
        h["raster"]["width"] = h["raster"]["height"] = 10**6 + 1  # 10^12 pixels

    def far_chunk(h):
        h["chunks"]["latent"][0] = [16, 10**12, 0]

    def few_entries(h):
        h["chunks"]["latent"] = h["chunks"]["latent"][:2]

    for name, fn in [("huge", huge), ("far", far_chunk), ("few", few_entries)]:
        bad = rewrite_header(sarc, tmp_path / f"{name}.sarc", fn)
        _expect_reconstruct_error(bad, tmp_path, tiny_bundle, ContainerFormatError)


def test_decoder_model_missing_or_different(small, tmp_path, tiny_bundle):
    _, sarc = small
    need = read_header(sarc)["model"]["decoder_sha256"]
    other = build_tiny_bundle(tmp_path / "other", seed=1, name="other")
    for dirs in ([], [other], [tmp_path / "nowhere"]):
        out = tmp_path / "o.tif"
        with pytest.raises(ModelMismatchError, match=need) as ei:
            reconstruct(sarc, out, model_dirs=dirs, device="cpu")
        assert "tiny" in str(ei.value)
        assert ("no such folder" in str(ei.value)) == (dirs == [tmp_path / "nowhere"])  # a mistyped --model-dir
        assert not out.exists()
    assert cli.reconstruct_main([str(sarc), str(tmp_path / "o.tif"), "--model-dir", str(other), "-q"]) == 2


def test_damaged_bundle_is_rejected(tmp_path, tiny_bundle):
    b = tmp_path / "damaged"
    shutil.copytree(tiny_bundle, b)
    with open(b / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelBundleError, match="SHA-256"):
        OnnxCodecModel(b, device="cpu")
    (b / "manifest.json").write_text("{not json")
    with pytest.raises(ModelBundleError):
        OnnxCodecModel(b, device="cpu")


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["preprocessing"].update(clip_percentiles=[99.5, 0.5]), "clip_percentiles"),
    (lambda m: m["preprocessing"].update(clip_percentiles=[0.5]), "clip_percentiles"),
    (lambda m: m["preprocessing"].update(noise_floor_db=float("nan")), "noise_floor_db"),
    (lambda m: m["files"]["encoder"].update(path="../outside.onnx"), "not a file name inside the bundle"),
])
def test_an_edited_manifest_is_refused_before_any_work(tmp_path, tiny_bundle, edit, match):
    """manifest.json is not hashed; a record that would code every raster wrongly must not load."""
    b = tmp_path / "edited"
    shutil.copytree(tiny_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m.setdefault("preprocessing", {})
    edit(m)
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelBundleError, match=match):
        OnnxCodecModel(b, device="cpu")


def _expect_compress_error(src, tmp_path, tiny_bundle, exc, match=None, out=None):
    out_dir = tmp_path / "cout"
    out_dir.mkdir(exist_ok=True)
    out = out or out_dir / "x.sarc"
    before = _listing(out_dir)
    with pytest.raises(exc, match=match):
        compress(src, out, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))
    assert _listing(out_dir) == before
    rc = cli.compress_main([str(src), str(out), "--model", str(tiny_bundle), "--device", "cpu", "--tile", "16",
                            "-q"])
    assert rc == 2 and _listing(out_dir) == before


def test_non_numeric_and_unreadable_rasters(tmp_path, tiny_bundle):
    from osgeo import gdal

    cpx = tmp_path / "cpx.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(cpx), 32, 32, 1, gdal.GDT_CFloat32)
    ds = None
    _expect_compress_error(cpx, tmp_path, tiny_bundle, InputRasterError, "not supported")
    txt = tmp_path / "notes.tif"
    txt.write_text("this is not a raster")
    _expect_compress_error(txt, tmp_path, tiny_bundle, InputRasterError, "not a readable raster")
    _expect_compress_error(tmp_path / "missing.tif", tmp_path, tiny_bundle, InputRasterError, "does not exist")


def test_all_nodata_raster(tmp_path, tiny_bundle):
    src = write_geotiff(tmp_path / "nan.tif", np.full((1, 32, 32), np.nan, np.float32))
    _expect_compress_error(src, tmp_path, tiny_bundle, InputRasterError, "no valid pixels")
    src0 = write_geotiff(tmp_path / "zero.tif", np.zeros((1, 32, 32), np.uint16), nodata=0)
    _expect_compress_error(src0, tmp_path, tiny_bundle, InputRasterError, "no valid pixels")


def test_zero_sized_raster(tmp_path, tiny_bundle):
    vrt = tmp_path / "empty.vrt"
    vrt.write_text('<VRTDataset rasterXSize="0" rasterYSize="0"><VRTRasterBand dataType="Float32" band="1"/>'
                   "</VRTDataset>")
    _expect_compress_error(vrt, tmp_path, tiny_bundle, InputRasterError, "dimensions")
    from osgeo import gdal

    from sar_compress_plugin.core import raster_io

    mem = gdal.GetDriverByName("MEM").Create("", 10, 10, 0)  # GDAL opens no file like this; check the guard
    with pytest.raises(InputRasterError, match="empty"):
        raster_io._info_from_dataset(mem, "mem.tif")


def test_unwritable_output(small, tmp_path, tiny_bundle):
    src, sarc = small
    # Tests run as root, which ignores chmod: use a missing folder and /proc (refuses new files even for root).
    for out in (tmp_path / "no" / "such" / "dir" / "x.sarc", Path("/proc/sar_compress_test.sarc")):
        with pytest.raises(OutputPathError):
            compress(src, out, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))
        assert cli.compress_main([str(src), str(out), "--model", str(tiny_bundle), "-q"]) == 2
        with pytest.raises(OutputPathError):
            reconstruct(sarc, out.with_suffix(".tif"), model_dirs=[tiny_bundle], device="cpu")
    if os.geteuid() != 0:  # pragma: no cover - only meaningful for non-root runs
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        with pytest.raises(OutputPathError):
            compress(src, ro / "x.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))


def test_output_equal_to_input(small, tmp_path, tiny_bundle):
    src, sarc = small
    copy = tmp_path / "c.tif"
    shutil.copy(src, copy)
    data = copy.read_bytes()
    with pytest.raises(OutputPathError, match="same file"):
        compress(copy, copy, CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16))
    assert copy.read_bytes() == data
    scopy = tmp_path / "c.sarc"
    shutil.copy(sarc, scopy)
    with pytest.raises(OutputPathError, match="same file"):
        reconstruct(scopy, scopy, model_dirs=[tiny_bundle], device="cpu")
    assert cli.compress_main([str(copy), str(tmp_path / "." / "c.tif"), "--model", str(tiny_bundle), "-q"]) == 2
    assert copy.read_bytes() == data


def test_cancellation_leaves_no_file(small, tmp_path, tiny_bundle):
    src, sarc = small
    out_dir = tmp_path / "cancel"
    out_dir.mkdir()
    calls = []

    def cancel_after_two():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        compress(src, out_dir / "x.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16),
                 is_cancelled=cancel_after_two)
    calls.clear()
    with pytest.raises(CancelledError):
        reconstruct(sarc, out_dir / "x.tif", model_dirs=[tiny_bundle], device="cpu", is_cancelled=cancel_after_two)
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("target", [{"target_db_rmse": 0.5}, {"target_bpp": 1.0}])
def test_a_cancel_during_a_quality_search_is_heard_at_its_next_step(small, tmp_path, tiny_bundle, monkeypatch,
                                                                      target):
    """The search for a --bpp or --target-db-rmse codes (and decodes) every sample tile at each of its ten steps,
    seconds each with large tiles; a cancel was only heard once the file was being written."""
    from sar_compress_plugin.core import rate_control

    src, _ = small
    steps, cancelled = [], []
    for name in ("bpp", "db_rmse"):
        measure = getattr(rate_control._Probe, name)
        monkeypatch.setattr(rate_control._Probe, name,
                            lambda self, q, measure=measure: (steps.append(q), cancelled.append(True),
                                                              measure(self, q))[-1])
    with pytest.raises(CancelledError, match="cancelled; no output was written"):
        compress(src, tmp_path / "x.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16,
                                                           **target), is_cancelled=lambda: bool(cancelled))
    assert len(steps) == 1 and os.listdir(tmp_path) == []


def test_a_cancel_while_the_search_looks_for_tiles_with_data_is_heard_at_the_next_tile(tmp_path, tiny_bundle,
                                                                                         monkeypatch):
    """A scene that is mostly no-data, its data in one corner tile: none of the search's spread sample tiles
    has a valid pixel, so it reads every tile of the raster to find those that do (minutes on a large scene),
    and a cancel was only heard at the search's first step, after all of them."""
    from sar_compress_plugin.core.raster_io import RasterReader

    rng = np.random.default_rng(0)
    arr = np.full((256, 256), np.nan, np.float32)
    arr[:16, 240:] = rng.gamma(4.0, 0.25, (16, 16)).astype(np.float32)  # tile 15; 0, 85, 170, 255 are sampled
    src = write_geotiff(tmp_path / "corner.tif", arr, nodata=float("nan"))
    reads = []
    read = RasterReader.read

    def counting(self, band, c, r, w, h):
        reads.append((c, r))
        return read(self, band, c, r, w, h)

    out = tmp_path / "out"
    out.mkdir()
    opts = CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=16, target_bpp=1.0,
                           domain="intensity")
    compress(src, out / "a.sarc", opts)  # it compresses: the scan finds the corner tile
    import sar_compress_plugin.core.rate_control as rate_control

    sample = rate_control._sample

    def cancel_once_the_scan_starts(*args, **kw):
        monkeypatch.setattr(RasterReader, "read", counting)
        return sample(*args, **kw)

    monkeypatch.setattr(rate_control, "_sample", cancel_once_the_scan_starts)
    with pytest.raises(CancelledError):
        compress(src, out / "b.sarc", opts, is_cancelled=lambda: len(reads) > 4)  # the 4 spread tiles read
    assert len(reads) == 5 and not (out / "b.sarc").exists()  # not the 256 tiles


def test_keyboard_interrupt_exit_130(small, tmp_path, tiny_bundle, monkeypatch):
    src, _ = small
    import sar_compress_plugin.core.codec as codec_mod

    def boom():
        raise KeyboardInterrupt

    monkeypatch.setattr(codec_mod, "_check_cancel", lambda *_: boom())
    out_dir = tmp_path / "kbd"
    out_dir.mkdir()
    rc = cli.compress_main([str(src), str(out_dir / "x.sarc"), "--model", str(tiny_bundle), "--device", "cpu",
                            "--tile", "16", "-q"])
    assert rc == 130 and os.listdir(out_dir) == []


def test_cli_happy_path_prints_measured_figures(small, tmp_path, tiny_bundle, capsys):
    src, _ = small
    out = tmp_path / "cli.sarc"
    assert cli.compress_main([str(src), str(out), "--model", str(tiny_bundle), "--device", "cpu", "--tile", "16",
                              "-q"]) == 0
    text = capsys.readouterr().out
    size = out.stat().st_size
    assert f"{8 * size / (40 * 48):.4f} bpp" in text and f"ratio {40 * 48 * 2 * 4 / size:.1f}:1" in text
    assert "CPUExecutionProvider" in text
    assert cli.info_main([str(out), "--verify"]) == 0
    assert "verify: OK" in capsys.readouterr().out
    assert cli.info_main([str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format_version"] == container.version_for(physical_bands=False)
    rec = tmp_path / "cli.tif"
    assert cli.reconstruct_main([str(out), str(rec), "--model-dir", str(tiny_bundle), "--device", "cpu",
                                 "--window", "8", "8", "20", "16", "-q"]) == 0
    h = read_header(out)
    g = h["raster"]["geotransform"]
    bbox = [g[0] + 10 * g[1], g[3] + 30 * g[5], g[0] + 30 * g[1], g[3] + 10 * g[5]]
    rec2 = tmp_path / "bbox.tif"
    assert cli.reconstruct_main([str(out), str(rec2), "--model-dir", str(tiny_bundle), "--device", "cpu",
                                 "--bbox", *map(str, bbox), "-q"]) == 0
    from sar_compress_plugin.core.raster_io import read_raster_info
    assert (read_raster_info(rec2).width, read_raster_info(rec2).height) == (20, 20)
    assert cli.compress_main([str(src), str(out), "--tile", "24", "--model", str(tiny_bundle), "-q"]) == 2
    assert "error: " in capsys.readouterr().err


def test_cli_outlier_margin_is_recorded_and_a_bad_one_is_one_error_line(small, tmp_path, tiny_bundle, capsys):
    src, _ = small
    out = tmp_path / "m.sarc"
    args = [str(src), str(out), "--model", str(tiny_bundle), "--device", "cpu", "--tile", "16", "-q"]
    assert cli.compress_main(args + ["--outlier-margin", "2.5"]) == 0
    assert read_header(out)["outliers"]["margin_db"] == 2.5
    out.unlink()
    for bad in ("-1", "nan", "inf"):
        assert cli.compress_main(args + ["--outlier-margin", bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "outlier margin" in err[0] and "Traceback" not in err[0]
        assert not out.exists()


def _forge_retired(src: Path, dst: Path, coder: str) -> Path:
    """A file as the retired fixed-bottleneck model wrote it (its coder, "quantization" instead of "rate"),
    forged from a new file: same chunks, valid CRC and SHA-256 (the writer itself refuses to write one)."""
    def mutate(header):
        header["coders"]["latent"] = coder
        header["format_version"] = 2
        header["software"] = "sar-compress 0.0.9"
        del header["rate"], header["hyperprior"]
        header["quantization"] = {"step": [0.1] * 4, "offset": [0.0] * 4, "quality": 1.0}

    return rewrite_header(src, dst, mutate)


@pytest.mark.parametrize("coder", container.RETIRED_LATENT_CODERS)
def test_file_of_a_retired_coder_is_one_clear_error(small, tmp_path, tiny_bundle, capsys, coder):
    _, sarc = small
    bad = _forge_retired(sarc, tmp_path / "old.sarc", coder)
    raw = bad.read_bytes()  # the forged file is sound apart from what it names: its footer's SHA-256 holds
    assert container.FOOTER.unpack(raw[-container.FOOTER.size:])[3] == hashlib.sha256(
        raw[:-container.FOOTER.size]).digest()
    with pytest.raises(ContainerFormatError, match=f"retired fixed-bottleneck model \\(latent coder {coder}\\)"):
        read_header(bad)
    _expect_reconstruct_error(bad, tmp_path, tiny_bundle, ContainerFormatError, coder)
    capsys.readouterr()
    for run in (lambda: cli.reconstruct_main([str(bad), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                              "-q"]),
                lambda: cli.info_main([str(bad)]), lambda: cli.info_main([str(bad), "--verify"])):
        rc = run()
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("error: ") and coder in lines[0] and container.LATENT_CODER in lines[0]
        assert "sar-compress 0.0.9" in lines[0]  # names what wrote it, so the user knows which release to use
    assert not (tmp_path / "r.tif").exists()


def test_bundle_of_the_retired_model_is_refused(tmp_path, tiny_bundle, small, capsys):
    old = tmp_path / "v1"
    shutil.copytree(tiny_bundle, old)
    m = json.loads((old / "manifest.json").read_text())
    m["version"] = 1
    m["quantization"] = {"step": [0.1] * 4, "offset": [0.0] * 4}
    del m["rate"]
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelBundleError, match="retired fixed-bottleneck model \\(version 1\\).*version 2 bundle"):
        OnnxCodecModel(old, device="cpu")
    src, _ = small
    capsys.readouterr()
    assert cli.compress_main([str(src), str(tmp_path / "x.sarc"), "--model", str(old), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "version 1" in err and "Traceback" not in err
    assert not (tmp_path / "x.sarc").exists()
    m["version"] = 3
    (old / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelBundleError, match="version 3 is not supported"):
        OnnxCodecModel(old, device="cpu")
