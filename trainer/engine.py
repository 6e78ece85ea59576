"""The training loop's two steps, readable top to bottom: `train_one_epoch` and `evaluate`.

Both are plain functions of (model, loss, data) so tests and notebooks can call them directly; run-level
concerns (data loading, checkpoints, logs, distributed set-up) live in trainer.train.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from sar_compress_plugin.core import metrics
from sar_compress_plugin.core.errors import SarCompressError

log = logging.getLogger(__name__)


class TrainingDivergedError(SarCompressError):
    """Too many consecutive batches gave a non-finite loss or gradient."""


class NonFiniteGuard:
    """Skip-and-count non-finite batches; give up after `max_consecutive` in a row.

    The owner's runs hit NaN late in training under mixed precision; skipping an occasional bad batch keeps a
    long run alive, while a long streak means the run has diverged and should stop with a clear message.
    """

    def __init__(self, max_consecutive: int = 20):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0

    def ok(self) -> None:
        self.consecutive = 0

    def bad(self, step: int, what: str) -> None:
        self.consecutive += 1
        self.total += 1
        log.warning("step %d: non-finite %s, batch skipped (%d in a row, %d in total)",
                    step, what, self.consecutive, self.total)
        if self.consecutive >= self.max_consecutive:
            raise TrainingDivergedError(
                f"training diverged: {self.consecutive} consecutive batches with non-finite {what} "
                f"(limit {self.max_consecutive}); try a lower --lr or disable --amp")


def _all_ranks_true(flag: bool, device: torch.device) -> bool:
    """Every rank must take the same branch, or DDP's gradient all-reduce would hang."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def loss_terms(loss_fn: nn.Module, model: nn.Module, x: torch.Tensor, level: torch.Tensor,
               amp_dtype: torch.dtype | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(model output, loss terms) of one batch at the given quality levels; the loss runs in float32."""
    autocast = (torch.autocast(x.device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    with autocast:
        out = model(x, level)
    lmbda = _unwrap(model).lambda_of(level)
    return out, loss_fn(out["x_hat"].float(), x.float(), out["likelihoods"], lmbda, level)


def _unwrap(model: nn.Module) -> nn.Module:
    """The codec model inside DDP / torch.compile wrappers (its lambdas and gains live there)."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model


