"""The batch report: every input with its status, error, bytes, bpp, seconds and worker, as JSON (with a
summary) and as CSV (for a spreadsheet). Both are written under temporary names and renamed, like outputs."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from collections import Counter
from pathlib import Path

from ..core.raster_io import temp_path_for
from .tasks import FIELDS, OK


def summarise(records: list[dict], wall_seconds: float) -> dict:
    """Counts per status and the throughput of the scenes actually processed in this run (skips excluded)."""
    done = [r for r in records if r["status"] == OK]
    pixels = sum(r["pixels"] * r["bands"] for r in done)
    hours = max(wall_seconds, 1e-9) / 3600
    return {"inputs": len(records), **Counter(r["status"] for r in records),
            "bytes_in": sum(r["bytes_in"] or 0 for r in done), "bytes_out": sum(r["bytes_out"] or 0 for r in done),
            "wall_seconds": round(wall_seconds, 3), "scenes_per_hour": round(len(done) / hours, 1),
            "mp_per_s": round(pixels / 1e6 / max(wall_seconds, 1e-9), 4)}


def _atomic_write(path: Path, write) -> None:
    tmp = temp_path_for(path, suffix=path.suffix)
    try:
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def report_paths(path) -> tuple[Path, Path]:
    """`path`.json and `path`.csv; a .json or .csv suffix of `path` is dropped first, any other kept: a name
    with a dot in it (`--report reports/run.2024-05`) lost what followed its last dot (`reports/run.json`),
    so runs named by date wrote over one another's reports."""
    base = Path(path)
    if base.suffix.lower() in (".json", ".csv"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".csv")


def write_report(path, name: str, records: list[dict], summary: dict, run: dict) -> tuple[Path, Path]:
    """The report as `report_paths(path)`; returns both paths."""
    json_path, csv_path = report_paths(path)
    doc = {"name": name, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "run": run, "summary": summary, "scenes": records}
    _atomic_write(json_path, lambda f: json.dump(doc, f, indent=1))

    def rows(f):
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(records)

    _atomic_write(csv_path, rows)
    return json_path, csv_path
