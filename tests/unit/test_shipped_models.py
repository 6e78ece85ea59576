"""Every model bundle the plugin ships: the default, and the earlier defaults kept under their own names so that
the files they wrote still decode after an upgrade (scripts/publish_default_model.sh keeps them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codec_fixtures import write_geotiff
from sar_compress_plugin.core.codec import CompressedRaster, CompressOptions, compress, read_header
from sar_compress_plugin.core.raster_io import RasterReader
from sar_compress_plugin.core.runtime import default_model_dir

MODELS = default_model_dir().parent
SHIPPED = sorted(p.parent for p in MODELS.glob("*/manifest.json"))


def test_shipped_bundles_have_distinct_decoders_and_retired_ones_sit_under_their_own_name():
    manifests = {b.name: json.loads((b / "manifest.json").read_text()) for b in SHIPPED}
    assert "default" in manifests
    decoders = [m["files"]["decoder"]["sha256"] for m in manifests.values()]
    assert len(set(decoders)) == len(decoders)
    for folder, m in manifests.items():
        assert folder in ("default", m["name"]), folder
    assert manifests["default"]["name"] not in manifests


@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: p.name)
def test_a_file_any_shipped_bundle_wrote_decodes_with_no_model_folder_given(bundle: Path, sar_data, tmp_path):
    with RasterReader(sar_data / "s1_iw_grd_frankfurt_512.tif") as r:
        chip = r.read(0, 0, 0, 160, 144)
    src = write_geotiff(tmp_path / "chip.tif", chip)
    sarc = tmp_path / "chip.sarc"
    compress(src, sarc, CompressOptions(model_dir=bundle, device="cpu", quality=2.0))
    assert read_header(sarc)["model"]["name"] == json.loads((bundle / "manifest.json").read_text())["name"]
    with CompressedRaster(sarc, device="cpu") as cr:  # only the plugin's own models folder is searched
        assert cr.model.bundle_dir.resolve() == bundle.resolve()
        rec = cr.read(band=0)
    db = 10 * np.log10(np.maximum(chip, 1e-10))
    assert rec.shape == chip.shape and np.sqrt(np.mean((10 * np.log10(np.maximum(rec, 1e-10)) - db) ** 2)) < 3
