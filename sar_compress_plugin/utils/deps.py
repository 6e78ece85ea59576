"""Lazy dependency check: the plugin loads without its Python dependencies and says exactly what to install."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class MissingDependency:
    module: str
    pip_name: str
    reason: str


def _version_major(module) -> int:
    try:
        return int(str(module.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 0


def check_dependencies() -> list[MissingDependency]:
    """Import each runtime dependency; return those missing or unusable (nothing is raised)."""
    missing: list[MissingDependency] = []
    try:
        import numpy  # noqa: PLC0415

        if _version_major(numpy) >= 2:
            missing.append(MissingDependency("numpy", "numpy<2",
                                             f"numpy {numpy.__version__} breaks QGIS's GDAL bindings"))
    except Exception as exc:  # noqa: BLE001 - a broken install must not stop the plugin from loading
        missing.append(MissingDependency("numpy", "numpy<2", str(exc)))
    for module, pip_name in (("onnxruntime", "onnxruntime-gpu"), ("zstandard", "zstandard"),
                              ("constriction", "constriction==0.5.0")):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001
            missing.append(MissingDependency(module, pip_name, f"{type(exc).__name__}: {exc}"))
    return missing


def install_hint(missing: list[MissingDependency]) -> str:
    """One message telling the user what to install, with the Python QGIS runs."""
    if not missing:
        return ""
    names = " ".join(f'"{m.pip_name}"' for m in missing)
    details = "; ".join(f"{m.module}: {m.reason}" for m in missing)
    hint = (f"SAR Compress needs Python packages that QGIS's Python cannot use: {details}. "
            f"Install them into QGIS's Python ({sys.executable}) with: python -m pip install {names}")
    if any(m.module == "onnxruntime" for m in missing):
        hint += (" (onnxruntime-gpu also runs on CPU; for a CPU-only install use \"onnxruntime\" instead, "
                 "but never install both).")
    return hint
