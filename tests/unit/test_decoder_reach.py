"""The decoder's measured reach (export/decoder_reach.py) and the codec's use of it (tiling.latent_block)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from export.decoder_reach import decoder_reach
from sar_compress_plugin.core.errors import ModelBundleError
from sar_compress_plugin.core.runtime import load_manifest
from sar_compress_plugin.core.tiling import TileGrid, latent_block
from trainer.models.layers import deconv
from trainer.registry import create_model


def test_four_stride2_5x5_transposed_convolutions_reach_one_cell_before_and_two_after():
    torch.manual_seed(0)
    g_s = nn.Sequential(deconv(6, 5), nn.ReLU(), deconv(5, 5), nn.ReLU(), deconv(5, 5), nn.ReLU(), deconv(5, 1))
    assert decoder_reach(g_s, 6, 2) == {"before": 1, "after": 2}
    assert decoder_reach(g_s, 6, 4) == {"before": 1, "after": 2}  # a wider halo does not change it
    assert decoder_reach(g_s, 6, 1) == {"before": 1, "after": 1}  # never more than the halo


def test_a_decoder_that_pools_over_the_tile_keeps_the_whole_halo():
    torch.manual_seed(0)
    model = create_model("attention", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.01]).eval()
    assert decoder_reach(model.g_s, 16, 2) == {"before": 2, "after": 2}


def test_latent_block_uses_the_reach_within_the_halo():
    grid = TileGrid(2048, 2048, 512, 32)  # tile 5 is interior: core cells 32..64 in both axes
    assert latent_block(grid, 5)[0] == (30, 30, 36, 36)
    assert latent_block(grid, 5, (1, 2))[0] == (31, 31, 35, 35)
    assert latent_block(grid, 5, (3, 3))[0] == (30, 30, 36, 36)  # capped at the file's halo
    assert latent_block(grid, 0, (1, 2))[0] == (0, 0, 34, 34)  # the raster edge still bounds it


def test_reads_with_the_reach_give_the_full_halos_pixels(tmp_path, tiny_bundle, sar_data):
    from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress  # noqa: PLC0415

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    reach = manifest["decoder_reach"]
    assert reach["before"] + reach["after"] < 2 * manifest["halo"] // 16  # the tiny decoder reaches less
    path = tmp_path / "a.sarc"
    compress(sar_data / "s1_iw_grd_berlin_512.tif", path,
             CompressOptions(model_dir=tiny_bundle, device="cpu", tile_size=128))
    with CompressedRaster(path, model_dirs=[tiny_bundle], device="cpu") as cr:
        with_reach = cr.read()
        full = cr.model.halo // 16
        cr.model.decoder_reach = (full, full)
        cr._cache.clear()
        with_halo = cr.read()
    assert np.allclose(with_reach, with_halo, rtol=1e-5, atol=0)


@pytest.mark.parametrize("reach", [{"before": 3, "after": 1}, {"before": -1, "after": 1}, [1, 2],
                                   {"before": 1.5, "after": 2}, {"before": 1}])
def test_a_malformed_reach_is_a_clear_bundle_error(tmp_path, tiny_bundle, reach):
    import shutil  # noqa: PLC0415

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    m = json.loads((bundle / "manifest.json").read_text())
    m["decoder_reach"] = reach
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelBundleError, match="decoder_reach"):
        load_manifest(bundle, verify=False)
