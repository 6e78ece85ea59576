"""Model variants; importing this package registers all of them."""

from trainer.models import attention, baseline, resnet_lite, residual  # noqa: F401
from trainer.models.base import SarAutoencoder

__all__ = ["SarAutoencoder"]
