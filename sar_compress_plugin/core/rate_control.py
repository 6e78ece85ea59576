"""Choosing the quality a raster is compressed at: given directly, or searched for a bits-per-pixel or dB-RMSE
target on sample tiles.

One model covers the whole rate range (core/hyperprior.py: a quality is a float between 0 and the top trained
level), so a target is met by searching that float. The encoder network's output does not depend on the
quality, so the sample tiles are encoded once; each step of the search only re-runs the cheap parts (gains,
hyper-encoder, integer hyper-decoder, range coder, and for a dB target the decoder network). The samples are
tiles spread evenly over the raster, not its first tiles, so a scene whose top rows are sea or no-data does not
set the rate for the land below. Rate and error are monotonic in the quality, so a bisection finds it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import SarCompressError
from .pipeline import thread_pool
from .preprocessing import normalise, to_db

log = logging.getLogger(__name__)

SAMPLE_TILES = 4
SEARCH_STEPS = 8


@dataclass(frozen=True)
class RateTarget:
    """At most one of quality, bpp (per band) and db_rmse; none means the bundle's default quality."""

    quality: float | None = None
    bpp: float | None = None
    db_rmse: float | None = None

    @classmethod
    def from_options(cls, quality=None, bpp=None, db_rmse=None) -> "RateTarget":
        given = {k: v for k, v in (("quality", quality), ("target bpp", bpp), ("target dB RMSE", db_rmse))
                 if v is not None}
        if len(given) > 1:
            raise SarCompressError(f"give one of quality, target bpp and target dB RMSE, not {' and '.join(given)}")
        for name, v in given.items():
            try:
                ok = math.isfinite(float(v)) and (float(v) >= 0 if name == "quality" else float(v) > 0)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise SarCompressError(f"{name} {v!r} must be a finite number"
                                       f"{' >= 0' if name == 'quality' else ' > 0'}")
        return cls(*(None if v is None else float(v) for v in (quality, bpp, db_rmse)))


def _sample(model, reader, grid, domain, bounds, pp, check_cancel: Callable[[], None]):
    """[(band, x (1, H, W) padded to 16, valid (H, W), (lo, hi))] for up to SAMPLE_TILES tiles per band.

    Tiles spread evenly over the raster; where none of them holds a valid pixel (a scene that is mostly
    no-data, its data in a corner), tiles spread evenly over those that do: the target was refused with "no
    valid pixels in the sample tiles" for a raster that compresses. `check_cancel` before each tile read: that
    search for tiles with data reads every tile of the raster."""
    info = reader.info

    def spread(indices):
        return sorted({indices[int(round(v))] for v in np.linspace(0, len(indices) - 1,
                                                                    min(SAMPLE_TILES, len(indices)))})

    def read(i):
        check_cancel()
        c, r, w, h = grid.core_in_raster(i)
        for b in range(info.band_count):
            values, nodata = reader.physical(b, reader.read(b, c, r, w, h))  # through a scale/offset, as coded
            db, valid = to_db(values, domain, nodata, pp.noise_floor_db, reader.read_valid(b, c, r, w, h))
            yield b, db, valid, h, w

    def take(picks):
        out = []
        for i in picks:
            for b, db, valid, h, w in read(i):
                if not valid.any():
                    continue
                x = normalise(db, *bounds[b])
                x = np.pad(x, ((0, -h % 16), (0, -w % 16)), mode="edge")
                out.append((b, x[None].astype(np.float32), valid, bounds[b]))
        return out

    picks = spread(list(range(grid.count)))
    out = take(picks)
    if not out:
        with_data = [i for i in range(grid.count)
                     if i not in picks and any(valid.any() for _, _, valid, _, _ in read(i))]
        if with_data:
            out = take(spread(with_data))
    return out


