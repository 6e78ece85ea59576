"""SAR values <-> the network's [0,1] input.

Speckle is multiplicative, so the network works in dB, where it becomes additive and the dynamic range of a
scene (often 60 dB and more) fits a bounded interval. Bounds are taken per band from the data itself: scenes
from different products and calibrations sit tens of dB apart, and a fixed range would waste most of the
network's input range on some of them. Training and the codec apply the same rule, so the network never
sees anything at compress time that it was not trained on.
"""

from __future__ import annotations

import logging
import math

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import InputRasterError

log = logging.getLogger(__name__)

DOMAIN_ALIASES = {
    "intensity": "intensity",
    "power": "intensity",
    "amplitude": "amplitude",
    "db": "db",
    "amplitude_db": "db",
    "sigma0_db": "db",
    "intensity_db": "db",
}
DOMAINS = ("intensity", "amplitude", "db")

#: Value given to invalid pixels (and the lowest dB a linear value can map to) so arrays stay finite.
NOISE_FLOOR_DB = -100.0
DEFAULT_PERCENTILES = (0.5, 99.5)
#: Narrowest allowed clip range: a flat band would otherwise divide by ~0.
MIN_RANGE_DB = 1.0


#: Share of negative finite values above which a float raster is taken as dB. Linear intensities are never
#: negative, but calibration noise or a resampling kernel leaves a few; dB of a SAR scene is mostly negative.
DB_NEGATIVE_SHARE = 0.05


def canonical_domain(name: str) -> str:
    """Map the collection's domain names (`sigma0_db`, `amplitude_dB`, ...) onto the three the codec knows."""
    key = str(name).strip().lower()
    if key not in DOMAIN_ALIASES:
        raise InputRasterError(f"unknown value domain {name!r}; expected one of {sorted(DOMAIN_ALIASES)}")
    return DOMAIN_ALIASES[key]


@dataclass(frozen=True)
class PreprocessingParams:
    """What a checkpoint, model bundle or compressed file must carry to undo the preprocessing.

    `clip_db` holds bounds computed on the training split (for reporting and as a fallback); the codec stores
    the bounds it actually used for each band of each file in that file's header.
    """

    input_domain: str = "intensity"
    clip_rule: str = "per_band_percentile"
    clip_percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    clip_db: tuple[float, float] | None = None
    noise_floor_db: float = NOISE_FLOOR_DB
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clip_percentiles"] = [float(v) for v in self.clip_percentiles]
        d["clip_db"] = None if self.clip_db is None else [float(v) for v in self.clip_db]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessingParams":
        if not isinstance(d, dict):
            raise InputRasterError(f"preprocessing parameters must be a mapping, got {type(d).__name__}")
        clip_db = d.get("clip_db")
        params = cls(
            input_domain=canonical_domain(d.get("input_domain", "intensity")),
            clip_rule=str(d.get("clip_rule", "per_band_percentile")),
            clip_percentiles=tuple(float(v) for v in d.get("clip_percentiles", DEFAULT_PERCENTILES)),
            clip_db=None if clip_db is None else (float(clip_db[0]), float(clip_db[1])),
            noise_floor_db=float(d.get("noise_floor_db", NOISE_FLOOR_DB)),
            extra=dict(d.get("extra", {})),
        )
        # An edited or damaged record would otherwise code every raster with a nonsense clip range.
        lo, hi = (params.clip_percentiles + (math.nan, math.nan))[:2]
        if len(params.clip_percentiles) != 2 or not 0.0 <= lo < hi <= 100.0:
            raise InputRasterError(f"clip_percentiles must be two percentiles, low < high, within 0..100; got "
                                   f"{list(params.clip_percentiles)}")
        if not math.isfinite(params.noise_floor_db):
            raise InputRasterError(f"noise_floor_db must be a finite dB value, got {params.noise_floor_db}")
        return params


def validity_mask(values: np.ndarray, domain: str, nodata: float | None = None) -> np.ndarray:
    """True where a pixel holds a real measurement."""
    domain = canonical_domain(domain)
    valid = np.isfinite(values)
    if nodata is not None and np.isfinite(nodata):
        valid &= values != nodata
    if domain != "db":
        valid &= values > 0
    return valid


