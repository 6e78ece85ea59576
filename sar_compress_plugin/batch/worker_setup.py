"""Preloaded into every worker process of the batch's own LocalCluster (dask's `preload`), before any task.

Ctrl-C in a terminal, or `timeout -s INT`, signals the whole process group, workers included: each worker died
with a KeyboardInterrupt traceback ("Dask Worker process (from Nanny)") and the scene it was writing was lost
or, finished a moment before, reported cancelled. What an interrupt means (cancel, report, stop the workers)
is the client's decision alone, so the workers ignore SIGINT; the nanny still stops them when the client
closes the cluster.
"""

from __future__ import annotations

import signal


def dask_setup(worker) -> None:  # noqa: ARG001  (the preload interface passes the worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
