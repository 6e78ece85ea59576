"""The dask.distributed side: a client on a LocalCluster sized to this machine (or on `--scheduler`), and one
task per scene whose results come back as report records, in input order.

Sizing: one single-threaded dask worker process per scene in flight, each running onnxruntime and BLAS with
`threads` threads, so workers x threads never exceeds the cores (no oversubscription); the memory limit is
per worker, so the nanny restarts a worker that outgrows it instead of letting the machine swap. The codec
streams tile by tile, so a worker's memory grows far slower than the scene: peak RSS of a one-thread worker
with the bundled model was 315 MB for a 0.26 MP scene, 700 MB for 12 MP and 855 MB for 48 MP (operator audit),
and the codec alone compresses a 20,000 x 20,000 scene in 642 MB and reconstructs it in 690 MB (docs/results.md,
"Memory"). A worker limited to less than about 1 GB can die on large scenes (400 MB did on a 12 MP one in the
audit), as the default (machine memory / workers) gives on machines with many cores and little memory.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
import warnings
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path

from .inputs import Job
from .progress import Display
from .tasks import PROGRESS_TOPIC, input_bytes, record

#: Environment of our LocalCluster's workers: the BLAS libraries read these when they load, before any task.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SAR_COMPRESS_THREADS")
CANCELLED = "cancelled"
#: Least seconds between two writes of the report while scenes finish (see `run_jobs`).
CHECKPOINT_SECONDS = 30.0
#: The scheduler's event topic under which a nanny records stopping its worker over the memory limit.
MEMORY_STOP_EVENTS = "worker-restart-memory"
#: The scheduler's log line when a scene's task has killed its last allowed worker (distributed.scheduler).
SCENE_KILLED_WORKERS = "Task %s marked as failed because %d workers died"


def machine_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class ClusterOptions:
    scheduler: str | None = None  # address of a running scheduler; None starts a LocalCluster
    workers: int | None = None  # None: cores // threads
    threads: int = 1  # onnxruntime and BLAS threads in each worker
    memory_limit: str | int | None = None  # per worker; None: machine memory / workers
    dashboard_address: str | None = ":8787"


class ClusterError(Exception):
    """The cluster could not be started or reached; the message names the options that decided it."""


def _start(what: str, start):
    """start(), or ClusterError(what: why) in one line instead of dask's traceback of up to 50 lines."""
    try:
        return start()
    except Exception as exc:  # noqa: BLE001  dask raises RuntimeError, OSError, ValueError, TimeoutError...
        # LocalCluster wraps the reason (a port taken, an unknown address) in "Cluster failed to start"
        why = exc.__cause__ if isinstance(exc, RuntimeError) and exc.__cause__ else exc
        raise ClusterError(f"{what}: {' '.join(str(why).split())}") from exc


def _local_cluster(opts: ClusterOptions):
    """A started LocalCluster sized as the module docstring says; its workers ignore SIGINT (worker_setup.py).

    With the dashboard's port taken (a second batch on the machine) dask serves it on another and says so in
    a four-line UserWarning naming its own source file; the line the CLI prints names the port it got."""
    import psutil  # noqa: PLC0415  (a dependency of distributed)
    from dask.distributed import LocalCluster  # noqa: PLC0415
    from dask.utils import format_bytes  # noqa: PLC0415

    threads = max(1, int(opts.threads))
    n = opts.workers or max(1, machine_cores() // threads)
    memory = opts.memory_limit or psutil.virtual_memory().total // n
    what = (f"cannot start a dask LocalCluster (--workers {n}, --threads {threads}, --memory-limit "
            f"{memory if isinstance(memory, str) else format_bytes(memory)}, "
            f"--dashboard-address {opts.dashboard_address})")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
        return _start(what, lambda: LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, memory_limit=memory,
            env={k: str(threads) for k in THREAD_VARIABLES}, preload=[f"{__package__}.worker_setup"],
            dashboard_address=opts.dashboard_address, silence_logs=logging.ERROR))


