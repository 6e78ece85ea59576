"""Metric behaviour on cases with known answers (the core's metrics are the project's only implementation)."""

import numpy as np
import pytest

from sar_compress_plugin.core import metrics


def gamma_speckle(shape, looks, rng, mean=1.0):
    """L-look intensity speckle: Gamma(L, mean/L), whose ENL is L."""
    return rng.gamma(shape=looks, scale=mean / looks, size=shape)


@pytest.mark.parametrize("looks", [1, 4, 16])
def test_enl_of_simulated_speckle_is_number_of_looks(looks):
    rng = np.random.default_rng(0)
    x = gamma_speckle((256, 256), looks, rng, mean=5.0)
    assert metrics.enl(x) == pytest.approx(looks, rel=0.05)


def test_enl_ratio_identity_is_one_and_smoothing_raises_it():
    rng = np.random.default_rng(1)
    x = gamma_speckle((256, 256), 1, rng, mean=3.0)
    x[:, 128:] *= 10.0  # two regions, so the homogeneous-window selection matters
    assert metrics.enl_ratio(x, x) == pytest.approx(1.0, abs=1e-12)
    smoothed = metrics.box_mean(x, 5)
    assert metrics.enl_ratio(x, smoothed) > 5.0


def test_epi_identity_is_one_and_blur_lowers_it():
    rng = np.random.default_rng(2)
    x = rng.random((128, 128))
    assert metrics.epi(x, x) == pytest.approx(1.0, abs=1e-12)
    assert metrics.epi(x, 3.0 * x + 2.0) == pytest.approx(1.0, abs=1e-9)  # invariant to gain and offset
    assert metrics.epi(x, metrics.box_mean(x, 5)) < 0.5


def test_psnr_of_known_noise():
    rng = np.random.default_rng(3)
    x = rng.random((256, 256))
    sigma = 0.01
    noisy = x + rng.normal(0, sigma, x.shape)
    assert metrics.psnr(x, noisy) == pytest.approx(10 * np.log10(1 / sigma**2), abs=0.1)
    assert metrics.psnr(x, x) == float("inf")


def test_db_rmse_of_constant_offset():
    x = np.zeros((10, 10))
    assert metrics.db_rmse(x, x + 1.5) == pytest.approx(1.5)
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    y = x.copy()
    y[5:] = 100  # errors outside the mask are ignored
    assert metrics.db_rmse(x, y, mask) == 0.0


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(4)
    x = rng.random((64, 64))
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    # Independent noise of variance s2 on a signal of variance v: SSIM ~ (2v + c2) / (2v + s2 + c2).
    v, s2, c2 = 1 / 12, 0.2**2, 0.03**2
    noisy = x + rng.normal(0, 0.2, x.shape)
    assert metrics.ssim(x, noisy) == pytest.approx((2 * v + c2) / (2 * v + s2 + c2), abs=0.03)
    assert metrics.ssim(x, np.full_like(x, x.mean())) < 0.05


def test_box_mean_matches_direct_window_mean():
    rng = np.random.default_rng(5)
    x = rng.random((20, 17))
    got = metrics.box_mean(x, 5)
    assert got[10, 8] == pytest.approx(x[8:13, 6:11].mean())
    assert got.shape == x.shape


def test_local_maps_identity():
    rng = np.random.default_rng(6)
    x = gamma_speckle((64, 64), 1, rng)
    mask = np.ones_like(x, bool)
    mask[0, 0] = False
    enl_map = metrics.local_enl_ratio_map(x, x, window=7, mask=mask)
    epi_map = metrics.local_epi_map(x, x, window=7, mask=mask)
    assert np.isnan(enl_map[0, 0]) and np.isnan(epi_map[0, 0])
    assert np.nanmax(np.abs(enl_map - 1)) < 1e-9
    assert np.nanmin(epi_map) > 0.999
    smoothed_map = metrics.local_enl_ratio_map(x, metrics.box_mean(x, 5), window=7)
    assert np.median(smoothed_map) > 3


@pytest.mark.parametrize("which", ["enl", "epi"])
def test_local_maps_do_not_depend_on_what_nodata_pixels_hold(which):
    """A geocoded scene's nodata margin holds a fill (0 intensity, -100 dB) in the original and the
    reconstruction alike; near the margin the maps read it as kept speckle and edges (EPI and ENL ratio drift
    to 1 where the reconstruction is smoothed). Only valid pixels may decide a value."""
    rng = np.random.default_rng(7)
    x = gamma_speckle((96, 96), 1, rng)
    y = metrics.box_mean(x, 5)  # a smoothing codec: ENL ratio well above 1, EPI well below
    mask = np.ones_like(x, bool)
    mask[:, :30] = False
    fn = metrics.local_enl_ratio_map if which == "enl" else metrics.local_epi_map
    maps = []
    for fill in (1e-10, 1e3):
        a, b = x.copy(), y.copy()
        a[~mask] = b[~mask] = fill
        maps.append(fn(a, b, window=7, mask=mask))
    np.testing.assert_array_equal(np.isnan(maps[0]), np.isnan(maps[1]))
    np.testing.assert_allclose(maps[0][mask], maps[1][mask], rtol=1e-6, atol=1e-6)
    near, inside = np.nanmedian(maps[0][:, 30:34]), np.nanmedian(maps[0][:, 60:])
    assert abs(near - inside) < 0.25 * abs(inside - 1.0 if which == "enl" else 1.0 - inside)
