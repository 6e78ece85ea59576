"""`sar-train`: train one model variant (also `python -m trainer`, and under `torchrun` for DDP).

Checkpoints go to --out: last.pth (written each epoch and every --checkpoint-minutes) and best.pth (lowest
validation loss). A stopped run (Ctrl-C, a kill, --max-minutes) goes on with the same command plus --resume;
after --max-steps, with a larger --max-steps."""

from __future__ import annotations

from sar_compress_plugin import cli

try:  # a Ctrl-C or a SIGTERM while torch loads (seconds) is one line, as during the run
    with cli.SigtermWhileStarting():
        import argparse
        import contextlib
        import signal
        import sys
        import threading
        from pathlib import Path

        from sar_compress_plugin.core.errors import SarCompressError
        from sar_compress_plugin.core.raster_io import writable_folder
        from trainer.config import TrainConfig, read_config_file, resolve
        from trainer.registry import available_models, model_summaries
        from trainer.reporting import configure_cli_logging, new_folders_removed_on_failure
except KeyboardInterrupt:
    cli.stop_while_starting()

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "sar" / "MANIFEST.json"

#: What a run writes into --out before its data and checkpoints have loaded, and what only training writes.
SETUP_FILES = ("config.yaml", "config.json", "train.log")
TRAINING_FILES = ("last.pth", "best.pth", "history.jsonl")


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    # every default is None until the config file and the flags are resolved, so each help names its real one
    p = argparse.ArgumentParser(prog="sar-train", description=__doc__)
    p.add_argument("--config", help="YAML file of TrainConfig options (flags override it)")
    variants = "; ".join(model_summaries().values()).replace("%", "%%")
    p.add_argument("--variant", choices=available_models(), default=None,
                   help=f"model variant [{d.variant}]: {variants}")
    p.add_argument("--data", default=None,
                   help=f"GeoTIFF/.npy file, folder, or MANIFEST.json [{DEFAULT_MANIFEST} if it exists]")
    p.add_argument("--domain", default=None, help=f"value domain of files missing from the manifest [{d.domain}]")
    p.add_argument("--out", default=None,
                   help=f"run folder: last.pth, best.pth, config.yaml, train.log, history.jsonl, "
                        f"training_curve.png [{d.out}]")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs in total, a resumed run's included [{d.epochs}]")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimiser steps in total, a resumed run's included (an epoch cut "
                        "short is validated and checkpointed; --resume goes on within it, to the bit as if never "
                        "stopped)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes of this run (the epoch in progress ends early, is validated "
                        "and checkpointed; --resume goes on within it)")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help=f"optimiser steps per epoch (between validations), each on --batch-size random patches "
                        f"[{d.steps_per_epoch}; `steps_per_epoch: null` in a --config file: about one pass over the "
                        f"valid training pixels]")
    p.add_argument("--batch-size", type=int, default=None, help=f"[{d.batch_size}]")
    p.add_argument("--lr", type=float, default=None, help=f"AdamW learning rate [{d.lr}]")
    p.add_argument("--lr-drop-step", type=int, default=None,
                   help="from this optimiser step on, the learning rate is lr * --lr-drop-factor")
    p.add_argument("--lr-drop-factor", type=float, default=None, help=f"[{d.lr_drop_factor}]")
    p.add_argument("--lambdas", type=float, nargs="+", default=None,
                   help=f"rate-distortion trade-off per quality level, increasing: per patch, loss = lambda * "
                        f"255^2 * MSE + bpp [{' '.join(str(v) for v in d.lambdas)}]")
    p.add_argument("--level-weights", type=float, nargs="+", default=None,
                   help="training-loss weight per quality level, e.g. to stop the top levels dominating the "
                        "gradient (validation stays unweighted) [all 1]")
    p.add_argument("--seed", type=int, default=None, help=f"initialisation and patch stream [{d.seed}]")
    p.add_argument("--split-seed", type=int, default=None,
                   help=f"train/validation scene split; keep it fixed across seed replicates [{d.split_seed}]")
    p.add_argument("--device", default=None, help=f"auto, cuda or cpu [{d.device}]")
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision: bf16 on CUDA and on CPUs with bf16 kernels (else fp16 on CUDA, ignored on other CPUs); the entropy model and loss stay float32")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--data-fraction", type=float, default=None, help=f"fraction of training scenes [{d.data_fraction}]")
    p.add_argument("--val-fraction", type=float, default=None, help=f"fraction of scenes held out [{d.val_fraction}]")
    p.add_argument("--patience", type=int, default=None,
                   help=f"early-stopping patience in epochs, a resumed run's history included [{d.patience}]")
    p.add_argument("--init", default=None,
                   help="start from the weights of this checkpoint (same variant and shape, e.g. the committed "
                        "fp16 warm start, or a narrower --latent-channels, which is widened, or a baseline for a "
                        "residual variant, whose units start as the identity); the optimiser and step start afresh")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from a checkpoint (no value: <out>/last.pth, or a fresh run, with a warning, where "
                        "there is none yet), with its model shape, level weights, "
                        "seeds and split unless given; a warm-start file (fp16 weights, no optimiser state) "
                        "continues its step count and history with a fresh optimiser")
    p.add_argument("--channels", type=int, default=None, help=f"width of g_a and g_s [{d.channels}]")
    p.add_argument("--latent-channels", type=int, default=None, help=f"latent width M [{d.latent_channels}]")
    p.add_argument("--context-slices", type=int, default=None,
                   help=f"latent slices of the channel context; 1 = none [{d.context_slices}]")
    p.add_argument("--decoder-channels", type=int, default=None,
                   help="width of g_s at 1/2 resolution, for a cheaper decoder; with --init of a wider model its "
                        "strongest channels are kept (trainer/narrow.py) [same as --channels]")
    p.add_argument("--decoder-only", action="store_true", default=None,
                   help="train only g_s and the inverse gains: the encoder and entropy model stay the --init "
                        "model's, so the new decoder reads the very symbols that model's encoder writes")
    p.add_argument("--hyper-channels", type=int, default=None, help=f"width of z and h_a [{d.hyper_channels}]")
    p.add_argument("--patch-size", type=int, default=None, help=f"multiple of 64 [{d.patch_size}]")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads; 1 while other work shares the cores (OpenMP threads wait on each "
                        "other) [torch's default]")
    p.add_argument("--checkpoint-minutes", type=float, default=None,
                   help=f"also write last.pth this often within an epoch [{d.checkpoint_minutes}]")
    p.add_argument("--max-bad-batches", type=int, default=None,
                   help=f"consecutive non-finite batches before stopping [{d.max_bad_batches}]")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no tqdm bars")
    return p


