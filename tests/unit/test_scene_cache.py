"""The scene layer's tile cache (core/scene_cache.py) when its folder is damaged, full or deleted, and its
eviction: what is shown as decoded must be in the file, and a cache that cannot be trusted is rebuilt."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
from contextlib import contextmanager

import numpy as np
import pytest
from osgeo import gdal

from sar_compress_plugin.core import codec
from sar_compress_plugin.core.errors import OutputPathError
from sar_compress_plugin.core.scene_cache import SceneCache, evict, folder_size


@pytest.fixture(scope="module")
def sarc(tiny_bundle, sar_data, tmp_path_factory):
    """berlin 512 x 512 x 2 in 128-px tiles (16 tiles) with a stored overview, and its full reconstruction."""
    d = tmp_path_factory.mktemp("scene")
    out = d / "berlin.sarc"
    codec.compress(str(sar_data / "s1_iw_grd_berlin_512.tif"), str(out),
                   codec.CompressOptions(model_dir=str(tiny_bundle), device="cpu", tile_size=128, overview=True))
    codec.reconstruct(str(out), str(d / "full.tif"), model_dirs=[str(tiny_bundle)], device="cpu")
    return out, gdal.Open(str(d / "full.tif")).ReadAsArray()


def _open(sarc, root, tiny_bundle):
    return SceneCache(sarc[0], root, model_dirs=[str(tiny_bundle)], device="cpu")


def _assert_shows_only_true_pixels(cache, full):
    """Every pixel of the GeoTIFF reads, its overviews read, and each tile listed as decoded equals the full
    reconstruction there."""
    ds = gdal.Open(str(cache.tiff_path))
    px = ds.ReadAsArray()
    for b in range(ds.RasterCount):
        band = ds.GetRasterBand(b + 1)
        assert band.GetOverviewCount() == 3
        for i in range(3):
            band.GetOverview(i).ReadAsArray()
    for t in cache.decoded:
        c, r, w, h = cache.grid.core_in_raster(t)
        assert np.array_equal(px[:, r:r + h, c:c + w], full[:, r:r + h, c:c + w], equal_nan=True)


@pytest.mark.parametrize("damage, decoded_after", [
    ("garbage tiles.json", set()),
    ("tiles.json lists tiles the tif lacks", {0, 1, 5}),
    ("truncated scene.tif", set()),
    ("garbage scene.tif", set()),
])
def test_a_damaged_cache_is_rebuilt_never_shown(sarc, tiny_bundle, tmp_path, damage, decoded_after):
    cache = _open(sarc, tmp_path, tiny_bundle)
    cache.decode([0, 1, 5])
    cache.close()
    tiles_json, tif = cache.folder / "tiles.json", cache.tiff_path
    if damage == "garbage tiles.json":
        tiles_json.write_bytes(b"\x00{garbage")
    elif damage == "tiles.json lists tiles the tif lacks":
        tiles_json.write_text(json.dumps({"decoded": [0, 1, 5, 6, 7]}))
    elif damage == "truncated scene.tif":
        os.truncate(tif, tif.stat().st_size - 1000)
    else:
        tif.write_bytes(b"garbage")

    again = _open(sarc, tmp_path, tiny_bundle)
    assert again.decoded == decoded_after
    _assert_shows_only_true_pixels(again, sarc[1])
    assert again.decode([6, 7]) == 2  # and decoding goes on
    _assert_shows_only_true_pixels(again, sarc[1])
    again.close()


@contextmanager
def _disk_full_at(size):
    """Writes that would grow any file past `size` bytes fail (EFBIG) as on a full disk, for this process."""
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, previous_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # GDAL's error on close, dropped
def test_a_full_disk_gives_a_clear_error_and_no_cut_off_cache(sarc, tiny_bundle, tmp_path):
    with _disk_full_at(20_000), pytest.raises(OutputPathError, match="cannot write the tile cache"):
        _open(sarc, tmp_path, tiny_bundle)
    assert not list(tmp_path.rglob("*.tif"))  # no cut-off GeoTIFF left to be reused as valid

    cache = _open(sarc, tmp_path, tiny_bundle)
    one_tile = 2 * 128 * 128 * 4  # two float32 bands, one 128-px block each
    with _disk_full_at(cache.tiff_path.stat().st_size + one_tile + 10_000), \
            pytest.raises(OutputPathError, match="cannot write the tile cache"):
        cache.decode([0, 1, 2, 3])
    assert cache.decoded == {0}
    cache.close()
    again = _open(sarc, tmp_path, tiny_bundle)  # tile 1 was cut off: rebuilt
    assert again.decoded <= {0}
    _assert_shows_only_true_pixels(again, sarc[1])
    again.close()


def test_a_cache_deleted_while_open_is_built_again(sarc, tiny_bundle, tmp_path):
    cache = _open(sarc, tmp_path, tiny_bundle)
    cache.decode([0, 1])
    shutil.rmtree(cache.folder)
    assert cache.decode([1, 2]) == 2
    assert cache.decoded == {1, 2}
    _assert_shows_only_true_pixels(cache, sarc[1])
    cache.close()


def test_evict_deletes_least_recently_used_scenes_only(sarc, tiny_bundle, tmp_path):
    cache = _open(sarc, tmp_path, tiny_bundle)
    cache.decode([0])
    cache.close()
    old = tmp_path / "old-0123456789abcdef"
    shutil.copytree(cache.folder, old)
    os.utime(old / "tiles.json", (1, 1))
    own = tmp_path / "holiday photos"  # the cache folder is a setting: it may hold the user's own folders
    own.mkdir()
    (own / "beach.jpg").write_bytes(b"\xff" * 100_000)

    assert evict(tmp_path, folder_size(cache.folder) + 1) == [old]
    assert (own / "beach.jpg").is_file() and cache.tiff_path.is_file()
    assert evict(tmp_path, 0, keep=[cache.folder]) == []
    assert evict(tmp_path, 0) == [cache.folder]
    assert (own / "beach.jpg").is_file()
