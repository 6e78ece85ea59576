"""Training configuration: dataclass defaults < YAML file (--config) < command-line flags (timm style).

The resolved config is written into the run folder and every checkpoint, so a run can be reproduced from
either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from sar_compress_plugin.core.errors import SarCompressError


class ConfigError(SarCompressError):
    """A config file or value is invalid."""


ENTROPY_MODELS = ("factorized", "hyperprior")


@dataclass
class TrainConfig:
    variant: str = "baseline"
    data: str = ""
    out: str = "runs/train"
    domain: str = "intensity"        # for files the manifest does not list
    epochs: int = 30
    max_steps: int | None = None     # stop after this many optimiser steps in total
    steps_per_epoch: int | None = None  # optimiser steps per epoch; None: about one pass over the training pixels
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    mse_weight: float = 0.7
    ssim_weight: float = 0.3
    lmbda: float | None = None       # rate-distortion trade-off; None: distortion-only training
    entropy_model: str = "factorized"  # with lmbda: "factorized" prior or scale "hyperprior"
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    data_fraction: float = 1.0
    val_fraction: float = 0.2
    patience: int = 5
    resume: str | None = None        # a checkpoint path, or "auto" for <out>/last.pth
    init: str | None = None          # start from this checkpoint's transform weights (fresh optimiser, step 0)
    latent_channels: int = 16
    base_channels: int = 64
    patch_size: int = 256
    min_valid_fraction: float = 0.9
    val_tiles_per_plane: int = 16
    max_bad_batches: int = 20        # consecutive non-finite batches before giving up
    progress: bool = True

    def validate(self) -> "TrainConfig":
        if self.patch_size % 16 or self.patch_size < 16:
            raise ConfigError(f"patch_size must be a positive multiple of 16, got {self.patch_size}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("batch_size and epochs must be >= 1")
        if not 0 < self.data_fraction <= 1:
            raise ConfigError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        if self.lmbda is not None and not self.lmbda > 0:
            raise ConfigError(f"lmbda must be > 0, got {self.lmbda}")
        if self.entropy_model not in ENTROPY_MODELS:
            raise ConfigError(f"entropy_model must be one of {', '.join(ENTROPY_MODELS)}, got {self.entropy_model!r}")
        if self.entropy_model != "factorized" and self.lmbda is None:
            raise ConfigError(f"entropy_model {self.entropy_model!r} needs --lmbda (rate-distortion training)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def read_config_file(path: str | Path) -> dict:
    """Keys of a YAML (or JSON) file; unknown keys are an error so typos do not pass silently."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a mapping of option: value")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return data


def resolve(file_values: dict, cli_values: dict) -> TrainConfig:
    """Defaults, overridden by the file, overridden by flags the user actually gave (non-None)."""
    merged = {**file_values, **{k: v for k, v in cli_values.items() if v is not None}}
    return TrainConfig(**merged).validate()


def save_config(cfg: TrainConfig, folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (folder / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
