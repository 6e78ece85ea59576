"""One explicit schema for the .sarc JSON header, shared by the reader and the writer.

Why a schema: a hostile file can carry valid checksums, so every field is attacker-chosen. Checking types and
ranges field by field where each is used left holes (strings in the geotransform, integer band names, a
4096-band index pointing every entry at one chunk...). Here the whole header is checked once, before anything
is sized from it, in two steps:

1. `SCHEMA` (JSON Schema 2020-12, checked by the `jsonschema` library): types, required fields, ranges;
2. `check_consistency`: what a schema cannot say: counts that must agree with the raster and tile sizes, and
   a tile index whose chunks lie inside the file, are non-empty and never overlap. Non-overlap bounds the number
   of chunks by the file's real size, so a header cannot make a reader loop or allocate beyond what the file
   holds; the index is checked with numpy in O(n log n) for that reason, not item by item by the schema.

The writer runs the same two steps on the header it is about to write (`ContainerWriter.finish`), so it can never
produce a file its own reader refuses. docs/format.md describes the fields.
"""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np

from .errors import ContainerFormatError
from .preprocessing import DOMAIN_ALIASES
from .tiling import MAX_WRITE_TILE

MAX_BANDS = 4096
MAX_PIXELS = 10**11  # per band; ~300k x 300k, far beyond any SAR product
MAX_SIDE = 1 << 31
#: Largest tile a reader accepts: every readable file (format 3) comes from a writer capped at MAX_WRITE_TILE.
MAX_READ_TILE = MAX_WRITE_TILE
MAX_HALO = 1 << 12
MAX_CHANNELS = 1024
#: dB values beyond this are not dB (10*log10 of the largest float64 is 3083); float32 must still resolve them.
MAX_ABS_DB = 1e4
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")
LATENT_CODER = "range-meanscale-int16"
#: Latent coders of the retired fixed-bottleneck model (format versions 1-2): its files name one of these and
#: are refused with one message saying what they need, before the schema would list what they lack.
RETIRED_LATENT_CODERS = ("zstd-int8", "range-factorized-int8", "range-hyperprior-int8")
#: Highest quality a header may name (a model's levels are a handful; this bounds a forged value).
MAX_QUALITY = 64


def _int(lo: int, hi: int, **extra) -> dict:
    return {"type": "integer", "minimum": lo, "maximum": hi, **extra}