def main(argv: list[str] | None = None) -> int:
    terminated: list[int] = []
    # SIGTERM is a KeyboardInterrupt from the first line on: a kill while argparse loads every model's module,
    # the config resolves or the trainer's modules load (seconds of torch) ended the run silently, and could
    # leave the new --out folder behind
    with _sigterm_interrupts(terminated):
        try:
            args = build_parser().parse_args(argv)  # --variant's help loads every model's module
        except KeyboardInterrupt:
            cli.stop_while_starting(signal.SIGTERM if terminated else None)
        out: Path | None = None
        try:
            configure_cli_logging()
            # "" is the current folder to Path: `--out "$RUN"` with RUN unset trained into it, `--resume "$CKPT"`
            # started a new run over the folder's own (as no --resume does)
            cli._given(*((f"--{k}", getattr(args, k)) for k in ("out", "data", "config", "resume", "init")))
            cli_values = {k: v for k, v in vars(args).items() if k != "config"}
            file_values = read_config_file(args.config) if args.config else {}
            data_given = cli_values.get("data") is not None or bool(file_values.get("data"))
            if not data_given:
                if not DEFAULT_MANIFEST.exists():
                    raise SarCompressError("no --data given and no default manifest at " + str(DEFAULT_MANIFEST))
                cli_values["data"] = str(DEFAULT_MANIFEST)
            cfg = resolve(file_values, cli_values)
            out = Path(cfg.out)
            with new_folders_removed_on_failure(out), _setup_undone_on_early_failure(out):
                writable_folder(out)  # an unusable --out fails here, before the data and the model load
                from trainer.train import adopt_resumed_settings, run_training  # heavy imports once args are valid

                given = set(file_values) | {k for k, v in cli_values.items() if v is not None}
                if not data_given:  # the default manifest: a resumed run goes on with its own data instead
                    given.discard("data")
                result = run_training(adopt_resumed_settings(cfg, given))
        except SarCompressError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # a traceback before; the epoch's files are written together (train.interrupts_held)
            last = None if out is None else out / "last.pth"
            print(("terminated" if terminated else "interrupted") + ": "
                  + (f"--resume goes on from {last}" if last is not None and last.is_file()
                     else "no checkpoint written"), file=sys.stderr)
            return 143 if terminated else 130
    if result["rank"] == 0:
        last = result["history"][-1] if result["history"] else {}
        # a stop within an epoch (--max-steps, --max-minutes) was counted as a whole epoch; its record is of the
        # epoch it stopped in (result["epoch"], the checkpoint's, counts whole ones)
        epochs = (f"{last['epoch'] - 1} epoch(s) and part of the next" if last.get("partial")
                  else f"{result['epoch']} epoch(s)")
        print(f"done: {epochs}, {result['step']} step(s), best val loss "
              f"{result['best_val_loss']:.4f}, last val PSNR {last.get('val_psnr', float('nan')):.2f} dB, "
              f"{result['skipped_batches']} skipped batch(es); checkpoints in {result['out']}")
    return 0


@contextlib.contextmanager
def _sigterm_interrupts(received: list[int]):
    """SIGTERM (`kill`, a job scheduler's stop, a timeout) ends a run as Ctrl-C does: after the epoch's writes
    (train.interrupts_held), with one line saying where --resume goes on, exit 143. By default it killed the run
    on the spot, silently, losing the steps since the last checkpoint. Main thread only; left alone where the
    caller ignores it."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) in (signal.SIG_IGN, None):
        yield
        return

    def on_term(signum, _frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _stat(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None


@contextlib.contextmanager
def _setup_undone_on_early_failure(out: Path):
    """A run that fails before it trained (missing data, an unreadable or mismatched checkpoint) gives --out
    its config and log back: run_training writes them before it loads anything, and an existing run folder
    would otherwise describe a run that never happened. After a checkpoint or history line, all stays."""
    setup = {name: _read(out / name) for name in SETUP_FILES}
    trained = {name: _stat(out / name) for name in TRAINING_FILES}
    try:
        yield
    except (SarCompressError, KeyboardInterrupt):  # Ctrl-C while the data loads: no run happened either
        if {name: _stat(out / name) for name in TRAINING_FILES} == trained:
            for name, content in setup.items():
                if _read(out / name) == content:  # untouched (also where --out was refused)
                    continue
                if content is None:
                    (out / name).unlink()
                else:
                    (out / name).write_bytes(content)
        raise


if __name__ == "__main__":
    sys.exit(main())
