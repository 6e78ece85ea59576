"""Latent floats <-> int8 symbols.

The integers are what the file stores, so they are the only thing that must be identical everywhere. They are
produced once at compress time and turned back into floats at decode time with plain numpy float32 arithmetic
on the CPU, from parameters stored in the file: no GPU ever decides a decoded value's symbol.

`quality` scales the step: < 1 is finer (more bits, less error), > 1 coarser. It is the codec's operating point
until a learned rate-distortion model replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelBundleError


@dataclass(frozen=True)
class QuantizationParams:
    step: tuple[float, ...]
    offset: tuple[float, ...]
    qmin: int = -127
    qmax: int = 127
    quality: float = 1.0

    def __post_init__(self) -> None:
        if len(self.step) != len(self.offset) or not self.step:
            raise ModelBundleError("quantization: step and offset must be non-empty lists of equal length")
        if not all(np.isfinite(s) and s > 0 for s in self.step) or not all(np.isfinite(o) for o in self.offset):
            raise ModelBundleError("quantization: steps must be finite and > 0, offsets finite")
        if not (-128 <= self.qmin < self.qmax <= 127):
            raise ModelBundleError(f"quantization: qmin/qmax {self.qmin}/{self.qmax} do not fit int8")
        if not (np.isfinite(self.quality) and 0.01 <= self.quality <= 100):
            raise ModelBundleError(f"quantization: quality {self.quality} must be in [0.01, 100]")

    @property
    def channels(self) -> int:
        return len(self.step)

    def effective_step(self) -> np.ndarray:
        return (np.asarray(self.step, dtype=np.float32) * np.float32(self.quality)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"step": [float(s) for s in self.step], "offset": [float(o) for o in self.offset],
                "qmin": int(self.qmin), "qmax": int(self.qmax), "quality": float(self.quality)}

    @classmethod
    def from_dict(cls, d: dict, quality: float | None = None) -> "QuantizationParams":
        try:
            return cls(step=tuple(float(s) for s in d["step"]), offset=tuple(float(o) for o in d["offset"]),
                       qmin=int(d.get("qmin", -127)), qmax=int(d.get("qmax", 127)),
                       quality=float(d.get("quality", 1.0) if quality is None else quality))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelBundleError(f"quantization parameters are malformed: {exc}") from None


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    # channel axis is -3 for (C,H,W) and (N,C,H,W)
    return v.reshape((-1, 1, 1))


def quantize(y: np.ndarray, p: QuantizationParams) -> np.ndarray:
    """Latents (..., C, h, w) float -> int8 symbols."""
    y = np.asarray(y, dtype=np.float32)
    step = _per_channel(p.effective_step(), y.ndim)
    off = _per_channel(np.asarray(p.offset, dtype=np.float32), y.ndim)
    q = np.rint((y - off) / step)
    q = np.nan_to_num(q, nan=0.0, posinf=p.qmax, neginf=p.qmin)
    return np.clip(q, p.qmin, p.qmax).astype(np.int8)


def dequantize(q: np.ndarray, p: QuantizationParams) -> np.ndarray:
    """int8 symbols (..., C, h, w) -> float32 latents, deterministically on the CPU."""
    q = np.asarray(q)
    step = _per_channel(p.effective_step(), q.ndim)
    off = _per_channel(np.asarray(p.offset, dtype=np.float32), q.ndim)
    return (q.astype(np.float32) * step + off).astype(np.float32)
