"""The scene layer's tile cache (core/scene_cache.py) when its folder is damaged, full or deleted, its eviction,
and a scene georeferenced by ground control points: what is shown as decoded must be in the file, where the
scene's reconstruction is, and a cache that cannot be trusted is rebuilt."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from codec_fixtures import GHANA_DB, gcp_georeferenced_copy, int16_db_product
from osgeo import gdal, osr

from sar_compress_plugin.core import codec
from sar_compress_plugin.core.errors import InputRasterError, OutputPathError
from sar_compress_plugin.core.scene_cache import (
    REGISTRY_LOCK_NAME,
    REGISTRY_NAME,
    SceneCache,
    evict,
    folder_size,
    register_scene,
    registered_scene,
)


@pytest.fixture(scope="module")
def sarc(tiny_bundle, sar_data, tmp_path_factory):
    """berlin 512 x 512 x 2 in 128-px tiles (16 tiles) with a stored overview, and its full reconstruction."""
    d = tmp_path_factory.mktemp("scene")
    out = d / "berlin.sarc"
    codec.compress(str(sar_data / "s1_iw_grd_berlin_512.tif"), str(out),
                   codec.CompressOptions(model_dir=str(tiny_bundle), device="cpu", tile_size=128, overview=True))
    codec.reconstruct(str(out), str(d / "full.tif"), model_dirs=[str(tiny_bundle)], device="cpu")
    return out, gdal.Open(str(d / "full.tif")).ReadAsArray()


@pytest.fixture(scope="module")
def gcp_sarc(tiny_bundle, sar_data, tmp_path_factory):
    """The same scene georeferenced by GCPs only (as a Sentinel-1 GRD measurement GeoTIFF), compressed as `sarc`,
    and its full reconstruction."""
    d = tmp_path_factory.mktemp("gcp_scene")
    src = gcp_georeferenced_copy(sar_data / "s1_iw_grd_berlin_512.tif", d / "berlin_gcps.tif")
    out = d / "berlin_gcps.sarc"
    codec.compress(str(src), str(out),
                   codec.CompressOptions(model_dir=str(tiny_bundle), device="cpu", tile_size=128, overview=True))
    codec.reconstruct(str(out), str(d / "full.tif"), model_dirs=[str(tiny_bundle)], device="cpu")
    return out, gdal.Open(str(d / "full.tif")).ReadAsArray(), d / "full.tif"


@pytest.fixture(scope="module")
def scaled_sarc(tiny_bundle, sar_data, tmp_path_factory):
    """An int16 sigma0 dB product (hundredths of a dB under a GDAL scale of 0.01, a nodata block) compressed as
    `sarc` (its bands coded as physical values), its full reconstruction and that file's path."""
    d = tmp_path_factory.mktemp("scaled_scene")
    src = int16_db_product(sar_data / GHANA_DB, d / "ghana_int16.tif")
    out = d / "ghana_int16.sarc"
    codec.compress(str(src), str(out),
                   codec.CompressOptions(model_dir=str(tiny_bundle), device="cpu", tile_size=128, overview=True))
    codec.reconstruct(str(out), str(d / "full.tif"), model_dirs=[str(tiny_bundle)], device="cpu")
    return out, gdal.Open(str(d / "full.tif")).ReadAsArray(), d / "full.tif"


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


def test_the_scene_registry_names_each_folders_sarc_and_outlives_eviction(sarc, tiny_bundle, tmp_path):
    """A project read after eviction names only the deleted folder's files: the registry beside the folders says
    which .sarc makes them again. Kept small: entries of .sarc files that are gone, or that became another
    scene, are dropped at the next write."""
    copy = tmp_path / "copies" / "copy.sarc"
    copy.parent.mkdir()
    shutil.copy(sarc[0], copy)
    root = tmp_path / "cache"
    for path in (sarc[0], copy):
        _open((path,), root, tiny_bundle).close()
    folders = sorted(d.name for d in root.iterdir() if d.is_dir())
    assert [registered_scene(root, f)["sarc"] for f in folders] == [str(sarc[0]), str(copy)]
    register_scene(root / folders[0], sarc[0], composite=(1, 2))
    assert registered_scene(root, folders[0]) == {"sarc": str(sarc[0]), "composite": [1, 2]}
    _open(sarc, root, tiny_bundle).close()  # opened again: the composite's bands are kept
    assert registered_scene(root, folders[0])["composite"] == [1, 2]

    assert sorted(d.name for d in evict(root, 0)) == folders
    assert registered_scene(root, folders[0])["sarc"] == str(sarc[0])
    copy.unlink()
    register_scene(root / "other-0123456789abcdef", sarc[0])  # the file at sarc[0] is another scene now
    assert json.loads((root / REGISTRY_NAME).read_text()) == {"scenes": {"other-0123456789abcdef": {
        "sarc": str(sarc[0])}}}
    assert sorted(p.name for p in root.iterdir()) == [REGISTRY_NAME, REGISTRY_LOCK_NAME]  # no temporary file left


