"""The training loop's two steps, readable top to bottom: `train_one_epoch` and `evaluate`.

Both are plain functions of (model, loss, data) so tests and notebooks can call them directly; run-level
concerns (data loading, checkpoints, logs, distributed set-up) live in trainer.train.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Iterable

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


def loss_terms(loss_fn: nn.Module, out: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss of one model output: a rate-distortion model's output also carries the latents' likelihoods,
    which its loss needs for the rate term; the distortion loss sees only (x_hat, x), as always.

    The loss runs in float32 whatever the autocast dtype.
    """
    if "likelihoods" in out:
        return loss_fn(out["x_hat"].float(), x.float(), out["likelihoods"])
    return loss_fn(out["x_hat"].float(), x.float())


def train_one_epoch(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Iterable[torch.Tensor], *, guard: NonFiniteGuard, step: int = 0,
                    max_steps: int | None = None, grad_clip: float | None = 1.0,
                    amp_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
                    progress: bool = False, total: int | None = None) -> dict:
    """One pass over `batches`; returns mean loss terms, steps taken, skipped batches and the new step count.

    Mixed precision (CUDA only) covers the model's forward; the loss always runs in float32.
    """
    model.train()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    n_ok = 0
    skipped_before = guard.total
    bar = tqdm(batches, total=total, desc="train", leave=False, disable=not progress)
    for x in bar:
        if max_steps is not None and step >= max_steps:
            break
        x = x.to(device, non_blocking=True)
        autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            out = model(x)
        terms = loss_terms(loss_fn, out, x)
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
        bar.set_postfix(loss=f"{sums['loss'] / n_ok:.4f}")
    bar.close()
    stats = {f"train_{k}": (v / n_ok if n_ok else float("nan")) for k, v in sums.items()}
    stats.setdefault("train_loss", float("nan"))
    stats.update(steps=n_ok, skipped_batches=guard.total - skipped_before, step=step)
    return stats


def _one_sample(out: dict, j: int) -> dict:
    """Sample j of a model output, also inside nested dicts (a hyperprior's likelihoods {"y", "z"})."""
    return {k: _one_sample(v, j) if isinstance(v, dict) else v[j:j + 1] for k, v in out.items()}


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, val_batches: list[tuple[torch.Tensor, torch.Tensor]],
             batch_size: int = 16) -> dict:
    """Loss, PSNR and SSIM over fixed validation tiles (per-tile metrics from core.metrics, valid pixels only),
    and bits per pixel when the model estimates its rate.

    Every tile counts once whatever batch it sits in, so the figure does not depend on the batch size.
    """
    model.eval()
    device = next(model.parameters()).device
    losses, psnrs, ssims, bpps = [], [], [], []
    for xs, masks in val_batches:
        for i in range(0, xs.shape[0], batch_size):
            x = xs[i:i + batch_size].to(device)
            out = model(x)
            x_hat = out["x_hat"].float()
            for j in range(x.shape[0]):
                terms = loss_terms(loss_fn, _one_sample(out, j), x[j:j + 1])
                losses.append(float(terms["loss"]))
                if "bpp" in terms:
                    bpps.append(float(terms["bpp"]))
                ref = x[j, 0].cpu().numpy()
                rec = x_hat[j, 0].cpu().numpy()
                m = masks[i + j, 0].cpu().numpy()
                psnrs.append(metrics.psnr(ref, rec, 1.0, mask=m))
                ssims.append(metrics.ssim(ref, rec, 1.0, mask=m))
    if not losses:
        return {"val_loss": float("nan"), "val_psnr": float("nan"), "val_ssim": float("nan"), "val_tiles": 0}
    finite_psnr = [p for p in psnrs if math.isfinite(p)]
    result = {
        "val_loss": float(np.mean(losses)),
        "val_psnr": float(np.mean(finite_psnr)) if finite_psnr else float("inf"),
        "val_ssim": float(np.nanmean(ssims)),
        "val_tiles": len(losses),
    }
    if bpps:
        result["val_bpp"] = float(np.mean(bpps))
    return result
