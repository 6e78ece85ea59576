"""sar-compress-batch, sar-reconstruct-batch: many scenes, one command, on dask.distributed.

Exit status: 0 when every input was done or skipped, 1 when any failed (the report says which and why),
2 when the batch could not run at all (output folder, scheduler), 130 on Ctrl-C (the report is still written,
unfinished scenes marked cancelled, and no partial file is left under a final name).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cli import EXIT_ERROR, EXIT_INTERRUPTED, _parser
from ..core.codec import CompressOptions
from .engine import ClusterOptions, open_client, run_jobs
from .inputs import expand_inputs
from .report import summarise, write_report
from .tasks import FAILED, compress_scene, reconstruct_scene

EXIT_SOME_FAILED = 1
RASTER_SUFFIXES = (".tif", ".tiff")


def _common(p, what: str) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help=f"{what} files, folders (searched recursively), glob patterns (quote them), or STAC "
                        "item / item collection / catalog JSON files whose assets are local files")
    p.add_argument("--out", required=True, help="output folder (created); folder inputs keep their sub-folders")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime device")
    p.add_argument("--verify", action="store_true",
                   help="decode every new output before it gets its final name (and when deciding to skip one)")
    p.add_argument("--report", default=None,
                   help="report path without suffix (default: OUT/<command>-report); .json and .csv are written")
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running dask scheduler, e.g. tcp://host:8786 (default: a LocalCluster)")
    c.add_argument("--workers", type=int, default=None,
                   help="LocalCluster worker processes (default: cores // --threads)")
    c.add_argument("--threads", type=int, default=1, help="onnxruntime and BLAS threads per worker")
    c.add_argument("--memory-limit", default=None,
                   help="LocalCluster memory limit per worker, e.g. 2GB (default: machine memory / workers)")
    c.add_argument("--dashboard-address", default=":8787", help="LocalCluster dashboard address")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _run_batch(name: str, a, suffixes, out_suffix: str, fn, kwargs: dict) -> int:
    out = Path(a.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: {out}: cannot create the output folder ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_ERROR
    jobs = expand_inputs(a.inputs, out, suffixes, out_suffix)
    cluster = ClusterOptions(scheduler=a.scheduler, workers=a.workers, threads=a.threads,
                             memory_limit=a.memory_limit, dashboard_address=a.dashboard_address)
    t0 = time.perf_counter()
    try:
        with open_client(cluster) as client:
            workers = len(client.scheduler_info()["workers"])
            print(f"{name}: {len(jobs)} inputs on {workers} workers ({cluster.threads} threads each); "
                  f"dashboard {client.dashboard_link}", file=sys.stderr)
            records, interrupted = run_jobs(client, fn, jobs, kwargs, quiet=a.quiet)
    except OSError as exc:  # scheduler unreachable, ports: nothing ran, nothing to report
        print(f"error: cannot start or reach the dask cluster ({' '.join(str(exc).split())})", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # before any scene was submitted (while the cluster started)
        print("interrupted: nothing was run", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = summarise(records, time.perf_counter() - t0)
    run = {"workers": workers, "arguments": vars(a)}
    paths = write_report(a.report or out / f"{name}-report", name, records, summary, run)
    for r in records:
        if r["status"] == FAILED:
            err = r["error"]
            print(f"failed: {err}" if err.startswith(r["input"]) else f"failed: {r['input']}: {err}", file=sys.stderr)
    counts = ", ".join(f"{summary.get(s, 0)} {s}" for s in ("ok", "skipped", "failed", "cancelled") if s in summary)
    print(f"{name}: {counts} of {len(records)} inputs in {summary['wall_seconds']:.1f} s; report "
          f"{paths[0]} and {paths[1]}")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if any(r["status"] == FAILED for r in records) else 0


def compress_batch_main(argv=None) -> int:
    p = _parser("sar-compress-batch", "Compress many SAR rasters into .sarc files on dask.distributed, "
                                      "resumably: a rerun skips outputs that exist and check out.")
    _common(p, "raster (.tif/.tiff in folders)")
    p.add_argument("--model", default=None, help="model bundle folder (default: the bundled model)")
    p.add_argument("--tile", type=int, default=512, help="tile size in pixels (multiple of 16)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, default=None,
                      help="operating point from 0 to the model's top level (see sar-compress) [model's default]")
    rate.add_argument("--bpp", type=float, default=None, dest="target_bpp",
                      help="target bits per pixel per band, searched per scene (see sar-compress)")
    rate.add_argument("--target-db-rmse", type=float, default=None,
                      help="target error in dB, searched per scene (see sar-compress)")
    p.add_argument("--domain", default=None, choices=["intensity", "amplitude", "db"],
                   help="value domain of every input (default: inferred per scene, see sar-compress)")
    a = p.parse_args(argv)
    opts = CompressOptions(model_dir=a.model, device=a.device, tile_size=a.tile, quality=a.quality,
                           target_bpp=a.target_bpp, target_db_rmse=a.target_db_rmse, domain=a.domain)
    return _run_batch("sar-compress-batch", a, RASTER_SUFFIXES, ".sarc", compress_scene,
                      {"options": opts, "verify": a.verify, "threads": a.threads})


def reconstruct_batch_main(argv=None) -> int:
    p = _parser("sar-reconstruct-batch", "Reconstruct many .sarc files into GeoTIFFs on dask.distributed, "
                                         "resumably: a rerun skips outputs that exist and check out.")
    _common(p, ".sarc")
    p.add_argument("--model-dir", action="append", default=[],
                   help="extra folder searched for decoders (by SHA-256); repeatable")
    a = p.parse_args(argv)
    return _run_batch("sar-reconstruct-batch", a, (".sarc",), ".tif", reconstruct_scene,
                      {"model_dirs": a.model_dir, "device": a.device, "verify": a.verify, "threads": a.threads})
