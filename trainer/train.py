"""One training run from a resolved TrainConfig: data, model, loop, checkpoints, logs.

Rank 0 alone writes files; every rank samples its own patch stream (seeded by rank and epoch) and runs the
same deterministic validation, so early-stopping decisions agree without extra communication.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer import distributed, reporting
from trainer.checkpoint import (CheckpointError, entropy_model_kind, load_checkpoint, make_checkpoint,
                                save_checkpoint)
from trainer.config import TrainConfig, save_config
from trainer.data import PatchSampler, build_datasets, validation_tiles
from trainer.engine import NonFiniteGuard, evaluate, train_one_epoch
from trainer.hyperprior import HyperpriorModel
from trainer.losses import RateDistortionLoss, SarLoss
from trainer.rate_distortion import RateDistortionModel
from trainer.registry import create_model

log = logging.getLogger(__name__)


def _resume_path(cfg: TrainConfig) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        path = Path(cfg.out) / "last.pth"
        if not path.exists():
            log.info("no %s yet: starting a fresh run", path)
            return None
        return path
    path = Path(cfg.resume)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint to resume from does not exist")
    return path


def _amp(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Mixed precision only on CUDA: bf16 where supported (no scaler needed), else fp16 with a GradScaler."""
    if not cfg.amp or device.type != "cuda":
        if cfg.amp:
            log.info("--amp ignored: mixed precision is only used on CUDA")
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def run_training(cfg: TrainConfig) -> dict:
    """Train until epochs, max_steps or patience run out; returns the history and output paths."""
    info, device = distributed.setup(cfg.device)
    out = Path(cfg.out)
    handler = None
    try:
        if not info.is_main:
            logging.getLogger("trainer").setLevel(logging.WARNING)  # one copy of the progress log
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            handler = reporting.attach_log_file(out)
            save_config(cfg, out)
        torch.manual_seed(cfg.seed)
        data = build_datasets(cfg.data, default_domain=cfg.domain, val_fraction=cfg.val_fraction,
                              data_fraction=cfg.data_fraction, seed=cfg.seed, device=device)
        sampler = PatchSampler(data.train, cfg.patch_size, cfg.min_valid_fraction, cfg.seed, info.rank)
        val_batches = validation_tiles(data.val, cfg.patch_size, cfg.val_tiles_per_plane)
        model, loss_fn = _model_and_loss(cfg)
        model.to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        epoch, step, best_val, history = 0, 0, math.inf, []
        resume = _resume_path(cfg)
        if resume is None and cfg.init:
            _init_weights(model, cfg, device)
        if resume is not None:
            ckpt = load_checkpoint(resume, map_location=device)
            _check_variant(ckpt, resume, cfg.variant)
            if ("entropy_model" in ckpt) != (cfg.lmbda is not None):
                raise ModelMismatchError(f"{resume}: checkpoint was trained "
                                         f"{'with' if 'entropy_model' in ckpt else 'without'} --lmbda, "
                                         f"this run {'sets' if cfg.lmbda is not None else 'does not set'} it")
            if cfg.lmbda is not None and entropy_model_kind(ckpt) != cfg.entropy_model:
                raise ModelMismatchError(f"{resume}: checkpoint has a {entropy_model_kind(ckpt)} entropy model, "
                                         f"this run asks for {cfg.entropy_model}")
            model.load_state_dict(ckpt["model_state_dict"])
            optimizer.load_state_dict(ckpt["optimizer_state_dict"])
            epoch, step, best_val, history = ckpt["epoch"], ckpt["step"], ckpt["best_val_loss"], ckpt["history"]
            log.info("resumed from %s at epoch %d, step %d", resume, epoch, step)

        train_model: torch.nn.Module = model
        if info.enabled:
            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            train_model = torch.compile(train_model)
        amp_dtype, scaler = _amp(cfg, device)
        patches_per_step = cfg.batch_size * info.world_size
        steps_per_epoch = cfg.steps_per_epoch or max(
            1, math.ceil(data.summary["train_valid_pixels"] / cfg.patch_size**2 / patches_per_step))
        guard = NonFiniteGuard(cfg.max_bad_batches)
        n_params = model.count_parameters()
        log.info("variant %s, %s parameters, device %s, world size %d, %d steps/epoch of %d patches; "
                 "train scenes %d (%d planes, %d px), val scenes %d", cfg.variant, f"{n_params['total']:,}",
                 device, info.world_size, steps_per_epoch, patches_per_step, len(data.summary["train_scenes"]),
                 data.summary["train_planes"], data.summary["train_pixels"], len(data.summary["val_scenes"]))

        since_best = _epochs_since_best(history)
        while epoch < cfg.epochs and (cfg.max_steps is None or step < cfg.max_steps) and since_best < cfg.patience:
            epoch += 1
            t0 = time.time()
            sampler.set_epoch(epoch)
            batches = (sampler.sample(cfg.batch_size) for _ in range(steps_per_epoch))
            stats = train_one_epoch(train_model, loss_fn, optimizer, batches, guard=guard, step=step,
                                    max_steps=cfg.max_steps, grad_clip=cfg.grad_clip, amp_dtype=amp_dtype,
                                    scaler=scaler, progress=cfg.progress and info.is_main, total=steps_per_epoch)
            step = stats["step"]
            distributed.sync_buffers(model, info)
            val = evaluate(model, loss_fn, val_batches)
            record = {"epoch": epoch, "step": step, "train_loss": stats["train_loss"],
                      "train_mse": stats.get("train_mse", math.nan), "train_ssim": stats.get("train_ssim", math.nan),
                      **val, "seconds": time.time() - t0, "skipped_batches": stats["skipped_batches"]}
            if cfg.lmbda is not None:
                record["train_bpp"] = stats.get("train_bpp", math.nan)
                record.update({k: v for k, v in stats.items() if k.startswith("train_bpp_")})
            history.append(record)
            improved = val["val_loss"] < best_val or not (out / "best.pth").exists()
            if improved and math.isfinite(val["val_loss"]):
                best_val = val["val_loss"]
            since_best = 0 if improved else since_best + 1
            rate = (f" bpp train {record['train_bpp']:.3f} val {val.get('val_bpp', math.nan):.3f}"
                    if cfg.lmbda is not None else "")
            log.info("epoch %d step %d: train %.4f val %.4f PSNR %.2f SSIM %.4f%s (%.1fs, %d skipped)%s", epoch, step,
                     record["train_loss"], val["val_loss"], val["val_psnr"], val["val_ssim"], rate, record["seconds"],
                     record["skipped_batches"], " *" if improved else "")
            if info.is_main:
                summary = {**data.summary, "patches_seen": step * patches_per_step, "world_size": info.world_size,
                           "skipped_batches_total": guard.total}
                ckpt = make_checkpoint(model, epoch=epoch, step=step, best_val_loss=best_val, history=history,
                                       preprocessing_params=data.params.to_dict(), config=cfg.to_dict(),
                                       data_summary=summary, optimizer=optimizer)
                save_checkpoint(ckpt, out / "last.pth")
                if improved:
                    save_checkpoint(ckpt, out / "best.pth")
                reporting.append_history(out, record)
                reporting.plot_history(history, out / "training_curve.png", f"{cfg.variant} ({cfg.out})")
            distributed.barrier(info)
        if since_best >= cfg.patience:
            log.info("early stopping: no validation improvement for %d epochs", since_best)
        return {"out": str(out), "epoch": epoch, "step": step, "best_val_loss": best_val, "history": history,
                "skipped_batches": guard.total, "rank": info.rank}
    finally:
        if handler is not None:
            reporting.detach_log_file(handler)
        distributed.teardown(info)


