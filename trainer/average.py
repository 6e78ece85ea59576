"""`python -m trainer.average OUT CHECKPOINT...`: the weights of several checkpoints of one run, averaged.

Why: at a constant learning rate the weights of a long run do not settle; each step's small batch moves them
around the minimum they have reached. The mean of a run's last checkpoints lies nearer that minimum than any one
of them (Polyak averaging; stochastic weight averaging, Izmailov et al. 2018), for no training cost. Averaging
only makes sense along one run: checkpoints of different runs may sit in different minima, so every input must
have the same variant and model configuration, and their steps must differ.

The result is a checkpoint like its last input (step, history, configuration: `sar-export` and `--resume` take
it), without optimiser state, and its data summary lists the steps it averages.
"""

from __future__ import annotations

import sys

import torch

from sar_compress_plugin.core.errors import SarCompressError
from trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, training_totals


def average_checkpoints(ckpts: list[dict]) -> dict:
    """One checkpoint whose floating-point weights are the mean of `ckpts`' (in float32, whatever they were
    saved in), integer buffers from the last; the last checkpoint's counters and configuration."""
    if len(ckpts) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    last = ckpts[-1]
    for c in ckpts[:-1]:
        if c["model_name"] != last["model_name"] or c["model_config"] != last["model_config"]:
            raise CheckpointError(f"checkpoints of different models ({c['model_name']} {c['model_config']} and "
                                  f"{last['model_name']} {last['model_config']}) cannot be averaged")
        if c["model_state_dict"].keys() != last["model_state_dict"].keys():
            raise CheckpointError("checkpoints hold different sets of weights")
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: python -m trainer.average OUT CHECKPOINT CHECKPOINT [...]", file=sys.stderr)
        return 2
    out, paths = args[0], args[1:]
    try:
        ckpts = sorted((load_checkpoint(p) for p in paths), key=lambda c: int(c["step"]))
        averaged = average_checkpoints(ckpts)
        save_checkpoint(averaged, out)
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    totals = training_totals(averaged)
    print(f"{out}: the mean of {len(ckpts)} checkpoints, steps {averaged['data_summary']['averaged_steps']} "
          f"({totals['steps_total']} steps, {totals['patches_seen_total']} patches in all at the last)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
