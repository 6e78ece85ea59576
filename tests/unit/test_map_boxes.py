"""Map boxes (`sar-reconstruct --bbox`, the plugin's map extent) on rasters placed every way GDAL places them,
and where `sar-info` says a file lies: a raster turned off north-up was refused ("needs a north-up
geotransform"), a box only touching a raster placed by ground control points got a window, and sar-info's
summary said nothing about the georeferencing."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from sar_compress_plugin import cli
from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct

from codec_fixtures import compressed_scene, gcp_georeferenced_copy, write_geotiff

SAMPLE = Path(__file__).resolve().parents[2] / "sar_compress_plugin" / "sample_data" / "s1_iw_grd_frankfurt_512.tif"
#: a UTM grid of 10 m pixels turned by 30 degrees, as a raster in a satellite's geometry is
TURNED = (500000.0, 10 * math.cos(math.pi / 6), 10 * math.sin(math.pi / 6),
          5800000.0, 10 * math.sin(math.pi / 6), -10 * math.cos(math.pi / 6))


def _compressed(folder: Path, bundle: Path, gt) -> Path:
    """A 96 x 128 two-band speckle raster placed by geotransform `gt`, compressed beside it in tiles of 64."""
    x = np.random.default_rng(7).gamma(1.0, 0.05, (2, 96, 128)).astype(np.float32)
    src = write_geotiff(folder / "in.tif", x, gt=gt)
    compress(src, folder / "in.sarc", CompressOptions(model_dir=bundle, device="cpu", tile_size=64))
    return folder / "in.sarc"


@pytest.fixture(scope="module")
def turned(tmp_path_factory, tiny_bundle):
    """The turned raster's .sarc, with its full reconstruction beside it (full.tif)."""
    folder = tmp_path_factory.mktemp("turned")
    sarc = _compressed(folder, tiny_bundle, TURNED)
    reconstruct(sarc, folder / "full.tif", model_dirs=[tiny_bundle], device="cpu")
    return sarc


@pytest.fixture(scope="module")
def north_up(tmp_path_factory, tiny_bundle):
    return compressed_scene(tmp_path_factory.mktemp("north_up"), tiny_bundle, 64, 128, seed=4)[1]


