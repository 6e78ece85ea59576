#!/usr/bin/env python3
"""Render what an analyst sees in QGIS: a reconstruction with the local ENL-ratio (or EPI) overlay, as a PNG.

Uses real headless QGIS and the plugin's own styling (qgis_io.style_quality_layer) and quality maps
(core.quality_maps), so the picture is the plugin's, not a re-drawing.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/render_quality_overlay.py ORIGINAL.tif RECONSTRUCTION.tif OUT_DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("original")
    ap.add_argument("reconstruction")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--size", type=int, default=700, help="PNG edge in pixels")
    a = ap.parse_args(argv)

    from qgis.core import QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    from sar_compress_plugin.core.quality_maps import compute_quality_maps
    from sar_compress_plugin.qgis_io import style_db_grey, style_quality_layer

    app = QgsApplication([], False)
    app.initQgis()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(a.reconstruction).stem
    scratch = tempfile.TemporaryDirectory(prefix="sar_overlay_")  # the maps are a step, only the pictures are kept
    maps = compute_quality_maps(a.original, a.reconstruction, Path(scratch.name) / f"{stem}_enl_ratio.tif",
                                Path(scratch.name) / f"{stem}_epi.tif", bands=[1])
    recon = QgsRasterLayer(str(a.reconstruction), "reconstruction", "gdal")
    style_db_grey(recon, 1, maps.domain)  # band 1 (VV) in grey dB, as the plugin shows it under the maps
    written = []
    for kind, path in (("enl_ratio", maps.enl_ratio_path), ("epi", maps.epi_path)):
        overlay = QgsRasterLayer(str(path), kind, "gdal")
        style_quality_layer(overlay, kind)
        settings = QgsMapSettings()
        settings.setLayers([overlay, recon])
        settings.setDestinationCrs(recon.crs())
        settings.setExtent(recon.extent())
        settings.setOutputSize(QSize(a.size, a.size))
        settings.setBackgroundColor(QColor("white"))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        png = a.out_dir / f"{stem}_{kind}_overlay.png"
        job.renderedImage().save(str(png), "PNG")
        written.append(png)
    for p in written:
        print(p)
    del overlay, recon, job, settings  # layers must go before exitQgis, or QGIS 3.22 crashes on the way out
    app.exitQgis()
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
