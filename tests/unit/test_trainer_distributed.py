"""The same entry point under torchrun: 2 processes, gloo on CPU, rank 0 alone writes the run folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.checkpoint import REQUIRED_KEYS

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO.parent / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"


@pytest.mark.slow
@pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer", "--variant", "baseline", "--data", str(SCENE), "--out", str(out), "--device", "cpu",
           "--patch-size", "64", "--batch-size", "2", "--channels", "8", "--latent-channels", "16", "--hyper-channels", "8", "--max-steps", "3",
           "--steps-per-epoch", "3", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 1 epoch(s), 3 step(s)") == 1  # only rank 0 reports
    assert proc.stderr.count("epoch 1 step 3:") == 1
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert set(REQUIRED_KEYS) <= set(ckpt)
    assert ckpt["step"] == 3 and ckpt["data_summary"]["world_size"] == 2
    assert ckpt["data_summary"]["patches_seen"] == 3 * 2 * 2
    assert not any(k.startswith("module.") for k in ckpt["model_state_dict"])  # unwrapped weights
    assert len((out / "history.jsonl").read_text().splitlines()) == 1  # written once, by rank 0
    assert sorted(p.name for p in out.glob("*.pth")) == ["best.pth", "last.pth"]
