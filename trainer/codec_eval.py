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


def scene_split(name: str, summary: dict) -> str:
    """Which part of the bundle's training run `name` was: figures on scenes it trained on flatter it, so the
    tables say which scenes are not validation scenes."""
    if "val_scenes" not in summary:
        return "split not recorded"
    if name in summary["val_scenes"]:
        return "validation"
    return "training" if name in summary.get("train_scenes", []) else "not in its run's data"


def scene_files(bundle: str | Path, scenes: list[str] | None = None,
                data: str | Path | None = None) -> list[tuple[Path, dict]]:
    """(file, manifest entry) of each scene to evaluate the bundle on: its training run's validation scenes, or
    the named ones. A name not found is refused (a typo was dropped without a word, and the table still spoke of
    validation scenes), as is a scene of a domain the codec does not code."""
    summary = load_manifest(bundle, verify=False).get("training", {}).get("data_summary", {})
    data = Path(data or summary.get("data", ""))
    wanted = sorted(set(scenes or summary.get("val_scenes", [])))
    if not wanted:
        raise SarCompressError(f"{bundle}: the manifest names no validation scenes; pass --scenes")
    found = {p.name: (p, e) for p, e in discover(data)}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise SarCompressError(f"no scene {', '.join(missing)} under {data} ("
                               + ("--scenes takes names of files there)" if scenes else "pass --data if it moved)"))
    skipped = [name for name in wanted if str(found[name][1].get("value_domain", "")).lower() in SKIPPED_DOMAINS]
    if skipped:
        raise SarCompressError(f"{', '.join(skipped)}: {found[skipped[0]][1]['value_domain']} data, not an image "
                               f"the codec codes")
    return [found[name] for name in wanted]


def evaluate_bundle(bundle: str | Path, scenes: list[str] | None = None, data: str | Path | None = None,
                    quality: float | None = None, tile_size: int = 512, device: str = "cpu") -> dict:
    """A bundle on its training run's validation scenes (or the named ones, each marked with its `scene_split`),
    through the codec."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle, verify=False)  # the codec verifies the files when it loads them
    training = manifest.get("training", {})
    summary = training.get("data_summary", {})
    files = scene_files(bundle, scenes, data)
    per_file, rows = [], []
    with tempfile.TemporaryDirectory(prefix="sar-eval-") as tmp:
        for path, entry in files:
            res = evaluate_file(path, entry["value_domain"], bundle, Path(tmp), quality, tile_size, device)
            res["split"] = scene_split(path.name, summary)
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
