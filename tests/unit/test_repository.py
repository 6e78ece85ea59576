"""Repository invariants that CI relies on."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```(?:bash|sh)\n(.*?)\n```", text, flags=re.S | re.M)


def test_ci_runs_the_readme_test_command_verbatim():
    blocks = readme_commands()
    assert len(blocks) >= 2, "README must open with the two set-up commands"
    test_command = blocks[1].strip().split(" && ", 1)[1]
    assert "pytest" in test_command
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_command in ci_lines


def test_core_imports_neither_qgis_nor_torch_nor_dask():
    core = ROOT / "sar_compress_plugin" / "core"
    offenders = []
    for path in core.rglob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"\s*(import|from)\s+(qgis|torch|PyQt5|dask|distributed)\b", line):
                offenders.append(f"{path.name}: {line.strip()}")
    assert not offenders, offenders


def test_no_unsafe_torch_load():
    hits = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        text = path.read_text(errors="ignore")
        if re.search(r"weights_only\s*=\s*False", text) and path.name != "test_repository.py":
            hits.append(str(path))
    assert not hits, hits


def test_the_plugin_offers_every_package_the_codec_core_imports():
    """QGIS's Python is not this venv: a package the core imports that the plugin's dependency dialog does not
    offer (jsonschema was one: python3-qgis does not pull it in) fails the first compress in QGIS with an
    ImportError instead of the dialog. Every third-party import of core/ is offered, or ships with QGIS."""
    import ast
    import sys

    from sar_compress_plugin.utils.deps import REQUIREMENTS

    ships_with_qgis = {"numpy", "osgeo"}
    offered = {module for module, _ in REQUIREMENTS}
    imported = set()
    for path in (ROOT / "sar_compress_plugin" / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "sar_compress_plugin"}
    assert "jsonschema" in third_party and "onnxruntime" in third_party  # the scan sees the core's imports
    assert third_party - offered - ships_with_qgis == set()


def test_the_venvs_matplotlib_plots_without_the_system_copys_mpl_toolkits():
    """Debian's python3-matplotlib (pulled in by QGIS) put its own mpl_toolkits in front of the venv's, and every
    plot of the trainer and benchmarks warned "Unable to import Axes3D" (scripts/setup.sh)."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt; "
            "plt.figure().add_subplot(111, projection='3d')")
    run = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr.strip().splitlines()[-1:]