@pytest.mark.parametrize("damage", [b"\x00{garbage", b"[1, 2]", b'{"scenes": [1]}',
                                    b'{"scenes": {"berlin-0": 3, "b-1": {"sarc": 4}, "b-2": {"sarc": ""}}}'])
def test_a_damaged_scene_registry_is_no_registry_and_is_made_anew(sarc, tiny_bundle, tmp_path, damage):
    root = tmp_path / "cache"
    root.mkdir()
    (root / REGISTRY_NAME).write_bytes(damage)
    assert all(registered_scene(root, name) is None for name in ("berlin-0", "b-1", "b-2"))
    cache = _open(sarc, root, tiny_bundle)
    cache.close()
    assert json.loads((root / REGISTRY_NAME).read_text()) == {"scenes": {cache.folder.name: {"sarc": str(sarc[0])}}}


def test_a_scene_registry_that_cannot_be_written_leaves_the_cache_working(sarc, tiny_bundle, tmp_path):
    root = tmp_path / "cache"
    (root / REGISTRY_NAME).mkdir(parents=True)  # in the way: neither read nor replaced
    cache = _open(sarc, root, tiny_bundle)
    assert cache.decode([0]) == 1 and registered_scene(root, cache.folder.name) is None
    cache.close()
    assert sorted(p.name for p in root.iterdir()) == sorted([REGISTRY_NAME, REGISTRY_LOCK_NAME, cache.folder.name])


def test_a_scene_on_a_share_that_is_away_keeps_its_entry_until_it_is_back(tmp_path, monkeypatch):
    """Each registration dropped every entry whose .sarc was not a file right then: a scene on a share that was not
    mounted lost its entry for good, so once its cache was evicted, the project's layers could not have it made
    again after the share was back. An entry is dropped when its .sarc is gone from a folder that is there (deleted
    or moved); of those whose folder is away, the latest MAX_AWAY_ENTRIES are kept."""
    root, share, local = tmp_path / "cache", tmp_path / "share", tmp_path / "local"
    for folder in (root, share / "scenes", local):
        folder.mkdir(parents=True)
    for path in (share / "scenes" / "far.sarc", local / "near.sarc", local / "deleted.sarc"):
        path.touch()
    register_scene(root / "far-0", share / "scenes" / "far.sarc")
    register_scene(root / "deleted-0", local / "deleted.sarc")
    (local / "deleted.sarc").unlink()
    share.rename(tmp_path / "unmounted")  # the share's folders are away, not its files deleted
    register_scene(root / "near-0", local / "near.sarc")
    assert sorted(json.loads((root / REGISTRY_NAME).read_text())["scenes"]) == ["far-0", "near-0"]
    (tmp_path / "unmounted").rename(share)  # back: the evicted cache can be made again from the entry
    assert registered_scene(root, "far-0") == {"sarc": str(share / "scenes" / "far.sarc")}

    from sar_compress_plugin.core import scene_cache

    monkeypatch.setattr(scene_cache, "MAX_AWAY_ENTRIES", 2)
    for i in range(4):  # on drives not plugged in now: the registry does not grow for good
        register_scene(root / f"away-{i}", tmp_path / f"drive-{i}" / "a.sarc")
    register_scene(root / "near-0", local / "near.sarc")
    assert sorted(json.loads((root / REGISTRY_NAME).read_text())["scenes"]) == ["away-2", "away-3", "far-0",
                                                                                "near-0"]


_REGISTERING_PROCESS = """
import sys, time
from pathlib import Path
from sar_compress_plugin.core.scene_cache import register_scene
root, sarcs, who, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
(sarcs / f"ready-{who}").touch()
while not (sarcs / "go").exists():
    time.sleep(0.001)
for i in range(count):
    register_scene(root / f"{who}-{i}", sarcs / f"{who}-{i}.sarc")
"""


