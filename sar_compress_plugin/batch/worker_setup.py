"""Preloaded into every worker process of the batch's own LocalCluster (dask's `preload`), before any task.

Ctrl-C in a terminal, or `timeout -s INT`, signals the whole process group, workers included: each worker died
with a KeyboardInterrupt traceback ("Dask Worker process (from Nanny)") and the scene it was writing was lost
or, finished a moment before, reported cancelled. What an interrupt means (cancel, report, stop the workers)
is the client's decision alone, so the workers ignore SIGINT; the nanny still stops them when the client
closes the cluster.

The scheduler of this cluster lives in the client's process, so it goes away only when the batch ends; a
worker whose heartbeat was in flight at that moment logged "Failed to communicate with scheduler during
heartbeat" with a 30-line traceback under the batch's one-line summary (seen after a SIGTERM). That record says
nothing the summary does not, so it is dropped; every other worker log record is kept.
"""

from __future__ import annotations

import logging
import signal

HEARTBEAT_LOST = "Failed to communicate with scheduler during heartbeat"


def _not_heartbeat_lost(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(HEARTBEAT_LOST)


def dask_setup(worker) -> None:  # noqa: ARG001  (the preload interface passes the worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(_not_heartbeat_lost)
