import numpy as np
import pytest

from sar_compress_plugin.core import preprocessing as pp
from sar_compress_plugin.core.errors import InputRasterError


@pytest.mark.parametrize("domain", ["intensity", "amplitude", "db"])
def test_db_round_trip(domain):
    x = np.array([[0.5, 2.0], [1e3, 7.0]], np.float32)
    db, valid = pp.to_db(x, domain)
    assert valid.all()
    np.testing.assert_allclose(pp.from_db(db, domain), x, rtol=1e-6)


@pytest.mark.parametrize("domain", ["intensity", "amplitude"])
def test_from_db_in_float32_is_within_a_few_float32_ulps_of_float64(domain):
    db = np.linspace(-45.0, 45.0, 100_001).astype(np.float32)  # the codec's dB values are float32
    exact = pp.from_db(db, domain)
    fast = pp.from_db(db, domain, np.float32)
    assert exact.dtype == np.float64 and fast.dtype == np.float32
    np.testing.assert_allclose(fast, exact, rtol=8 * np.finfo(np.float32).eps)


def test_intensity_and_amplitude_agree_in_db():
    amp = np.array([1.0, 10.0, 3.0])
    db_a, _ = pp.to_db(amp, "amplitude")
    db_i, _ = pp.to_db(amp**2, "intensity")
    np.testing.assert_allclose(db_a, db_i, atol=1e-5)
    assert db_i[1] == pytest.approx(20.0)


def test_invalid_pixels_masked_and_finite():
    x = np.array([0.0, -1.0, np.nan, 5.0, 7.0], np.float32)
    db, valid = pp.to_db(x, "intensity", nodata=7.0)
    assert valid.tolist() == [False, False, False, True, False]
    assert np.isfinite(db).all()
    assert db[0] == pp.NOISE_FLOOR_DB


def test_db_domain_allows_negative_values():
    db, valid = pp.to_db(np.array([-25.0, np.nan]), "sigma0_db")
    assert valid.tolist() == [True, False]
    assert db[0] == -25.0


def test_normalise_inverse_inside_bounds_and_clips_outside():
    db = np.array([-10.0, 0.0, 10.0, 30.0], np.float32)
    n = pp.normalise(db, -10.0, 10.0)
    assert n.tolist() == [0.0, 0.5, 1.0, 1.0]
    np.testing.assert_allclose(pp.denormalise(n[:3], -10.0, 10.0), db[:3], atol=1e-6)


def test_percentile_bounds_use_valid_pixels_only_and_have_min_range():
    db = np.concatenate([np.linspace(0, 10, 1000), [-100.0] * 1000]).astype(np.float32)
    valid = db > -100
    lo, hi = pp.percentile_bounds(db, valid, (0, 100))
    assert (lo, hi) == pytest.approx((0.0, 10.0))
    lo, hi = pp.percentile_bounds(np.full(10, 3.0), None)
    assert hi - lo == pytest.approx(pp.MIN_RANGE_DB)
    with pytest.raises(InputRasterError, match="no valid pixels"):
        pp.percentile_bounds(db, np.zeros_like(valid))


def test_params_round_trip_through_plain_types():
    import json

    p = pp.PreprocessingParams(input_domain="sigma0_db", clip_db=(-30.0, 5.0))
    assert p.input_domain == "sigma0_db"  # stored as given; from_dict canonicalises
    q = pp.PreprocessingParams.from_dict(json.loads(json.dumps(p.to_dict())))
    assert q.input_domain == "db" and q.clip_db == (-30.0, 5.0)
    with pytest.raises(InputRasterError):
        pp.canonical_domain("phase")
