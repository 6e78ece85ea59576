"""Streaming check: compress and reconstruct a large raster with bounded memory, and time random access.

Builds an N x N float32 raster (default 20,000 x 20,000, 1.6 GB) by tiling a real Sentinel-1 scene (mirrored so
edges meet), written block by block; then prints MP/s and peak RSS of compress and reconstruct, and the time
and bytes read to decode a 1000 x 1000 window versus the whole file.

    .venv/bin/python benchmarks/codec_memory.py --bundle sar_compress_plugin/models/default --size 20000

Compress, the window read and the whole-file reconstruct each run in their own process, as `sar-compress` and
`sar-reconstruct` do, so each peak RSS belongs to that operation alone (in one process, memory the encoder's
onnxruntime session had taken stays with the process and is counted again under reconstruct).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
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
    """This process's peak resident memory in MB: VmHWM of its own address space where Linux gives it.

    ru_maxrss is not enough in a child: Linux folds the high-water mark of the address space a process had before
    exec() (the forked copy of its parent, e.g. one that just wrote a 1.6 GB test raster) into it, so a child
    reported its parent's peak (1,390 MB for a compress that does not reach it).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
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


PHASES = ("compress", "window", "reconstruct")


def run_phase(phase: str, a, src: Path, sarc: Path, rec: Path) -> dict:
    """One phase in this process (called in a child): its figures and its own peak RSS."""
    limit_gdal_cache()  # as the command-line tools do
    mp = a.size * a.size / 1e6
    res: dict = {}
    if phase == "compress":
        c = compress(src, sarc, CompressOptions(model_dir=a.bundle, device=a.device, tile_size=a.tile))
        res.update(compress_s=round(c.seconds, 2), compress_mp_s=round(mp / c.seconds, 2), bpp=round(c.bpp, 4),
                   ratio=round(c.ratio, 1), file_bytes=c.output_bytes, provider=c.provider)
    elif phase == "window":
        with CompressedRaster(sarc, model_dirs=[a.bundle], device=a.device) as cr:
            _ = cr.model
            b0, t = cr.bytes_read, time.perf_counter()
            cr.read((a.size // 2, a.size // 2, min(1000, a.size // 2), min(1000, a.size // 2)), band=0)
            res["window_1000_s"] = round(time.perf_counter() - t, 3)
            res["window_1000_bytes_read"] = cr.bytes_read - b0
            res["whole_file_bytes"] = sarc.stat().st_size
    elif phase == "reconstruct":
        r = reconstruct(sarc, rec, model_dirs=[a.bundle], device=a.device)
        res.update(reconstruct_s=round(r.seconds, 2), reconstruct_mp_s=round(mp / r.seconds, 2),
                   decode_provider=r.provider)
        rec.unlink()
    res[f"peak_rss_{phase}_mb"] = round(peak_rss_mb(), 1)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="model bundle folder")
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--source", default=str(DEFAULT_SOURCE))
    p.add_argument("--workdir", default=None,
                   help="folder for the big files, kept (default: a temporary folder, removed at the end)")
    p.add_argument("--reuse", action="store_true",
                   help="keep big.tif / big.sarc already in --workdir (same --size) instead of rebuilding them")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--skip-full-reconstruct", action="store_true", help="same as leaving out the reconstruct phase")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: run one phase in a child
    a = p.parse_args(argv)

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="sarc_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    src, sarc, rec = work / "big.tif", work / "big.sarc", work / "big_rec.tif"
    if a.phase:
        print(json.dumps(run_phase(a.phase, a, src, sarc, rec)))
        return 0
    try:
        return measure(a, work, src, sarc)
    finally:
        if not a.workdir:  # it holds the big raster (1.6 GB at the default size): not left behind
            shutil.rmtree(work, ignore_errors=True)


def measure(a: argparse.Namespace, work: Path, src: Path, sarc: Path) -> int:
    res: dict = {"size": a.size, "tile": a.tile, "note": "each phase in its own process, as sar-compress and "
                 "sar-reconstruct run; peak RSS is that process's own high-water mark (VmHWM)"}
    if not (a.reuse and src.exists()):
        t = time.perf_counter()
        build_raster(Path(a.source), src, a.size)
        res["build_s"] = round(time.perf_counter() - t, 2)
    phases = [ph for ph in PHASES if ph in a.phases and not (ph == "reconstruct" and a.skip_full_reconstruct)]
    if "compress" not in phases and not sarc.exists():
        phases.insert(0, "compress")
    for phase in phases:
        child = [sys.executable, str(Path(__file__).resolve()), "--bundle", a.bundle, "--size", str(a.size),
                 "--tile", str(a.tile), "--device", a.device, "--workdir", str(work), "--phase", phase]
        out = subprocess.run(child, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"phase {phase} failed:\n{out.stderr[-3000:]}")
        res.update(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{phase}: {json.dumps({k: v for k, v in res.items() if phase in k or k in ('bpp', 'file_bytes')})}",
              file=sys.stderr, flush=True)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