def train_one_epoch(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, guard: NonFiniteGuard, step: int = 0,
                    max_steps: int | None = None, grad_clip: float | None = 1.0,
                    amp_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
                    progress: bool = False, total: int | None = None,
                    on_step: Callable[[int], None] | None = None, running: dict | None = None) -> dict:
    """One pass over `batches` of (patches, quality levels); returns mean loss terms, steps taken, skipped
    batches and the new step count. `on_step(step)` runs after every optimiser step (the caller's periodic
    checkpoint).

    `running`: the epoch's totals so far ({"sums": {term: sum}, "steps": n, "skipped": n}), updated in place
    before each on_step, so a checkpoint within the epoch can carry them. A run resumed from such a checkpoint
    passes them back, and the epoch's train_ figures and skipped batches cover the steps before the stop too,
    as an uninterrupted run's do (they covered only the steps after it). The mean terms returned are over all
    of them; `steps` counts this call's.

    Mixed precision (CUDA only) covers the model's forward; the loss always runs in float32.
    """
    model.train()
    device = next(model.parameters()).device
    running = {"sums": {}, "steps": 0, "skipped": 0} if running is None else running
    sums: dict[str, float] = running.setdefault("sums", {})
    carried_steps, carried_skipped = int(running.setdefault("steps", 0)), int(running.setdefault("skipped", 0))
    n_ok = 0
    skipped_before = guard.total
    bar = tqdm(batches, total=total, desc="train", leave=False, disable=not progress)
    for x, level in bar:
        if max_steps is not None and step >= max_steps:
            break
        x = x.to(device, non_blocking=True)
        level = level.to(device)
        _, terms = loss_terms(loss_fn, model, x, level, amp_dtype)
        loss = terms["loss"]
        if not _all_ranks_true(bool(torch.isfinite(loss)), device):
            optimizer.zero_grad(set_to_none=True)
            guard.bad(step, "loss")
            continue
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip else float("inf"))
        if not _all_ranks_true(bool(torch.isfinite(grad_norm)), device):
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.update()  # lets the scaler lower its scale after an overflow
            guard.bad(step, "gradient")
            continue
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        guard.ok()
        step += 1
        n_ok += 1
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        running.update(steps=carried_steps + n_ok, skipped=carried_skipped + guard.total - skipped_before)
        bar.set_postfix(loss=f"{sums['loss'] / running['steps']:.4f}", bpp=f"{sums['bpp'] / running['steps']:.3f}")
        if on_step is not None:
            on_step(step)
        if max_steps is not None and step >= max_steps:  # before the next batch is drawn: a run resumed from
            break                                        # here draws it, as one never stopped does
    bar.close()
    running.update(steps=carried_steps + n_ok, skipped=carried_skipped + guard.total - skipped_before)
    stats = {f"train_{k}": (v / running["steps"] if running["steps"] else float("nan")) for k, v in sums.items()}
    stats.setdefault("train_loss", float("nan"))
    stats.update(steps=n_ok, skipped_batches=running["skipped"], step=step)
    return stats


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, val_batches: list[tuple[torch.Tensor, torch.Tensor]],
             batch_size: int = 8) -> dict:
    """At every trained quality level, over fixed validation tiles: loss, estimated bpp, PSNR and SSIM
    (per-tile metrics from core.metrics, valid pixels only). `val_loss` (what early stopping and best.pth
    follow) is the mean loss over levels; `val_levels` holds each level's figures, so the log shows the whole
    rate-distortion curve the model covers.

    Every tile counts once whatever batch it sits in, so the figures do not depend on the batch size.
    """
    model.eval()
    codec = _unwrap(model)
    device = next(model.parameters()).device
    per_level = []
    for level in range(codec.levels):
        losses, bpps, psnrs, ssims = [], [], [], []
        for xs, masks in val_batches:
            for i in range(0, xs.shape[0], batch_size):
                x = xs[i:i + batch_size].to(device)
                lv = torch.full((x.shape[0],), float(level), device=device)
                out = codec(x, lv)
                lmbda = codec.lambda_of(lv)
                for j in range(x.shape[0]):
                    lik = {k: v[j:j + 1] for k, v in out["likelihoods"].items()}
                    terms = loss_fn(out["x_hat"][j:j + 1], x[j:j + 1], lik, lmbda[j:j + 1])
                    losses.append(float(terms["loss"]))
                    bpps.append(float(terms["bpp"]))
                    ref = x[j, 0].cpu().numpy()
                    rec = np.clip(out["x_hat"][j, 0].float().cpu().numpy(), 0.0, 1.0)
                    m = masks[i + j, 0].cpu().numpy()
                    psnrs.append(metrics.psnr(ref, rec, 1.0, mask=m))
                    ssims.append(metrics.ssim(ref, rec, 1.0, mask=m))
        if not losses:
            return {"val_loss": float("nan"), "val_psnr": float("nan"), "val_ssim": float("nan"),
                    "val_bpp": float("nan"), "val_tiles": 0, "val_levels": []}
        finite = [p for p in psnrs if math.isfinite(p)]
        per_level.append({"level": level, "lambda": codec.config["lambdas"][level], "loss": float(np.mean(losses)),
                          "bpp": float(np.mean(bpps)), "psnr": float(np.mean(finite)) if finite else float("inf"),
                          "ssim": float(np.nanmean(ssims))})
    return {
        "val_loss": float(np.mean([p["loss"] for p in per_level])),
        "val_psnr": float(np.mean([p["psnr"] for p in per_level])),
        "val_ssim": float(np.mean([p["ssim"] for p in per_level])),
        "val_bpp": float(np.mean([p["bpp"] for p in per_level])),
        "val_tiles": sum(int(xs.shape[0]) for xs, _ in val_batches),
        "val_levels": per_level,
    }
