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
