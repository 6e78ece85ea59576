"""Every results file a benchmark writes goes through trainer.reporting.publish_files (whole or not at all, with
the run's other files): scripts that wrote their reports with a plain write_text or savefig left a cut-off
report that looked whole after a full disk or a Ctrl-C, or half a rerun beside the last run's other file. The
scan below finds each call that writes a file in benchmarks/*.py; only the scratch and in-memory writes of
SCRATCH may remain."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"

#: the methods that write a file (or a buffer) they are given
WRITE_CALLS = {"write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed", "savetxt", "tofile",
               "dump", "to_csv"}
#: a mode of open() that writes: w, a, x or + (tarfile's "w:gz" too)
WRITE_MODE = re.compile(r"^[rwaxbtU+]{1,4}(:\w*)?$")

#: (script, enclosing function, call) -> why it is no results write; each must occur exactly once
SCRATCH = {
    ("figures.py", "palette_png", "savefig"): "the figure into a BytesIO, written by publish_files with its run",
    ("figures.py", "quantize_png", "save"): "the palette PNG into a BytesIO",
    ("gpu_codec.py", "main", "savez_compressed"): "the chunks into a BytesIO, published with gpu_codec.json",
    ("results_files.py", "bytes_file", "write_bytes"): "the writer publish_files calls with its partial path",
    ("scene_layer.py", "picture.write", "save"): "the writer publish_files calls with its partial path",
    ("throughput.py", "worker", "write_text"): "the JPEG-2000 clip bounds for the decode measurement, in the "
                                               "measurement's temporary work folder",
}


def _is_write_open(call: ast.Call) -> bool:
    modes = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    modes += [k.value.value for k in call.keywords
              if k.arg == "mode" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)]
    return any(WRITE_MODE.match(m) and set(m) & set("wax+") for m in modes)


def file_writes(source: str, script: str) -> list[tuple[str, str, str]]:
    """(script, enclosing function, call name) for each call in `source` that writes a file."""
    found = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = [*scope, node.name]
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in WRITE_CALLS or (name == "open" and _is_write_open(node)):
                found.append((script, ".".join(scope) or "<module>", name))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(source), [])
    return found


def test_the_scan_finds_each_way_of_writing_a_file():
    """Not a scan that passes because it sees nothing."""
    source = '''
import json
def report(out, doc, fig):
    (out / "a.json").write_text(json.dumps(doc))
    out.joinpath("b.png").write_bytes(b"")
    fig.savefig(out / "c.png")
    with open(out / "d.md", "w") as f:
        json.dump(doc, f)
    with (out / "e.txt").open(mode="a") as f:
        f.write("x")
    np.savez_compressed(out / "f.npz", x=1)
def reads(out):
    open(out / "a.json").read()
    (out / "a.json").open("rb").read()
    Image.open(out / "c.png")
'''
    assert Counter(call for _, _, call in file_writes(source, "x.py")) == {
        "write_text": 1, "write_bytes": 1, "savefig": 1, "open": 2, "dump": 1, "savez_compressed": 1}
    assert {scope for _, scope, _ in file_writes(source, "x.py")} == {"report"}


def test_benchmarks_write_results_only_through_publish_files():
    found = Counter(w for script in sorted(BENCH.glob("*.py")) for w in file_writes(script.read_text(), script.name))
    direct = sorted(set(found) - set(SCRATCH))
    assert not direct, f"results written directly, not through trainer.reporting.publish_files: {direct}"
    # an entry that no longer matches is a dead exception; one that matches twice hides a new write
    assert {k: found.get(k, 0) for k in SCRATCH} == {k: 1 for k in SCRATCH}
