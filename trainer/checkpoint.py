"""Self-describing, safe checkpoints (nanoGPT style): plain dict of tensors and plain Python types.

`torch.load(path, weights_only=True)` must always work, so nothing here pickles objects; the model is
rebuilt from its registry name and constructor arguments.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from sar_compress_plugin.core.errors import ModelMismatchError, SarCompressError
from trainer.registry import available_models, create_model

REQUIRED_KEYS = ("model_name", "model_config", "model_state_dict", "epoch", "step", "best_val_loss", "history",
                 "preprocessing_params", "config", "data_summary", "optimizer_state_dict")


class CheckpointError(SarCompressError):
    """A checkpoint file is missing, corrupt or incomplete."""


def make_checkpoint(model: nn.Module, *, epoch: int, step: int, best_val_loss: float, history: list[dict],
                    preprocessing_params: dict, config: dict, data_summary: dict,
                    optimizer: torch.optim.Optimizer | None = None, resume_state: dict | None = None) -> dict:
    """Every tensor on the CPU and every value a plain type, so `torch.load(weights_only=True)` reads it.
    `resume_state` (optional; trainer.train) is what a resumed run needs to go on exactly as if never stopped."""
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
    if resume_state is not None:
        ckpt["resume_state"] = resume_state
    return ckpt


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Write atomically: a crash mid-write never leaves a truncated best.pth/last.pth behind. A place that cannot
    be written (a folder of that name, a read-only or full disk) is one CheckpointError line, not a traceback
    from torch.save or os.replace (trainer.warm_start and trainer.average into an existing folder), and leaves
    no `.tmp` beside it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.is_dir():  # os.replace would only say so after the whole file was written
            raise IsADirectoryError(f"is a folder: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: cannot write checkpoint ({_first_line(exc)})") from None


def save_warm_start(ckpt: dict, path: str | Path) -> None:
    """A small copy of a checkpoint to commit or carry: fp16 weights, no optimiser state, the history and the
    counters. `sar-train --resume` continues from it (fresh optimiser), `--init` starts a new run from it."""
    small = dict(ckpt, optimizer_state_dict={},
                 model_state_dict={k: v.half() if v.is_floating_point() else v
                                   for k, v in ckpt["model_state_dict"].items()})
    save_checkpoint(small, path)


def _first_line(exc: BaseException) -> str:
    """One line of an exception for a one-line error; some have no message (torch.load's EOFError on an empty
    file), and "".splitlines()[0] would be an IndexError traceback instead."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _verify_archive(path: Path) -> None:
    """Check the CRC-32 the zip format keeps for every record of a checkpoint: torch.load does not, so flipped
    bytes inside a tensor would load as a silently different model. Reading the whole file once costs ~6 ms
    for the 5 MB warm start (its torch.load takes ~60 ms)."""
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since PyTorch 1.6; the legacy
        # format's pickle reader met text or random bytes with a KeyError or IndexError traceback
        raise CheckpointError(f"{path}: not a readable checkpoint (not a PyTorch zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({_first_line(exc)})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch in record {damaged})")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The one way a checkpoint is read: every CLI that takes one gets the same one-line errors."""
    path = Path(path)
    if path.is_dir():  # a run folder given for its checkpoint was "no such checkpoint file", which it is not
        inside = sorted(p.name for p in path.glob("*.pth"))
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file"
                              + (f" (it holds {', '.join(inside)})" if inside else ""))
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a checkpoint: empty file")
    _verify_archive(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's text for it advises turning the weights-only check off: never here
        raise CheckpointError(f"{path}: not a sar-compress checkpoint (it holds objects other than tensors and "
                              f"plain values, which are not loaded)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a sar-compress checkpoint (top level is {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a sar-compress checkpoint (missing {', '.join(missing)})")
    return ckpt


def load_model(path: str | Path, expected_variant: str | None = None,
               map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model in eval mode, float32, checkpoint dict), rebuilt through the registry (`model_from_checkpoint`)."""
    ckpt = load_checkpoint(path, map_location)
    name = ckpt["model_name"]
    if expected_variant is not None and name != expected_variant:
        raise ModelMismatchError(f"{path}: checkpoint is variant {name!r}, expected {expected_variant!r}")
    model = model_from_checkpoint(ckpt, path)
    model.eval()
    return model, ckpt


def model_from_checkpoint(ckpt: dict, path: str | Path) -> nn.Module:
    """The checkpoint's model, float32 on the CPU, built from its own variant and model_config: the one check
    that its weights fit the shape it records, for sar-eval and sar-export and for sar-train's --resume and
    --init alike (a file whose model_config was edited or mislabelled was a load_state_dict size-mismatch
    traceback in sar-train). A checkpoint of the retired fixed-bottleneck autoencoder (no "lambdas" in its
    config) is refused by name. torch's random state stays as it was (the model's initialisation draws from it):
    an --init run takes the training noise it took when its weights were loaded directly."""
    name = ckpt["model_name"]
    if name not in available_models():
        raise ModelMismatchError(f"{path}: unknown variant {name!r} (known: {', '.join(available_models())})")
    if "lambdas" not in ckpt["model_config"]:
        raise ModelMismatchError(f"{path}: checkpoint of the retired fixed-bottleneck autoencoder (before the "
                                 f"variable-rate hyperprior model); retrain it with this version's sar-train")
    try:
        with torch.random.fork_rng(devices=[]):
            model = create_model(name, **ckpt["model_config"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in ckpt["model_state_dict"].items()})
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: weights do not fit variant {name!r} ({_first_line(exc)})") from None
    return model


def training_totals(ckpt: dict) -> dict:
    """Steps and patches the weights have seen in all, across `--init` branches: this run's plus those of the
    run it was initialised from (recorded in data_summary["initialised_from"], itself such a total)."""
    source = (ckpt.get("data_summary") or {}).get("initialised_from") or {}
    patches = (ckpt.get("data_summary") or {}).get("patches_seen")
    return {"steps_total": int(ckpt.get("step") or 0) + int(source.get("steps_total", 0)),
            "patches_seen_total": None if patches is None else int(patches) + int(source.get("patches_seen_total", 0))}


def totals_text(ckpt: dict) -> str:
    """How far a checkpoint's weights trained, as the CLIs that write one say it: "N steps, P patches in all"."""
    totals = training_totals(ckpt)
    patches = totals["patches_seen_total"]
    return (f"{totals['steps_total']:,} steps, "
            + ("patches not recorded" if patches is None else f"{patches:,} patches in all"))
