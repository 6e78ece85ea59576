"""Which JPEG-2000 settings the baseline uses: its number of wavelet resolutions, measured on the held-out scenes.

The decisive comparison is only as honest as its baseline. GDAL's JP2OpenJPEG picks the number of resolutions
from the tile size, adding levels until the coarsest one has a side of at most 128 px: 3 (two wavelet levels)
for the 512-px held-out chips, 4 for panama's 700 px and for the 1024-px tiles of a larger raster. Fewer levels
leave more low-frequency energy to code, which costs most at the lowest rates. This sweeps the setting on the
rate-distortion benchmark's 12 held-out scene-bands and rates (benchmarks/rate_distortion.py: the same
preprocessing, clip bounds and measurement) and reports each setting's pooled curve and its BD-rate against
GDAL's choice (negative = a stronger JPEG-2000). The baseline takes the best (benchmarks/jpeg2000.py,
RESOLUTIONS): tuned on the very scenes it is compared on, it can only make the learned codec look worse, never
better.

    python benchmarks/jpeg2000_settings.py --out benchmarks/results/jpeg2000_settings
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jpeg2000  # noqa: E402
import rate_distortion as rd  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

HELD_OUT = ["frankfurt", "panama", "india_900498", "mekong", "srilanka_534068", "paraguay_jja10"]
SETTINGS = (None, 3, 4, 5, 6, 7)  # None: GDAL's choice


def sweep(data_dir, settings=SETTINGS, scenes=HELD_OUT, targets=jpeg2000.DEFAULT_TARGET_BPP) -> dict:
    """{setting: pooled JPEG-2000 points} over the scenes' bands, and each setting's BD-rate against GDAL's."""
    rows: dict = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="sarc_jp2_settings_") as tmp:
        for scene in rd.grd_scenes(data_dir, scenes, sigma0=True):
            for sb in rd.scene_bands(scene, Path(tmp)):
                for s in settings:
                    for t in targets:
                        rows[s].append({"scene": sb.scene, "band": sb.band, **sb.jpeg2000(t, Path(tmp), s),
                                        "setting": f"{t:g} bpp"})
    curves = {s: [p for p in rd.aggregate_points(rows[s]) if p["codec"] == "jpeg2000"] for s in settings}
    ref = curves[None]
    out = {}
    for s, pts in curves.items():
        bd = rd.bd_rate([p["bpp"] for p in ref], [p["db_rmse"] for p in ref],
                        [p["bpp"] for p in pts], [p["db_rmse"] for p in pts])
        out["gdal" if s is None else str(s)] = {
            "bd_rate_vs_gdal_percent": bd["bd_rate_percent"],
            "points": [{"target": p["setting"], "bpp": p["bpp"], "db_rmse": p["db_rmse"]} for p in pts]}
    scene_bands = len({(r["scene"], r["band"]) for r in rows[None]})
    return {"name": "jpeg2000_settings", "scene_bands": scene_bands, "targets_bpp": list(targets),
            "versions": jpeg2000.versions(), "settings": out}


def markdown(doc: dict) -> str:
    names = list(doc["settings"])
    lines = [f"JPEG-2000 (GDAL JP2OpenJPEG, 9/7) by number of resolutions, pooled over {doc['scene_bands']} held-out "
             "scene-bands; dB RMSE at each target (bpp measured from the files)", "",
             "| target bpp | " + " | ".join(f"{n} resolutions" if n != "gdal" else "GDAL's choice" for n in names)
             + " |", "|---:|" + "---:|" * len(names)]
    for i, t in enumerate(doc["targets_bpp"]):
        cells = [f"{doc['settings'][n]['points'][i]['bpp']:.3f} / {doc['settings'][n]['points'][i]['db_rmse']:.3f}"
                 for n in names]
        lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    lines.append("| BD-rate vs GDAL's choice | " + " | ".join(
        f"{doc['settings'][n]['bd_rate_vs_gdal_percent']:+.2f}%" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(rd.DATA_DIR), help="shared SAR data folder (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="write jpeg2000_settings.json and .md here")
    a = p.parse_args(argv)
    doc = sweep(a.data)
    md = markdown(doc)
    print(md)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        publish_files({a.out / "jpeg2000_settings.json": json.dumps(doc, indent=1),
                       a.out / "jpeg2000_settings.md": md})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
