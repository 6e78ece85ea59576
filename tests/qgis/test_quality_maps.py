"""core/quality_maps.py on a real Sentinel-1 scene: streaming by blocks equals the whole-image metrics."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from sar_compress_plugin.core import metrics
from sar_compress_plugin.core.errors import CancelledError, InputRasterError
from sar_compress_plugin.core.preprocessing import from_db, to_db
from sar_compress_plugin.core.quality_maps import compute_quality_maps, guess_domain

gdal.UseExceptions()


def _write_like(src_path, dst_path, arrays, offset=(0, 0)):
    src = gdal.Open(str(src_path))
    h, w = arrays[0].shape
    ds = gdal.GetDriverByName("GTiff").Create(str(dst_path), w, h, len(arrays), gdal.GDT_Float32)
    gt = list(src.GetGeoTransform())
    gt[0] += offset[0] * gt[1]
    gt[3] += offset[1] * gt[5]
    ds.SetGeoTransform(gt)
    ds.SetProjection(src.GetProjection())
    for i, a in enumerate(arrays, start=1):
        ds.GetRasterBand(i).WriteArray(a)
    ds = None
    return dst_path


def _smoothed(x: np.ndarray) -> np.ndarray:
    """A stand-in 'reconstruction' that smooths speckle: 3x3 box mean of the intensity."""
    return metrics.box_mean(x, 3).astype(np.float32)


@pytest.fixture
def pair(sar_tif, tmp_path):
    ds = gdal.Open(str(sar_tif))
    orig = [ds.GetRasterBand(b).ReadAsArray() for b in (1, 2)]
    recon = _write_like(sar_tif, tmp_path / "recon.tif", [_smoothed(a) for a in orig])
    return sar_tif, recon, orig


def test_streamed_maps_equal_whole_image_metrics(pair, tmp_path):
    original, recon, orig = pair
    progress = []
    res = compute_quality_maps(original, recon, tmp_path / "enl.tif", tmp_path / "epi.tif",
                               domain="intensity", window=15, block_size=100, progress=progress.append)
    assert progress[-1] == pytest.approx(1.0) and len(progress) == 2 * 36
    enl = gdal.Open(res.enl_ratio_path)
    epi = gdal.Open(res.epi_path)
    src = gdal.Open(str(original))
    for ds in (enl, epi):
        assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (512, 512, 2)
        assert ds.GetGeoTransform() == pytest.approx(src.GetGeoTransform())
        assert ds.GetRasterBand(1).DataType == gdal.GDT_Float32
        assert "EPSG\",\"4326" in ds.GetProjection().replace(" ", "")
    for b in (1, 2):
        rec = _smoothed(orig[b - 1])
        r_db, r_ok = to_db(orig[b - 1], "intensity")
        t_db, t_ok = to_db(rec, "intensity")
        valid = r_ok & t_ok
        want_enl = metrics.local_enl_ratio_map(from_db(r_db, "intensity"), from_db(t_db, "intensity"), 15, valid)
        want_epi = metrics.local_epi_map(r_db, t_db, 15, valid)
        got_enl = enl.GetRasterBand(b).ReadAsArray()
        got_epi = epi.GetRasterBand(b).ReadAsArray()
        np.testing.assert_allclose(got_enl, want_enl, rtol=1e-5, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(got_epi, want_epi, rtol=1e-5, atol=1e-5, equal_nan=True)
    # A 3x3 box filter smooths speckle: local ENL goes up (ratio > 1) and edges survive only partly.
    assert all(v > 1.2 for v in res.enl_ratio_median)
    assert all(0.0 < v < 0.9 for v in res.epi_median)
    assert "ENL ratio" in enl.GetRasterBand(1).GetDescription()


def test_identical_reconstruction_gives_ones(sar_tif, tmp_path):
    res = compute_quality_maps(sar_tif, sar_tif, tmp_path / "enl.tif", tmp_path / "epi.tif", bands=[1])
    assert res.domain == "intensity" and res.bands == 1
    enl = gdal.Open(res.enl_ratio_path).ReadAsArray()
    epi = gdal.Open(res.epi_path).ReadAsArray()
    np.testing.assert_allclose(enl, 1.0, atol=1e-5)
    np.testing.assert_allclose(epi[np.isfinite(epi)], 1.0, atol=1e-5)


def test_window_of_the_original_is_aligned(pair, tmp_path):
    original, _, orig = pair
    sub = [a[100:300, 50:250] for a in orig]
    recon = _write_like(original, tmp_path / "sub.tif", [_smoothed(a) for a in sub], offset=(50, 100))
    res = compute_quality_maps(original, recon, tmp_path / "enl.tif", tmp_path / "epi.tif", domain="intensity")
    out = gdal.Open(res.enl_ratio_path)
    assert (out.RasterXSize, out.RasterYSize) == (200, 200)
    assert out.GetGeoTransform() == pytest.approx(gdal.Open(str(recon)).GetGeoTransform())
    want = metrics.local_enl_ratio_map(sub[0], _smoothed(sub[0]), 15)
    got = out.GetRasterBand(1).ReadAsArray()
    # Inside, away from the border by more than the window's reach, the map matches the metric on the window.
    m = metrics.local_map_radius(15) + 2
    np.testing.assert_allclose(got[m:-m, m:-m], want[m:-m, m:-m], rtol=1e-4)


def test_cancel_leaves_no_file(pair, tmp_path):
    original, recon, _ = pair
    calls = {"n": 0}

    def cancel_after_two():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(CancelledError):
        compute_quality_maps(original, recon, tmp_path / "enl.tif", tmp_path / "epi.tif",
                             block_size=64, is_cancelled=cancel_after_two)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["berlin.tif", "recon.tif"]


def test_two_runs_onto_the_same_files_at_once_keep_their_temporary_files_apart(pair, tmp_path):
    """Two runs in one process (two QGIS tasks, or a task and Processing) write the same maps: each writes its own
    temporary file, so both finish and the maps are one run's, whole. With a temporary name per process the two
    wrote into one file and the second rename found it gone."""
    from concurrent.futures import ThreadPoolExecutor

    original, recon, _ = pair
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(compute_quality_maps, original, recon, tmp_path / "enl.tif", tmp_path / "epi.tif",
                            domain="intensity", bands=[b], block_size=64) for b in (1, 2)]
        for run in runs:
            run.result()
    got = gdal.Open(str(tmp_path / "enl.tif")).ReadAsArray()
    alone = [compute_quality_maps(original, recon, tmp_path / f"enl{b}.tif", tmp_path / f"epi{b}.tif",
                                  domain="intensity", bands=[b], block_size=64) for b in (1, 2)]
    assert any(np.array_equal(got, gdal.Open(r.enl_ratio_path).ReadAsArray(), equal_nan=True) for r in alone)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_inputs_raise_clear_errors(pair, tmp_path):
    original, recon, _ = pair
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all")
    with pytest.raises(InputRasterError, match="garbage.tif"):
        compute_quality_maps(original, garbage, tmp_path / "a.tif", tmp_path / "b.tif")
    shifted = _write_like(original, tmp_path / "shifted.tif",
                          [np.ones((600, 600), np.float32)], offset=(0, 0))
    with pytest.raises(InputRasterError, match="not inside"):
        compute_quality_maps(original, shifted, tmp_path / "a.tif", tmp_path / "b.tif")


def test_guess_domain(sar_tif, tmp_path):
    assert guess_domain(gdal.Open(str(sar_tif))) == "intensity"
    ds = gdal.Open(str(sar_tif))
    db = 10 * np.log10(ds.GetRasterBand(1).ReadAsArray())
    p = _write_like(sar_tif, tmp_path / "db.tif", [db.astype(np.float32)])
    assert guess_domain(gdal.Open(str(p))) == "db"


def test_bright_scatterer_leaves_no_square_halo(sar_tif, tmp_path):
    """A point target the reconstruction blurs away: the ENL-ratio map around it must change smoothly, not jump
    at the window's edge (the box window drew a hard-edged square around every bright scatterer)."""
    ds = gdal.Open(str(sar_tif))  # kept referenced: a band outliving its dataset crashes GDAL
    vv = ds.GetRasterBand(1).ReadAsArray().astype(np.float32)
    original = vv.copy()
    original[256, 256] = vv.max() * 50  # a strong point target in the original only
    orig_path = _write_like(sar_tif, tmp_path / "orig.tif", [original])
    recon_path = _write_like(sar_tif, tmp_path / "recon.tif", [vv])
    res = compute_quality_maps(orig_path, recon_path, tmp_path / "enl.tif", tmp_path / "epi.tif",
                               domain="intensity", window=15)
    enl = gdal.Open(res.enl_ratio_path).ReadAsArray().astype(np.float64)
    row = np.log(enl[256, 200:313])  # through the target, well beyond the window on both sides
    assert row.max() - row.min() > 1.0  # the target shows (ENL ratio far above 1 around it)...
    # ...and fades: no neighbour-to-neighbour step takes more than a quarter of the whole change.
    assert np.abs(np.diff(row)).max() < 0.25 * (row.max() - row.min())
    box = metrics.box_mean  # what the maps used before: the same step made at once at the window's edge
    m = box(original.astype(np.float64), 15)
    v = box(original.astype(np.float64) ** 2, 15) - m * m
    box_row = np.log(m[256, 200:313] ** 2 / v[256, 200:313])
    assert np.abs(np.diff(box_row)).max() > 0.4 * (box_row.max() - box_row.min())
