"""Fit a bundle's static entropy tables: per-channel symbol frequencies of its latents on training scenes.

The symbols are taken from real .sarc files written by the codec itself (zstd coder), so the tables count
exactly what the range coder will later see, halos, edge tiles and all. Training scenes only: the rate
measured on held-out scenes must not come from tables fitted on them.

    python -m export.entropy_tables sar_compress_plugin/models/default [--qualities 0.25 0.5 1 2 4]

The ONNX files are untouched, so files written before the tables existed still decode with the bundle.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from sar_compress_plugin.core import container as C
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress
from sar_compress_plugin.core.entropy_coding import TABLES_NAME, load_tables, quality_key, tables_document
from sar_compress_plugin.core.errors import SarCompressError
from sar_compress_plugin.core.runtime import MANIFEST_NAME, load_manifest, sha256_file

log = logging.getLogger(__name__)

DEFAULT_QUALITIES = (0.25, 0.5, 1.0, 2.0, 4.0)


def training_scenes(manifest: dict) -> list[tuple[Path, str]]:
    """(path, value domain) of the bundle's training scenes that GDAL can read, from its data summary."""
    from trainer.data import SKIPPED_DOMAINS, discover  # noqa: PLC0415 (export already depends on the trainer)

    summary = manifest.get("training", {}).get("data_summary", {})
    names = set(summary.get("train_scenes", []))
    data = summary.get("data")
    if not names or not data or not Path(data).exists():
        return []
    return [(p, str(e.get("value_domain", "intensity"))) for p, e in discover(data)
            if p.name in names and p.suffix.lower() in (".tif", ".tiff")
            and str(e.get("value_domain", "")).lower() not in SKIPPED_DOMAINS]


def symbol_counts(bundle: Path, scenes: list[tuple[Path, str]], quality: float, qmin: int, qmax: int,
                  channels: int) -> np.ndarray:
    """(channels, qmax - qmin + 1) counts of the latent symbols the codec stores for `scenes` at `quality`."""
    counts = np.zeros((channels, qmax - qmin + 1), dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="sarc_tables_") as tmp:
        for path, domain in scenes:
            out = Path(tmp) / f"{path.stem}.sarc"
            compress(path, out, CompressOptions(model_dir=bundle, device="cpu", quality=quality, domain=domain,
                                                latent_coder=C.LATENT_CODER))
            with CompressedRaster(out, model_dirs=[bundle], device="cpu") as cr:
                for b in range(cr.bands):
                    for t in cr.grid:
                        q = cr.latents(b, t).astype(np.int64) - qmin
                        for c in range(channels):
                            counts[c] += np.bincount(q[c].ravel(), minlength=counts.shape[1])
            out.unlink()
    return counts


def fit_entropy_tables(bundle: str | os.PathLike, scenes: list[tuple[Path, str]] | None = None,
                       qualities=DEFAULT_QUALITIES) -> dict:
    """Write entropy_tables.json into `bundle` and name it (with its SHA-256) in the manifest."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle, verify=True)
    scenes = training_scenes(manifest) if scenes is None else scenes
    if not scenes:
        raise SarCompressError(f"{bundle}: no training scenes found on disk; pass --scenes FILE...")
    q = manifest["quantization"]
    qmin, qmax, channels = int(q.get("qmin", -127)), int(q.get("qmax", 127)), int(manifest["latent_channels"])
    by_quality = {}
    for quality in qualities:
        counts = symbol_counts(bundle, scenes, float(quality), qmin, qmax, channels)
        by_quality[float(quality)] = counts + 1  # every symbol stays codable
        p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            bits = float(-(np.where(counts > 0, p * np.log2(p), 0.0)).sum(axis=1).mean())
        log.info("quality %s: %d symbols, mean entropy %.3f bits/symbol", quality_key(quality), counts.sum(), bits)
    doc = tables_document(by_quality, qmin, qmax, {
        "scenes": [p.name for p, _ in scenes], "rule": "codec-stored symbols of the bundle's training scenes "
        "(GeoTIFFs), default tile size, each quality coded separately"})
    tables_path, manifest_path = bundle / TABLES_NAME, bundle / MANIFEST_NAME
    tmp_tables, tmp_manifest = tables_path.with_suffix(".json.tmp"), manifest_path.with_suffix(".json.tmp")
    tmp_tables.write_text(json.dumps(doc) + "\n")
    load_tables(tmp_tables)  # what was written must read back
    manifest["files"]["entropy_tables"] = {"path": TABLES_NAME, "sha256": sha256_file(tmp_tables)}
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp_tables, tables_path)
    os.replace(tmp_manifest, manifest_path)
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--scenes", nargs="+", type=Path, default=None,
                   help="GeoTIFFs to fit on (default: the bundle's training scenes)")
    p.add_argument("--domain", default="intensity", help="value domain of --scenes")
    p.add_argument("--qualities", nargs="+", type=float, default=list(DEFAULT_QUALITIES))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    scenes = [(s, a.domain) for s in a.scenes] if a.scenes else None
    try:
        doc = fit_entropy_tables(a.bundle, scenes, a.qualities)
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: {"symbols": v["symbols"]} for k, v in doc["tables"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
