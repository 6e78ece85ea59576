"""Issue #18: no success on a broken output, no traceback on a hostile header, no orphans, metadata kept."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from sar_compress_plugin import cli
from sar_compress_plugin.core import container
from sar_compress_plugin.core.codec import (CompressedRaster, CompressOptions, compress,
                                            read_header, reconstruct)
from sar_compress_plugin.core.errors import (ContainerFormatError, InputRasterError, OutputPathError,
                                             SarCompressError)
from sar_compress_plugin.core.preprocessing import explain_domain, tagged_domain
from sar_compress_plugin.core.raster_io import RECONSTRUCTION_TAG

from codec_fixtures import compressed_scene, write_geotiff

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scene(tmp_path_factory, tiny_bundle):
    """A 128 x 128 two-band linear raster and its .sarc (tiles of 64)."""
    return compressed_scene(tmp_path_factory.mktemp("hard"), tiny_bundle, 128, 128, seed=1)


def _opts(bundle, **kw):
    return CompressOptions(model_dir=bundle, device="cpu", tile_size=kw.pop("tile_size", 64), **kw)


def forge(src: Path, dst: Path, mutate=None, header_bytes: bytes | None = None) -> Path:
    """Copy of a .sarc with its header changed and CRC + SHA-256 re-forged (a hostile but 'valid' file)."""
    raw = src.read_bytes()
    off, length, *_ = container.FOOTER.unpack(raw[-container.FOOTER.size:])
    if header_bytes is None:
        header = json.loads(container.decode_header(raw[off:off + length], container.FORMAT_VERSION, 1 << 24,
                                                    "h"))
        mutate(header)
        header_bytes = json.dumps(header).encode()
    body = raw[:off] + container.encode_header(header_bytes)
    footer = container.FOOTER.pack(off, len(body) - off, zlib.crc32(body[off:]), hashlib.sha256(body).digest(),
                                   container.FOOTER_MAGIC)
    dst.write_bytes(body + footer)
    return dst


def _run_cli(args: list[str], fsize: int | None = None, timeout: float = 120, code: str | None = None):
    """A CLI in a fresh process; `fsize` caps file sizes (RLIMIT_FSIZE, SIGXFSZ ignored) to simulate a full disk
    where a tmpfs cannot be mounted: writes past the cap fail with EFBIG like ENOSPC, through the same paths."""
    import resource  # noqa: PLC0415

    def limit():
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    script = code or "import sys; from sar_compress_plugin import cli; sys.exit(cli.{}(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script.format(args[0]), *args[1:]], cwd=REPO, env=env,
                          preexec_fn=limit, capture_output=True, text=True, timeout=timeout)


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def full_dir(tmp_path):
    """(folder, fsize): an 8 KiB tmpfs when root may mount one, else a plain folder and an 8 KiB RLIMIT_FSIZE."""
    d = tmp_path / "full"
    d.mkdir()
    try:
        mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(d)],
                                                        capture_output=True).returncode == 0
    except OSError:  # no mount binary
        mounted = False
    yield d, (None if mounted else 8 << 10)
    if mounted:
        subprocess.run(["umount", str(d)], check=False)


# --- 1, 3: full disk -----------------------------------------------------------------------------------------

def test_reconstruct_onto_full_disk_fails_and_leaves_nothing(scene, tiny_bundle, full_dir, tmp_path):
    _, sarc = scene
    big = tmp_path / "big.sarc"  # a raster whose GeoTIFF cannot fit: 512 x 512 x 2 float noise
    x = np.random.default_rng(2).gamma(1.0, 0.05, (2, 512, 512)).astype(np.float32)
    compress(write_geotiff(tmp_path / "big.tif", x), big, _opts(tiny_bundle, tile_size=256))
    d, fsize = full_dir
    r = _run_cli(["reconstruct_main", str(big), str(d / "rec.tif"), "--model-dir", str(tiny_bundle),
                  "--device", "cpu", "-q"], fsize=fsize)
    assert r.returncode == 2
    assert "rec.tif" in _one_error_line(r.stderr)
    assert os.listdir(d) == []


def test_compress_onto_full_disk_is_one_error_line(tiny_bundle, full_dir, tmp_path):
    x = np.random.default_rng(3).gamma(1.0, 0.05, (1, 512, 512)).astype(np.float32)
    src = write_geotiff(tmp_path / "big.tif", x)
    d, fsize = full_dir
    r = _run_cli(["compress_main", str(src), str(d / "o.sarc"), "--model", str(tiny_bundle), "--device", "cpu",
                  "--tile", "16", "-q"], fsize=fsize)
    assert r.returncode == 2
    assert "o.sarc" in _one_error_line(r.stderr)
    assert os.listdir(d) == []


# --- 2: the writer refuses what its reader would refuse ------------------------------------------------------

def test_writer_refuses_unreadable_files_up_front(tmp_path, tiny_bundle, scene):
    src, _ = scene
    with pytest.raises(SarCompressError, match="tile size 65552"):
        compress(src, tmp_path / "a.sarc", _opts(tiny_bundle, tile_size=65552))
    many = write_geotiff(tmp_path / "many.tif", np.ones((4097, 16, 16), np.uint8))
    with pytest.raises(InputRasterError, match="4097 bands"):
        compress(many, tmp_path / "b.sarc", _opts(tiny_bundle))
    const = write_geotiff(tmp_path / "c.tif", np.full((1, 32, 32), 1e20, np.float32))
    with pytest.raises(InputRasterError, match="wrong --domain"):
        compress(const, tmp_path / "c.sarc", _opts(tiny_bundle, domain="db"))
    assert sorted(os.listdir(tmp_path)) == ["c.tif", "many.tif"]


def test_writer_checks_its_header_with_the_readers_schema():
    import io  # noqa: PLC0415

    w = container.ContainerWriter(io.BytesIO(), container.version_for(False))
    with pytest.raises(ContainerFormatError, match="refusing to write"):
        w.finish({"coders": {}}, "x.sarc")


# --- 4, 5: no orphans ---------------------------------------------------------------------------------------

_PAUSE = ("import sys, time; from sar_compress_plugin import cli; import sar_compress_plugin.core.codec as c\n"
          "orig = c._tick\n"
          "def tick(p, v):\n"
          "    orig(p, v)\n"
          "    if v > 0:\n"
          "        print('READY', flush=True); time.sleep(60)\n"
          "c._tick = tick\n"
          "sys.exit(cli.{}(sys.argv[1:]))")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("which", ["compress_main", "reconstruct_main"])
def test_killed_runs_leave_no_partial(scene, tiny_bundle, tmp_path, sig, which, caplog):
    src, sarc = scene
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    if which == "compress_main":
        args = [which, str(src), str(out_dir / "o.sarc"), "--model", str(tiny_bundle), "--device", "cpu",
                "--tile", "64", "-q"]
    else:
        args = [which, str(sarc), str(out_dir / "o.tif"), "--model-dir", str(tiny_bundle), "--device", "cpu", "-q"]
    script = _PAUSE.format(which)
    p = subprocess.Popen([sys.executable, "-c", script, *args[1:]], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.stdout.readline().strip() == "READY"
    assert any(".partial-" in n for n in os.listdir(out_dir))
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert p.returncode == 143 and "terminated: no output written" in err and "Traceback" not in err
        assert os.listdir(out_dir) == []
        return
    left = os.listdir(out_dir)
    assert len(left) == 1 and ".partial-" in left[0]  # SIGKILL cannot be caught: the next run cleans up
    time.sleep(0.05)
    with caplog.at_level(logging.WARNING):
        if which == "compress_main":
            compress(src, out_dir / "o.sarc", _opts(tiny_bundle))
        else:
            reconstruct(sarc, out_dir / "o.tif", model_dirs=[tiny_bundle], device="cpu")
    assert os.listdir(out_dir) == [Path(args[2]).name]
    assert "removed stale partial file" in caplog.text and left[0] in caplog.text


def test_sar_info_removes_stale_partials_but_not_live_ones(scene, tmp_path, caplog):
    _, sarc = scene
    f = tmp_path / "x.sarc"
    f.write_bytes(sarc.read_bytes())
    stale = tmp_path / ".x.sarc.partial-999999999-0123abcd"  # a PID that cannot exist
    live = tmp_path / f".x.sarc.partial-{os.getpid()}-0123abcd"
    other = tmp_path / ".y.sarc.partial-999999999-0123abcd"
    for p in (stale, live, other):
        p.write_bytes(b"x")
        os.utime(p, (time.time() - 60, time.time() - 60))
    with caplog.at_level(logging.WARNING):
        assert cli.info_main([str(f)]) == 0
    assert not stale.exists() and live.exists() and other.exists()
    assert "removed stale partial file" in caplog.text


@pytest.mark.parametrize("which", ["compress", "reconstruct"])
def test_output_folder_renamed_mid_run(scene, tiny_bundle, tmp_path, which):
    src, sarc = scene
    out_dir, moved = tmp_path / "o", tmp_path / "moved"
    out_dir.mkdir()

    def rename_once(v):
        if v > 0 and out_dir.exists():
            out_dir.rename(moved)

    with pytest.raises(OutputPathError, match="moved or removed"):
        if which == "compress":
            compress(src, out_dir / "o.sarc", _opts(tiny_bundle), progress=rename_once)
        else:
            reconstruct(sarc, out_dir / "o.tif", model_dirs=[tiny_bundle], device="cpu", progress=rename_once)
    assert os.listdir(moved) == []


def test_unexpected_exception_in_reconstruction_cleans_up(scene, tiny_bundle, tmp_path, monkeypatch, capsys):
    _, sarc = scene

    def broken(*_a, **_k):
        raise IndexError("forged")

    monkeypatch.setattr(CompressedRaster, "decode_tile", broken)
    with pytest.raises(IndexError):
        reconstruct(sarc, tmp_path / "r.tif", model_dirs=[tiny_bundle], device="cpu")
    assert cli.reconstruct_main([str(sarc), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                 "--device", "cpu", "-q"]) == 3
    assert "unexpected IndexError" in capsys.readouterr().err
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_existing_output_replaced_with_a_log_or_kept_with_no_clobber(scene, tiny_bundle, tmp_path, caplog):
    src, sarc = scene
    out = tmp_path / "o.sarc"
    out.write_bytes(b"old")
    with pytest.raises(OutputPathError, match="no-clobber"):
        compress(src, out, _opts(tiny_bundle, no_clobber=True))
    assert cli.reconstruct_main([str(sarc), str(out.with_suffix(".tif")), "--no-clobber", "--model-dir",
                                 str(tiny_bundle), "--device", "cpu", "-q"]) == 0
    assert cli.reconstruct_main([str(sarc), str(out.with_suffix(".tif")), "--no-clobber", "--model-dir",
                                 str(tiny_bundle), "--device", "cpu", "-q"]) == 2
    assert out.read_bytes() == b"old"
    with caplog.at_level(logging.WARNING):
        compress(src, out, _opts(tiny_bundle))
    assert f"replaced existing {out}" in caplog.text and out.read_bytes()[:4] == b"SARC"


# --- hostile headers ----------------------------------------------------------------------------------------

def _set(path, value):
    def mutate(h):
        node = h
        for k in path[:-1]:
            node = node[k]
        if value is _DEL:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return mutate


_DEL = object()


def _many_bands(h):
    """band_count 4096 with every index entry pointing at the one real chunk (the >300 s case)."""
    r = h["raster"]
    r["band_count"] = 4096
    for k in ("band_names", "nodata"):
        r[k] = (r[k] * 4096)[:4096]
    r.pop("bands", None)
    h["clip_db"] = (h["clip_db"] * 4096)[:4096]
    n = 4 * 4096
    for kind in ("latent", "mask", "outlier"):
        h["chunks"][kind] = [h["chunks"]["latent"][0] if kind == "latent" else None] * n


def _huge_index(h):
    """A 13 M-entry index that zstd squeezes into a few KB."""
    h["raster"]["width"] = h["raster"]["height"] = 57_600
    h["tiling"]["tile_size"] = 16
    h["tiling"]["cols"] = h["tiling"]["rows"] = 3600
    h["chunks"] = {k: [None] * 12_960_000 for k in ("latent", "mask", "outlier")}


HOSTILE = {
    "geotransform strings": _set(("raster", "geotransform"), ["a"] * 6),
    "geotransform nulls": _set(("raster", "geotransform"), [None] * 6),
    "integer band names": _set(("raster", "band_names"), [1, 2]),
    "integer crs_wkt": _set(("raster", "crs_wkt"), 4326),
    "no domain": _set(("domain",), _DEL),
    "no model name": _set(("model", "name"), _DEL),
    "no outliers": _set(("outliers",), _DEL),
    "outliers not an object": _set(("outliers",), [1]),
    "width 1e9": _set(("raster", "width"), 10**9),
    "width 1e11": _set(("raster", "width"), 10**11),
    "one 65536-px tile": lambda h: (_set(("raster", "width"), 65536)(h), _set(("raster", "height"), 65536)(h),
                                    _set(("tiling", "tile_size"), 65536)(h)),
    "band_count 4096, forged index": _many_bands,
    "13 M-entry index": _huge_index,
    "overlapping chunks": lambda h: h["chunks"]["latent"].__setitem__(1, h["chunks"]["latent"][0]),
    "boolean width": _set(("raster", "width"), True),
    "clip lo == hi": _set(("clip_db",), [[1.0, 1.0], [1.0, 2.0]]),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_header_is_one_error_line_fast(scene, tmp_path, tiny_bundle, name, capsys):
    _, sarc = scene
    bad = forge(sarc, tmp_path / "bad.sarc", HOSTILE[name])
    t0 = time.perf_counter()
    with pytest.raises(ContainerFormatError):
        read_header(bad)
    assert cli.info_main([str(bad)]) == 2
    assert time.perf_counter() - t0 < 5
    _one_error_line(capsys.readouterr().err)
    assert cli.reconstruct_main([str(bad), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle), "-q",
                                 "--device", "cpu"]) == 2
    assert os.listdir(tmp_path) == ["bad.sarc"]


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": 1e400}', b"[" * 100000])
def test_non_strict_json_is_refused(scene, tmp_path, text):
    with pytest.raises(ContainerFormatError, match="not valid JSON"):
        read_header(forge(scene[1], tmp_path / "j.sarc", header_bytes=text))


def test_files_in_the_previous_layout_still_read(scene):
    """No field added by this change is required: a header without metadata/bands still validates."""
    h = read_header(scene[1])
    h["raster"].pop("metadata")
    h["raster"].pop("bands")
    container.validate_header(h, 1 << 40, "old")


# --- inputs -------------------------------------------------------------------------------------------------

def test_domain_inference_is_robust_and_explained(tmp_path, tiny_bundle, capsys):
    lin = np.random.default_rng(0).gamma(1.0, 0.05, 10_000).astype(np.float32)
    lin[5] = -0.01
    assert explain_domain("float32", lin)[0] == "intensity"
    db = 10 * np.log10(np.random.default_rng(0).gamma(1.0, 0.05, 10_000))
    d, why = explain_domain("float32", db)
    assert d == "db" and "negative" in why and "percentile" in why
    assert tagged_domain({"VALUE_DOMAIN": "sigma0_db"}) == ("db", "VALUE_DOMAIN tag 'sigma0_db'")
    src = write_geotiff(tmp_path / "l.tif", lin.reshape(1, 100, 100))
    assert cli.compress_main([str(src), str(tmp_path / "l.sarc"), "--model", str(tiny_bundle), "--device", "cpu",
                              "--tile", "64", "-q"]) == 0
    assert "domain intensity (float data with 0.0% negative" in capsys.readouterr().out


def test_all_negative_integers_suggest_domain_db(tmp_path, tiny_bundle):
    src = write_geotiff(tmp_path / "n.tif", np.full((1, 32, 32), -12, np.int16))
    with pytest.raises(InputRasterError, match="--domain db"):
        compress(src, tmp_path / "n.sarc", _opts(tiny_bundle))


@pytest.mark.parametrize("bbox", [["nan"] * 4, ["0", "0", "inf", "inf"], ["-inf", "0", "1", "1"]])
def test_non_finite_bbox_is_an_error(scene, tiny_bundle, tmp_path, bbox, capsys):
    assert cli.reconstruct_main([str(scene[1]), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                 "--device", "cpu", "-q", "--bbox", *bbox]) == 2
    _one_error_line(capsys.readouterr().err)


def test_negative_bbox_numbers_parse(scene, tiny_bundle, tmp_path):
    assert cli.reconstruct_main([str(scene[1]), str(tmp_path / "r.tif"), "--model-dir", str(tiny_bundle),
                                 "--device", "cpu", "-q", "--bbox", "-1e308", "-1e308", "1e308", "1e308"]) == 0


def test_infinite_window_is_an_error(scene, tiny_bundle):
    with CompressedRaster(scene[1], model_dirs=[tiny_bundle], device="cpu") as cr:
        with pytest.raises(InputRasterError, match="four integers"):
            cr.read((0, 0, float("inf"), 5))


def test_fifo_input_is_refused(tmp_path, tiny_bundle):
    fifo = tmp_path / "in.tif"
    os.mkfifo(fifo)
    with pytest.raises(InputRasterError, match="not a regular file"):
        compress(fifo, tmp_path / "o.sarc", _opts(tiny_bundle))


def test_an_output_that_is_not_a_regular_file_is_refused_and_kept(scene, tiny_bundle, tmp_path, capsys):
    """Run as root, the final rename would replace a FIFO (or /dev/null) with a plain file."""
    src, sarc = scene
    fifo = tmp_path / "o.sarc"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="not a regular file"):
        compress(src, fifo, _opts(tiny_bundle))
    assert cli.reconstruct_main([str(sarc), str(fifo), "--model-dir", str(tiny_bundle), "--device", "cpu",
                                 "-q"]) == 2
    _one_error_line(capsys.readouterr().err)
    assert fifo.is_fifo()


@pytest.mark.parametrize("main", ["info_main", "reconstruct_main"])
def test_a_fifo_given_as_the_compressed_file_is_refused_not_waited_on(tmp_path, main):
    fifo = tmp_path / "in.sarc"
    os.mkfifo(fifo)
    args = [main, str(fifo)] + ([str(tmp_path / "r.tif"), "-q"] if main == "reconstruct_main" else [])
    r = _run_cli(args, timeout=60)
    assert r.returncode == 2
    assert "not a regular file" in _one_error_line(r.stderr)


def test_a_damaged_chunk_names_the_file_once(scene, tiny_bundle, tmp_path):
    src, sarc = scene
    bad = tmp_path / "bad.sarc"
    raw = bytearray(sarc.read_bytes())
    off = read_header(sarc)["chunks"]["latent"][0][0]
    raw[off + 1] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with CompressedRaster(bad, model_dirs=[tiny_bundle], device="cpu") as cr:  # a window read: no full SHA check
        with pytest.raises(ContainerFormatError, match="checksum mismatch") as err:
            cr.read((0, 0, 8, 8))
    assert str(err.value).count(str(bad)) == 1, err.value


@pytest.mark.parametrize("name", ["r.png", "r.sarc", "r.jp2"])
def test_a_reconstruction_named_for_another_format_is_refused(scene, tiny_bundle, tmp_path, name, capsys):
    assert cli.reconstruct_main([str(scene[1]), str(tmp_path / name), "--model-dir", str(tiny_bundle),
                                 "--device", "cpu", "-q"]) == 2
    assert "GeoTIFF" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / name).exists()


def test_nodata_does_not_decide_the_domain(tmp_path, tiny_bundle):
    lin = np.random.default_rng(2).gamma(1.0, 0.05, (1, 64, 64)).astype(np.float32)
    lin[:, :32] = -9999.0
    src = write_geotiff(tmp_path / "nd.tif", lin, nodata=-9999.0)
    res = compress(src, tmp_path / "nd.sarc", _opts(tiny_bundle))
    assert read_header(tmp_path / "nd.sarc")["domain"] == "intensity", res


def test_db_far_below_the_noise_floor_is_an_error_not_a_flat_band(tmp_path, tiny_bundle):
    """The noise floor clamps dB at -100; a band of -1e7 "dB" (a negated intensity) must not pass as -100."""
    neg = -np.random.default_rng(3).gamma(1.0, 1e6, (1, 64, 64)).astype(np.float32) - 300
    src = write_geotiff(tmp_path / "neg.tif", neg)
    with pytest.raises(InputRasterError, match="wrong --domain"):
        compress(src, tmp_path / "neg.sarc", _opts(tiny_bundle, domain="db"))
    assert not (tmp_path / "neg.sarc").exists()


def test_cuda_asked_for_where_it_cannot_run_is_one_line(scene, tiny_bundle, tmp_path):
    """onnxruntime prints coloured C++ errors per session when its CUDA libraries are missing; the user gets
    the codec's one line instead."""
    import onnxruntime as ort  # noqa: PLC0415

    from sar_compress_plugin.core import runtime  # noqa: PLC0415

    if runtime._nvidia_driver_present() and "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine may run CUDA sessions: nothing to refuse")
    r = _run_cli(["compress_main", str(scene[0]), str(tmp_path / "c.sarc"), "--model", str(tiny_bundle),
                  "--device", "cuda", "-q"])
    assert r.returncode == 2
    assert "cuda" in _one_error_line(r.stderr).lower()
    assert not (tmp_path / "c.sarc").exists()


