"""Model variants; importing this package registers all of them."""

from trainer.models import attention, baseline, resnet_lite, residual  # noqa: F401
from trainer.models.codec import SarCodecModel

__all__ = ["SarCodecModel"]
