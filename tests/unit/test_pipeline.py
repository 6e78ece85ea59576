"""The codec's tile pipeline (core/pipeline.py): order, bounded look-ahead, errors at their tile, early stop,
and the worker split of onnxruntime's threads (core/runtime.py)."""

import threading
import time

import pytest

from sar_compress_plugin.core.pipeline import ordered_map, thread_pool
from sar_compress_plugin.core.runtime import OnnxCodecModel, default_model_dir, thread_budget


def test_results_come_in_item_order_although_workers_finish_out_of_order():
    def slow_for_even(i):
        time.sleep(0.02 if i % 2 == 0 else 0.0)
        return i * i

    with thread_pool(2, "t") as pool:
        assert list(ordered_map(pool, slow_for_even, range(9), ahead=3)) == [i * i for i in range(9)]


def test_items_are_pulled_lazily_and_at_most_ahead_are_in_flight():
    pulled, running, most = [], [0], [0]
    lock = threading.Lock()

    def items():
        for i in range(10):
            pulled.append(i)
            yield i

    def work(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return i

    with thread_pool(4, "t") as pool:
        results = ordered_map(pool, work, items(), ahead=2)
        assert next(results) == 0
        assert len(pulled) == 2  # the first result needed two items pulled, no more
        assert list(results) == list(range(1, 10))
    assert most[0] <= 2


def test_an_error_is_raised_at_its_item_and_later_items_are_dropped():
    started = []

    def work(i):
        started.append(i)
        if i == 2:
            raise ValueError("tile 2 is corrupt")
        time.sleep(0.01)
        return i

    got = []
    with thread_pool(1, "t") as pool:
        with pytest.raises(ValueError, match="tile 2 is corrupt"):
            for r in ordered_map(pool, work, range(100), ahead=3):
                got.append(r)
    assert got == [0, 1]
    assert max(started) < 6  # nothing ran far past the failing tile


def test_closing_early_cancels_the_calls_not_started():
    started = []

    def work(i):
        started.append(i)
        time.sleep(0.02)
        return i

    with thread_pool(1, "t") as pool:
        results = ordered_map(pool, work, range(50), ahead=4)
        assert next(results) == 0
        results.close()
    assert len(started) <= 3  # the one running when closed may finish; the queued ones never start


def test_thread_budget_and_worker_split(monkeypatch):
    monkeypatch.setenv("SAR_COMPRESS_THREADS", "3")
    assert thread_budget() == 3 and thread_budget(5) == 5
    monkeypatch.setenv("SAR_COMPRESS_THREADS", "1")
    assert OnnxCodecModel(default_model_dir(), device="cpu").workers == 1
    m = OnnxCodecModel(default_model_dir(), device="cpu", threads=2)
    assert m.workers == 2 and m._session_options.intra_op_num_threads == 1
    m = OnnxCodecModel(default_model_dir(), device="cpu", threads=6)
    assert m.workers == 2 and m._session_options.intra_op_num_threads == 3


def test_one_worker_and_two_give_the_same_file_and_pixels(tmp_path, monkeypatch, sar_data):
    """Scheduling only: each tile's network runs on one onnxruntime thread either way, so the bytes written and
    the pixels read back must not depend on how many tiles run at once (real default model, real scene)."""
    from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress  # noqa: PLC0415

    scene = sar_data / "s1_iw_grd_berlin_512.tif"
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("SAR_COMPRESS_THREADS", threads)
        path = tmp_path / f"w{threads}.sarc"
        compress(scene, path, CompressOptions(device="cpu", tile_size=128, target_bpp=0.8))
        with CompressedRaster(path, device="cpu") as cr:
            assert cr.model.workers == int(threads)
            out[threads] = (path.read_bytes(), cr.read(), cr.read((100, 200, 300, 60)))
    assert out["1"][0] == out["2"][0]
    assert (out["1"][1] == out["2"][1]).all() and (out["1"][2] == out["2"][2]).all()


def test_chunks_decompress_correctly_on_several_threads_at_once():
    """The tile pipeline decodes outlier and mask chunks on several threads; a zstd decompressor shared
    between them (as once) corrupts them."""
    import os  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from sar_compress_plugin.core import container as C  # noqa: PLC0415

    payloads = [os.urandom(4096) * (1000 + 37 * i) for i in range(8)]  # 4-5 MB, compressible, several blocks
    frames = [C.zstd_compress(p) for p in payloads]

    def check(i):
        k = i % len(frames)
        return C.zstd_decompress(frames[k], len(payloads[k]), "chunk") == payloads[k]

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(check, range(64)))
