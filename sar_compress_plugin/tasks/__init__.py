"""Background work as QgsTasks: compress, reconstruct, quality maps."""

from .base import SarTask, TaskResult, TaskStatus
from .codec_tasks import CompressTask, QualityMapsTask, ReconstructTask

__all__ = ["SarTask", "TaskResult", "TaskStatus", "CompressTask", "ReconstructTask", "QualityMapsTask"]
