"""numpy's BLAS on the calling thread only, while the codec's tile pipeline runs.

The pipeline runs the integer hyper-decoder (float64 matrix products through numpy's BLAS) in a worker thread
beside onnxruntime, which already uses every core. OpenBLAS's own pool threads spin while they wait for work,
so a multithreaded BLAS call there starves onnxruntime and itself: on 2 cores, limiting BLAS to one thread took
a 2048 x 2048 reconstruct from 2.09 to 2.49 MP/s and a compress from 2.99 to 3.21 MP/s (same run, trainers
paused). The products stay exact either way (core/hyper_decoder.py), so this changes speed only.

The limit is process-wide while it is held (BLAS libraries have no per-thread setting), and restored after.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def single_threaded_blas():
    from threadpoolctl import threadpool_limits  # noqa: PLC0415 (the plugin checks its dependencies lazily)

    with threadpool_limits(limits=1, user_api="blas"):
        yield