def test_sessions_registering_scenes_at_once_lose_none_of_them(tmp_path):
    """Two QGIS sessions on one cache root each read the registry, added their scene and wrote it back: the scene
    the first wrote was gone from the copy the second had read. Four processes register 150 scenes each, all at
    once; every one is in the registry after."""
    root, sarcs = tmp_path / "cache", tmp_path / "sarcs"
    root.mkdir()
    sarcs.mkdir()
    writers, count = [f"w{k}" for k in range(4)], 150
    for who in writers:
        for i in range(count):
            (sarcs / f"{who}-{i}.sarc").touch()  # an entry of a .sarc that is gone would be dropped
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTERING_PROCESS, str(root), str(sarcs), who, str(count)],
                              env=env) for who in writers]
    try:
        deadline = time.monotonic() + 60
        while not all((sarcs / f"ready-{who}").exists() for who in writers):  # imported: they start together
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
            time.sleep(0.01)
        (sarcs / "go").touch()
        assert [p.wait(timeout=120) for p in procs] == [0] * len(writers)
    finally:
        for p in procs:
            p.kill()
    registered = json.loads((root / REGISTRY_NAME).read_text())["scenes"]
    missing = [f"{who}-{i}" for who in writers for i in range(count) if f"{who}-{i}" not in registered]
    assert missing == [], f"{len(missing)} of {len(writers) * count} scenes lost"
    assert sorted(p.name for p in root.iterdir()) == [REGISTRY_NAME, REGISTRY_LOCK_NAME]


def _gcps(path) -> list:
    return [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY, g.GCPZ) for g in gdal.Open(str(path)).GetGCPs()]


def test_a_scene_georeferenced_by_gcps_is_cached_with_them_as_its_reconstruction_is(gcp_sarc, tiny_bundle,
                                                                                       tmp_path):
    """The cache GeoTIFF had only the header's placeholder geotransform, so QGIS showed the scene layer of a
    Sentinel-1 GRD measurement file at pixel coordinates, and no view mapped to pixels, so nothing was decoded."""
    cache = _open(gcp_sarc, tmp_path, tiny_bundle)
    ds = gdal.Open(str(cache.tiff_path))
    assert ds.GetGeoTransform(can_return_null=True) is None
    assert len(_gcps(cache.tiff_path)) == 9 and _gcps(cache.tiff_path) == _gcps(gcp_sarc[2])
    wgs84 = osr.SpatialReference()
    wgs84.ImportFromEPSG(4326)
    assert osr.SpatialReference(ds.GetGCPProjection()).IsSame(wgs84)

    # Views map to pixels through the GCPs: a box about the GCP of pixel (256, 256) takes the tiles around it.
    _p, _ln, x, y, _z = next(g for g in _gcps(cache.tiff_path) if g[:2] == (256, 256))
    c, r, w, h = cache.window_for_bbox((x - 0.001, y - 0.001, x + 0.001, y + 0.001))
    assert c < 256 < c + w and r < 256 < r + h and w < 100 and h < 100
    assert cache.window_for_bbox((-180, -90, 180, 90)) == (0, 0, 512, 512)
    assert cache.window_for_bbox((x + 1, y, x + 2, y + 1)) is None
    shown = gdal.AutoCreateWarpedVRT(gdal.Open(str(gcp_sarc[2])))  # what QGIS shows a GCP raster through
    assert cache.pixel_size == pytest.approx(shown.GetGeoTransform()[1], rel=0.01)

    assert cache.decode(cache.missing_tiles((c, r, w, h))) == 4
    _assert_shows_only_true_pixels(cache, gcp_sarc[1])
    cache.close()


def test_a_gcp_scene_cache_made_before_gcps_were_kept_is_rebuilt(gcp_sarc, tiny_bundle, tmp_path):
    old = _open(gcp_sarc, tmp_path, tiny_bundle)
    old.decode([0, 1])
    old.close()
    ds = gdal.Open(str(old.tiff_path), gdal.GA_Update)  # as caches were written: the placeholder geotransform
    ds.SetGCPs([], "")
    ds.SetGeoTransform(tuple(codec.read_header(gcp_sarc[0])["raster"]["geotransform"]))
    ds = None

    again = _open(gcp_sarc, tmp_path, tiny_bundle)
    assert again.decoded == set()
    assert _gcps(again.tiff_path) == _gcps(gcp_sarc[2])
    again.close()


