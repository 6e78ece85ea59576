"""Processing's compress algorithm takes the tile sizes the codec takes, refused in the codec's words before the
run (core.tiling.tile_size_error): its own rule had said "64 to 1024" where the codec says 16."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProcessingContext

from sar_compress_plugin.core.tiling import tile_size_error


def _check(sar_tif, tmp_path, tile):
    alg = QgsApplication.processingRegistry().algorithmById("sarcompress:compress")
    return alg.checkParameterValues({"INPUT": str(sar_tif), "TILE_SIZE": tile, "OUTPUT": str(tmp_path / "a.sarc")},
                                    QgsProcessingContext())


@pytest.mark.parametrize("tile", [16, 48, 64, 1024])
def test_processing_takes_every_tile_size_the_codec_takes(plugin, sar_tif, tmp_path, tile):
    assert tile_size_error(tile) == ""
    assert _check(sar_tif, tmp_path, tile)[0]


@pytest.mark.parametrize("tile", [100, 24])
def test_processing_refuses_a_tile_size_in_the_codecs_words(plugin, sar_tif, tmp_path, tile):
    assert _check(sar_tif, tmp_path, tile) == (False, tile_size_error(tile))


def test_processing_states_the_codecs_range(plugin):
    param = QgsApplication.processingRegistry().algorithmById("sarcompress:compress").parameterDefinition("TILE_SIZE")
    assert (param.minimum(), param.maximum()) == (16, 1024)
    assert "16 to 1024" in param.description()