# --- 6: metadata --------------------------------------------------------------------------------------------

def test_metadata_survives_the_round_trip(tmp_path, tiny_bundle):
    from osgeo import gdal  # noqa: PLC0415

    db = (10 * np.log10(np.random.default_rng(5).gamma(1.0, 0.05, (2, 64, 64)))).astype(np.float32)
    src = write_geotiff(tmp_path / "m.tif", db, names=["VV", "VH"])
    ds = gdal.Open(str(src), gdal.GA_Update)
    ds.SetMetadata({"product": "S1A_GRD", "sensor": "C-SAR", "VALUE_DOMAIN": "sigma0_db"})
    b = ds.GetRasterBand(2)
    b.SetMetadata({"POLARISATION": "VH"})
    b.SetScale(0.5)
    b.SetOffset(-3.0)
    # one a GeoTIFF can store on band 2; not Alpha: an alpha band is a mask, not data (test_codec_gdal_masks.py)
    b.SetColorInterpretation(gdal.GCI_GreenBand)
    ds = b = None
    compress(src, tmp_path / "m.sarc", _opts(tiny_bundle))
    reconstruct(tmp_path / "m.sarc", tmp_path / "r.tif", model_dirs=[tiny_bundle], device="cpu")
    out = gdal.Open(str(tmp_path / "r.tif"))
    md = out.GetMetadata()
    assert md["product"] == "S1A_GRD" and md["sensor"] == "C-SAR" and md["VALUE_DOMAIN"] == "sigma0_db"
    assert md[RECONSTRUCTION_TAG] == "m.sarc" and RECONSTRUCTION_TAG not in gdal.Open(str(src)).GetMetadata()
    b = out.GetRasterBand(2)
    assert b.GetDescription() == "VH" and b.GetMetadata()["POLARISATION"] == "VH"
    assert (b.GetScale(), b.GetOffset()) == (0.5, -3.0) and b.GetColorInterpretation() == gdal.GCI_GreenBand
    out = b = None
    r = compress(tmp_path / "r.tif", tmp_path / "again.sarc", _opts(tiny_bundle))  # no --domain needed
    assert r.domain == "db"
