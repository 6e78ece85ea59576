"""Streaming check: compress and reconstruct a large raster with bounded memory, and time random access.

Builds an N x N float32 raster (default 20,000 x 20,000, 1.6 GB) by tiling a real Sentinel-1 scene (mirrored so
edges meet), written block by block; then prints MP/s and peak RSS of compress and reconstruct, and the time
and bytes read to decode a 1000 x 1000 window versus the whole file.

    .venv/bin/python benchmarks/codec_memory.py --bundle sar_compress_plugin/models/default --size 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, reconstruct  # noqa: E402
from sar_compress_plugin.core.raster_io import GeoTiffWriter, RasterReader, limit_gdal_cache  # noqa: E402

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_raster(source: Path, out: Path, size: int, block: int = 1024) -> None:
    with RasterReader(source) as r:
        i = r.info
        tile = r.read(0, 0, 0, i.width, i.height).astype(np.float32)
    # mirror so the repeated tile is continuous across its edges
    period = np.block([[tile, tile[:, ::-1]], [tile[::-1], tile[::-1, ::-1]]])
    ph, pw = period.shape
    with GeoTiffWriter(out, size, size, 1, "float32", geotransform=(0, 10, 0, 0, 0, -10),
                       band_names=["VV"]) as w:
        for r0 in range(0, size, block):
            h = min(block, size - r0)
            rows = np.take(period, np.arange(r0, r0 + h) % ph, axis=0)
            w.write(0, 0, r0, np.take(rows, np.arange(size) % pw, axis=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle folder")
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--source", default=str(DEFAULT_SOURCE))
    p.add_argument("--workdir", default=None, help="folder for the big files (default: a temp folder)")
    p.add_argument("--skip-full-reconstruct", action="store_true")
    a = p.parse_args(argv)
    limit_gdal_cache()  # as the command-line tools do

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="sarc_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    src, sarc, rec = work / "big.tif", work / "big.sarc", work / "big_rec.tif"
    res: dict = {"size": a.size, "tile": a.tile}
    t = time.perf_counter()
    build_raster(Path(a.source), src, a.size)
    res["build_s"] = round(time.perf_counter() - t, 2)
    res["rss_after_build_mb"] = round(peak_rss_mb(), 1)

    c = compress(src, sarc, CompressOptions(model_dir=a.bundle, device=a.device, tile_size=a.tile))
    mp = a.size * a.size / 1e6
    res.update(compress_s=round(c.seconds, 2), compress_mp_s=round(mp / c.seconds, 2), bpp=round(c.bpp, 4),
               ratio=round(c.ratio, 1), file_bytes=c.output_bytes, provider=c.provider,
               rss_after_compress_mb=round(peak_rss_mb(), 1))

    with CompressedRaster(sarc, model_dirs=[a.bundle], device=a.device) as cr:
        _ = cr.model
        b0, t = cr.bytes_read, time.perf_counter()
        cr.read((a.size // 2, a.size // 2, min(1000, a.size // 2), min(1000, a.size // 2)), band=0)
        res["window_1000_s"] = round(time.perf_counter() - t, 3)
        res["window_1000_bytes_read"] = cr.bytes_read - b0
    if not a.skip_full_reconstruct:
        r = reconstruct(sarc, rec, model_dirs=[a.bundle], device=a.device)
        res.update(reconstruct_s=round(r.seconds, 2), reconstruct_mp_s=round(mp / r.seconds, 2),
                   whole_file_bytes=sarc.stat().st_size, rss_after_reconstruct_mb=round(peak_rss_mb(), 1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