def to_db(values: np.ndarray, domain: str, nodata: float | None = None,
          noise_floor_db: float = NOISE_FLOOR_DB, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (dB as float32, validity mask). Invalid pixels are set to the noise floor.

    `mask` (bool, same shape, True = valid; e.g. `RasterReader.read_valid`, a GDAL mask band) marks more pixels
    invalid, exactly as a nodata value does."""
    domain = canonical_domain(domain)
    values = np.asarray(values)
    valid = validity_mask(values, domain, nodata)
    if mask is not None:
        valid &= mask
    # float32 log10 is twice as fast as float64 and exact to ~1e-6 dB, far below anything the codec resolves;
    # float64 inputs keep float64 so their dB values lose nothing before the final cast.
    work = np.float64 if values.dtype == np.float64 else np.float32
    x = np.where(valid, values, 1.0).astype(work, copy=False)
    if domain == "intensity":
        db = np.log10(x) * work(10.0)
    elif domain == "amplitude":
        db = np.log10(x) * work(20.0)
    else:
        db = x  # np.where above already made a fresh array
    db = np.maximum(db, work(noise_floor_db))
    db[~valid] = noise_floor_db
    return db.astype(np.float32, copy=False), valid


def from_db(db: np.ndarray, domain: str, dtype=np.float64) -> np.ndarray:
    """Inverse of `to_db` for valid pixels, computed and returned in the float `dtype`.

    float64 by default, to keep precision until a caller's final cast. A caller whose output holds at most
    float32's 24 bits (float32, 16- and 8-bit integers) passes float32: exp in float32 is about 9x faster than
    float64's power (0.7 against 6.5 ms per 512 x 512 tile, a tenth of a tile's decoder network) and its error,
    at most about 5 float32 ulps (6e-7 relative, 3e-6 dB), is below what such outputs can hold."""
    domain = canonical_domain(domain)
    work = np.dtype(dtype).type
    db = np.asarray(db, dtype=work)
    if domain == "intensity":
        return np.exp(db * work(math.log(10.0) / 10.0))
    if domain == "amplitude":
        return np.exp(db * work(math.log(10.0) / 20.0))
    return db


def percentile_bounds(db: np.ndarray, valid: np.ndarray | None = None,
                      percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> tuple[float, float]:
    """Clip bounds (lo, hi) in dB from the valid pixels; widened to at least MIN_RANGE_DB."""
    sample = db[valid] if valid is not None else db.ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise InputRasterError("no valid pixels to compute clip bounds from (all nodata/invalid)")
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    if hi - lo < MIN_RANGE_DB:
        mid = 0.5 * (hi + lo)
        lo, hi = mid - MIN_RANGE_DB / 2, mid + MIN_RANGE_DB / 2
    return lo, hi


def normalise(db: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """dB -> [0,1] (float32), clipping values outside [lo, hi]."""
    out = (np.asarray(db, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def denormalise(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """[0,1] -> dB (float32)."""
    return np.asarray(x, dtype=np.float32) * np.float32(hi - lo) + np.float32(lo)


def tagged_domain(metadata: dict | None) -> tuple[str, str] | None:
    """(domain, why) from a raster's `VALUE_DOMAIN` metadata tag (as the shared collection and our
    reconstructions carry), which wins over the values and speaks for every band; None without a known one."""
    tag = (metadata or {}).get("VALUE_DOMAIN")
    if tag:
        try:
            return canonical_domain(tag), f"VALUE_DOMAIN tag {tag!r}"
        except InputRasterError:
            log.warning("ignoring unknown VALUE_DOMAIN tag %r", tag)
    return None


def explain_domain(dtype: str, sample: np.ndarray, scaled: bool = False) -> tuple[str, str]:
    """(domain, why) of a band from its values, when neither the user nor a tag (`tagged_domain`) gives one;
    robust to a few odd pixels. `sample`: physical values (raster_io.physical_values); `scaled`: the band has a
    GDAL scale or offset.

    1. integer rasters are amplitude (Sentinel-1 GRD digital numbers are uint16 amplitudes), except scaled ones
       whose physical values are at least 5% negative, which amplitude cannot be: dB (int16 hundredths of a dB);
    2. float rasters are dB when at least 5% of the finite sampled values are negative, otherwise intensity.
       One negative pixel must not flip a linear raster to dB; the 1st-99th percentile range is reported so a
       user can see the call was sensible.
    """
    integer = np.dtype(dtype).kind in "iu"
    if integer and not scaled:
        return "amplitude", f"integer data type {dtype}"
    finite = sample[np.isfinite(sample)]
    if not finite.size:
        return ("amplitude", f"integer data type {dtype}") if integer else ("intensity", "no finite values sampled")
    share = float((finite < 0).mean())
    p1, p99 = (float(v) for v in np.percentile(finite, (1, 99)))
    stats = f"{100 * share:.1f}% negative values, 1st-99th percentile {p1:.3g}..{p99:.3g}"
    kind = f"{dtype} data with a scale/offset" if integer else "float data"
    if share >= DB_NEGATIVE_SHARE:
        return "db", f"{kind} with {stats}"
    return ("amplitude" if integer else "intensity"), f"{kind} with {stats}"
