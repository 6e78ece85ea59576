"""The batch report: every input with its status, error, bytes, bpp, ratio, seconds, worker and run, as JSON
(with a summary of this run) and as CSV (for a spreadsheet). Both are written under temporary names and renamed,
like outputs. Rows of earlier runs into the same report about inputs this run does not have are kept, and so is
an earlier run's row of a scene that this one did not get to."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from collections import Counter
from pathlib import Path

from ..core.errors import SarCompressError
from ..core.raster_io import temp_path_for
from .engine import CANCELLED
from .tasks import FIELDS, OK, SKIPPED

#: A scene's record and `run`, when the run that made the row started (rows of earlier runs are kept).
COLUMNS = (*FIELDS, "run")
#: The commands that write reports: a report of either may be replaced by the other's.
COMMANDS = ("sar-compress-batch", "sar-reconstruct-batch")


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


def now(timespec: str = "seconds") -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)


def _not_ours(path: Path) -> SarCompressError:
    return SarCompressError(f"{path}: exists and is not a batch report, so it is not replaced; choose another "
                            "--report")


def earlier_rows(path, name: str) -> list[dict]:
    """The rows of this command's report already at `path`, each with its run; [] when there is none.

    Raises SarCompressError when a file under the report's names is not a batch report: `--report
    catalog.json` over a STAC input replaced the catalog with the report, as it did any file of those names."""
    json_path, csv_path = report_paths(path)
    doc = None
    if json_path.is_file():  # a folder under the name is not replaced either: writing fails in one line
        try:
            doc = json.loads(json_path.read_text())
        except (OSError, ValueError):
            raise _not_ours(json_path) from None
        if not (isinstance(doc, dict) and doc.get("name") in COMMANDS and isinstance(doc.get("scenes"), list)):
            raise _not_ours(json_path)
    if csv_path.is_file():
        try:
            with open(csv_path, newline="") as f:
                header = f.readline()
        except (OSError, ValueError):
            raise _not_ours(csv_path) from None
        if not header.startswith("input,output,status,"):
            raise _not_ours(csv_path)
    if doc is None or doc["name"] != name:
        return []
    started = (doc.get("run") or {}).get("started") or doc.get("created", "")
    return [{**dict.fromkeys(COLUMNS, ""), "run": started, **{k: v for k, v in row.items() if k in COLUMNS}}
            for row in doc["scenes"] if isinstance(row, dict)]


def _input_key(spec) -> str:
    """An input as one file, as the report names it: a row without an output (a broken link) is told apart by its
    input alone, which one run names `scenes/b.tif` and the next /archive/scenes/b.tif (a relative one taken from
    this run's folder; a GDAL virtual path as given). The report named inputs as given and outputs absolute."""
    spec = str(spec)
    return spec if not spec or spec.startswith("/vsi") else os.path.abspath(spec)


def _still_there(row: dict) -> bool:
    """Whether the output of an earlier row is still the file the row describes, as far as its size tells."""
    try:
        return bool(row["output"]) and Path(row["output"]).stat().st_size == row["bytes_out"]
    except (OSError, TypeError):
        return False


def _standing(earlier: list[dict], records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(this run's records to write, the earlier rows they leave standing).

    An earlier row stands when this run has no row of its input or output: an archive done folder by folder
    into one --out kept the last folder's rows only, and a rerun of the inputs that failed lost every other.
    It also stands over this run's "cancelled" row of the same scene when it says the scene was done (ok,
    skipped) and its output is still there: a rerun interrupted before it got to a scene reported it "cancelled,
    batch interrupted" with a whole .sarc of the earlier run in place, and dropped the row that said so."""
    done = {(_input_key(r["input"]), r["output"]) for r in earlier
            if r["status"] in (OK, SKIPPED) and _still_there(r)}
    mine = [r for r in records if r["status"] != CANCELLED or (_input_key(r["input"]), r["output"]) not in done]
    inputs = {_input_key(r["input"]) for r in mine}
    outputs = {r["output"] for r in mine if r["output"]}
    return mine, [r for r in earlier if _input_key(r["input"]) not in inputs and r["output"] not in outputs]


def write_report(path, name: str, records: list[dict], summary: dict, run: dict,
                 earlier: list[dict] = ()) -> tuple[Path, Path]:
    """The report as `report_paths(path)`: this run's `records` (`run["started"]` their run, their inputs as
    absolute paths like their outputs), then the `earlier` rows (`earlier_rows`) that still stand
    (`_standing`); the summary is this run's. Returns both paths."""
    json_path, csv_path = report_paths(path)
    mine, kept = _standing(list(earlier), records)
    scenes = [{**r, "input": _input_key(r["input"]), "run": run["started"]} for r in mine] + kept
    doc = {"name": name, "created": now(), "run": run,
           "summary": {**summary, "rows_of_earlier_runs": len(kept)}, "scenes": scenes}
    _atomic_write(json_path, lambda f: json.dump(doc, f, indent=1))

    def rows(f):
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(scenes)

    _atomic_write(csv_path, rows)
    return json_path, csv_path
