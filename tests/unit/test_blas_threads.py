"""The codec runs numpy's BLAS on one thread while its tile pipeline runs, and gives the setting back after."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info

from codec_fixtures import write_geotiff
from sar_compress_plugin.core import hyper_decoder
from sar_compress_plugin.core.blas_threads import single_threaded_blas
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_the_limit_holds_inside_and_is_restored_after():
    before = _blas_threads()
    assert before, "numpy has no BLAS that threadpoolctl can see: the limit would do nothing"
    with single_threaded_blas():
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before


def test_compress_and_tile_decoding_run_the_hyper_decoder_with_one_blas_thread(tmp_path, tiny_bundle, monkeypatch):
    seen = []
    layer = hyper_decoder._layer

    def spy(*args, **kwargs):
        seen.append(tuple(_blas_threads()))
        return layer(*args, **kwargs)

    monkeypatch.setattr(hyper_decoder, "_layer", spy)
    amp = (np.random.default_rng(0).gamma(1.0, 1.0, (1, 64, 64)) * 100).astype(np.float32) + 1
    src = write_geotiff(tmp_path / "a.tif", amp)
    compress(src, tmp_path / "a.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=32))
    encoded = len(seen)
    with CompressedRaster(tmp_path / "a.sarc", model_dirs=[tiny_bundle], device="cpu") as cr:
        tiles = list(cr.iter_tiles())
    assert tiles and encoded and len(seen) > encoded
    assert all(set(t) == {1} for t in seen)
