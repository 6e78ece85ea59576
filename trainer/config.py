"""Training configuration: dataclass defaults < YAML file (--config) < command-line flags (timm style).

The resolved config is written into the run folder and every checkpoint, so a run can be reproduced from
either.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from sar_compress_plugin.core.errors import SarCompressError
from trainer.models.codec import DEFAULT_LAMBDAS
from trainer.registry import available_models


class ConfigError(SarCompressError):
    """A config file or value is invalid."""


@dataclass
class TrainConfig:
    variant: str = "baseline"
    data: str = ""
    out: str = "runs/train"
    domain: str = "intensity"        # for files the manifest does not list
    epochs: int = 1000
    max_steps: int | None = None     # stop after this many optimiser steps in total
    max_minutes: float | None = None  # stop (validate, checkpoint) after this much wall-clock time in this run
    steps_per_epoch: int | None = 500  # optimiser steps between validations; None: one pass over the pixels
    batch_size: int = 4
    lr: float = 2e-4
    lr_drop_step: int | None = None  # from this step on, the learning rate is lr * lr_drop_factor
    lr_drop_factor: float = 0.25
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lambdas: list[float] = field(default_factory=lambda: list(DEFAULT_LAMBDAS))  # one per quality level
    level_weights: list[float] | None = None  # training-loss weight per quality level (None: all 1)
    seed: int = 0                    # weights' initialisation and the patch stream
    split_seed: int = 0              # which scenes are held out: fixed across seed replicates, so they compare
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    threads: int | None = None       # torch CPU threads (1 while other work shares the cores)
    data_fraction: float = 1.0
    val_fraction: float = 0.2
    patience: int = 20
    resume: str | None = None        # a checkpoint path, or "auto" for <out>/last.pth
    init: str | None = None          # start from this checkpoint's weights (fresh optimiser, step 0)
    channels: int = 64               # width of g_a / g_s
    latent_channels: int = 128       # M
    hyper_channels: int = 64         # width of z and h_a
    context_slices: int = 1          # latent slices of the channel context (1: none)
    decoder_channels: int | None = None  # width of g_s at 1/2 resolution (None: channels); trainer/narrow.py
    decoder_only: bool = False       # train g_s and the inverse gains only: the init model's symbols stay
    patch_size: int = 256
    min_valid_fraction: float = 0.9
    val_tiles_per_plane: int = 4
    checkpoint_minutes: float = 5.0  # last.pth is also written this often within an epoch
    max_bad_batches: int = 20        # consecutive non-finite batches before giving up
    progress: bool = True

    def validate(self) -> "TrainConfig":
        self._check_types()
        if self.variant not in available_models():  # a flag is checked by argparse, a config file only here
            raise ConfigError(f"variant must be one of {', '.join(available_models())}, got {self.variant!r}")
        if self.patch_size % 64 or self.patch_size < 64:
            raise ConfigError(f"patch_size must be a positive multiple of 64 (the hyperprior's grid), "
                              f"got {self.patch_size}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("batch_size and epochs must be >= 1")
        if not 0 < self.data_fraction <= 1:
            raise ConfigError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        lambdas = [float(v) for v in self.lambdas]
        if not lambdas or min(lambdas) <= 0 or any(b <= a for a, b in zip(lambdas, lambdas[1:])):
            raise ConfigError(f"lambdas must be positive and strictly increasing, got {self.lambdas}")
        if self.level_weights is not None and (len(self.level_weights) != len(lambdas)
                                               or not all(float(w) > 0 for w in self.level_weights)):
            raise ConfigError(f"level_weights must be {len(lambdas)} positive numbers (one per lambda), "
                              f"got {self.level_weights}")
        if min(self.channels, self.latent_channels, self.hyper_channels, self.context_slices,
               1 if self.decoder_channels is None else self.decoder_channels) < 1:
            raise ConfigError("channels, latent_channels, hyper_channels, context_slices and decoder_channels "
                              "must be positive")
        if self.latent_channels % self.context_slices:
            raise ConfigError(f"context_slices ({self.context_slices}) must divide latent_channels "
                              f"({self.latent_channels})")
        if not self.lr > 0 or not 0 < self.lr_drop_factor <= 1:
            raise ConfigError("lr must be > 0 and lr_drop_factor in (0, 1]")
        for name in ("max_steps", "steps_per_epoch"):  # 0 or less ran "done: 0 epoch(s)"
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (or null), got {getattr(self, name)}")
        if self.patience < 1 or self.max_bad_batches < 1 or self.checkpoint_minutes < 0:
            raise ConfigError("patience and max_bad_batches must be >= 1 and checkpoint_minutes >= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", self.device):
            # "cuda:x" passed, to a torch.device traceback on a machine with CUDA
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return self

    def _check_types(self) -> None:
        """A YAML file can give an option any type ("x" for batch_size): name it in one line before a range
        check below fails with a TypeError."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind, _, optional = str(f.type).partition(" | ")
            if not (value is None and optional) and not _has_kind(kind, value):
                raise ConfigError(f"{f.name} must be {_KIND_TEXT[kind]}{' or null' if optional else ''}, "
                                  f"got {value!r}")

    def lr_at(self, step: int) -> float:
        """The learning rate for optimiser step `step` (a resumed run may change the schedule)."""
        if self.lr_drop_step is not None and step >= self.lr_drop_step:
            return self.lr * self.lr_drop_factor
        return self.lr

    def to_dict(self) -> dict:
        return asdict(self)


_KIND_TEXT = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
              "list[float]": "a list of numbers"}


def _has_kind(kind: str, value) -> bool:
    """Whether `value` is of TrainConfig's annotated `kind`: an int is a float, a bool is not a number."""
    if kind == "list[float]":
        return isinstance(value, (list, tuple)) and all(_has_kind("float", v) for v in value)
    if kind in ("bool", "str"):
        return isinstance(value, bool if kind == "bool" else str)
    return not isinstance(value, bool) and isinstance(value, int if kind == "int" else (int, float))


class _ConfigLoader(yaml.SafeLoader):
    """YAML 1.1 reads `lr: 2e-4` (no dot) as a string; every ML config writes it so, and YAML 1.2 says float."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_config_file(path: str | Path) -> dict:
    """Keys of a YAML (or JSON) file; unknown keys are an error so typos do not pass silently."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_ConfigLoader) or {}  # noqa: S506 (a SafeLoader)
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