class _Probe:
    """Rate and error of the sample tiles at a given quality (latents from the encoder network, once)."""

    def __init__(self, model, samples, pool, rd_rounding: bool):
        """`pool` runs the sample tiles at once, like the codec's tile pipeline (core/pipeline.py); `rd_rounding`
        as the codec will code the file (core/rd_rounding.py)."""
        self.model, self.coder, self.pool = model, model.hyperprior, pool
        self.rd_rounding = rd_rounding
        self.samples = samples
        self.latents = list(pool.map(lambda s: model.encode(s[1][None])[0], samples))
        self.pixels = sum(v.size for _, _, v, _ in samples)

    def _code(self, y: np.ndarray, quality: float) -> tuple[bytes, np.ndarray]:
        ys = y * self.coder.gain(quality)
        rounding = self.model.rounding_weights(quality) if self.rd_rounding else None
        return self.coder.encode(ys, self.model.hyper_encode(ys), rounding)

    def bpp(self, quality: float) -> float:
        def bits(y):
            return 8 * len(self._code(y, quality)[0])

        return sum(self.pool.map(bits, self.latents)) / self.pixels

    def db_rmse(self, quality: float) -> float:
        inverse = self.coder.inverse_gain(quality)

        def squared_errors(sample_and_latents):
            (_, x, valid, (lo, hi)), y = sample_and_latents
            y_hat = self._code(y, quality)[1] * inverse
            h, w = valid.shape
            x_hat = np.clip(self.model.decode(y_hat[None])[0, 0, :h, :w], 0.0, 1.0)
            err = (x_hat - x[0, :h, :w])[valid] * (hi - lo)
            return float(np.square(err, dtype=np.float64).sum()), err.size

        sums = list(self.pool.map(squared_errors, zip(self.samples, self.latents)))
        return math.sqrt(sum(se for se, _ in sums) / sum(n for _, n in sums))


def choose_quality(target: RateTarget, model, reader, grid, domain, bounds, pp, rd_rounding: bool,
                   check_cancel: Callable[[], None]) -> dict:
    """The file header's "rate" section: the quality used, and how it was chosen (with the sample estimate).
    `rd_rounding` as the file will be coded. `check_cancel` raises when the user has cancelled: called between
    the search's steps, each of which codes (and, for a dB target, decodes) every sample tile, so a cancel
    during a search is heard within one step, not after all ten (seconds each with large tiles)."""
    coder = model.hyperprior
    top = float(coder.levels - 1)
    if target.bpp is None and target.db_rmse is None:
        q = model.default_quality if target.quality is None else coder.check_quality(target.quality)
        return {"quality": q, "levels": coder.levels, "chosen_by": "default" if target.quality is None else "quality"}
    samples = _sample(model, reader, grid, domain, bounds, pp, check_cancel)
    if not samples:
        raise SarCompressError("no valid pixels in the sample tiles to search a quality for the target")
    check_cancel()
    with thread_pool(model.workers, "sarc-rate") as pool:
        return _search(target, _Probe(model, samples, pool, rd_rounding), coder, top, check_cancel)


def _search(target: RateTarget, probe: _Probe, coder, top: float, check_cancel: Callable[[], None]) -> dict:
    def measured(by):
        def at(quality: float) -> float:
            check_cancel()
            return by(quality)
        return at

    if target.bpp is not None:
        measure, goal, kind = measured(probe.bpp), target.bpp, "bpp"
        ok = lambda v: v <= goal  # noqa: E731 (the largest quality within the budget)
    else:
        measure, goal, kind = measured(probe.db_rmse), target.db_rmse, "db_rmse"
        ok = lambda v: v > goal  # noqa: E731 (the smallest quality that reaches the error: search its complement)
    lo, hi = 0.0, top
    v_lo, v_hi = measure(lo), measure(hi)
    if ok(v_hi):
        q, v = hi, v_hi
    elif not ok(v_lo):
        q, v = lo, v_lo
    else:
        for _ in range(SEARCH_STEPS):  # invariant: ok(lo), not ok(hi)
            mid = 0.5 * (lo + hi)
            v_mid = measure(mid)
            if ok(v_mid):
                lo, v_lo = mid, v_mid
            else:
                hi, v_hi = mid, v_mid
        q, v = (lo, v_lo) if kind == "bpp" else (hi, v_hi)
    met = v <= goal
    if not met:
        log.warning("target %s %.3f cannot be met by this model: quality %.3f gives %.3f on the sample tiles",
                    kind, goal, q, v)
    log.info("quality %.3f chosen for %s %.3f (sample estimate %.3f on %d tile-bands)", q, kind, goal, v,
             len(probe.samples))
    return {"quality": round(q, 4), "levels": coder.levels, "chosen_by": kind, "target": goal,
            "sample_estimate": v, "target_met_on_samples": bool(met)}
