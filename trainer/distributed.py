"""DistributedDataParallel plumbing for runs launched with `torchrun` (nccl on GPU, gloo on CPU).

A plain `sar-train` run is world size 1 and never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        from trainer.config import ConfigError
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but CUDA is not available")
        device = torch.device(requested if ":" in requested else f"cuda:{local_rank}")
        check_cuda_index(device)
        return device
    return torch.device("cpu")


def check_cuda_index(device: torch.device) -> None:
    """A CUDA device this machine has: torch meets `cuda:N` past its last one with an "invalid device ordinal"
    traceback, and only once the data has loaded. Raises ConfigError naming the flag."""
    from trainer.config import ConfigError

    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          "numbered from 0")


def setup(requested_device: str) -> tuple[DistInfo, torch.device]:
    """Read torchrun's environment, pick the device and start the process group when world size > 1."""
    info = DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                    int(os.environ.get("WORLD_SIZE", 1)))
    device = pick_device(requested_device, info.local_rank)
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def sync_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's BatchNorm running statistics.

    DDP broadcasts buffers before each forward, but the last training forward still updates them with each
    rank's own batch; without this, ranks would validate (and decide early stopping) on slightly different
    models.
    """
    if info.enabled and dist.is_initialized():
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
