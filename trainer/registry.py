"""Model variants by name, so the CLI's choices, checkpoints and tests all come from one dict.

A checkpoint stores only the variant name and constructor arguments; the registry rebuilds the model.
"""

from __future__ import annotations

import sys
from typing import Callable

from torch import nn

MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: put a variant in MODELS under `name` (and remember the name on the class)."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {MODELS[name].__name__}")
        MODELS[name] = cls
        cls.model_name = name
        return cls

    return decorator


def _ensure_loaded() -> None:
    # Importing the package runs every variant's @register_model.
    import trainer.models  # noqa: F401


def available_models() -> list[str]:
    _ensure_loaded()
    return sorted(MODELS)


def model_summaries() -> dict[str, str]:
    """The first line of each variant's module docstring, for `sar-train --help`: the names alone do not say
    what a variant is."""
    _ensure_loaded()
    return {name: (sys.modules[MODELS[name].__module__].__doc__ or name).strip().splitlines()[0].rstrip(".")
            for name in sorted(MODELS)}


def create_model(name: str, **kwargs) -> nn.Module:
    _ensure_loaded()
    if name not in MODELS:
        raise KeyError(f"unknown model variant {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
