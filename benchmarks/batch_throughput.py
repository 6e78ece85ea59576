"""Archive throughput of sar-compress-batch on dask.distributed against a plain gdal_translate loop.

Small real Sentinel-1 GRD scenes (the shared `s1_iw_grd_*_512.tif`, 2 bands float32, cycled up to --scenes
copies) are compressed by the batch engine (`engine.run_jobs` + `tasks.compress_scene`, what
`sar-compress-batch` runs) on a LocalCluster of 1 and then 2 single-threaded workers, into a fresh folder
each time. The batch wall time starts once the workers are up (cluster start-up is listed apart: paid once
per batch, not per scene); every worker's first scene pays its imports and model load, as in a real run.

Baseline in the same run: `gdal_translate -of JP2OpenJPEG` (9/7 irreversible, `-ot UInt16 -scale`) over the
same scenes in a plain one-process loop, at QUALITY asking for the learned codec's measured bpp per band.
It is a speed baseline only: linear scaling to uint16 is not how rate_distortion.py compares quality.

Projection: the per-worker rate (1-worker run) times workers per machine times machines, for full
25,000 x 17,000 x 2-band IW GRD scenes. The 2-worker run's scaling efficiency is reported beside it, not
applied: on a machine whose cores are shared with other work it measures the sharing, not dask.

    .venv/bin/python benchmarks/batch_throughput.py --scenes 12 --out benchmarks/results/batch_throughput_cpu
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sar_compress_plugin.batch.engine import ClusterOptions, machine_cores, open_client, run_jobs  # noqa: E402
from sar_compress_plugin.batch.inputs import expand_inputs  # noqa: E402
from sar_compress_plugin.batch.tasks import compress_scene  # noqa: E402
from sar_compress_plugin.core.codec import CompressOptions  # noqa: E402
from sar_compress_plugin.core.raster_io import read_raster_info  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

SAR_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sar"
if not SAR_DATA.is_dir():
    SAR_DATA = Path("/work/shared/data/sar")
FULL_SCENE_MP = 25_000 * 17_000 * 2 / 1e6  # one S1 IW GRD scene, VV + VH


def _git() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def run_batch(scenes: Path, out: Path, workers: int, model) -> dict:
    t0 = time.perf_counter()
    with open_client(ClusterOptions(workers=workers, threads=1, dashboard_address=None)) as client:
        client.wait_for_workers(workers, timeout=120)
        t1 = time.perf_counter()
        jobs = expand_inputs([str(scenes)], out, (".tif",), ".sarc")
        records, _ = run_jobs(client, compress_scene, jobs,
                              {"options": CompressOptions(model_dir=model), "threads": 1}, quiet=True)
        wall = time.perf_counter() - t1
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"batch failed: {failed[0]['input']}: {failed[0]['error']}")
    mp = sum(r["pixels"] * r["bands"] for r in records) / 1e6
    return {"workers": workers, "scenes": len(records), "megapixels": round(mp, 3),
            "cluster_start_s": round(t1 - t0, 2), "wall_s": round(wall, 3),
            "scenes_per_hour": round(len(records) / wall * 3600), "mp_per_s": round(mp / wall, 4),
            "task_seconds_median": sorted(r["seconds"] for r in records)[len(records) // 2],
            "bpp": round(sum(r["bytes_out"] for r in records) * 8 / sum(r["pixels"] for r in records), 4)}


def run_jp2_loop(files: list[Path], out: Path, bpp_per_band: float) -> dict:
    quality = 100.0 * bpp_per_band / 16  # GDAL's QUALITY asks for a ratio of 100/q over the 16-bit image
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    size = pixels = mp = 0
    for f in files:
        dst = out / f"{f.stem}.jp2"
        subprocess.run(["gdal_translate", "-q", "-of", "JP2OpenJPEG", "-ot", "UInt16", "-scale",
                        "-co", f"QUALITY={quality:.4g}", "-co", "REVERSIBLE=NO", str(f), str(dst)], check=True)
        info = read_raster_info(f)
        size += dst.stat().st_size
        pixels += info.width * info.height
        mp += info.width * info.height * info.band_count / 1e6
    wall = time.perf_counter() - t0
    return {"command": f"gdal_translate -of JP2OpenJPEG -ot UInt16 -scale -co QUALITY={quality:.4g} "
                       "-co REVERSIBLE=NO IN.tif OUT.jp2", "processes": 1, "scenes": len(files),
            "wall_s": round(wall, 3), "scenes_per_hour": round(len(files) / wall * 3600),
            "mp_per_s": round(mp / wall, 4), "bpp": round(8 * size / pixels, 4)}


def project(per_worker_mp_s: float) -> list[dict]:
    """Linear in workers: scenes are independent and each task runs for minutes at full size, so the
    scheduler's few ms per task do not count; shared storage bandwidth is the limit this ignores."""
    rows = []
    for cores in (machine_cores(), 16):
        for machines in (1, 10, 100):
            mp_s = per_worker_mp_s * cores * machines
            rows.append({"machines": machines, "cores_each": cores, "workers": cores * machines,
                         "full_scenes_per_hour": round(mp_s / FULL_SCENE_MP * 3600, 1)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=12, help="scenes per run (real scenes cycled)")
    p.add_argument("--pattern", default="s1_iw_grd_*_512.tif", help="scenes in the shared SAR folder")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default=None, help="model bundle (default: the bundled model)")
    p.add_argument("--out", default=None, help="folder for batch_throughput.json")
    p.add_argument("--timing-note", default="", help="free text recorded with the timings (e.g. 'machine busy')")
    a = p.parse_args(argv)
    src = sorted(SAR_DATA.glob(a.pattern))
    if not src:
        raise SystemExit(f"no scene matches {SAR_DATA / a.pattern}")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="batch_bench_") as tmp:
        scenes = Path(tmp) / "scenes"
        scenes.mkdir()
        files = []
        for i in range(a.scenes):
            files.append(scenes / f"{i:03d}_{src[i % len(src)].name}")
            shutil.copy(src[i % len(src)], files[-1])
        runs = [run_batch(scenes, Path(tmp) / f"out_{w}", w, a.model) for w in a.workers]
        for r in runs:
            print(f"sar-compress-batch  {r['workers']} worker(s): {r['scenes']} scenes in {r['wall_s']:.1f} s "
                  f"-> {r['scenes_per_hour']} scenes/h, {r['mp_per_s']:.3f} MP/s, {r['bpp']:.3f} bpp "
                  f"(cluster start {r['cluster_start_s']:.1f} s)")
        info = read_raster_info(files[0])
        bands = info.band_count
        jp2 = run_jp2_loop(files, Path(tmp) / "jp2", runs[0]["bpp"] / bands)
        print(f"gdal_translate JP2 loop (1 process): {jp2['scenes']} scenes in {jp2['wall_s']:.1f} s -> "
              f"{jp2['scenes_per_hour']} scenes/h, {jp2['mp_per_s']:.3f} MP/s, {jp2['bpp']:.3f} bpp")
    one = next(r for r in runs if r["workers"] == 1)
    per_worker = one["mp_per_s"]
    eff = {r["workers"]: round(r["mp_per_s"] / (per_worker * r["workers"]), 3) for r in runs}
    print("scaling efficiency (MP/s over workers x 1-worker MP/s): "
          + ", ".join(f"{w} workers {e:.2f}" for w, e in eff.items()))
    projection = project(per_worker)
    for row in projection:
        print(f"projected: {row['machines']:>3} machines x {row['cores_each']:>2} workers -> "
              f"{row['full_scenes_per_hour']} full IW GRD scenes (25,000 x 17,000 x 2) per hour")
    result = {
        "name": "batch_throughput",
        "description": "sar-compress-batch (dask LocalCluster, 1 thread per worker) vs a gdal_translate "
                       "JP2OpenJPEG loop, same scenes, same run; projection for N machines from the per-worker rate",
        "what_was_run": {"scenes": a.scenes, "pattern": a.pattern, "distinct_scenes": len(src),
                         "scene_shape": [bands, info.height, info.width],
                         "model": a.model or "bundled default", "argv": sys.argv[1:] if argv is None else argv},
        "machine": {"cores": machine_cores(), "cpu": platform.processor() or platform.machine(),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()],
                    "note": a.timing_note},
        "git_commit": _git(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "batch": runs, "jpeg2000_loop": jp2,
        "scaling_efficiency": eff,
        "projection": {"per_worker_mp_per_s": per_worker,
                       "full_scene_megapixels": FULL_SCENE_MP, "rows": projection},
    }
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        publish_files({out / "batch_throughput.json": json.dumps(result, indent=1)})
        print(f"wrote {out / 'batch_throughput.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