def test_a_scene_whose_gcps_cannot_place_it_is_refused_in_one_line(tiny_bundle, sar_data, tmp_path):
    """Two GCPs fit no transform: QGIS would show the layer at pixel coordinates, where no view maps to pixels."""
    src = tmp_path / "two_gcps.tif"
    gdal.Translate(str(src), str(sar_data / "s1_iw_grd_berlin_512.tif"), outputSRS="EPSG:4326",
                   GCPs=[gdal.GCP(13.38, 52.57, 0.0, 0, 0), gdal.GCP(13.43, 52.52, 0.0, 512, 512)])
    sarc = tmp_path / "two_gcps.sarc"
    codec.compress(str(src), str(sarc), codec.CompressOptions(model_dir=str(tiny_bundle), device="cpu"))
    with pytest.raises(InputRasterError, match=r"two_gcps.sarc: its ground control points cannot place it on "
                                               r"the map \(.*\)$"):
        SceneCache(sarc, tmp_path / "cache", model_dirs=[str(tiny_bundle)], device="cpu")
    assert not (tmp_path / "cache").exists()


def _scale_offset_nodata(path) -> list[tuple]:
    ds = gdal.Open(str(path))
    return [(b.GetScale(), b.GetOffset(), b.GetNoDataValue())
            for b in (ds.GetRasterBand(i + 1) for i in range(ds.RasterCount))]


def test_a_scaled_scene_is_cached_under_its_scale_so_gdal_reads_the_db_of_its_clip_range(scaled_sarc, tiny_bundle,
                                                                                          tmp_path):
    """The cache held the stored hundredths of a dB with no scale, where the layer's grey stretch is the file's clip
    range in dB (about -16..-5): the whole scene showed black. Tiles and overview levels hold stored values under
    the reconstruction's scale and nodata, so GDAL and QGIS read them as dB."""
    sarc, full, full_path = scaled_sarc
    cache = _open(scaled_sarc, tmp_path, tiny_bundle)
    assert cache.raster.scaling == [(0.01, 0.0), (0.01, 0.0)]
    cache.decode([0, 5])
    assert _scale_offset_nodata(cache.tiff_path) == _scale_offset_nodata(full_path) == [(0.01, 0.0, -32768.0)] * 2
    _assert_shows_only_true_pixels(cache, full)
    ds = gdal.Open(str(cache.tiff_path))
    for b in range(2):
        lo, hi = codec.read_header(sarc)["clip_db"][b]
        overview = ds.GetRasterBand(b + 1).GetOverview(2)  # the stored overview's own resolution
        stored = overview.ReadAsArray()
        db = cache.raster.overview(b)[:overview.YSize, :overview.XSize]
        assert np.array_equal(stored == -32768, np.isnan(db)) and np.isnan(db).any()  # the nodata block
        physical = stored[~np.isnan(db)] * 0.01
        assert np.abs(physical - db[~np.isnan(db)]).max() <= 0.005 + 1e-6  # to the hundredth of a dB stored
        assert lo - 3 < np.median(physical) < hi + 3
    cache.close()


def test_a_scaled_scene_cache_made_without_its_scale_is_rebuilt(scaled_sarc, tiny_bundle, tmp_path):
    """A cache made before bands were coded as physical values has no scale: its pixels read as hundredths of a
    dB, so it is made anew rather than shown."""
    old = _open(scaled_sarc, tmp_path, tiny_bundle)
    old.decode([0, 1])
    old.close()
    ds = gdal.Open(str(old.tiff_path), gdal.GA_Update)
    for b in range(ds.RasterCount):
        band = ds.GetRasterBand(b + 1)
        band.SetScale(1.0)  # as caches were written: GDAL's identity, no tag
        band.SetOffset(0.0)
        band = None
    ds = None
    assert _scale_offset_nodata(old.tiff_path) == [(None, None, -32768.0)] * 2

    again = _open(scaled_sarc, tmp_path, tiny_bundle)
    assert again.created and again.decoded == set()
    assert _scale_offset_nodata(again.tiff_path) == [(0.01, 0.0, -32768.0)] * 2
    assert again.decode([0, 1]) == 2
    _assert_shows_only_true_pixels(again, scaled_sarc[1])
    again.close()
    reopened = _open(scaled_sarc, tmp_path, tiny_bundle)  # and a cache made so is kept
    assert not reopened.created and reopened.decoded == {0, 1}
    reopened.close()

