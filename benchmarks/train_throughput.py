"""Training throughput (patches/s) of every registered variant on the available device.

Measures full optimiser steps (forward, RateDistortionLoss at random quality levels, backward, AdamW) on random
1-channel patches, after a short
warm-up; data loading is excluded because the trainer keeps data on the device and cuts patches there. Each
variant runs in its own process so its peak memory (CUDA: max allocated; CPU: peak RSS) is its own. With --amp
each variant is measured twice, in float32 and in the mixed precision `sar-train --amp` uses on the device
(trainer.train.mixed_precision_dtype), so the gain is read off one run.

    python benchmarks/train_throughput.py [--device cpu] [--batch-size 8] [--patch-size 256] [--amp] [--out]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.losses import RateDistortionLoss  # noqa: E402
from trainer.registry import available_models, create_model  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402
from trainer.train import mixed_precision_dtype  # noqa: E402


def measure(variant: str, device: torch.device, batch_size: int, patch_size: int, warmup: int, steps: int,
            amp: bool) -> dict:
    torch.manual_seed(0)
    model = create_model(variant).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = RateDistortionLoss()
    x = torch.rand(batch_size, 1, patch_size, patch_size, device=device)
    level = torch.randint(0, model.levels, (batch_size,), device=device).float()
    dtype = mixed_precision_dtype(device) if amp else None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x, level)
        loss = loss_fn(out["x_hat"], x, out["likelihoods"], model.lambda_of(level))["loss"]
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak_mb = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"peak_memory_mb": round(peak_mb, 1),
            "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
            "variant": variant, "precision": "float32" if dtype is None else str(dtype).removeprefix("torch."),
            "params": model.count_parameters()["total"], "batch_size": batch_size,
            "patch_size": patch_size, "steps": steps, "seconds": seconds,
            "patches_per_s": batch_size * steps / seconds,
            "megapixels_per_s": batch_size * steps * patch_size**2 / seconds / 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None, help="default: 32 on CUDA, 4 on CPU")
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 on CUDA, 3 on CPU)")
    p.add_argument("--amp", action="store_true", help="also measure sar-train --amp's mixed precision")
    p.add_argument("--variants", nargs="*", default=None, help="default: all registered")
    p.add_argument("--json-line", action="store_true", help=argparse.SUPPRESS)  # one variant, in a child
    p.add_argument("--out", nargs="?", const="auto", default=None,
                   help="write JSON (no value: benchmarks/results/train_throughput_<device>.json)")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    batch = args.batch_size or (32 if cuda else 4)
    steps = args.steps or (20 if cuda else 3)
    if args.json_line:
        r = measure(args.variants[0], device, batch, args.patch_size, args.warmup, steps, args.amp)
        print(json.dumps(r))
        return 0
    rows = []
    for variant in args.variants or available_models():
        for amp in ((False, True) if args.amp else (False,)):
            cmd = [sys.executable, __file__, "--json-line", "--variants", variant, "--device", str(device),
                   "--batch-size", str(batch), "--patch-size", str(args.patch_size), "--warmup", str(args.warmup),
                   "--steps", str(steps)] + (["--amp"] if amp else [])
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            rows.append(r)
            print(f"{variant:12s} {r['precision']:8s} {r['params'] / 1e6:5.2f}M params  {r['patches_per_s']:8.2f} "
                  f"patches/s ({r['megapixels_per_s']:.2f} MP/s, batch {batch}, {args.patch_size}px), "
                  f"peak {r['peak_memory_mb']:.0f} MB ({r['peak_memory_kind']})", flush=True)
    if args.out:
        name = torch.cuda.get_device_name(device) if cuda else f"cpu x{torch.get_num_threads()} threads"
        tag = "cuda" if cuda else "cpu"
        path = Path(args.out) if args.out != "auto" else REPO / "benchmarks" / "results" / f"train_throughput_{tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"name": "train_throughput", "description": "optimiser steps on random patches, "
               "forward+loss+backward+AdamW, data loading excluded",
               "device": name, "torch": torch.__version__, "python": platform.python_version(),
               "amp": bool(args.amp), "results": rows}
        publish_files({path: json.dumps(doc, indent=2)})
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
