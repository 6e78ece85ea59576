"""One training run from a resolved TrainConfig: data, model, loop, checkpoints, logs.

Rank 0 alone writes files; every rank samples its own patch stream (seeded by rank and epoch) and runs the
same deterministic validation, so early-stopping decisions agree without extra communication.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer import distributed, reporting
from trainer.checkpoint import (CheckpointError, load_checkpoint, make_checkpoint, model_from_checkpoint,
                                save_checkpoint, training_totals)
from trainer.config import ConfigError, TrainConfig, save_config
from trainer.data import PatchSampler, build_datasets, validation_tiles
from trainer.deepen import deepen_from_baseline
from trainer.engine import NonFiniteGuard, evaluate, train_one_epoch
from trainer.losses import RateDistortionLoss
from trainer.narrow import narrow_decoder
from trainer.registry import create_model
from trainer.widen import widen_latent

log = logging.getLogger(__name__)


def _resume_path(cfg: TrainConfig) -> Path | None:
    """The checkpoint --resume goes on from; None for a fresh run, also where `--resume` without a value finds no
    <out>/last.pth (run_training warns), so that one command starts a run and resumes it after a stop."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        path = Path(cfg.out) / "last.pth"
        return path if path.exists() else None
    path = Path(cfg.resume)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint to resume from does not exist")
    return path


#: The options that shape the model (its checkpoint's model_config).
MODEL_SHAPE_OPTIONS = ("channels", "latent_channels", "hyper_channels", "lambdas", "context_slices",
                       "decoder_channels")
#: The options of a run's config that fix its patch stream and its train/validation split: a resumed run that
#: fell back to their defaults would draw other patches and validate on other scenes or rows, some trained on.
#: And what trains: a decoder-only run resumed from its warm start would otherwise move the encoder and the
#: entropy model, and its decoder would no longer read the files of the bundle it was made for.
RUN_IDENTITY_OPTIONS = ("seed", "split_seed", "val_fraction", "data_fraction", "decoder_only")
#: The options of a run's config that make its recipe: learning-rate schedule, optimiser, what a step and an epoch
#: are, which patches qualify and which validation tiles the best checkpoint is chosen on. `--resume` alone fell
#: back to their defaults: a run at lr 5e-6 went on at 2e-4 without its drop, 500 steps an epoch instead of its
#: own and 256 px patches instead of 64 (other patches, and validation figures no longer comparable with its
#: best_val_loss). Stop conditions and machine settings (epochs, max_steps, device, threads, amp, compile) are
#: this invocation's own.
RUN_RECIPE_OPTIONS = ("lr", "lr_drop_step", "lr_drop_factor", "weight_decay", "grad_clip", "batch_size",
                      "patch_size", "steps_per_epoch", "min_valid_fraction", "val_tiles_per_plane", "domain")