def _check_variant(ckpt: dict, path, variant: str) -> None:
    if ckpt["model_name"] != variant:
        raise ModelMismatchError(f"{path}: checkpoint is variant {ckpt['model_name']!r}, run asks for {variant!r}")


def _init_weights(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> None:
    """Warm start: copy the transform of a trained checkpoint; a rate-distortion wrapper's prior (and a
    hyperprior's h_a and h_s), which a plain checkpoint does not have, keep their initialisation. Any other
    missing or extra weight is an error."""
    ckpt = load_checkpoint(cfg.init, map_location=device)
    _check_variant(ckpt, cfg.init, cfg.variant)
    result = model.load_state_dict(ckpt["model_state_dict"], strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(("prior.", "h_a.", "h_s."))]
    if missing or result.unexpected_keys:
        raise ModelMismatchError(f"{cfg.init}: weights do not fit this model (missing {missing[:3]}, "
                                 f"unexpected {result.unexpected_keys[:3]})")
    log.info("initialised from %s (step %s of that run)", cfg.init, ckpt.get("step"))


def _model_and_loss(cfg: TrainConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The variant and its loss; with lmbda, the variant inside a rate-distortion wrapper and the RD loss."""
    model = create_model(cfg.variant, latent_channels=cfg.latent_channels, base_channels=cfg.base_channels)
    if cfg.lmbda is None:
        return model, SarLoss(cfg.mse_weight, cfg.ssim_weight)
    loss = RateDistortionLoss(cfg.lmbda, cfg.mse_weight, cfg.ssim_weight)
    if cfg.entropy_model == "hyperprior":
        return HyperpriorModel(model), loss
    return RateDistortionModel(model), loss


def _epochs_since_best(history: list[dict]) -> int:
    best, since = math.inf, 0
    for h in history:
        if h["val_loss"] < best:
            best, since = h["val_loss"], 0
        else:
            since += 1
    return since