_NUM = {"type": "number"}
#: ground control points a header may carry (raster.gcps); a Sentinel-1 GRD scene has about 200, an SLC burst
#: grid about 1,000
MAX_GCPS = 100_000
_SHA = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
_DB = {"type": "number", "minimum": -MAX_ABS_DB, "maximum": MAX_ABS_DB}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INDEX = {"type": "array"}  # entries are checked by check_consistency (vectorised, bounded by the file size)

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["coders", "model", "domain", "clip_db", "outliers", "rate", "hyperprior", "raster", "tiling",
                 "chunks"],
    "properties": {
        "format": {"const": "sarc"},
        "format_version": _int(1, 1 << 16),
        "software": {"type": "string"},
        "coders": {
            "type": "object", "required": ["latent", "mask", "outlier"],
            "properties": {"latent": {"const": LATENT_CODER}, "mask": {"const": "packbits-zstd"},
                           "outlier": {"const": "zstd-int32-byteplanes"}},
        },
        "hyperprior": {"type": "object", "required": ["sha256"], "properties": {"sha256": _SHA}},
        "model": {
            "type": "object", "required": ["name", "decoder_sha256", "latent_channels"],
            "properties": {"name": {"type": "string"}, "variant": {"type": ["string", "null"]},
                           "decoder_sha256": _SHA, "encoder_sha256": {"type": ["string", "null"]},
                           "latent_channels": _int(1, MAX_CHANNELS),
                           "downsampling_factor": {"const": 16}, "halo": _int(0, MAX_HALO)},
        },
        "preprocessing": {
            "type": "object",
            "properties": {"input_domain": {"enum": sorted(DOMAIN_ALIASES)}, "clip_rule": {"type": "string"},
                           "clip_percentiles": {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2},
                           "clip_db": {"oneOf": [{"type": "null"},
                                                 {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}]},
                           "noise_floor_db": _DB, "extra": {"type": "object"}},
        },
        "domain": {"enum": sorted(DOMAIN_ALIASES)},
        "clip_db": {"type": "array", "maxItems": MAX_BANDS,
                    "items": {"type": "array", "items": _DB, "minItems": 2, "maxItems": 2}},
        "outliers": {"type": "object", "required": ["step_db"],
                     "properties": {"step_db": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                                    "margin_db": {"type": "number", "minimum": 0},
                                    "pixels": {"type": "integer", "minimum": 0}}},
        "invalid_pixels": {"type": "integer", "minimum": 0},
        "rate": {
            "type": "object", "required": ["quality"],
            "properties": {"quality": {"type": "number", "minimum": 0, "maximum": MAX_QUALITY},
                           "levels": _int(1, MAX_QUALITY + 1), "chosen_by": {"type": "string"},
                           "rounding": {"enum": ["nearest", "rate_distortion"]}},
        },
        "raster": {
            "type": "object",
            "required": ["width", "height", "band_count", "dtype", "band_names", "crs_wkt", "geotransform",
                         "nodata"],
            "properties": {
                "width": _int(1, MAX_SIDE), "height": _int(1, MAX_SIDE), "band_count": _int(1, MAX_BANDS),
                "dtype": {"enum": list(DTYPES)},
                "band_names": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_BANDS},
                "crs_wkt": {"type": "string"},
                "geotransform": {"type": "array", "items": _NUM, "minItems": 6, "maxItems": 6},
                "nodata": {"type": "array", "maxItems": MAX_BANDS,
                           "items": {"oneOf": [{"type": "null"}, _NUM, {"enum": ["nan", "inf", "-inf"]}]}},
                "metadata": _STR_MAP,
                "gdal_mask": {"type": "string"},
                "alpha_band": _int(1, MAX_BANDS + 1),
                "gcps": {"type": "object", "required": ["points"],
                         "properties": {"crs_wkt": {"type": "string"},
                                        "points": {"type": "array", "maxItems": MAX_GCPS,
                                                   "items": {"type": "array", "items": _NUM,
                                                             "minItems": 5, "maxItems": 5}}}},
                "bands": {"type": "array", "maxItems": MAX_BANDS, "items": {
                    "type": "object",
                    "properties": {"description": {"type": "string"}, "metadata": _STR_MAP,
                                   "color_interp": {"type": "string"},
                                   "scale": {"type": ["number", "null"]}, "offset": {"type": ["number", "null"]}}}},
            },
        },
        "source": {"type": "object", "required": ["bytes", "mtime_ns"],
                   "properties": {"bytes": {"type": "integer", "minimum": 0}, "mtime_ns": {"type": "integer"}}},
        "tiling": {
            "type": "object", "required": ["tile_size", "halo"],
            "properties": {"tile_size": _int(16, MAX_READ_TILE, multipleOf=16),
                           "halo": _int(0, MAX_HALO, multipleOf=16), "factor": {"const": 16},
                           "cols": {"type": "integer"}, "rows": {"type": "integer"}, "method": {"type": "string"}},
        },
        "chunks": {"type": "object", "required": ["latent", "mask", "outlier"],
                   "properties": {"latent": _INDEX, "mask": _INDEX, "outlier": _INDEX}},
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def header_cap(file_size: int, absolute_cap: int) -> int:
    """Most decompressed header bytes a file of `file_size` bytes may hold.

    A real header is a few KB plus ~100 bytes per chunk, and every chunk costs file bytes; a cap proportional to
    the file keeps a 16 KB forgery from making the reader parse a 256 MB index.
    """
    return min(absolute_cap, (1 << 20) + 64 * int(file_size))


def _finite_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError(f"number {s} is out of range")
    return v


def _no_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse(raw: bytes) -> object:
    """Strict JSON: no NaN/Infinity literals, no number that overflows to infinity."""
    return json.loads(raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)


