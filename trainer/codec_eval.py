"""Evaluation through the real codec: each validation scene compressed to a .sarc file on disk, its bits
counted from the file, reconstructed, and measured with core.evaluation. This is what a user gets, quantisation,
entropy coding, outlier coding and tiling included, unlike the float PyTorch figures of `evaluate.py`."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct
from sar_compress_plugin.core.errors import SarCompressError
from sar_compress_plugin.core.evaluation import aggregate, raster_quality
from sar_compress_plugin.core.raster_io import GeoTiffWriter
from sar_compress_plugin.core.runtime import load_manifest
from trainer.data import SKIPPED_DOMAINS, discover

log = logging.getLogger(__name__)


def _as_geotiff(path: Path, work: Path) -> Path:
    """.npy stacks become a plain GeoTIFF (no georeferencing), so the codec reads every file the same way."""
    if path.suffix.lower() != ".npy":
        return path
    arr = np.load(path, allow_pickle=False)
    arr = arr[None] if arr.ndim == 2 else arr
    out = work / (path.stem + ".tif")
    with GeoTiffWriter(out, arr.shape[2], arr.shape[1], arr.shape[0], str(arr.dtype),
                       band_names=[f"t{i}" for i in range(arr.shape[0])]) as w:
        for b in range(arr.shape[0]):
            w.write(b, 0, 0, arr[b])
    return out


def evaluate_file(path: Path, domain: str, bundle: Path, work: Path, quality: float | None = None,
                  tile_size: int = 512, device: str = "cpu") -> dict:
    src = _as_geotiff(path, work)
    packed, restored = work / (path.stem + ".sarc"), work / (path.stem + "_rec.tif")
    c = compress(src, packed, CompressOptions(model_dir=bundle, device=device, quality=quality,
                                              tile_size=tile_size, domain=domain))
    reconstruct(packed, restored, model_dirs=[bundle], device=device)
    # scored in the domain the codec coded the file in, in whose dB its clip range is (`domain` canonicalised)
    rows = [dict(row, scene=path.name, bpp=c.bpp_per_band)
            for row in raster_quality(src, restored, c.domain, c.clip_db)]
    return {"scene": path.name, "bytes": c.output_bytes, "pixels": c.pixels, "bands": c.bands, "bpp": c.bpp,
            "bpp_per_band": c.bpp_per_band, "ratio": c.ratio, "provider": c.provider, "quality": c.quality,
            "per_band": rows}


def evaluate_bundle(bundle: str | Path, scenes: list[str] | None = None, data: str | Path | None = None,
                    quality: float | None = None, tile_size: int = 512, device: str = "cpu") -> dict:
    """A bundle on its training run's validation scenes (or the named ones), through the codec."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle, verify=False)  # the codec verifies the files when it loads them
    training = manifest.get("training", {})
    summary = training.get("data_summary", {})
    data = Path(data or summary.get("data", ""))
    wanted = set(scenes or summary.get("val_scenes", []))
    if not wanted:
        raise SarCompressError(f"{bundle}: the manifest names no validation scenes; pass --scenes")
    files = [(p, e) for p, e in discover(data) if p.name in wanted
             and str(e.get("value_domain", "")).lower() not in SKIPPED_DOMAINS]
    if not files:
        raise SarCompressError(f"none of the scenes {sorted(wanted)} found under {data}")
    per_file, rows = [], []
    with tempfile.TemporaryDirectory(prefix="sar-eval-") as tmp:
        for path, entry in files:
            res = evaluate_file(path, entry["value_domain"], bundle, Path(tmp), quality, tile_size, device)
            per_file.append(res)
            rows += res["per_band"]
            log.info("%s: %.3f bpp/band, dB RMSE %.3f", path.name, res["bpp_per_band"],
                     aggregate(res["per_band"])["db_rmse"])
    total_bits = 8 * sum(r["bytes"] for r in per_file)
    band_pixels = sum(r["pixels"] * r["bands"] for r in per_file)
    agg = aggregate(rows)
    agg["bpp_per_band"] = total_bits / band_pixels
    return {"bundle": str(bundle), "name": manifest.get("name"), "variant": manifest.get("variant"),
            "decoder_sha256": manifest["files"]["decoder"]["sha256"],
            "quality": per_file[0]["quality"] if per_file else quality,
            "params": training.get("parameters", {}),
            "steps_total": training.get("steps_total", training.get("steps")),
            "patches_seen_total": training.get("patches_seen_total"), "files": per_file, "aggregate": agg}