@contextmanager
def open_client(opts: ClusterOptions, held=nullcontext):
    """A connected dask Client; a LocalCluster we started is closed (workers stopped) on the way out.

    dask is imported, and our LocalCluster started and closed, inside `held()`: the CLI's, where a signal waits
    until it is left (cli._Signals.held says why)."""
    with held():
        from dask.distributed import Client  # noqa: PLC0415

    if opts.scheduler:
        with _start(f"cannot reach the dask scheduler at --scheduler {opts.scheduler}",
                    lambda: Client(opts.scheduler, timeout="30s")) as client:
            yield client
        return
    # multiprocessing's resource tracker, which the nanny starts for its queues, unblocks SIGINT in the thread
    # that starts it (CPython's ensure_running: SIG_UNBLOCK after the spawn, not a restore). Started from dask's
    # loop thread, it undid the block the workers were to inherit from there; started here first, it is not.
    resource_tracker.ensure_running()
    stack = ExitStack()
    try:
        with held():
            stack.enter_context(_quiet_scheduler())
            client = stack.enter_context(Client(stack.enter_context(_local_cluster(opts))))
        yield client
    finally:
        with held():
            stack.close()


def _not_scene_killed_workers(rec: logging.LogRecord) -> bool:
    return not str(rec.msg).startswith(SCENE_KILLED_WORKERS)


@contextmanager
def _quiet_scheduler():
    """Our LocalCluster's scheduler runs in this process, and its ERROR line for a scene that killed its workers
    ("distributed.scheduler - ERROR - Task compress_scene-... marked as failed because 4 workers died ...") came
    on stderr among the batch's own lines; the batch says the same of that scene in its own line
    (`_killed_worker_error`)."""
    log = logging.getLogger("distributed.scheduler")
    log.addFilter(_not_scene_killed_workers)
    try:
        yield
    finally:
        log.removeFilter(_not_scene_killed_workers)


def _size(path: str) -> int:
    try:
        return input_bytes(path)
    except OSError:
        return 0


def pending_records(jobs: list[Job]) -> list[dict]:
    """The report before any task ran: jobs that could not be resolved failed, the others cancelled, which is
    what the report says of whatever an interrupt stops before it finishes."""
    return [record(j) if j.error else
            record(j, status=CANCELLED, error="batch interrupted before this scene finished") for j in jobs]


def _result(fut, job: Job, client, submitted: float) -> dict:
    """The scene's record. A task that ended without one (its worker process died on every try, or was lost in
    another way) is a failed record that says why, with the seconds since the scene was submitted: its progress
    line read "(  s)". Scenes are submitted largest first, so one that kills its workers has seldom waited.
    (What its last try left on disk is for the CLI to remove once the workers are stopped.)"""
    from distributed.scheduler import KilledWorker  # noqa: PLC0415

    try:
        return fut.result()
    except KilledWorker as exc:  # dask's own text, cut to one line, ended mid-word and never named the cause
        error = _killed_worker_error(client, exc)
    except Exception as exc:  # noqa: BLE001  a worker lost in another way: the scene took it down
        error = f"worker lost while processing it ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
    return record(job, error=error, seconds=round(time.perf_counter() - submitted, 3))


def _killed_worker_error(client, exc) -> str:
    """Why the scene's worker processes died, as far as the scheduler knows: a nanny that stops its worker over
    the memory limit records it (MEMORY_STOP_EVENTS), which the error names with the limit; any other death
    (the system's out-of-memory killer, a crash in a native library) leaves no record with dask. The message
    used to send the operator to "the workers' log", which the batch silences and never saves."""
    from dask.utils import format_bytes  # noqa: PLC0415

    tries = exc.allowed_failures + 1
    last = exc.last_worker
    stopped = [e for _, e in client.get_events(MEMORY_STOP_EVENTS) if e.get("worker") == last.address]
    if stopped:
        limit = f" of {format_bytes(last.memory_limit)}" if last.memory_limit else ""
        return (f"its worker process was stopped by dask at its memory limit{limit} (--memory-limit; "
                f"{format_bytes(stopped[-1]['rss'])} in use) on the last of {tries} tries; give each worker more "
                f"memory: a larger --memory-limit, or fewer --workers")
    return (f"its worker process died on each of {tries} tries (not stopped by dask at its memory limit, "
            f"--memory-limit: most often the system's out-of-memory killer, which `dmesg` names, or a crash in a "
            f"native library)")