@pytest.fixture(scope="module")
def gcp_placed(tmp_path_factory, tiny_bundle):
    """A 128 x 128 crop of the bundled Sentinel-1 scene placed by a 3 x 3 grid of GCPs turned by 8 degrees
    (codec_fixtures.gcp_georeferenced_copy), its .sarc, and its GCPs."""
    folder = tmp_path_factory.mktemp("gcps")
    gdal.Translate(str(folder / "crop.tif"), str(SAMPLE), srcWin=[192, 192, 128, 128])
    src = gcp_georeferenced_copy(folder / "crop.tif", folder / "in.tif")
    compress(src, folder / "in.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=64))
    return folder / "in.sarc", gdal.Open(str(src)).GetGCPs()


def _map(gt, col, row) -> tuple[float, float]:
    return tuple(gdal.ApplyGeoTransform(gt, col, row))


def _box(gt, c0, r0, c1, r1) -> tuple[float, float, float, float]:
    """The map box (xmin, ymin, xmax, ymax) enclosing pixels c0..c1 x r0..r1."""
    xs, ys = zip(*(_map(gt, c, r) for c in (c0, c1) for r in (r0, r1)))
    return min(xs), min(ys), max(xs), max(ys)


def _reconstruct(sarc, out, bundle, box) -> int:
    return cli.reconstruct_main([str(sarc), str(out), "--model-dir", str(bundle), "--device", "cpu", "-q",
                                 "--bbox", *map(repr, box)])


def _error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr and len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_a_bbox_on_a_turned_raster_reconstructs_the_pixels_under_it(turned, tiny_bundle, tmp_path, capsys):
    """The box around pixels 50..70 x 35..55 gives the pixel window enclosing the box's four corners, as
    GDAL's inverse geotransform places them; its pixels and its place on the map are the full
    reconstruction's."""
    box = _box(TURNED, 50, 35, 70, 55)
    inverse = gdal.InvGeoTransform(TURNED)
    cols, rows = zip(*(gdal.ApplyGeoTransform(inverse, x, y) for x in box[::2] for y in box[1::2]))
    c0, r0, c1, r1 = math.floor(min(cols)), math.floor(min(rows)), math.ceil(max(cols)), math.ceil(max(rows))
    assert 0 < c0 < c1 < 128 and 0 < r0 < r1 < 96  # inside: nothing clipped

    out = tmp_path / "box.tif"
    assert _reconstruct(turned, out, tiny_bundle, box) == 0
    assert capsys.readouterr().err == ""
    part = gdal.Open(str(out))
    assert np.array_equal(part.ReadAsArray(), gdal.Open(str(turned.with_name("full.tif"))).ReadAsArray(
        c0, r0, c1 - c0, r1 - r0))
    x, y = _map(TURNED, c0, r0)
    assert part.GetGeoTransform() == pytest.approx((x, *TURNED[1:3], y, *TURNED[4:]))


def test_a_bbox_past_a_turned_rasters_edge_is_clipped_and_one_beside_it_misses_it(turned, tiny_bundle, tmp_path,
                                                                                  capsys):
    """From the raster's centre to past its north-east: the part inside, with the note. A box in the corner of
    the raster's bounding rectangle lies beside the turned raster: its pixel rectangle reaches into the raster,
    the box does not."""
    xmin, ymin, xmax, ymax = _box(TURNED, 0, 0, 128, 96)
    centre = _map(TURNED, 64, 48)
    assert _reconstruct(turned, tmp_path / "ne.tif", tiny_bundle, (*centre, xmax + 50, ymax + 50)) == 0
    note = capsys.readouterr().err.strip()
    assert note.startswith("note: bbox ") and "reaches past the raster" in note and "clipped to" in note, note
    assert gdal.Open(str(tmp_path / "ne.tif")).RasterXSize < 128

    corner = (xmin, ymax - 100, xmin + 100, ymax)  # north-west of pixel (0, 0), the raster's west corner
    assert _reconstruct(turned, tmp_path / "nw.tif", tiny_bundle, corner) == 2
    assert (f"does not overlap the raster, which spans x {xmin:.10g}..{xmax:.10g}, y {ymin:.10g}..{ymax:.10g} in "
            f"its CRS (WGS 84 / UTM zone 33N)") in _error(capsys.readouterr().err)
    assert not (tmp_path / "nw.tif").exists()


def test_a_degenerate_geotransform_refuses_a_bbox_in_one_line(tmp_path, tiny_bundle, capsys):
    """A geotransform that puts every pixel on one line (determinant 0) cannot be inverted."""
    sarc = _compressed(tmp_path, tiny_bundle, (500000.0, 10.0, 20.0, 5800000.0, 5.0, 10.0))
    assert _reconstruct(sarc, tmp_path / "r.tif", tiny_bundle, (500000, 5800000, 500100, 5800100)) == 2
    line = _error(capsys.readouterr().err)
    assert line.endswith("its geotransform (500000.0, 10.0, 20.0, 5800000.0, 5.0, 10.0) is degenerate (it puts "
                         "every pixel on one line), so no map box can be placed on its pixels"), line


@pytest.mark.parametrize("raster", ["north_up", "turned"])
def test_a_bbox_touching_a_rasters_west_edge_does_not_overlap_it(raster, request, tiny_bundle, tmp_path, capsys):
    sarc = request.getfixturevalue(raster)
    src = gdal.Open(str(sarc.with_suffix(".tif")))
    xmin, ymin, xmax, ymax = _box(src.GetGeoTransform(), 0, 0, src.RasterXSize, src.RasterYSize)
    assert _reconstruct(sarc, tmp_path / "r.tif", tiny_bundle, (xmin - 100, ymin, xmin, ymax)) == 2
    assert "does not overlap the raster" in _error(capsys.readouterr().err)
    assert _reconstruct(sarc, tmp_path / "r.tif", tiny_bundle, (xmin - 100, ymin, xmin + 20, ymax)) == 0


def test_a_bbox_touching_the_west_edge_of_a_raster_placed_by_gcps_does_not_overlap_it(gcp_placed, tiny_bundle,
                                                                                      tmp_path, capsys):
    """The box ending on the GCPs' west edge got a window of the pixels east of it, though none lies under it
    (for a raster placed by a geotransform it does not overlap); one pixel further east it overlaps."""
    sarc, gcps = gcp_placed
    west = min(g.GCPX for g in gcps)
    ys = [g.GCPY for g in gcps]
    assert _reconstruct(sarc, tmp_path / "r.tif", tiny_bundle, (west - 0.01, min(ys), west, max(ys))) == 2
    assert "does not overlap the raster" in _error(capsys.readouterr().err)
    assert not (tmp_path / "r.tif").exists()
    pixel = gdal.Open(str(SAMPLE)).GetGeoTransform()[1]
    assert _reconstruct(sarc, tmp_path / "r.tif", tiny_bundle, (west - 0.01, min(ys), west + pixel,
                                                                max(ys))) == 0


def _extent(line: str) -> list[float]:
    """xmin, xmax, ymin, ymax of a "x A..B, y C..D" in a line."""
    return [float(v) for pair in re.findall(r"[xy] ([-\d.e]+)\.\.([-\d.e]+)", line) for v in pair]


def _georef_line(sarc, capsys) -> str:
    assert cli.info_main([str(sarc)]) == 0
    lines = [ln.strip() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("georef ")]
    assert len(lines) == 1
    return lines[0]


def test_sar_info_says_where_the_raster_lies(tmp_path, tiny_bundle, turned, gcp_placed, capsys):
    """The CRS by name, and pixel size and extent, or the ground control points and about where they lie."""
    sarc = tmp_path / "sample.sarc"
    assert cli.compress_main([str(SAMPLE), str(sarc), "--model", str(tiny_bundle), "--device", "cpu", "--tile",
                              "256", "-q"]) == 0
    g = gdal.Open(str(SAMPLE)).GetGeoTransform()
    line = _georef_line(sarc, capsys)
    assert line.startswith("georef   CRS WGS 84; pixel 8.98315e-05 x 8.98315e-05, extent x "), line
    assert _extent(line) == pytest.approx([g[0], g[0] + 512 * g[1], g[3] + 512 * g[5], g[3]], rel=1e-9)

    xmin, ymin, xmax, ymax = _box(TURNED, 0, 0, 128, 96)
    assert _georef_line(turned, capsys) == (f"georef   CRS WGS 84 / UTM zone 33N; pixel 10 x 10 (rotated), "
                                            f"extent x {xmin:.10g}..{xmax:.10g}, y {ymin:.10g}..{ymax:.10g}")

    gcps = gcp_placed[1]
    line = _georef_line(gcp_placed[0], capsys)
    assert line.startswith("georef   CRS WGS 84; 9 ground control points, extent about x "), line
    xs, ys = [g.GCPX for g in gcps], [g.GCPY for g in gcps]
    assert _extent(line) == pytest.approx([min(xs), max(xs), min(ys), max(ys)], rel=1e-9)

    bare = tmp_path / "bare.tif"  # a crop of the sample without its georeferencing
    ds = gdal.GetDriverByName("GTiff").Create(str(bare), 64, 64, 1, gdal.GDT_Float32)
    ds.WriteArray(gdal.Open(str(SAMPLE)).ReadAsArray(0, 0, 64, 64)[0])
    ds = None
    assert cli.compress_main([str(bare), str(tmp_path / "bare.sarc"), "--model", str(tiny_bundle), "--device",
                              "cpu", "--tile", "64", "-q"]) == 0
    assert _georef_line(tmp_path / "bare.sarc", capsys) == "georef   CRS none; no geotransform (pixel coordinates)"


def test_a_turned_scene_layer_measures_its_pixels_along_their_rows(turned, tiny_bundle, tmp_path):
    """The scene layer decides by map units per pixel whether the view is zoomed past the stored overview; a
    turned raster's pixel is 10 m long, not its geotransform's x term (8.66 m)."""
    from sar_compress_plugin.core.scene_cache import SceneCache  # noqa: PLC0415

    cache = SceneCache(turned, tmp_path, model_dirs=[str(tiny_bundle)], device="cpu")
    try:
        assert cache.pixel_size == pytest.approx(10.0)
    finally:
        cache.close()


def test_quality_maps_compare_a_turned_scene_with_a_window_of_its_reconstruction(turned, tiny_bundle, tmp_path):
    """A turned grid was refused as "pixel grid differs" even against its own reconstruction; a window cut by
    --bbox is placed at its pixel offset in the original, as on a north-up grid."""
    from sar_compress_plugin.core.errors import InputRasterError  # noqa: PLC0415
    from sar_compress_plugin.core.quality_maps import compute_quality_maps, open_pair  # noqa: PLC0415

    original = turned.with_name("in.tif")
    assert open_pair(original, turned.with_name("full.tif")).offset == (0, 0)
    box = _box(TURNED, 50, 35, 70, 55)
    part = tmp_path / "box.tif"
    assert _reconstruct(turned, part, tiny_bundle, box) == 0
    c0, r0 = (round(v) for v in gdal.ApplyGeoTransform(gdal.InvGeoTransform(TURNED),
                                                     *gdal.Open(str(part)).GetGeoTransform()[::3]))
    assert open_pair(original, part).offset == (c0, r0)
    result = compute_quality_maps(original, part, tmp_path / "enl.tif", tmp_path / "epi.tif", bands=[1])
    assert gdal.Open(str(result.epi_path)).GetGeoTransform() == pytest.approx(gdal.Open(str(part)).GetGeoTransform())
    other = write_geotiff(tmp_path / "other.tif", np.ones((1, 8, 8), np.float32),
                          gt=(TURNED[0], TURNED[1], -TURNED[2], TURNED[3], TURNED[4], TURNED[5]))
    with pytest.raises(InputRasterError, match="pixel grid differs"):  # turned the other way: not the same grid
        open_pair(original, other)