def validate(h, chunks_end: int, where: str) -> None:
    """Schema, then cross-field consistency; any failure is one ContainerFormatError naming `where`."""
    coders = h.get("coders") if isinstance(h, dict) else None
    latent = coders.get("latent") if isinstance(coders, dict) else None
    if isinstance(latent, str) and latent in RETIRED_LATENT_CODERS:
        software = h.get("software") if isinstance(h.get("software"), str) else "an older sar-compress"
        raise ContainerFormatError(
            f"{where}: written by {software[:60]} with the retired fixed-bottleneck model (latent coder {latent}); "
            f"this version decodes only {LATENT_CODER} files: reconstruct it with the release that wrote it, then "
            f"compress the result again")
    err = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(h))
    if err is not None:
        field = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        msg = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        raise ContainerFormatError(f"{where}: header field {field} is invalid: {msg}")
    check_consistency(h, chunks_end, where)


def _fail(where: str, msg: str) -> ContainerFormatError:
    return ContainerFormatError(f"{where}: header {msg}")


def tile_count(width: int, height: int, tile_size: int) -> tuple[int, int]:
    """(cols, rows) of the tile grid; the raster is padded to multiples of 16 first (see core.tiling)."""
    return -(-(-(-width // 16) * 16) // tile_size), -(-(-(-height // 16) * 16) // tile_size)


def check_consistency(h: dict, chunks_end: int, where: str) -> None:
    """What the schema cannot express; assumes `h` passed the schema."""
    r, t = h["raster"], h["tiling"]
    w, hh, nb = r["width"], r["height"], r["band_count"]
    if w * hh > MAX_PIXELS:
        raise _fail(where, f"claims an absurd raster size {w} x {hh}")
    for key in ("band_names", "nodata", "bands"):
        if key in r and len(r[key]) != nb:
            raise _fail(where, f"raster {key} has {len(r[key])} entries for {nb} bands")
    if len(h["clip_db"]) != nb:
        raise _fail(where, f"clip_db has {len(h['clip_db'])} entries for {nb} bands")
    if any(not hi > lo for lo, hi in h["clip_db"]):
        raise _fail(where, "clip_db bounds are invalid (need lo < hi)")
    cols, rows = tile_count(w, hh, t["tile_size"])
    if t.get("cols", cols) != cols or t.get("rows", rows) != rows:
        raise _fail(where, f"tiling {t.get('cols')} x {t.get('rows')} does not match the raster ({cols} x {rows})")
    n = cols * rows * nb
    # Every latent entry is a distinct non-empty chunk: more entries than chunk bytes cannot be a real file.
    if n > max(0, chunks_end - 16):
        raise _fail(where, f"needs {n} latent chunks but the file holds only {chunks_end} bytes (forged or truncated)")
    entries = []
    for kind in ("latent", "mask", "outlier"):
        lst = h["chunks"][kind]
        if len(lst) != n:
            raise _fail(where, f"tile index '{kind}' has {len(lst)} entries, expected {n}")
        for e in lst:
            if e is None and kind != "latent":
                continue
            if not (type(e) is list and len(e) == 3 and all(type(v) is int for v in e)):
                raise _fail(where, f"tile index '{kind}' entry {str(e)[:40]} is malformed")
            entries.append(e)
    if not entries:
        return
    try:
        a = np.array(entries, dtype=np.int64)
    except OverflowError:
        raise _fail(where, "tile index holds an out-of-range number") from None
    off, length, crc = a[:, 0], a[:, 1], a[:, 2]
    if (off < 16).any() or (length < 1).any() or (crc < 0).any() or (crc >= 1 << 32).any() \
            or (off > chunks_end).any() or (length > chunks_end - off).any():
        raise _fail(where, "chunk lies outside the file (truncated or forged)")
    order = np.argsort(off, kind="stable")
    so, sl = off[order], length[order]
    if (so[1:] < so[:-1] + sl[:-1]).any():
        raise _fail(where, "tile index has overlapping chunks (forged)")
