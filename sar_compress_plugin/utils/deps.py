"""Python dependencies: a lazy check, and what is needed to install them into a folder the plugin owns.

The plugin loads without its dependencies. Telling users to run `python -m pip install ...` failed on real
machines: on Debian 12 there is no `python`, `/usr/bin/python3 -m pip install` refuses (externally managed
environment), a pyenv shim names another Python, and inside QGIS `sys.executable` is the qgis binary. So the
plugin installs pinned packages with `pip install --target` into its own folder in the QGIS profile (pip skips
the externally-managed check for --target), using the interpreter QGIS really runs, and appends that folder to
`sys.path` so the packages import without restarting QGIS.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Pinned like requirements.txt. onnxruntime is chosen at install time (see `runtime_requirement`).
ONNXRUNTIME_VERSION = "1.31.1"
#: (module imported, requirement pip installs). numpy is checked separately (a version trap, not an absence).
REQUIREMENTS: list[tuple[str, str]] = [
    ("onnxruntime", "onnxruntime"),
    ("zstandard", "zstandard==0.25.0"),
    ("constriction", "constriction==0.5.0"),
    ("threadpoolctl", "threadpoolctl==3.8.0"),
    ("jsonschema", "jsonschema==4.10.3"),  # Debian's version; python3-qgis does not pull python3-jsonschema in
]
#: A pip constraint (never a requirement): --target resolves dependencies from scratch and would otherwise fetch
#: numpy 2 for onnxruntime, which breaks the GDAL bindings QGIS ships.
NUMPY_PIN = "numpy<2"
SITE_FOLDER = "sar_compress_packages"


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


def plugin_site_dir() -> Path:
    """The folder the plugin installs packages into: in the QGIS profile, so it survives plugin upgrades
    (which replace the plugin's own folder)."""
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / SITE_FOLDER


def add_plugin_site_dir() -> Path:
    """Put the plugin's package folder on sys.path (at the end: QGIS's own numpy/GDAL must win)."""
    site = plugin_site_dir()
    if site.is_dir() and str(site) not in sys.path:
        sys.path.append(str(site))
    importlib.invalidate_caches()
    return site


def has_nvidia_gpu() -> bool:
    """True when an NVIDIA GPU is visible to the driver (nvidia-smi lists one); decides onnxruntime-gpu."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def runtime_requirement(gpu: bool) -> str:
    """onnxruntime-gpu with a GPU, plain onnxruntime without; never both (they share one package folder)."""
    return f"onnxruntime-gpu=={ONNXRUNTIME_VERSION}" if gpu else f"onnxruntime=={ONNXRUNTIME_VERSION}"


def python_executable() -> str | None:
    """The Python interpreter QGIS runs, as a program pip can be started with.

    Inside QGIS on Linux/macOS `sys.executable` is the qgis binary, not Python; the interpreter sits in
    `sys.prefix` (bin/python3.X on Linux and macOS, python.exe on Windows/OSGeo4W). Never a name looked up on
    PATH: a pyenv or conda shim there would install into another Python.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable, getattr(sys, "_base_executable", "")]
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        candidates += [os.path.join(prefix, "bin", f"python{version}"), os.path.join(prefix, "bin", "python3"),
                       os.path.join(prefix, "python.exe"), os.path.join(prefix, "python3.exe")]
    for c in candidates:
        if c and Path(c).name.lower().startswith("python") and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def constraints_file(target: Path) -> Path:
    """The pip constraints file beside `target` (written here so the command shown can be rerun by hand)."""
    path = target.parent / f"{SITE_FOLDER}_constraints.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(NUMPY_PIN + "\n")
    return path


def pip_arguments(packages: list[str], target: Path) -> list[str]:
    """Arguments after the interpreter: pip into `target`, quietly about its own version, never prompting."""
    return ["-m", "pip", "install", "--target", str(target), "--upgrade", "--no-input",
            "--disable-pip-version-check", "--constraint", str(constraints_file(target)), *packages]


def check_dependencies() -> list[MissingDependency]:
    """Import each runtime dependency; return those missing or unusable (nothing is raised). Not cached: after
    an install the next check must see the new packages."""
    missing: list[MissingDependency] = []
    try:
        import numpy  # noqa: PLC0415

        if _version_major(numpy) >= 2:
            missing.append(MissingDependency("numpy", NUMPY_PIN,
                                             f"numpy {numpy.__version__} breaks QGIS's GDAL bindings"))
    except Exception as exc:  # noqa: BLE001 - a broken install must not stop the plugin from loading
        missing.append(MissingDependency("numpy", NUMPY_PIN, str(exc)))
    for module, pip_name in REQUIREMENTS:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001
            missing.append(MissingDependency(module, pip_name, f"{type(exc).__name__}: {exc}"))
    return missing


def install_packages(missing: list[MissingDependency], gpu: bool) -> list[str]:
    """The pip requirements that install `missing` (onnxruntime resolved for this machine's GPU)."""
    return [runtime_requirement(gpu) if m.module == "onnxruntime" else m.pip_name
            for m in missing if m.module != "numpy"]


def install_hint(missing: list[MissingDependency]) -> str:
    """One line for places without the dialog (Processing, qgis_process): what is missing and a command that
    works from a terminal."""
    if not missing:
        return ""
    names = ", ".join(m.module for m in missing)
    python = python_executable() or "<QGIS's python>"
    args = " ".join(f'"{a}"' if any(ch in a for ch in "<>= ") else a
                    for a in pip_arguments(install_packages(missing, has_nvidia_gpu()), plugin_site_dir()))
    return (f"SAR Compress is missing Python packages ({names}). In QGIS: Raster > SAR Compress > "
            f"Python dependencies… installs them; or run: \"{python}\" {args}")