def adopt_resumed_settings(cfg: TrainConfig, given: set[str]) -> TrainConfig:
    """A resumed run goes on with its checkpoint's model shape (a channel context, a wider latent), level
    weights, seeds and split where the user did not name them, and, resuming the run's own last.pth (with its
    optimiser state), its recipe: `--resume CKPT` alone continues any run. A new --lr drops the old rate's
    drop schedule unless that is given too. A warm start (fp16 weights, no optimiser state) starts a new leg
    with this command's recipe. A shape the user did give must match, and run_training says so in one line if
    it does not."""
    path = _resume_path(cfg)
    if path is None:
        return cfg
    ckpt = load_checkpoint(path)
    shape = _model_config(ckpt)
    adopted = {k: shape[k] for k in MODEL_SHAPE_OPTIONS if k not in given and k in shape}
    if "variant" not in given:  # a residual run resumed without --variant was refused as "run asks for 'baseline'"
        adopted["variant"] = ckpt["model_name"]
    run_config = ckpt.get("config") or {}
    adopted.update({k: run_config[k] for k in RUN_IDENTITY_OPTIONS if k not in given and k in run_config})
    if ckpt.get("optimizer_state_dict"):  # the run itself goes on: its recipe too (a warm start is a new leg,
        # on another machine as often as not: a CPU leg after a GPU call took its batch of 32 and its lr drop)
        recipe = set(RUN_RECIPE_OPTIONS) - ({"lr_drop_step", "lr_drop_factor"} if "lr" in given else set())
        adopted.update({k: run_config[k] for k in RUN_RECIPE_OPTIONS
                        if k in recipe and k not in given and k in run_config})
    # its data too, where it is still there: `--resume` without --data fell back to the default manifest, and a
    # run of one folder went on training on the whole collection. A run packed for a GPU call names a file of
    # that machine; the default data then stays, and run_training checks that it splits as the run did.
    source = run_config.get("data")
    if "data" not in given and source and Path(source).exists():
        adopted["data"] = source
    # the training objective goes on too: a run trained with level weights resumes with them
    weights = run_config.get("level_weights")
    if "level_weights" not in given and weights is not None:
        adopted["level_weights"] = list(weights)
    recipe_taken = {k: v for k, v in adopted.items() if k in RUN_RECIPE_OPTIONS and v != getattr(cfg, k)}
    if recipe_taken:
        log.info("resuming with the run's own %s", ", ".join(f"{k} {v}" for k, v in recipe_taken.items()))
    return dataclasses.replace(cfg, **adopted).validate() if adopted else cfg


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype --amp uses on `device`, or None where mixed precision would not pay.

    CUDA: bf16 where supported, else fp16 (with a GradScaler). CPU: bf16 where oneDNN has bf16 kernels
    (AVX512-BF16 / AMX); on this project's 2-core AVX512-BF16 machine a 4 x 256 px step took 0.40 s against
    0.62 s in float32 (one thread). A CPU without them would emulate bf16, slower than float32.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def _amp(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Mixed precision for g_a / g_s under --amp (the entropy model stays float32, see SarCodecModel.forward)."""
    if not cfg.amp:
        return None, None
    dtype = mixed_precision_dtype(device)
    if dtype is None:
        log.info("--amp ignored: this %s has no fast bf16 kernels", device.type.upper())
        return None, None
    return dtype, torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


def run_training(cfg: TrainConfig) -> dict:
    """Train until epochs, max_steps or patience run out; returns the history and output paths."""
    # recorded as an absolute path: `data: data` in config.yaml and the checkpoints sent sar-eval, sar-export and
    # --resume from another working folder to another folder or to the default manifest. Links are kept as given
    # (abspath, not resolve): a data folder reached through a link goes on being read through it if it moves.
    cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data)) if cfg.data else cfg
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
        resume = _resume_path(cfg)
        if cfg.resume == "auto" and resume is None:  # a typo in --out would otherwise start over silently
            log.warning("--resume: no checkpoint at %s: starting a fresh run at step 0", out / "last.pth")
        if resume is not None:  # before the data load: a run with nothing left to do is refused at once
            ckpt = load_checkpoint(resume, map_location=device)
            resumed_weights = model_from_checkpoint(ckpt, resume).state_dict()
            _refuse_finished_run(ckpt, resume, cfg)
        torch.manual_seed(cfg.seed)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if device.type == "cuda":  # TF32 convolutions: about 2x on Ampere and later, float32 range kept
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
        data = build_datasets(cfg.data, default_domain=cfg.domain, val_fraction=cfg.val_fraction,
                              data_fraction=cfg.data_fraction, seed=cfg.split_seed, device=device)
        sampler = PatchSampler(data.train, cfg.patch_size, cfg.min_valid_fraction, cfg.seed, info.rank)
        val_batches = validation_tiles(data.val, cfg.patch_size, cfg.val_tiles_per_plane)
        model = create_model(cfg.variant, channels=cfg.channels, latent_channels=cfg.latent_channels,
                             hyper_channels=cfg.hyper_channels, lambdas=cfg.lambdas,
                             context_slices=cfg.context_slices, decoder_channels=cfg.decoder_channels)
        loss_fn = RateDistortionLoss(cfg.level_weights)
        model.to(device)
        if cfg.decoder_only:
            freeze_all_but_decoder(model)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)

        epoch, step, best_val, history = 0, 0, math.inf, []
        drawn_before = 0  # batches of the current epoch's patch stream a resumed run had used already
        carried = None  # and the epoch's running totals up to its stop (engine.train_one_epoch's `running`)
        resumed_patches = None  # patches the resumed checkpoint had seen: its batch or world size may differ
        initialised_from = None  # the totals of the run an --init branch starts from
        if cfg.decoder_only and resume is None and not cfg.init:  # it would train behind a random, frozen encoder
            raise ConfigError("--decoder-only trains the decoder of a trained model: give it with --init CKPT")
        if resume is None and cfg.init:
            initialised_from = _init_weights(model, cfg, device)
        if resume is not None:
            _check_variant(ckpt, resume, cfg.variant)
            _check_shape(ckpt, resume, model)
            _check_validation_split(ckpt, resume, data.summary)
            model.load_state_dict(resumed_weights)
            del resumed_weights
            if ckpt["optimizer_state_dict"]:
                trained = bool((ckpt.get("config") or {}).get("decoder_only"))
                if cfg.decoder_only != trained:  # its state holds other weights: a ValueError traceback
                    what = {True: "only the decoder", False: "every weight"}
                    raise ModelMismatchError(
                        f"{resume}: the run trained {what[trained]}, this one would train {what[cfg.decoder_only]}, "
                        f"which its optimiser state does not fit; branch from it with --init {resume}")
                optimizer.load_state_dict(ckpt["optimizer_state_dict"])
            epoch, step, best_val, history = ckpt["epoch"], ckpt["step"], _lowest_val_loss(ckpt), ckpt["history"]
            resumed_patches = ckpt["data_summary"].get("patches_seen")
            initialised_from = ckpt["data_summary"].get("initialised_from")
            drawn_before, carried = _restore_resume_state(ckpt.get("resume_state"), device)
            log.info("resumed from %s at epoch %d, step %d%s", resume, epoch, step,
                     "" if ckpt["optimizer_state_dict"] else " (warm start: fresh optimiser state)")

        train_model: torch.nn.Module = model
        if info.enabled:
            train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.compile:
            train_model = torch.compile(train_model)
        amp_dtype, scaler = _amp(cfg, device)
        if amp_dtype is not None:
            log.info("mixed precision: %s autocast on %s (the entropy model and the loss stay float32)",
                     str(amp_dtype).removeprefix("torch."), device.type)
        patches_per_step = cfg.batch_size * info.world_size
        resumed_step = step

        def patches_at(step_now: int) -> int:
            before = resumed_step * patches_per_step if resumed_patches is None else int(resumed_patches)
            return before + (step_now - resumed_step) * patches_per_step

        steps_per_epoch = cfg.steps_per_epoch or max(
            1, math.ceil(data.summary["train_valid_pixels"] / cfg.patch_size**2 / patches_per_step))
        guard = NonFiniteGuard(cfg.max_bad_batches)
        if resume is not None:  # a total over the run, as the steps and patches are, not since the last resume
            guard.total = int(ckpt["data_summary"].get("skipped_batches_total") or 0)
        n_params = model.count_parameters()
        log.info("variant %s, %s parameters, device %s, world size %d, %d steps/epoch of %d patches; "
                 "train scenes %d (%d planes, %d px), val scenes %d", cfg.variant, f"{n_params['total']:,}",
                 device, info.world_size, steps_per_epoch, patches_per_step, len(data.summary["train_scenes"]),
                 data.summary["train_planes"], data.summary["train_pixels"], len(data.summary["val_scenes"]))

        since_best = _epochs_since_best(history)
        summary = dict(data.summary, world_size=info.world_size)
        if initialised_from:
            summary["initialised_from"] = initialised_from

        folder_best = math.inf  # the validation loss best.pth holds: the lowest of the epochs run in this folder
        if info.is_main:
            reporting.reconcile_history(out, history)
            folder_best = _lowest_in_history_file(out)
        drawn = [0]  # batches drawn from the current epoch's patch stream

        def checkpoint(epoch_done: int, step_now: int, drawn_in_epoch: int = 0, totals: dict | None = None) -> dict:
            return make_checkpoint(model, epoch=epoch_done, step=step_now, best_val_loss=best_val, history=history,
                                   preprocessing_params=data.params.to_dict(), config=cfg.to_dict(),
                                   data_summary={**summary, "patches_seen": patches_at(step_now),
                                                 "skipped_batches_total": guard.total},
                                   optimizer=optimizer, resume_state=_resume_state(device, drawn_in_epoch, totals))

        last_save = [time.monotonic()]

        def epoch_totals() -> dict:
            """The epoch's running totals and training seconds so far, for a checkpoint within it."""
            return dict(running, sums=dict(running["sums"]), seconds=seconds_before + time.time() - t0)

        def on_step(step_now: int) -> None:
            """Learning-rate schedule, and last.pth every checkpoint_minutes within an epoch, so a killed run
            loses minutes, not an epoch (it resumes where that checkpoint was in the epoch's patch stream)."""
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(step_now)
            if info.is_main and time.monotonic() - last_save[0] >= 60 * cfg.checkpoint_minutes:
                # the epoch's record is not written yet: the checkpoint carries its totals so far
                with interrupts_held():
                    save_checkpoint(checkpoint(epoch - 1, step_now, drawn[0], epoch_totals()), out / "last.pth")
                last_save[0] = time.monotonic()

        def draw():
            drawn[0] += 1
            return sampler.sample(cfg.batch_size), sampler.sample_levels(cfg.batch_size, model.levels)

        def batches_until_deadline(already_used: int):
            for _ in range(already_used):  # a resumed epoch: the batches its steps before the stop had used
                draw()
            while drawn[0] < steps_per_epoch:
                if time.monotonic() >= deadline:
                    return
                yield draw()

        while (epoch < cfg.epochs and (cfg.max_steps is None or step < cfg.max_steps) and since_best < cfg.patience
               and time.monotonic() < deadline):
            epoch += 1
            t0 = time.time()
            running, carried = carried or {"sums": {}, "steps": 0, "skipped": 0}, None
            seconds_before = float(running.pop("seconds", 0.0))  # the epoch's time before a stop within it
            sampler.set_epoch(epoch)
            drawn[0] = 0
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr_at(step)
            batches, drawn_before = batches_until_deadline(drawn_before), 0
            stats = train_one_epoch(train_model, loss_fn, optimizer, batches, guard=guard, step=step,
                                    max_steps=cfg.max_steps, grad_clip=cfg.grad_clip, amp_dtype=amp_dtype,
                                    scaler=scaler, progress=cfg.progress and info.is_main, total=steps_per_epoch,
                                    on_step=on_step, running=running)
            step = stats["step"]
            # cut short by --max-steps or --max-minutes: validated and recorded, but resumed it goes on within
            # this epoch's patch stream, so that a run stopped and resumed takes the same steps as one never
            # stopped (it started the next epoch's stream instead), and from the epoch's totals so far, so that
            # the epoch's whole record covers all its steps (its train figures covered those after the stop)
            partial = drawn[0] < steps_per_epoch
            totals_at_stop = epoch_totals() if partial else None
            if sampler.patches_under_valid and info.is_main:  # rank 0's stream speaks for the others' data
                log.warning("epoch %d: %d of %d patches drawn have under %.0f%% valid pixels (none better in %d "
                            "draws each; min_valid_fraction in a --config file sets the share)", epoch,
                            sampler.patches_under_valid, sampler.patches_drawn, 100 * cfg.min_valid_fraction,
                            sampler.DRAWS)
            distributed.sync_buffers(model, info)
            val = evaluate(model, loss_fn, val_batches)
            record = {"epoch": epoch, "step": step, "patches_seen": patches_at(step),
                      "lr": cfg.lr_at(step), **{k: v for k, v in stats.items() if k.startswith("train_")},
                      **val, "seconds": seconds_before + time.time() - t0, "skipped_batches": stats["skipped_batches"],
                      **({"partial": True} if partial else {})}
            history.append(record)
            # best_val (and patience) follow the lowest validation loss of the run's history, a warm start's
            # included; best.pth, the best epoch of this folder. A new --out gets a best.pth at its first
            # epoch, but no higher best_val_loss, which later epochs were compared to. A NaN is neither.
            improved = val["val_loss"] < best_val
            if improved:
                best_val = val["val_loss"]
            write_best = math.isfinite(val["val_loss"]) and (val["val_loss"] < folder_best
                                                             or not (out / "best.pth").exists())
            if write_best:
                folder_best = val["val_loss"]
            since_best = 0 if improved else since_best + (not partial)
            curve = " ".join(f"{p['bpp']:.3f}/{p['psnr']:.2f}" for p in val["val_levels"])
            log.info("epoch %d step %d: train %.4f (bpp %.3f) val %.4f; bpp/PSNR per level %s (%.1fs, %d skipped)%s%s",
                     epoch, step, record["train_loss"], record.get("train_bpp", math.nan), val["val_loss"], curve,
                     record["seconds"], record["skipped_batches"], " *" if write_best else "",
                     f" (stopped after {drawn[0]} of its {steps_per_epoch} batches: --resume goes on from there)"
                     if partial else "")
            if info.is_main:
                ckpt = checkpoint(epoch - 1, step, drawn[0], totals_at_stop) if partial else checkpoint(epoch, step)
                with interrupts_held():  # a Ctrl-C here leaves best.pth, last.pth and history.jsonl agreeing
                    if write_best:  # before last.pth: killed between the two, the resumed run redoes this epoch
                        save_checkpoint(ckpt, out / "best.pth")
                    save_checkpoint(ckpt, out / "last.pth")
                    reporting.append_history(out, record)
                last_save[0] = time.monotonic()
                reporting.plot_history(history, out / "training_curve.png", f"{cfg.variant} ({cfg.out})",
                                       before=initialised_from)
            distributed.barrier(info)
        if time.monotonic() >= deadline:
            log.info("stopping: --max-minutes %.1f reached", cfg.max_minutes)
        if since_best >= cfg.patience:
            log.info("early stopping: no validation improvement for %d epochs", since_best)
        return {"out": str(out), "epoch": epoch, "step": step, "best_val_loss": best_val, "history": history,
                "skipped_batches": guard.total, "rank": info.rank}
    finally:
        if handler is not None:
            reporting.detach_log_file(handler)
        distributed.teardown(info)


@contextlib.contextmanager
def interrupts_held():
    """A Ctrl-C (SIGINT) or a kill (SIGTERM) that comes inside waits for the block's end, then interrupts as it
    would have. The epoch's writes are one block: a KeyboardInterrupt between best.pth and last.pth, or between
    last.pth and its history.jsonl line, left a run folder whose files disagreed (and a `.pth.tmp` when it cut a
    save short) until a --resume mended it. A kill that cannot be caught is what the atomic saves and
    reporting.reconcile_history are for. Only in the main thread, and not for a signal left ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    held = {s: h for s, h in held.items() if h not in (signal.SIG_IGN, None)}
    received: list[int] = []
    try:  # a signal between two of these (its KeyboardInterrupt) still restores those held before it
        for s in held:
            signal.signal(s, lambda signum, _frame: received.append(signum))
        yield
    finally:
        for s, previous in held.items():
            signal.signal(s, previous)
    if received:
        first, previous = received[0], held[received[0]]
        if callable(previous):
            previous(first, None)  # the handler it would have met: the KeyboardInterrupt, now
        else:
            signal.raise_signal(first)


def _resume_state(device: torch.device, drawn_in_epoch: int, epoch_totals: dict | None = None) -> dict:
    """The random state a run goes on from: torch's generators (the training noise; every rank starts from the
    same seed and draws the same amounts, so rank 0's state is every rank's) and how far into its epoch's patch
    stream it was (the stream is a function of seed, rank and epoch: the batches are drawn again and dropped).
    With them a run stopped and resumed takes the same steps, to the bit, as one never stopped, on the same
    machine and settings. `epoch_totals` (a checkpoint within an epoch whose record is not written yet): its
    running loss sums, steps, skipped batches and seconds, which the resumed epoch's record goes on from."""
    state = {"torch_rng": torch.get_rng_state(), "drawn_in_epoch": int(drawn_in_epoch)}
    if epoch_totals is not None:
        state["epoch_totals"] = epoch_totals
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def _restore_resume_state(state: dict | None, device: torch.device) -> tuple[int, dict | None]:
    """Batches of the interrupted epoch already used (0 for checkpoints from before the resume state: they go
    on from the start of the epoch's stream, with fresh noise), and the epoch's running totals up to the stop
    (None at an epoch's end, and in older checkpoints, whose stops by --max-steps or --max-minutes lack them)."""
    if not state:
        return 0, None
    torch.set_rng_state(state["torch_rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    totals = state.get("epoch_totals")
    return int(state["drawn_in_epoch"]), (None if totals is None else
                                          dict(totals, sums={k: float(v) for k, v in totals["sums"].items()}))


def _refuse_finished_run(ckpt: dict, path, cfg: TrainConfig) -> None:
    """A resumed run whose stop is already reached trained nothing, exited 0 and said "done: ... checkpoints in
    --out" of a new --out that held none: --max-steps and --epochs count the run's total, not this leg's."""
    step, epoch, since_best = ckpt["step"], ckpt["epoch"], _epochs_since_best(ckpt["history"])
    if cfg.max_steps is not None and step >= cfg.max_steps:
        raise ConfigError(f"{path}: the run is already at step {step}, and --max-steps counts steps in total: "
                          f"give more than {step} to train on")
    if epoch >= cfg.epochs:
        raise ConfigError(f"{path}: the run has already trained {epoch} epoch(s), and --epochs counts epochs in "
                          f"total: give more than {epoch} to train on")
    if since_best >= cfg.patience:
        raise ConfigError(f"{path}: the run stopped early, {since_best} epoch(s) without a better validation loss: "
                          f"give a --patience above {since_best} to train on")


def _check_variant(ckpt: dict, path, variant: str) -> None:
    if ckpt["model_name"] != variant:
        raise ModelMismatchError(f"{path}: checkpoint is variant {ckpt['model_name']!r}, run asks for {variant!r}")


def _model_config(ckpt: dict) -> dict:
    """The checkpoint's model config, with the defaults of options added after it was written."""
    return {"context_slices": 1, "decoder_channels": None, **ckpt["model_config"]}


#: What a --decoder-only run trains: everything after the coded symbols. The rest (g_a, the gains, h_a, h_s,
#: the prior, the channel context) decides the symbols and how they are coded, so it stays as initialised and
#: files written with the init model's bundle decode with the new decoder.
DECODER_PARAMETERS = ("g_s.", "log_inverse_gain")


def freeze_all_but_decoder(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(DECODER_PARAMETERS))


def _check_shape(ckpt: dict, path, model: torch.nn.Module) -> None:
    want = dict(model.config)
    got = {k: _model_config(ckpt).get(k) for k in want}
    if got != want:  # only the options that differ, as flags: both whole dicts hid the one that did
        differs = [k for k in want if got[k] != want[k]]

        def flag(k: str, v) -> str:  # as typed: a list as its values, an option left at its default unnamed
            name = f"--{k.replace('_', '-')}"
            if v is None:
                return f"no {name}"
            return f"{name} {' '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"

        def flags(values: dict) -> str:
            return ", ".join(flag(k, values[k]) for k in differs)

        raise ModelMismatchError(f"{path}: checkpoint has {flags(got)}, this run {flags(want)}")


#: What fixes the validation set in a run's data summary (older checkpoints lack some: those are not compared).
VALIDATION_SPLIT_KEYS = ("split_rule", "val_scenes", "val_planes", "val_pixels")


def _check_validation_split(ckpt: dict, path, summary: dict) -> None:
    """A resumed run must validate on its run's validation set. Another --val-fraction, --split-seed or a changed
    --data moved scenes (or rows of a single scene) between training and validation: the run then validated on
    pixels it had trained on, and compared those figures with a best_val_loss measured on other ones, so best.pth
    and early stopping followed a different yardstick without a word."""
    before = ckpt.get("data_summary") or {}
    differs = [k for k in VALIDATION_SPLIT_KEYS if k in before and before[k] != summary.get(k)]
    if not differs:
        return
    old, new = before.get("val_scenes"), summary.get("val_scenes")
    what = (f"validation scenes {_names(new)} instead of {_names(old)}" if old is not None and old != new
            else f"other pixels of {_names(new)} than the run did ({', '.join(differs)} differ)")
    raise ModelMismatchError(f"{path}: resuming with this split would validate on {what}; resume with the run's "
                             f"own --data, --val-fraction and --split-seed, or start a new run with --init")


def _names(scenes: list | None) -> str:
    scenes = list(scenes or [])
    return ", ".join(scenes[:3]) + (f" (+{len(scenes) - 3} more)" if len(scenes) > 3 else "") if scenes else "none"


def _init_weights(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> dict:
    """Warm start from a checkpoint of the same variant: weights only (fresh optimiser, step 0). Its shape must
    match, except that a narrower latent is widened to this run's (trainer/widen.py), and a model without
    channel context gets this run's, starting at zero (so it codes exactly as before), and a baseline grows a
    residual variant's units, starting as the identity (trainer/deepen.py). Returns what the weights had seen
    (checkpoint.training_totals), which every checkpoint of the branch carries on."""
    ckpt = load_checkpoint(cfg.init, map_location=device)
    weights = model_from_checkpoint(ckpt, cfg.init).state_dict()
    got = _model_config(ckpt)
    source = {"checkpoint": str(cfg.init), "step": ckpt.get("step"), **training_totals(ckpt)}
    if ckpt["model_name"] == "baseline" != cfg.variant and got == model.config:
        deepen_from_baseline(model, weights)
        log.info("initialised from %s (step %s of that run), baseline grown into %s (residual units added)",
                 cfg.init, ckpt.get("step"), cfg.variant)
        return source
    _check_variant(ckpt, cfg.init, cfg.variant)
    if got["decoder_channels"] != model.config["decoder_channels"] \
            and got == {**model.config, "decoder_channels": got["decoder_channels"]}:
        kept = narrow_decoder(model, weights, got["decoder_channels"])
        log.info("initialised from %s (step %s of that run), decoder narrowed to %d channels at 1/2 resolution "
                 "(kept %s)", cfg.init, ckpt.get("step"), len(kept), ", ".join(map(str, kept)))
        return source
    narrow_m = got["latent_channels"]
    if narrow_m != model.latent_channels and got == {**model.config, "latent_channels": narrow_m}:
        widen_latent(model, weights, narrow_m)
        log.info("initialised from %s (step %s of that run), latent widened from %d to %d channels", cfg.init,
                 ckpt.get("step"), narrow_m, model.latent_channels)
        return source
    if got["context_slices"] == 1 < model.context_slices and got == {**model.config, "context_slices": 1}:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or not all(k.startswith(("context_scale.", "context_mean.")) for k in missing):
            raise ModelMismatchError(f"{cfg.init}: weights do not fit this {cfg.variant} model")
        log.info("initialised from %s (step %s of that run), channel context of %d slices added", cfg.init,
                 ckpt.get("step"), model.context_slices)
        return source
    _check_shape(ckpt, cfg.init, model)
    model.load_state_dict(weights)
    log.info("initialised from %s (step %s of that run)", cfg.init, ckpt.get("step"))
    return source


def _lowest_val_loss(ckpt: dict) -> float:
    """The run's best validation loss: the lowest finite one of its record and its history. Before, the first
    epoch of every new --out was recorded as the best whatever it was (the committed warm start says 1.73809,
    its history 1.73780), and a NaN could be."""
    return _lowest_finite([ckpt["best_val_loss"], *(h["val_loss"] for h in ckpt["history"])])


def _lowest_in_history_file(out: Path) -> float:
    """The lowest finite validation loss of history.jsonl (reconciled: the epochs run in `out` that the run going
    on continues), which is best.pth's; inf where there is none."""
    path = out / "history.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return _lowest_finite(json.loads(line)["val_loss"] for line in lines)


def _lowest_finite(losses) -> float:
    return min((v for v in losses if math.isfinite(v)), default=math.inf)


def _epochs_since_best(history: list[dict]) -> int:
    """Whole epochs without a better validation loss; a partial epoch's record (a stop within it) is not one."""
    best, since = math.inf, 0
    for h in history:
        if h["val_loss"] < best:
            best, since = h["val_loss"], 0
        elif not h.get("partial"):
            since += 1
    return since
