"""Run-folder outputs written by rank 0: train.log, history.jsonl and the training-curve PNG; results files
published whole or not at all (`publish_files`, also the benchmarks' reports); and the rule that a command which
fails leaves no new output folder behind."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Callable


@contextlib.contextmanager
def new_folders_removed_on_failure(folder: Path):
    """On a failure, remove `folder` and those of its parents that did not exist before and are still empty:
    the CLIs create their output folder to check it before the work, and a run that then fails (missing data,
    an unreadable checkpoint, a failed parity check) must not leave an empty folder behind."""
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        yield
    except BaseException:
        for path in created:
            with contextlib.suppress(OSError):  # not empty (or never made): keep it
                path.rmdir()
        raise


def publish_files(files: dict[Path, str | Callable[[Path], None]]) -> None:
    """Each of `files` ({path: its text, or a function that writes the file at the path it is given, a figure})
    written beside its path as `.NAME.partial`, then all renamed into place once every one is whole: a full disk
    or a Ctrl-C mid-write left a cut-off table that looked whole, or half a rerun beside the last run's other
    file. A failure while they are written leaves the earlier files as they were; no failure leaves a partial."""
    partials = {path: path.with_name(f".{path.name}.partial") for path in files}
    try:
        for path, content in files.items():
            if callable(content):
                content(partials[path])
            else:
                partials[path].write_text(content)
        for path, partial in partials.items():
            os.replace(partial, path)
    except BaseException:  # those already renamed are gone from their partial names
        for partial in partials.values():
            partial.unlink(missing_ok=True)
        raise


def strict_json(doc) -> str:
    """`doc` as standard JSON, a non-finite number (the ENL ratio of a model that codes flat patches, a loss that
    diverged) as null: Python's NaN and Infinity tokens are refused by strict parsers (jq, JavaScript, pandas'
    json engine) that read a results file."""
    def finite(v):
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        if isinstance(v, float) or (hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0):  # numpy scalars too
            v = v.item() if hasattr(v, "item") else v
            return v if not isinstance(v, float) or math.isfinite(v) else None
        return v
    return json.dumps(finite(doc), indent=2, allow_nan=False)


def configure_cli_logging(fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """INFO for our loggers, WARNING for rasterio's: rasterio logs every GDAL error at INFO before raising it,
    so a corrupt scene printed GDAL's lines ahead of the one error line the command gives for it."""
    logging.basicConfig(level=logging.INFO, format=fmt)
    logging.getLogger("rasterio").setLevel(logging.WARNING)


def attach_log_file(out: Path) -> logging.Handler:
    """Send the trainer's log records to <out>/train.log too (removed again by the caller)."""
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("trainer")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("trainer").removeHandler(handler)
    handler.close()


def append_history(out: Path, record: dict) -> None:
    with open(out / "history.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def reconcile_history(out: Path, history: list[dict]) -> None:
    """Make history.jsonl (the epochs run in this folder; a warm start's earlier ones are not repeated) agree
    with the `history` a run goes on from, before it appends to it. Lines that history lacks are another run's
    (a new run in the folder), epochs after a checkpoint resumed from an earlier one, or a line cut by a kill;
    epochs of history after the last line kept are those a kill between last.pth and the line lost."""
    path = out / "history.jsonl"
    recorded = [json.dumps(h) for h in history]
    known = set(recorded)
    kept = [line for line in path.read_text().splitlines() if line in known] if path.is_file() else []
    if kept:  # by step: a stop within an epoch records it twice (partial, then whole), under one epoch number
        last_step = json.loads(kept[-1])["step"]
        kept += [line for h, line in zip(history, recorded) if h["step"] > last_step]
    if not kept:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def plot_history(history: list[dict], path: Path, title: str = "", before: dict | None = None) -> None:
    """Loss curves and validation PSNR/SSIM per epoch (matplotlib Agg: no display needed), captioned with the
    steps and patches of the last epoch's record: epochs alone do not say how much training the curves show,
    as an epoch's steps and patches per step change with the settings and the world size. `before`: what the
    weights had seen before this run (`data_summary["initialised_from"]` of an --init branch), added so the
    caption counts the whole training, as a bundle's manifest does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # by optimiser step, not epoch: a run stopped within an epoch and resumed records that epoch twice (the
    # stop's validation, then the whole epoch), and an epoch's steps change with the settings
    steps = [h["step"] for h in history]

    def series(key: str) -> list[float]:
        return [h.get(key, math.nan) for h in history]

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(steps, series("train_loss"), "o-", label="train")
    axes[0].plot(steps, series("val_loss"), "o-", label="val")
    axes[0].set_title("rate-distortion loss (lambda 255^2 MSE + bpp)")
    axes[0].legend()
    axes[1].plot(steps, series("val_psnr"), "o-", color="C2")
    axes[1].set_title("val PSNR (dB, normalised)")
    axes[2].plot(steps, series("val_ssim"), "o-", color="C3")
    axes[2].set_title("val SSIM")
    for ax in axes:
        ax.set_xlabel("optimiser step (this run)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}\n{_seen_caption(history[-1], before or {})}" if title
                 else _seen_caption(history[-1], before or {}))
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def _seen_caption(last: dict, before: dict) -> str:
    steps = int(last["step"]) + int(before.get("steps_total", 0))
    patches = last.get("patches_seen")
    if patches is not None and "patches_seen_total" in before:  # an --init run from weights that did not count
        patches = None if before["patches_seen_total"] is None else int(patches) + int(before["patches_seen_total"])
    seen = (f"{steps:,} steps in all, patches not recorded" if patches is None else
            f"{steps:,} steps, {int(patches):,} patches in all")
    earlier = f" ({before['steps_total']:,} of the steps before this run)" if before.get("steps_total") else ""
    where = f"within epoch {last['epoch']}" if last.get("partial") else f"after epoch {last['epoch']}"
    return f"{where}: {seen}{earlier}"
