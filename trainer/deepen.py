"""Start a residual variant (`resnet_lite`, `residual`, `attention`) from a trained `baseline`, for `sar-train --init`.

Why: at the top qualities the baseline's reconstruction sits within half a dB of what its transforms give on
unquantised latents (benchmarks/model_limits.py), so more bits buy little there; the residual variants add
capacity to g_a and g_s, but trained from scratch they need more CPU steps than several sessions have.
Deepening keeps everything the baseline learned: every baseline layer keeps its weights, and each added
residual unit starts with its branch's last convolution at zero, so the unit is the identity and the deep
model codes and reconstructs exactly as the baseline at step 0. The branch's first convolution keeps its fresh
initialisation, so the zero convolution gets gradients from the first step, and training decides what the
units add (attention's CBAM re-weights a branch that starts at zero, so it starts silent too).
"""

from __future__ import annotations

import torch
from torch import nn

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.models.layers import PreActResidualUnit, ResidualUnit
from trainer.registry import create_model

UNITS = (ResidualUnit, PreActResidualUnit)


def _baseline_positions(transform: nn.Sequential) -> list[int]:
    """Indices of `transform`'s layers that are not residual units: the baseline's layers, in its order."""
    return [i for i, layer in enumerate(transform) if not isinstance(layer, UNITS)]


@torch.no_grad()
def deepen_from_baseline(model, baseline_state: dict[str, torch.Tensor]) -> None:
    """Load a `baseline` checkpoint's weights (same config) into the residual variant `model`, in place."""
    baseline = create_model("baseline", **model.config)
    expected = baseline.state_dict()
    if set(expected) != set(baseline_state) or any(expected[k].shape != v.shape for k, v in baseline_state.items()):
        raise ModelMismatchError(f"the checkpoint is not a baseline model with this run's shape {model.config}")
    units = [layer for t in (model.g_a, model.g_s) for layer in t if isinstance(layer, UNITS)]
    if not units:
        raise ModelMismatchError(f"{model.model_name} has no residual units to add to a baseline")
    renamed = {}
    for name in ("g_a", "g_s"):
        positions = _baseline_positions(getattr(model, name))
        if len(positions) != len(getattr(baseline, name)):
            raise ModelMismatchError(f"{model.model_name}'s {name} is not the baseline's plus residual units")
        renamed.update({f"{name}.{old}.": f"{name}.{new}." for old, new in enumerate(positions)})
    state = model.state_dict()
    for key, value in baseline_state.items():
        prefix = next((p for p in renamed if key.startswith(p)), None)
        target = renamed[prefix] + key[len(prefix):] if prefix else key
        if state[target].shape != value.shape:
            raise ModelMismatchError(f"baseline weight {key} does not fit {model.model_name}'s {target}")
        state[target] = value.to(state[target].dtype)
    model.load_state_dict(state)
    for unit in units:
        last = [m for m in unit.body if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
