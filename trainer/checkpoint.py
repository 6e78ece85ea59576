"""Self-describing, safe checkpoints (nanoGPT style): plain dict of tensors and plain Python types.

`torch.load(path, weights_only=True)` must always work, so nothing here pickles objects; the model is
rebuilt from its registry name and constructor arguments.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from sar_compress_plugin.core.errors import ModelMismatchError, SarCompressError
from trainer.hyperprior import HyperpriorModel
from trainer.rate_distortion import RateDistortionModel
from trainer.registry import available_models, create_model

REQUIRED_KEYS = ("model_name", "model_config", "model_state_dict", "epoch", "step", "best_val_loss", "history",
                 "preprocessing_params", "config", "data_summary", "optimizer_state_dict")


class CheckpointError(SarCompressError):
    """A checkpoint file is missing, corrupt or incomplete."""


def make_checkpoint(model: nn.Module, *, epoch: int, step: int, best_val_loss: float, history: list[dict],
                    preprocessing_params: dict, config: dict, data_summary: dict,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """A rate-distortion model also stores its prior's arguments under "entropy_model" (plain models do not,
    so their checkpoints are unchanged), which is how load_model knows to rebuild the wrapper; a hyperprior's
    carries "kind": "hyperprior" (no kind: the factorized prior, as every checkpoint before the hyperprior)."""
    ckpt = {
        "model_name": model.model_name,
        "model_config": dict(model.config),
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": int(epoch),
        "step": int(step),
        "best_val_loss": float(best_val_loss),
        "history": [dict(h) for h in history],
        "preprocessing_params": preprocessing_params,
        "config": config,
        "data_summary": data_summary,
        "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else {},
    }
    if isinstance(model, (RateDistortionModel, HyperpriorModel)):
        ckpt["entropy_model"] = dict(model.entropy_model_config)
    return ckpt


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Write atomically: a crash mid-write never leaves a truncated best.pth/last.pth behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a sar-compress checkpoint (top level is {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a sar-compress checkpoint (missing {', '.join(missing)})")
    return ckpt


def entropy_model_kind(ckpt: dict) -> str | None:
    """None for a plain checkpoint, else "factorized" or "hyperprior"."""
    if "entropy_model" not in ckpt:
        return None
    return str(ckpt["entropy_model"].get("kind", "factorized"))


def wrap_with_entropy_model(model: nn.Module, config: dict, path="checkpoint") -> nn.Module:
    """The rate-distortion wrapper a checkpoint's "entropy_model" entry describes, around a plain variant."""
    args = {k: v for k, v in config.items() if k != "kind"}
    kind = config.get("kind", "factorized")
    if kind == "factorized":
        return RateDistortionModel(model, **args)
    if kind == "hyperprior":
        return HyperpriorModel(model, **args)
    raise CheckpointError(f"{path}: unknown entropy model kind {kind!r}")


def load_model(path: str | Path, expected_variant: str | None = None,
               map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, checkpoint dict), rebuilt through the registry (inside its rate-distortion wrapper
    when the checkpoint has an "entropy_model")."""
    ckpt = load_checkpoint(path, map_location)
    name = ckpt["model_name"]
    if expected_variant is not None and name != expected_variant:
        raise ModelMismatchError(f"{path}: checkpoint is variant {name!r}, expected {expected_variant!r}")
    if name not in available_models():
        raise ModelMismatchError(f"{path}: unknown variant {name!r} (known: {', '.join(available_models())})")
    model = create_model(name, **ckpt["model_config"])
    if "entropy_model" in ckpt:
        model = wrap_with_entropy_model(model, ckpt["entropy_model"], path)
    try:
        model.load_state_dict(ckpt["model_state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit variant {name!r} ({str(exc).splitlines()[0][:200]})") from None
    model.eval()
    return model, ckpt
