"""Scene layer figures (issue #15), in real headless QGIS with a 1600 x 1000 canvas.

1. first picture: open a big .sarc as a scene layer (cache GeoTIFF + overview levels) and render the whole
   scene zoomed out; the overview chunk's size in bits per pixel;
2. pan: move the view to a fresh 1600 x 1000 window at 1:1 and time until every tile of it is decoded and
   repainted (the controller is idle);
3. peak RSS of the process over all of it.

The big scene and the pan scene are built by tiling a real Sentinel-1 scene (benchmarks/codec_memory.py). The
first picture does not depend on the model, so the big scene may be compressed with a fast test model
(--big-bundle) while the pan uses the model under test (--bundle):

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/scene_layer.py --big-size 8192 \\
        --big-bundle /tmp/tiny --bundle sar_compress_plugin/models/default --pan-size 2048 --png docs/img
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from codec_memory import DEFAULT_SOURCE as SOURCE, build_raster, peak_rss_mb  # noqa: E402
from qgis.core import QgsApplication, QgsProject, QgsRectangle  # noqa: E402

APP = QgsApplication([], True)
APP.initQgis()

from qgis.gui import QgsMapCanvas  # noqa: E402

from sar_compress_plugin.core.codec import CompressOptions, compress  # noqa: E402
from sar_compress_plugin.core.scene_cache import SceneCache  # noqa: E402
from sar_compress_plugin.scene_layer import SceneLayerController, scene_layer  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402



def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        APP.processEvents()
        if predicate():
            return True
        time.sleep(0.01)
    return False


def make_sarc(work: Path, size: int, bundle: str | None, tile: int) -> Path:
    tif, sarc = work / f"scene_{size}.tif", work / f"scene_{size}.sarc"
    if not sarc.exists():
        build_raster(SOURCE, tif, size)
        compress(str(tif), str(sarc), CompressOptions(model_dir=bundle, device="cpu", tile_size=tile))
        tif.unlink()
    return sarc


def open_layer(canvas, sarc: Path, cache_root: Path, bundle: str | None):
    cache = SceneCache(sarc, cache_root, model_dirs=[bundle] if bundle else None, device="cpu")
    layer = scene_layer(cache)
    QgsProject.instance().addMapLayer(layer)
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    controller = SceneLayerController(layer, cache, canvas, max_decode_pixels=16_000_000)
    return layer, cache, controller


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--big-size", type=int, default=8192)
    ap.add_argument("--big-bundle", default=None, help="model for the big scene (default: bundled model)")
    ap.add_argument("--bundle", default=None, help="model for the pan (default: bundled model)")
    ap.add_argument("--pan-size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--work", default=None,
                    help="folder for the scenes and their caches, kept (default: a temporary one, removed)")
    ap.add_argument("--png", default=None, help="folder for scene_layer_overview.png / scene_layer_pan.png")
    a = ap.parse_args(argv)
    png = Path(a.png) if a.png else None
    if png is not None:
        png.mkdir(parents=True, exist_ok=True)
    work = Path(a.work or tempfile.mkdtemp(prefix="scene_layer_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return measure(a, work, png)
    finally:
        if not a.work:  # the scenes and their tile caches: only the pictures are left behind
            shutil.rmtree(work, ignore_errors=True)


def picture(canvas) -> Callable[[Path], None]:
    """The canvas as drawn now (800 x 500), as the writer `publish_files` takes: the two pictures land together
    at the end of the run, or neither does."""
    image = canvas.grab().scaled(800, 500)

    def write(path: Path) -> None:
        if not image.save(str(path), "PNG"):  # the format named: the partial's name ends in .partial
            raise SystemExit(f"error: {path}: the picture could not be written")
    return write


def measure(a: argparse.Namespace, work: Path, png: Path | None) -> int:
    canvas = QgsMapCanvas()
    canvas.resize(1600, 1000)
    canvas.show()
    wait(lambda: canvas.mapSettings().outputSize().width() == 1600, 10)
    out = {"canvas": [1600, 1000]}
    pictures: dict[Path, Callable[[Path], None]] = {}

    # 1. first picture of the big scene
    big = make_sarc(work, a.big_size, a.big_bundle, a.tile)
    from sar_compress_plugin.core.codec import read_header

    h = read_header(big)
    ov = h.get("overview") or {"factor": None, "chunks": []}  # none at 1 MP or less (docs/format.md)
    ov_bytes = sum(e[1] for e in ov["chunks"])
    px = h["raster"]["width"] * h["raster"]["height"]
    out["big"] = {"size": a.big_size, "file_bytes": big.stat().st_size, "overview_factor": ov["factor"],
                  "overview_bytes": ov_bytes, "overview_bpp": 8 * ov_bytes / px,
                  "overview_share_of_file": ov_bytes / big.stat().st_size}
    t0 = time.perf_counter()
    layer, cache, controller = open_layer(canvas, big, work / "cache_big", a.big_bundle)
    canvas.setExtent(layer.extent())
    canvas.refresh()
    wait(lambda: not canvas.isDrawing(), 1)  # the refresh is scheduled
    wait(canvas.isDrawing, 2)
    wait(lambda: not canvas.isDrawing(), 60)
    out["big"]["first_picture_s"] = time.perf_counter() - t0
    out["big"]["tiles_decoded"] = len(cache.decoded)
    if png is not None:
        pictures[png / "scene_layer_overview.png"] = picture(canvas)
    controller.close()
    QgsProject.instance().removeAllMapLayers()

    # 2. pan at 1:1 with the model under test
    pan = make_sarc(work, a.pan_size, a.bundle, a.tile)
    layer, cache, controller = open_layer(canvas, pan, work / "cache_pan", a.bundle)
    gt = cache.header["raster"]["geotransform"]

    def show(col, row):
        canvas.setExtent(QgsRectangle(gt[0] + col * gt[1], gt[3] + (row + 1000) * gt[5],
                                      gt[0] + (col + 1600) * gt[1], gt[3] + row * gt[5]))

    show(0, 0)
    wait(lambda: not controller.busy, 600)  # warm-up: model loaded, first view decoded
    c, r = a.pan_size - 1600, a.pan_size - 1000
    t0 = time.perf_counter()
    show(c, r)
    wait(lambda: controller.busy, 2)
    ok = wait(lambda: not controller.busy, 600)
    wait(lambda: not canvas.isDrawing(), 60)
    out["pan"] = {"size": a.pan_size, "view_ready_s": time.perf_counter() - t0, "complete": ok,
                  "tiles_decoded_for_pan": len(cache.missing_tiles((0, 0, 1, 1))) == 0,
                  "decoded_tiles_total": len(cache.decoded), "tiles_total": cache.grid.count,
                  "provider": cache.raster.provider}
    if png is not None:
        pictures[png / "scene_layer_pan.png"] = picture(canvas)
    controller.close()
    out["peak_rss_mb"] = peak_rss_mb()
    publish_files(pictures)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
