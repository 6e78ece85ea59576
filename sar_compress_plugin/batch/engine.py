"""The dask.distributed side: a client on a LocalCluster sized to this machine (or on `--scheduler`), and one
task per scene whose results come back as report records, in input order.

Sizing: one single-threaded dask worker process per scene in flight, each running onnxruntime and BLAS with
`threads` threads, so workers x threads never exceeds the cores (no oversubscription); the memory limit is
per worker, so the nanny restarts a worker that outgrows it instead of letting the machine swap. The codec
streams tile by tile, so one scene of any size fits in a few hundred MB.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .inputs import Job
from .tasks import FAILED, record

#: Environment of our LocalCluster's workers: the BLAS libraries read these when they load, before any task.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SAR_COMPRESS_THREADS")
CANCELLED = "cancelled"


def machine_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class ClusterOptions:
    scheduler: str | None = None  # address of a running scheduler; None starts a LocalCluster
    workers: int | None = None  # None: cores // threads
    threads: int = 1  # onnxruntime and BLAS threads in each worker
    memory_limit: str | int | None = None  # per worker; None: machine memory / workers
    dashboard_address: str | None = ":8787"


@contextmanager
def open_client(opts: ClusterOptions):
    """A connected dask Client; a LocalCluster we started is closed (workers stopped) on the way out."""
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415

    if opts.scheduler:
        with Client(opts.scheduler, timeout="30s") as client:
            yield client
        return
    import psutil  # noqa: PLC0415  (a dependency of distributed)

    threads = max(1, int(opts.threads))
    n = opts.workers or max(1, machine_cores() // threads)
    memory = opts.memory_limit or psutil.virtual_memory().total // n
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, memory_limit=memory,
                      env={k: str(threads) for k in THREAD_VARIABLES},
                      dashboard_address=opts.dashboard_address, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def run_jobs(client, fn, jobs: list[Job], kwargs: dict, quiet: bool = False) -> tuple[list[dict], bool]:
    """Run `fn(job, **kwargs)` as one task per job; (records in job order, interrupted by Ctrl-C).

    Jobs that could not be resolved are reported without a task. Largest inputs are submitted first so a
    huge scene does not start last and hold up the end of the batch. A task whose worker dies is rerun by
    the scheduler elsewhere (up to distributed.scheduler.allowed-failures times); after that the scene is
    reported failed and the rest go on.
    """
    from dask.distributed import as_completed  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    records: dict[int, dict] = {i: record(j) for i, j in enumerate(jobs) if j.error}
    todo = sorted((i for i, j in enumerate(jobs) if not j.error), key=lambda i: -_size(jobs[i].input))
    run = uuid.uuid4().hex[:8]
    futures = {client.submit(fn, jobs[i], **kwargs, pure=False,
                             key=f"{fn.__name__}-{Path(jobs[i].input).stem}-{run}-{i}"): i for i in todo}
    failed = len(records)
    interrupted = False
    bar = tqdm(total=len(futures), desc=fn.__name__.replace("_", " "), unit="scene", file=sys.stderr,
               disable=quiet, dynamic_ncols=True)
    try:
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001  KilledWorker & co: the scene took its workers down
                rec = record(jobs[i], error=f"worker lost while processing it ({type(exc).__name__}: "
                                            f"{' '.join(str(exc).split())[:300]})")
            records[i] = rec
            failed += rec["status"] == FAILED
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
        client.cancel(list(futures))
        for i in futures.values():
            records.setdefault(i, record(jobs[i], status=CANCELLED,
                                         error="batch interrupted before this scene finished"))
    finally:
        bar.close()
    return [records[i] for i in range(len(jobs))], interrupted