def _checkpoint(checkpoint, records: list[dict], since: float) -> float:
    """checkpoint(records) unless there is none or it last ran (`since`, a time.monotonic()) less than
    CHECKPOINT_SECONDS ago; when it last ran."""
    if checkpoint is None or time.monotonic() - since < CHECKPOINT_SECONDS:
        return since
    checkpoint(records)
    return time.monotonic()


def run_jobs(client, fn, jobs: list[Job], kwargs: dict, quiet: bool = False, checkpoint=None,
             cancelled=None) -> tuple[list[dict], KeyboardInterrupt | None]:
    """Run `fn(job, **kwargs)` as one task per job; (records in job order, the interrupt that stopped them or
    None).

    Jobs that could not be resolved are reported without a task. Largest inputs are submitted first so a
    huge scene does not start last and hold up the end of the batch. A task whose worker dies is rerun by
    the scheduler elsewhere (up to distributed.scheduler.allowed-failures times); after that the scene is
    reported failed and the rest go on. On an interrupt (SIGINT, or SIGTERM raised as one by the CLI) tasks
    not yet finished are cancelled, and those finished but not yet collected still count as done.

    Progress (`progress.Display`, unless `quiet`) counts the scenes run, and shows how far each long one is from
    the PROGRESS_TOPIC events of its task, subscribed to before the first task is submitted.

    `checkpoint(records)` (the CLI writes the report) runs once the tasks are submitted and then after a
    finished scene at most every CHECKPOINT_SECONDS, so a client killed outright (SIGKILL, the OOM killer, a
    lost node) leaves a report of what finished, the rest cancelled, instead of none or the previous run's.

    `cancelled()` (the CLI's: a signal came) stops the jobs as an interrupt does, asked before the first task is
    submitted and after each finished scene: for a signal held while the cluster started, or swallowed.
    """
    from dask.distributed import as_completed  # noqa: PLC0415

    records = pending_records(jobs)
    todo = sorted((i for i, j in enumerate(jobs) if not j.error), key=lambda i: -_size(jobs[i].input))
    run = uuid.uuid4().hex[:8]
    keys = {i: f"{fn.__name__}-{Path(jobs[i].input).stem}-{run}-{i}" for i in todo}
    futures = {}
    display = Display(fn.__name__.replace("_", " "), {keys[i]: jobs[i].input for i in todo}, quiet)
    client.subscribe_topic(PROGRESS_TOPIC, display.on_event)
    stop = cancelled or (lambda: False)
    submitted = time.perf_counter()
    try:
        if stop():
            raise KeyboardInterrupt
        for i in todo:
            futures[client.submit(fn, jobs[i], **kwargs, pure=False, key=keys[i])] = i
        saved = _checkpoint(checkpoint, records, since=-math.inf)
        for fut in as_completed(futures):
            i = futures[fut]
            records[i] = _result(fut, jobs[i], client, submitted)
            display.finished(keys[i], records[i])
            saved = _checkpoint(checkpoint, records, since=saved)
            if stop():
                raise KeyboardInterrupt
        return records, None
    except KeyboardInterrupt as interrupt:
        client.cancel([f for f in futures if f.status != "finished"])
        for fut, i in futures.items():
            if fut.status == "finished" and records[i]["status"] == CANCELLED:
                records[i] = _result(fut, jobs[i], client, submitted)
        return records, interrupt
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
        display.close()
