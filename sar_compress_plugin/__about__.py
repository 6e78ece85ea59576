"""Plugin metadata, read from one place: `metadata.txt`.

In a development checkout the canonical file is the repository's top-level `metadata.txt`; in an installed
plugin (built by scripts/build_plugin_zip.py) it is the copy inside the plugin folder.
"""

from __future__ import annotations

import configparser
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def metadata_path() -> Path:
    """The metadata.txt in use: the plugin folder's copy when installed, else the repository's top level."""
    for candidate in (PLUGIN_DIR / "metadata.txt", PLUGIN_DIR.parent / "metadata.txt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"metadata.txt not found next to {PLUGIN_DIR}")


def read_metadata(path: Path | None = None) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep keys such as qgisMinimumVersion as written
    parser.read(path or metadata_path(), encoding="utf-8")
    return dict(parser["general"])


_META = read_metadata()

__title__: str = _META["name"]
__version__: str = _META["version"]
__summary__: str = _META["description"]
__about__: str = _META["about"]
__author__: str = _META["author"]
__email__: str = _META["email"]
__uri_repository__: str = _META["repository"]
__uri_tracker__: str = _META["tracker"]
__uri_homepage__: str = _META.get("homepage", _META["repository"])
__qgis_minimum_version__: str = _META["qgisMinimumVersion"]
__icon_path__: Path = PLUGIN_DIR / _META["icon"]
#: Name of the QgsMessageLog tab and prefix of the QgsSettings keys.
LOG_TAG = __title__
SETTINGS_PREFIX = "sar_compress/"
