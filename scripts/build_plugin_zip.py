#!/usr/bin/env python3
"""Build dist/sar_compress_plugin-<version>.zip for QGIS's "Install from ZIP".

The zip holds the plugin folder `sar_compress_plugin/` (core included, the bundled default model, icons, LICENSE)
with the repository's canonical top-level metadata.txt copied in as `sar_compress_plugin/metadata.txt`.
Caches and build litter (__pycache__, *.pyc, *.tmp) are left out.

    python scripts/build_plugin_zip.py [--out-dir dist]
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "sar_compress_plugin"
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".tmp", ".orig", ".rej"}
REQUIRED_FIELDS = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                   "repository", "tracker")


def read_metadata(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    meta = dict(parser["general"])
    missing = [k for k in REQUIRED_FIELDS if not meta.get(k, "").strip()]
    if missing:
        raise SystemExit(f"error: {path}: missing required fields {missing}")
    return meta


def plugin_files(root: Path) -> list[Path]:
    files = []
    for p in sorted((root / PLUGIN).rglob("*")):
        rel = p.relative_to(root)
        if any(part in EXCLUDED_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix not in EXCLUDED_SUFFIXES and p.name != "metadata.txt":
            files.append(p)
    return files


def build(out_dir: Path, root: Path = REPO) -> Path:
    meta_path = root / "metadata.txt"
    meta = read_metadata(meta_path)
    icon = root / PLUGIN / meta.get("icon", "")
    if not icon.is_file():
        raise SystemExit(f"error: icon {icon} named in {meta_path} does not exist")
    if not (root / PLUGIN / "LICENSE").is_file():
        raise SystemExit(f"error: {root / PLUGIN / 'LICENSE'} is missing")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN}-{meta['version']}.zip"
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in plugin_files(root):
            zf.write(p, p.relative_to(root).as_posix())
        zf.write(meta_path, f"{PLUGIN}/metadata.txt")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=REPO / "dist", help="folder for the zip")
    args = ap.parse_args(argv)
    target = build(args.out_dir)
    with zipfile.ZipFile(target) as zf:
        n = len(zf.namelist())
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB, {n} files)")
    if not (REPO / PLUGIN / "models" / "default" / "manifest.json").is_file():
        print("warning: no bundled default model in sar_compress_plugin/models/default/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
