"""Tile seams with a real model: the same scenes compressed with many small tiles and as one tile.

Prints, per scene-band, the seam ratio (core.metrics.seam_ratio: mean |difference| across tile boundaries over
that across other 16-px boundaries; 1 = no tile grid) of the tiled reconstruction and of the single-tile one,
and the dB RMSE between the two reconstructions next to each one's dB RMSE against the original.

    .venv/bin/python benchmarks/seams.py --scenes frankfurt panama --tile 128 --out benchmarks/results/seams_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from rate_distortion import reconstruction_values  # noqa: E402
from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct  # noqa: E402
from sar_compress_plugin.core.evaluation import physical_band  # noqa: E402
from sar_compress_plugin.core.metrics import db_rmse, seam_ratio  # noqa: E402
from sar_compress_plugin.core.preprocessing import to_db  # noqa: E402
from sar_compress_plugin.core.raster_io import RasterReader  # noqa: E402
from sar_compress_plugin.core.runtime import default_model_dir  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sar"


def reconstruct_db(src: Path, tile: int, bundle: Path, work: Path, domain: str, bands: int) -> list[np.ndarray]:
    """Each band of `src` compressed with `tile`-px tiles and reconstructed, in dB of its physical values
    (`reconstruction_values`), as the original's are read."""
    sarc, rec = work / f"{src.stem}_{tile}.sarc", work / f"{src.stem}_{tile}_rec.tif"
    compress(src, sarc, CompressOptions(model_dir=bundle, device="cpu", tile_size=tile, domain=domain))
    reconstruct(sarc, rec, model_dirs=[bundle], device="cpu")
    return [to_db(reconstruction_values(src, rec, b), domain)[0] for b in range(bands)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=default_model_dir())
    ap.add_argument("--scenes", nargs="+", default=["frankfurt", "panama"])
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--domain", default="intensity")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in a.scenes:
            src = next(DATA.glob(f"s1_iw_grd_{key}*.tif"))
            with RasterReader(src) as r:  # physical values: a scaled product's stored ones are not its dB
                info = r.info
                orig = [to_db(physical_band(r, b, r.read_valid(b, 0, 0, info.width, info.height))[0], a.domain)[0]
                        for b in range(info.band_count)]
            single_tile = max(info.width, info.height) + 15 & ~15
            tiled = reconstruct_db(src, a.tile, a.model, Path(tmp), a.domain, info.band_count)
            whole = reconstruct_db(src, single_tile, a.model, Path(tmp), a.domain, info.band_count)
            for b in range(info.band_count):
                rows.append({"scene": src.name, "band": info.band_names[b], "tile": a.tile,
                             "seam_ratio_tiled": seam_ratio(tiled[b], a.tile),
                             "seam_ratio_single_tile": seam_ratio(whole[b], a.tile),
                             "db_rmse_tiled_vs_single": db_rmse(tiled[b], whole[b]),
                             "db_rmse_tiled_vs_original": db_rmse(orig[b], tiled[b]),
                             "db_rmse_single_vs_original": db_rmse(orig[b], whole[b])})
    print(f"{'scene':32} {'band':13} seam(tiled) seam(single) rmse(tiled,single) rmse(tiled,orig) rmse(single,orig)")
    for r in rows:
        print(f"{r['scene'][:32]:32} {r['band'][:13]:13} {r['seam_ratio_tiled']:11.3f} {r['seam_ratio_single_tile']:12.3f}"
              f" {r['db_rmse_tiled_vs_single']:17.3f} {r['db_rmse_tiled_vs_original']:16.3f}"
              f" {r['db_rmse_single_vs_original']:17.3f}")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        manifest = json.loads((a.model / "manifest.json").read_text())
        doc = {"name": "seams", "description": __doc__.splitlines()[0], "model": manifest["name"],
               "decoder_sha256": manifest["files"]["decoder"]["sha256"], "device": "cpu", "results": rows}
        publish_files({a.out / "seams.json": json.dumps(doc, indent=1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
