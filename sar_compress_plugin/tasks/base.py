"""A QgsTask that runs one codec call (after Deepness's map processor).

`run()` (worker thread) wraps `_run()` and stores a `TaskResult` (success, failed, cancelled); `_run()` hands
the codec `self.report_progress` and `self.is_cancelled`, which map onto `setProgress` and `isCanceled`. Only
`finished()` (main thread) calls `on_finished`, the one place where widgets and layers are touched. Tests can
call `task.run()` then `task.finished(ok)` synchronously.
"""

from __future__ import annotations

import enum
import logging
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qgis.core import QgsTask

from ..core.errors import CancelledError, SarCompressError

log = logging.getLogger(__name__)


class TaskStatus(enum.Enum):
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class TaskResult:
    status: TaskStatus
    value: Any = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is TaskStatus.SUCCESS


#: QGIS >= 3.26 can keep a task out of its own "Task complete"/"Task failed" notifications (QgsTask.Silent). The
#: plugin reports every outcome in the message bar itself, and a cancel must read "cancelled; no file was
#: written", not also "Task failed". QGIS 3.22 has no such flag (there the notification cannot be avoided).
TASK_FLAGS = QgsTask.Flags(QgsTask.Flag.CanCancel)
if hasattr(QgsTask.Flag, "Silent"):
    TASK_FLAGS |= QgsTask.Flag.Silent


def _saved_traceback() -> str:
    """" (traceback in <file>)" for the message of an unexpected error: the user sees one line, a bug report gets
    the whole traceback (a log full of tracebacks reads as a crash)."""
    try:
        with tempfile.NamedTemporaryFile("w", prefix="sar_compress_error_", suffix=".txt", delete=False) as f:
            f.write(traceback.format_exc())
    except OSError as exc:
        log.debug("cannot save the traceback (%s):\n%s", exc, traceback.format_exc())
        return ""
    return f" (traceback in {f.name})"


class SarTask(QgsTask):
    def __init__(self, description: str, on_finished: Callable[[TaskResult], None] | None = None,
                 outputs: tuple[str, ...] = ()):
        """`outputs`: the files the task writes; the plugin starts no second task on one of them meanwhile."""
        super().__init__(description, TASK_FLAGS)
        self.on_finished = on_finished
        self.outputs = tuple(str(p) for p in outputs)
        self.result: TaskResult | None = None

    # --- worker thread ---------------------------------------------------------------------------------
    def _run(self) -> Any:
        raise NotImplementedError

    def report_progress(self, fraction: float) -> None:
        self.setProgress(100.0 * min(1.0, max(0.0, float(fraction))))

    def is_cancelled(self) -> bool:
        return self.isCanceled()

    def run(self) -> bool:  # noqa: D401 (QgsTask API)
        try:
            if self.isCanceled():
                raise CancelledError(f"{self.description()}: cancelled before it started")
            self.result = TaskResult(TaskStatus.SUCCESS, self._run())
        except CancelledError as exc:
            self.result = TaskResult(TaskStatus.CANCELLED, message=str(exc) or "cancelled")
        except SarCompressError as exc:
            self.result = TaskResult(TaskStatus.FAILED, message=str(exc))
        except MemoryError:
            self.result = TaskResult(TaskStatus.FAILED, message=f"{self.description()}: out of memory; "
                                                                "try a smaller tile size")
        except Exception as exc:  # noqa: BLE001 - a bug must reach the user as a message, not kill QGIS
            self.result = TaskResult(TaskStatus.FAILED,
                                     message=f"{self.description()}: unexpected {type(exc).__name__}: {exc}"
                                             f"{_saved_traceback()}")
        return self.result.ok

    # --- main thread -----------------------------------------------------------------------------------
    def finished(self, ok: bool) -> None:  # noqa: D401 (QgsTask API)
        if self.result is None:  # cancelled by the task manager before run() was called
            self.result = TaskResult(TaskStatus.CANCELLED, message=f"{self.description()}: cancelled")
        elif not ok and self.result.ok:
            self.result = TaskResult(TaskStatus.CANCELLED, message=f"{self.description()}: cancelled")
        if self.on_finished is not None:
            self.on_finished(self.result)
