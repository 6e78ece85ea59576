"""Committed benchmark reports read whether they lie as written or archived with gzip; binary results handed
to the one writer of results files.

Why: every tracked file travels in each GPU call, which carries at most 64 MiB with the packed training data
(`tests/unit/test_gpu_script.py`), and each session adds results. A rate_distortion.py report that is no longer
the headline (a trend point, a branch run) is read again only by rd_trend.py and rd_pooled.py, so it is archived
as `rd_points.json.gz` (`gzip -9n`): an eighth of the size, the same JSON.

Every results file is written by `trainer.reporting.publish_files` (whole or not at all, with the run's other
files), which takes text or a writer; `bytes_file` is the writer of bytes (a figure, gpu_codec.py's chunks).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable

POINTS = "rd_points.json"


def points_file(path: str | Path) -> Path:
    """A rate_distortion.py output folder's report, plain or archived; a file path is taken as given."""
    path = Path(path)
    if not path.is_dir():
        return path
    plain, archived = path / POINTS, path / (POINTS + ".gz")
    return archived if archived.is_file() and not plain.is_file() else plain


def read_json(path: str | Path) -> dict:
    """The JSON of `path`, gunzipped when its name ends in .gz."""
    path = Path(path)
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(data)


def bytes_file(data: bytes) -> Callable[[Path], None]:
    """The writer `publish_files` calls with the partial path of a binary results file."""
    return lambda path: Path(path).write_bytes(data)
