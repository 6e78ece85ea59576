"""`python -m trainer.average OUT CHECKPOINT...`: the weights of several checkpoints of one run, averaged.

Why: at a constant learning rate the weights of a long run do not settle; each step's small batch moves them
around the minimum they have reached. The mean of a run's last checkpoints lies nearer that minimum than any one
of them (Polyak averaging; stochastic weight averaging, Izmailov et al. 2018), for no training cost. Averaging
only makes sense along one run: checkpoints of different runs may sit in different minima, and their mean is a
model of neither (two runs of other seeds and patch sizes averaged to a validation loss of 154 against the last
one's 16.7, and the result still claimed the last one's training). So every input must have the same variant and
model configuration, the same seeds and validation split, and a history that the last one's goes on from
(`one_run_refusal`); their steps must differ. Snapshots of a run and the checkpoints of a run resumed into
another folder, from its last.pth or its warm start, pass: a resumed run keeps its checkpoint's history.

The result is a checkpoint like its last input (step, history, configuration: `sar-export` and `--resume` take
it), without optimiser state, and its data summary lists the steps it averages. `--validate` measures it and
its last input on the run's own validation tiles, exactly as training validates each epoch, so the two figures
compare with the run's history.

    python -m trainer.average runs/hilr/average.pth runs/hilr/snapshots/step*.pth --validate
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from sar_compress_plugin.core.errors import SarCompressError
from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, totals_text
from trainer.train import RUN_IDENTITY_OPTIONS, VALIDATION_SPLIT_KEYS


def one_run_refusal(earlier: dict, last: dict) -> str:
    """Why `earlier` is not a checkpoint of the run that `last` ends, or "". A run's history only grows (a
    resumed run goes on from its checkpoint's, a warm start's included), so an earlier checkpoint's must be the
    start of the last one's; the seeds and the split settle what that cannot, e.g. checkpoints written within a
    first epoch, whose histories are empty. Settings an older checkpoint did not record are not compared."""
    cfg, last_cfg = earlier.get("config") or {}, last.get("config") or {}
    for key in RUN_IDENTITY_OPTIONS:
        if key in cfg and key in last_cfg and cfg[key] != last_cfg[key]:
            return f"{key} {cfg[key]} against {last_cfg[key]}"
    summary, last_summary = earlier["data_summary"], last["data_summary"]
    for key in VALIDATION_SPLIT_KEYS:
        if key in summary and key in last_summary and summary[key] != last_summary[key]:
            return f"other validation data ({key} differs)"
    if summary.get("initialised_from") != last_summary.get("initialised_from"):
        return "initialised from other weights"
    records, last_records = _records(earlier["history"]), _records(last["history"])
    if records != last_records[:len(records)]:
        return (f"its history of {len(records)} validations is not the start of the other's "
                f"{len(last_records)}")
    return ""


def _records(history: list[dict]) -> list[str]:
    """A history's records as comparable text: a NaN validation loss (a diverged epoch) equals itself here."""
    return [json.dumps(h, sort_keys=True, default=str) for h in history]


def _checkpoint_text(ckpt: dict) -> str:
    """A checkpoint as a message names it: its step and the run folder it was written in."""
    out = (ckpt.get("config") or {}).get("out")
    return f"step {int(ckpt['step']):,}" + (f" of {out}" if out else "")


def average_checkpoints(ckpts: list[dict]) -> dict:
    """One checkpoint whose floating-point weights are the mean of `ckpts`' (in step order; in float32, whatever
    they were saved in), integer buffers from the last; the last checkpoint's counters and configuration."""
    if len(ckpts) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    last = ckpts[-1]
    for c in ckpts[:-1]:
        if c["model_name"] != last["model_name"] or c["model_config"] != last["model_config"]:
            raise CheckpointError(f"checkpoints of different models ({c['model_name']} {c['model_config']} and "
                                  f"{last['model_name']} {last['model_config']}) cannot be averaged")
        if c["model_state_dict"].keys() != last["model_state_dict"].keys():
            raise CheckpointError("checkpoints hold different sets of weights")
        why = one_run_refusal(c, last)
        if why:
            raise CheckpointError(f"{_checkpoint_text(c)} and {_checkpoint_text(last)} are not checkpoints of one "
                                  f"run ({why}); averaging the weights of different runs gives a model of neither")
    steps = [int(c["step"]) for c in ckpts]
    if len(set(steps)) != len(steps):
        raise CheckpointError(f"two checkpoints are of the same step ({sorted(steps)})")
    state = {}
    for name, value in last["model_state_dict"].items():
        if value.is_floating_point():
            state[name] = torch.stack([c["model_state_dict"][name].float() for c in ckpts]).mean(0)
        else:
            state[name] = value.clone()
    summary = dict(last["data_summary"], averaged_steps=steps)
    return dict(last, model_state_dict=state, optimizer_state_dict={}, data_summary=summary)


def validate(ckpts: dict[str, dict]) -> dict[str, dict]:
    """Validation figures (trainer.engine.evaluate) of each named checkpoint on the validation tiles of the
    run of the first: the split, patch size and tiles its configuration recorded; the loss unweighted, as
    training validates."""
    from trainer.data import build_datasets, validation_tiles  # noqa: PLC0415 (data loading only here)
    from trainer.engine import evaluate  # noqa: PLC0415
    from trainer.losses import RateDistortionLoss  # noqa: PLC0415
    from trainer.registry import create_model  # noqa: PLC0415

    cfg = next(iter(ckpts.values()))["config"]
    data = build_datasets(cfg["data"], default_domain=cfg.get("domain", "intensity"),
                          val_fraction=cfg["val_fraction"], data_fraction=cfg.get("data_fraction", 1.0),
                          seed=cfg["split_seed"])
    tiles = validation_tiles(data.val, cfg["patch_size"], cfg["val_tiles_per_plane"])
    figures = {}
    for name, ckpt in ckpts.items():
        model = create_model(ckpt["model_name"], **ckpt["model_config"])
        model.load_state_dict({k: v.float() for k, v in ckpt["model_state_dict"].items()})
        with torch.no_grad():
            figures[name] = evaluate(model, RateDistortionLoss(), tiles)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.average", description=__doc__.split("\n")[0])
    ap.add_argument("out", help="the averaged checkpoint to write")
    ap.add_argument("checkpoints", nargs="+", help="two or more checkpoints of one run")
    ap.add_argument("--validate", action="store_true",
                    help="also measure the average and the last checkpoint on the run's validation tiles")
    a = ap.parse_args(argv)
    try:
        ckpts = sorted((load_checkpoint(p) for p in a.checkpoints), key=lambda c: int(c["step"]))
        averaged = average_checkpoints(ckpts)
        save_checkpoint(averaged, a.out)
        figures = validate({"last": ckpts[-1], "average": averaged}) if a.validate else {}
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.out}: the mean of {len(ckpts)} checkpoints, steps {averaged['data_summary']['averaged_steps']} "
          f"({totals_text(averaged)} at the last)")
    for name, v in figures.items():
        curve = " ".join(f"{lv['bpp']:.3f}/{lv['psnr']:.2f}" for lv in v["val_levels"])
        print(f"{name}: validation loss {v['val_loss']:.4f}; bpp/PSNR per level {curve}")
    if figures:
        print(json.dumps({"averaged_steps": averaged["data_summary"]["averaged_steps"],
                          **{name: {"val_loss": v["val_loss"], "val_levels": v["val_levels"]}
                             for name, v in figures.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
