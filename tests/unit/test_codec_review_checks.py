"""One source per check: the stored range kept positive under any finite scaling, the compress option checks
that `check_compress_options` (manifest only) and a compression (a loaded model) both make, the tile-size rule,
and the writer's format version given by its caller."""

from __future__ import annotations

import io
import json
import logging
import shutil

import numpy as np
import pytest
from osgeo import gdal

from sar_compress_plugin.core import codec, container
from sar_compress_plugin.core.codec import CompressOptions, check_compress_options, compress
from sar_compress_plugin.core.errors import ModelBundleError, SarCompressError
from sar_compress_plugin.core.hyperprior import check_quality
from sar_compress_plugin.core.runtime import OnnxCodecModel, check_manifest_can_encode, load_manifest
from sar_compress_plugin.core.tiling import tile_size_error

from codec_fixtures import write_geotiff

INT32 = (-2 ** 31, 2 ** 31 - 1)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("scaling", [(1e-300, -1e10), (-1e-300, -1e10)])
def test_a_scaling_whose_edge_overflows_is_answered_at_once(scaling):
    """-offset / scale beyond float64 (both finite and non-zero, so a header may hold them): every physical value
    is negative, and the range was walked one stored value at a time, 2^32 of them for an int32 band."""
    assert codec._positive_stored_range(*INT32, scaling) == INT32


@pytest.mark.parametrize("lo, hi, scaling, kept", [
    (*INT32, (1e-300, 1e10), INT32),  # every value positive through the offset
    (*INT32, (-1e-300, 1e10), INT32),
    (0, 65535, None, (1, 65535)),
    (0, 65535, (1.0, -100.0), (101, 65535)),
    (-32768, 32767, (-0.5, 10.0), (-32768, 19)),
    (0, 255, (1.0, 10.0), (0, 255)),
    (0, 255, (0.1, -0.3), (3, 255)),  # the edge 2.9999999999999996 rounded: 3 * 0.1 - 0.3 > 0 in float64
    (*INT32, (1e-3, -1e6), (10 ** 9 + 1, INT32[1])),
    (*INT32, (-1e-3, -1e6), (INT32[0], -10 ** 9 - 1)),
    (0, 255, (1.0, -1000.0), (0, 255)),  # none positive: left as it was
])
def test_the_positive_stored_range_of_sane_scalings_is_unchanged(lo, hi, scaling, kept):
    assert codec._positive_stored_range(lo, hi, scaling) == kept


def _decode_only_copy(tiny_bundle, tmp_path, name="retired"):
    d = tmp_path / "retired"
    shutil.copytree(tiny_bundle, d)
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["decode_only"] = True
    if name is None:
        manifest.pop("name", None)
    else:
        manifest["name"] = name
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


@pytest.mark.parametrize("name", ["retired", None])
def test_a_decode_only_model_is_refused_alike_from_its_manifest_and_once_loaded(tiny_bundle, tmp_path, name):
    """The batch checks the manifest before its cluster starts, a compression the loaded model: one message,
    naming the folder for a manifest without a name (the manifest check said "model None")."""
    d = _decode_only_copy(tiny_bundle, tmp_path, name)
    with pytest.raises(ModelBundleError) as from_manifest:
        check_compress_options(CompressOptions(model_dir=d))
    with pytest.raises(ModelBundleError) as loaded:
        OnnxCodecModel(d, device="cpu").check_can_encode()
    assert str(from_manifest.value) == str(loaded.value) == (
        f"{d}: model {name or 'retired'} is kept only to decode the files it wrote; compress with the default "
        "model")
    with pytest.raises(ModelBundleError, match="kept only to decode"):
        check_manifest_can_encode(load_manifest(d, verify=False), d)


def test_a_quality_above_the_model_is_refused_alike_from_its_manifest_and_by_its_coder(tiny_bundle):
    levels = OnnxCodecModel(tiny_bundle, device="cpu").hyperprior.levels
    with pytest.raises(SarCompressError) as from_manifest:
        check_compress_options(CompressOptions(model_dir=tiny_bundle, quality=levels + 1.0))
    with pytest.raises(SarCompressError) as from_coder:
        OnnxCodecModel(tiny_bundle, device="cpu").hyperprior.check_quality(levels + 1.0)
    assert str(from_manifest.value) == str(from_coder.value) == (
        f"quality {levels + 1.0} must be between 0 and {levels - 1} for this model")
    assert check_quality(0.5, levels) == 0.5


def test_a_missing_default_model_is_refused_alike_by_the_check_and_the_compression(tiny_bundle, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr(codec, "default_model_dir", lambda: tmp_path / "absent")
    src = write_geotiff(tmp_path / "a.tif", np.ones((1, 32, 32), np.float32))
    with pytest.raises(ModelBundleError) as checked:
        check_compress_options(CompressOptions())
    with pytest.raises(ModelBundleError) as compressing:
        compress(src, tmp_path / "a.sarc", CompressOptions(device="cpu"))
    assert str(checked.value) == str(compressing.value) == (
        f"the bundled default model is not installed ({tmp_path / 'absent'}); pass a model folder")


@pytest.mark.parametrize("tile, ok", [(16, True), (512, True), (1024, True), (100, False), (0, False),
                                      (1040, False), (512.0, False)])
def test_one_tile_size_rule_for_the_options_and_processing(tile, ok):
    error = tile_size_error(tile)
    assert (error == "") == ok
    if not ok:
        assert error == (f"tile size {tile} must be a multiple of 16 between 16 and 1024 (larger tiles need "
                         "gigabytes of memory to decode)")
        with pytest.raises(SarCompressError) as refused:
            check_compress_options(CompressOptions(tile_size=tile))
        assert str(refused.value) == error


def test_a_tag_decides_every_bands_domain_without_a_warning(tiny_bundle, tmp_path, caplog):
    """Band 1 in dB beside a band of positive values: inferred from band 1, band 2 is warned of; under a
    VALUE_DOMAIN tag (which speaks for every band) it is not."""
    rng = np.random.default_rng(0)
    x = np.stack([10 * np.log10(rng.gamma(1.0, 0.05, (32, 32))), rng.gamma(1.0, 0.05, (32, 32))]).astype(np.float32)
    plain = write_geotiff(tmp_path / "plain.tif", x)
    tagged = write_geotiff(tmp_path / "tagged.tif", x)
    ds = gdal.Open(str(tagged), gdal.GA_Update)
    ds.SetMetadataItem("VALUE_DOMAIN", "sigma0_db")
    ds = None
    opts = CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=32)
    with caplog.at_level(logging.WARNING, logger="sar_compress_plugin.core.codec"):
        compress(plain, tmp_path / "plain.sarc", opts)
    assert "band 2 looks like intensity" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sar_compress_plugin.core.codec"):
        result = compress(tagged, tmp_path / "tagged.sarc", opts)
    assert "looks like" not in caplog.text
    assert (result.domain, result.domain_reason) == ("db", "VALUE_DOMAIN tag 'sigma0_db'")


def test_the_writer_is_told_its_version():
    """The default was the newest version, which marks a file without physical bands as one with them."""
    with pytest.raises(TypeError):
        container.ContainerWriter(io.BytesIO())  # type: ignore[call-arg]
