"""The optional low-resolution overview chunk of a .sarc file (docs/format.md, "Overview").

Why: the decoder needs about a second per megapixel on a laptop CPU, so a 20k x 20k scene cannot be decoded to
show it zoomed out. The compressor therefore stores a multilooked thumbnail (mean linear intensity of valid
pixels over `factor` x `factor` blocks, in dB, 8 bits per sample), which a viewer shows at once and replaces
with decoded pixels as the user zooms in. It is a separate chunk named in the header, so readers that do not
know it ignore it and files without it stay readable (no overview, tiles only).
"""

from __future__ import annotations

import math

import numpy as np

from . import container as C
from .errors import ContainerFormatError

OVERVIEW_CODER = "zstd-uint8-db-rowdelta"
#: The overview is at most this many samples along its longer side (a full-screen picture of any scene)...
MAX_SIDE = 1024
#: ...and at least this factor below the raster, so it stays about 8 bits per 1024 pixels per band.
MIN_FACTOR = 32
#: dB margin around the band's clip range kept in the 8-bit scale (bright targets still show saturated).
MARGIN_DB = 3.0
EMPTY = 255  # sample with no valid pixel
#: Rasters up to this many pixels get no overview by default: a viewer decodes them whole in about half a second
#: on 2 cores, and on a 512 x 512 chip the overview was 0.008 bpp per band, 5% of the lowest quality's bits.
MIN_OVERVIEW_PIXELS = 1 << 20


def wants_overview(width: int, height: int) -> bool:
    return width * height > MIN_OVERVIEW_PIXELS


def overview_factor(width: int, height: int) -> int:
    """Smallest power of two >= MIN_FACTOR that brings the longer side to MAX_SIDE samples or fewer."""
    f = MIN_FACTOR
    while math.ceil(max(width, height) / f) > MAX_SIDE:
        f *= 2
    return f


class OverviewBuilder:
    """Accumulates block means tile by tile during compression (the raster is never held whole)."""

    def __init__(self, width: int, height: int, bands: int, clip_db):
        self.factor = overview_factor(width, height)
        self.width, self.height = math.ceil(width / self.factor), math.ceil(height / self.factor)
        self.ranges = [(float(lo) - MARGIN_DB, float(hi) + MARGIN_DB) for lo, hi in clip_db]
        self._sum = np.zeros((bands, self.height * self.width), np.float64)
        self._count = np.zeros((bands, self.height * self.width), np.int64)

    def add(self, band: int, col: int, row: int, db: np.ndarray, valid: np.ndarray) -> None:
        """One tile core's dB values (and validity) placed at raster (col, row).

        The block sums are counted over the overview cells this tile touches only: counted over the whole
        overview (416,000 cells for a Sentinel-1 scene) every tile paid for two scene-sized arrays. The power
        runs in float32 (its error, about 1e-6 dB, is far below the 8-bit samples' 0.1 dB step)."""
        h, w = db.shape
        f = self.factor
        r0, c0 = row // f, col // f
        r1, c1 = (row + h - 1) // f + 1, (col + w - 1) // f + 1
        cells = ((np.arange(row, row + h) // f - r0)[:, None] * (c1 - c0)
                 + (np.arange(col, col + w) // f - c0)[None, :]).ravel()
        sel = valid.ravel()
        lin = np.exp(np.asarray(db, np.float32).ravel()[sel] * np.float32(math.log(10.0) / 10.0))
        n = (r1 - r0) * (c1 - c0)
        shape = (r1 - r0, c1 - c0)
        self._sum[band].reshape(self.height, self.width)[r0:r1, c0:c1] += \
            np.bincount(cells[sel], weights=lin, minlength=n).reshape(shape)
        self._count[band].reshape(self.height, self.width)[r0:r1, c0:c1] += \
            np.bincount(cells[sel], minlength=n).reshape(shape)

    def finish(self, writer: "C.ContainerWriter") -> dict:
        """Write one chunk per band; returns the header's `overview` field."""
        entries = []
        for b, (lo, hi) in enumerate(self.ranges):
            with np.errstate(divide="ignore", invalid="ignore"):
                db = 10.0 * np.log10(self._sum[b] / self._count[b])
            q = np.clip(np.rint((db - lo) / ((hi - lo) / 254.0)), 0, 254)
            q = np.where(self._count[b] > 0, np.nan_to_num(q, nan=0.0), EMPTY).astype(np.uint8)
            q = q.reshape(self.height, self.width)
            delta = np.diff(q, axis=1, prepend=np.uint8(0))  # uint8 wraps: a row predictor zstd likes
            entries.append(writer.add_chunk(C.zstd_compress(delta.tobytes())))
        return {"coder": OVERVIEW_CODER, "factor": self.factor, "width": self.width, "height": self.height,
                "db_range": [list(r) for r in self.ranges], "chunks": entries}


def read_overview(reader: "C.ContainerReader", band: int) -> np.ndarray | None:
    """The stored overview of one band as float32 dB (NaN where no valid pixel), or None for files without one
    (or with an overview coder this reader does not know: the overview is optional, never an error to lack)."""
    h = reader.header
    ov = h.get("overview")
    if not isinstance(ov, dict) or ov.get("coder") != OVERVIEW_CODER:
        return None
    what = f"{reader.path}: overview band {band + 1}"
    try:
        f, w, hh = int(ov["factor"]), int(ov["width"]), int(ov["height"])
        raster = h["raster"]
        lo, hi = (float(v) for v in ov["db_range"][band])
        entry = ov["chunks"][band]
        ok = (f >= 1 and w == math.ceil(raster["width"] / f) and hh == math.ceil(raster["height"] / f)
              and math.isfinite(lo) and math.isfinite(hi) and hi > lo and isinstance(entry, list)
              and len(entry) == 3 and C.PREAMBLE.size <= entry[0] and entry[0] + entry[1] <= reader.body_length)
    except (KeyError, TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise ContainerFormatError(f"{what}: header entry is malformed")
    raw = C.zstd_decompress(reader.read_chunk(entry, what), w * hh, what)
    if len(raw) != w * hh:
        raise ContainerFormatError(f"{what}: holds {len(raw)} samples, expected {w * hh}")
    q = np.cumsum(np.frombuffer(raw, np.uint8).reshape(hh, w), axis=1, dtype=np.uint8)
    db = (lo + q.astype(np.float32) * np.float32((hi - lo) / 254.0)).astype(np.float32)
    db[q == EMPTY] = np.nan
    return db
