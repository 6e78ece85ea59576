"""The GPU call's pieces, rehearsed on the CPU: the packed data, the warm start, and scripts/gpu_train.sh."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.checkpoint import load_checkpoint, load_model, make_checkpoint, save_warm_start
from trainer.data import build_datasets, read_pack, read_planes
from trainer.pack import DB_STEP, pack_planes
from trainer.registry import create_model

REPO = Path(__file__).resolve().parents[2]
SAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar"
SCENES = [SAR / "s1_iw_grd_berlin_512.tif", SAR / "s1_iw_grd_sen1floods11_ghana_53713_vv_vh_db.tif"]
needs_data = pytest.mark.skipif(not all(p.exists() for p in SCENES),
                                reason=f"shared SAR data not present in {SAR} (the project's ../shared/data/sar)")


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    from trainer.data import discover

    planes = [pl for s in SCENES for path, entry in discover(s) for pl in read_planes(path, entry)]
    out = tmp_path_factory.mktemp("pack") / "planes.npz"
    pack_planes(planes, out)
    return out, planes


@needs_data
def test_pack_round_trip_within_half_a_step(pack):
    path, planes = pack
    back = read_pack(path)
    assert [(p.scene, p.band, p.domain) for p in back] == [(p.scene, p.band, p.domain) for p in planes]
    for a, b in zip(planes, back):
        assert np.array_equal(a.valid, b.valid)
        assert np.abs(a.db[a.valid] - b.db[b.valid]).max() <= DB_STEP / 2 + 1e-4
    # the trainer reads a pack like a folder: same scenes, same split
    ds = build_datasets(path)
    assert sorted(ds.summary["train_scenes"] + ds.summary["val_scenes"]) == sorted(s.name for s in SCENES)


def test_a_file_that_is_not_a_pack_is_one_clear_error(tmp_path):
    from trainer.data import TrainingDataError

    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(TrainingDataError, match="cannot read packed training data"):
        read_pack(tmp_path / "x.npz")


@needs_data
def test_gpu_script_dry_run_trains_and_returns_a_warm_start(pack, tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, OUT=str(out), DATA=str(pack[0]), MINUTES="0.3", STEPS_PER_EPOCH="3", OMP_NUM_THREADS="1",
               TMPDIR=str(scratch))
    proc = subprocess.run(["bash", "scripts/gpu_train.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"warm_start.pth", "train.log", "history.jsonl", "gpu.txt", "stdout.log"} <= {p.name for p in out.iterdir()}
    assert len(list(out.iterdir())) <= 8  # what a device call can bring back
    run = Path(re.search(r"checkpoints in (\S+)", proc.stdout).group(1))  # the run folder the trainer wrote
    assert run.name.startswith("gpu_run.") and not run.exists()  # published to OUT, then not left behind
    ckpt = load_checkpoint(out / "warm_start.pth")
    assert ckpt["optimizer_state_dict"] == {} and ckpt["step"] >= 1
    assert all(v.dtype == torch.float16 for v in ckpt["model_state_dict"].values() if v.is_floating_point())
    log = (out / "train.log").read_text()
    assert "device cpu" in log
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # the call trains in bf16 (AMP=1), here as on CUDA
        assert "mixed precision: bfloat16 autocast" in log
    model, _ = load_model(out / "warm_start.pth")  # fp16 weights load into a float32 model
    assert next(model.parameters()).dtype == torch.float32


@needs_data
def test_gpu_script_keeps_its_run_folder_when_the_last_checkpoint_cannot_be_published(pack, tmp_path):
    """The run folder is removed once its state is in $OUT: a final publish that failed (here $OUT's temporary
    warm start is a folder, as a full disk or a read-only $OUT would fail it) removed the only copy of the run's
    last checkpoint with it. The call fails: on the device machine the kept folder never comes back, and a caller
    seeing exit 0 took the run for published."""
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    (out / "warm_start.pth.tmp").mkdir(parents=True)  # publish cannot write the warm start
    env = dict(os.environ, OUT=str(out), DATA=str(pack[0]), MINUTES="0.1", STEPS_PER_EPOCH="2", OMP_NUM_THREADS="1",
               TMPDIR=str(scratch))
    proc = subprocess.run(["bash", "scripts/gpu_train.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert not (out / "warm_start.pth").exists()
    run = Path(re.search(r"checkpoints in (\S+)", proc.stdout).group(1))
    assert (run / "last.pth").is_file()  # kept, and said
    assert f"{run} is kept" in proc.stderr


@needs_data
def test_gpu_script_resumes_a_warm_start_with_its_own_model_shape(pack, tmp_path):
    """A warm start with a channel context: the script passes its shape, so the run goes on instead of
    stopping on a shape mismatch. MAX_STEPS, not MINUTES, ends it: 0.3 minutes on a loaded machine ended it before
    step 13, whose rate the test reads."""
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, context_slices=2)
    warm = tmp_path / "warm.pth"
    save_warm_start(make_checkpoint(model, epoch=1, step=7, best_val_loss=9.0, history=[], preprocessing_params={},
                                    config={}, data_summary={}), warm)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DATA=str(pack[0]), MINUTES="4", MAX_STEPS="13", STEPS_PER_EPOCH="3",
               OMP_NUM_THREADS="1", WARM=str(warm), LR="1e-4", LR_DROP_AFTER="4")
    proc = subprocess.run(["bash", "scripts/gpu_train.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = load_checkpoint(out / "warm_start.pth")
    assert ckpt["model_config"]["context_slices"] == 2 and ckpt["step"] > 7
    # the call anneals: LR_DROP_AFTER steps after the warm start's step 7, the rate drops by LR_DROP_FACTOR (0.25)
    lrs = {h["step"]: h["lr"] for h in ckpt["history"]}
    assert lrs[10] == pytest.approx(1e-4) and lrs[13] == pytest.approx(2.5e-5), lrs


def test_gpu_script_without_packed_data_says_what_to_do(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), DATA=str(tmp_path / "none.npz"))
    proc = subprocess.run(["bash", "scripts/gpu_train.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "trainer.pack" in proc.stderr and "Traceback" not in proc.stderr


@needs_data
def test_resume_from_a_warm_start_continues_the_step_count(pack, tmp_path):
    from trainer.checkpoint import save_warm_start
    from trainer.cli import main

    fast = ["--data", str(pack[0]), "--device", "cpu", "--patch-size", "64", "--batch-size", "2", "--channels", "8",
            "--latent-channels", "16", "--hyper-channels", "8", "--steps-per-epoch", "2", "--no-progress"]
    assert main(["--out", str(tmp_path / "a"), "--max-steps", "2", *fast]) == 0
    save_warm_start(load_checkpoint(tmp_path / "a" / "last.pth"), tmp_path / "warm.pth")
    assert (tmp_path / "warm.pth").stat().st_size < (tmp_path / "a" / "last.pth").stat().st_size / 2
    assert main(["--out", str(tmp_path / "b"), "--max-steps", "4", "--resume", str(tmp_path / "warm.pth"), *fast]) == 0
    b = load_checkpoint(tmp_path / "b" / "last.pth")
    assert b["step"] == 4 and [h["step"] for h in b["history"]] == [2, 4]


@needs_data
def test_gpu_codec_rehearsal_writes_what_the_call_returns_and_the_chunks_decode_here(pack, tmp_path):
    """scripts/gpu_codec.sh --dry-run: the codec benchmark's code path on the CPU (tiny sweep), then the
    cross-device check as it runs after a real call: this machine decodes the returned chunks symbol for symbol."""
    import json

    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DATA=str(pack[0]), OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", "scripts/gpu_codec.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == {"gpu_codec.json", "gpu_chunks.npz"}
    doc = json.loads((out / "gpu_codec.json").read_text())
    assert all(r["compress_mp_s"] > 0 and r["reconstruct_mp_s"] > 0 for r in doc["networks"])
    assert doc["entropy_coding"][0]["decode_mp_s"] > 0 and doc["end_to_end"][0]["reconstruct_bound"]
    assert doc["cross_device"]["cpu_fp32"]["decoded_symbols_differing"] == 0
    device_hyper, coder_alone = doc["entropy_coding"][0]["device_hyper"], doc["entropy_coding"][0]["coder_alone"]
    assert device_hyper["indices_checked"] > 0 and device_hyper["indices_differing_from_cpu"] == 0
    assert coder_alone["symbols_decoded_wrong"] == 0 and coder_alone["decode_mp_s"] > 0
    assert doc["end_to_end"][0]["hyper_on_device"]["reconstruct_bound"] in ("network", "device hyper networks",
                                                                           "range coder")
    verify = [".venv/bin/python", "benchmarks/gpu_codec.py", "--verify-chunks"]
    ok = subprocess.run(verify + [str(out / "gpu_chunks.npz")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and " 0 differ" in ok.stdout, ok.stdout + ok.stderr
    # a decoding that disagrees with the device's must be reported, not pass
    with np.load(out / "gpu_chunks.npz") as f:
        arrays = dict(f)
    arrays["cpu_fp32_decoded"][0, 0, 0, 1] += 1e-5  # a float mean's last bits (BLAS, threads) are no symbol
    arrays["cpu_fp32_decoded"][0, 0, 0, 0] += 1
    np.savez(tmp_path / "bad.npz", **arrays)
    bad = subprocess.run(verify + [str(tmp_path / "bad.npz")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and " 1 differ" in bad.stdout, bad.stdout + bad.stderr


#: what the codec call carries besides its pack: the constriction 0.5.0 (0.40 MiB) and zstandard 0.25 (5.3 MiB)
#: cp312 wheels, rounded up (the device has neither)
WHEEL_ALLOWANCE = 6 * 2**20
CALL_LIMIT = 64 * 2**20


def _checkout_bytes() -> int:
    """Every tracked file: the bundles the plugin ships included (a new shipped bundle breaks these first)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file())


def _pack(tmp_path, *options) -> Path:
    """The pack exactly as the scripts' preparation notes make it."""
    out = tmp_path / "planes.npz"
    subprocess.run([sys.executable, "-m", "trainer.pack", "--data", str(SAR / "MANIFEST.json"), *options,
                    "--out", str(out)], cwd=REPO, check=True, capture_output=True)
    return out


@pytest.mark.skipif(not (SAR / "MANIFEST.json").is_file(), reason=f"shared SAR data not present in {SAR}")
def test_the_training_call_fits_in_what_a_gpu_call_carries(tmp_path):
    """scripts/gpu_train.sh carries the checkout and the whole packed collection: over 64 MiB, the standing GPU
    order fails before it starts."""
    checkout, data = _checkout_bytes(), _pack(tmp_path).stat().st_size
    assert checkout + data <= CALL_LIMIT, f"{checkout / 2**20:.1f} + {data / 2**20:.1f} MiB"


@pytest.mark.skipif(not (SAR / "MANIFEST.json").is_file(), reason=f"shared SAR data not present in {SAR}")
def test_the_codec_call_fits_in_what_a_gpu_call_carries(tmp_path):
    """scripts/gpu_codec.sh carries the checkout, its small pack and two wheels (session 17's call went past
    64 MiB with the whole collection). Its planes are tile-sized, so the benchmark does not tile reflections."""
    out = _pack(tmp_path, "--max-planes", "16", "--min-side", "512")
    planes = read_pack(out)
    assert len(planes) == 16 and min(min(p.db.shape) for p in planes) >= 512
    checkout, data = _checkout_bytes(), out.stat().st_size
    assert checkout + data + WHEEL_ALLOWANCE <= CALL_LIMIT, \
        f"{checkout / 2**20:.1f} + {data / 2**20:.1f} + {WHEEL_ALLOWANCE / 2**20:.0f} MiB"


@needs_data
def test_a_pack_with_no_plane_left_is_refused_and_writes_nothing(tmp_path, capsys):
    from trainer.pack import main

    out = tmp_path / "planes.npz"
    assert main(["--data", str(SCENES[0]), "--min-side", "513", "--out", str(out)]) == 2
    assert "no plane to pack (--min-side 513)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["--data", str(SCENES[0]), "--min-side", "512", "--max-planes", "1", "--out", str(out)]) == 0
    assert [p.band for p in read_pack(out)] == ["VV"]


def test_the_device_hyper_networks_give_the_cpus_scale_indices_bit_for_bit():
    """benchmarks/gpu_entropy.py runs the bundle's integer h_s and channel context in float64 torch (here on the
    CPU; on the device in the GPU call): every scale index must equal core/hyperprior.py's, for real latents and
    for z symbols at the ends of their range (where the integer layers saturate), or the GPU figures would be of
    a codec that cannot decode its own files."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_entropy import DeviceHyperprior  # noqa: PLC0415

    from sar_compress_plugin.core.hyperprior import load_hyperprior  # noqa: PLC0415

    coder = load_hyperprior(REPO / "sar_compress_plugin" / "models" / "default" / "hyperprior.npz")
    hyper = DeviceHyperprior(coder, torch.device("cpu"))
    rng = np.random.default_rng(3)
    h = w = 12
    zc, zh, zw = coder.z_shape(h, w)
    z_real = np.clip(np.rint(rng.normal(0, 3, (2, zc, zh, zw))), coder.decoder.z_min, coder.decoder.z_max)
    z_ends = np.stack([np.full((zc, zh, zw), coder.decoder.z_min), np.full((zc, zh, zw), coder.decoder.z_max)])
    zq = np.concatenate([z_real, z_ends]).astype(np.int16)
    ys = rng.normal(0, 4, (4, coder.latent_channels, h, w)).astype(np.float32)
    rounding = np.full(coder.latent_channels, 0.5, np.float32)
    for weights in (None, rounding):
        cpu = [coder.analyse(ys[t], zq[t], weights) for t in range(4)]
        given = torch.from_numpy(np.stack([c[2] for c in cpu]).astype(np.float64))
        idx, means, sym = hyper.code_slices(torch.from_numpy(ys), torch.from_numpy(zq.astype(np.float64)), weights,
                                            given_symbols=given)
        assert np.array_equal(idx.numpy(), np.stack([c[0] for c in cpu]))
        assert np.allclose(means.numpy(), np.stack([c[1] for c in cpu]), atol=1e-4)
        own = hyper.code_slices(torch.from_numpy(ys), torch.from_numpy(zq.astype(np.float64)), weights)[2]
        assert (own.numpy() != np.stack([c[2] for c in cpu])).mean() < 1e-3  # float32 ties may go either way
    assert len(np.unique(idx.numpy())) > 8  # the check spans many scale indices, not one saturated value


def test_the_device_integer_network_rounds_its_shifts_as_the_int64_path():
    """Ties of the rounding shift (half up, negatives too) are rare in a real network's outputs, so they are
    checked on a one-tap network over every input of a small range."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_entropy import DeviceIntegerNetwork  # noqa: PLC0415

    from sar_compress_plugin.core.hyper_decoder import CONV, IntegerNetwork  # noqa: PLC0415

    net = IntegerNetwork([CONV], [np.full((1, 1, 1, 1), 3, np.int64)], [np.zeros(1, np.int64)], [2], act_max=100,
                         in_min=-9, in_max=9)  # one layer: the last, no ReLU, so negative ties are reached
    x = np.arange(-9, 10, dtype=np.int64).reshape(1, 1, 19)
    got = DeviceIntegerNetwork(net, torch.device("cpu"))(torch.from_numpy(x[None].astype(np.float64)))
    assert np.array_equal(got.numpy()[0].astype(np.int64), net(x))


@needs_data
def test_gpu_script_without_a_drop_does_not_take_the_warm_starts_drop(pack, tmp_path):
    """`LR_DROP_AFTER=` (empty) means no drop. Since `--resume` goes on with the run's recipe where the command
    line names none, the call took the warm start's own --lr-drop-step (a previous call's, long passed) and
    trained at LR x its drop factor from the first step."""
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8)
    warm = tmp_path / "warm.pth"
    save_warm_start(make_checkpoint(model, epoch=1, step=7, best_val_loss=9.0, history=[], preprocessing_params={},
                                    config={"lr_drop_step": 3, "lr_drop_factor": 0.25}, data_summary={}), warm)
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DATA=str(pack[0]), MINUTES="0.2", STEPS_PER_EPOCH="3", OMP_NUM_THREADS="1",
               WARM=str(warm), LR="1e-4", LR_DROP_AFTER="")
    proc = subprocess.run(["bash", "scripts/gpu_train.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = load_checkpoint(out / "warm_start.pth")["history"]
    assert history and all(h["lr"] == pytest.approx(1e-4) for h in history), [h["lr"] for h in history]


#: .venv/bin/python of a copy of scripts/gpu_train.sh: `-m trainer` writes a first checkpoint, and a second one
#: once the minute's publish of the first is under way, then ends the run; `-m trainer.warm_start` writes as
#: save_checkpoint does (a .tmp beside the file, then a rename), slowly, and logs when it starts and ends
STUB_PYTHON = '''#!{python}
import os, sys, time
from pathlib import Path

log = Path(os.environ["STUB_LOG"])


def event(*words):
    with open(log, "a") as f:
        f.write(" ".join(map(str, words)) + "\\n")


args = sys.argv[1:]
if args[:2] == ["-m", "trainer.warm_start"]:
    src, dst = Path(args[2]), Path(args[3])
    event("start", os.getpid())
    try:
        data = src.read_bytes()
        tmp = dst.with_name(dst.name + ".tmp")
        with open(tmp, "wb") as f:
            for i in range(0, len(data), len(data) // 20):
                f.write(data[i:i + len(data) // 20])
                f.flush()
                time.sleep(0.05)
        os.replace(tmp, dst)
    finally:
        event("end", os.getpid())
elif args[:2] == ["-m", "trainer"]:
    run = Path(args[args.index("--out") + 1])

    def checkpoint(n):
        (run / "last.pth.tmp").write_bytes(f"checkpoint {{n}}\\n".encode() * 4000)
        os.replace(run / "last.pth.tmp", run / "last.pth")

    checkpoint(1)
    print(f"checkpoints in {{run}}", flush=True)
    deadline = time.monotonic() + 30
    while not (log.is_file() and "start" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpoint(2)
'''


def test_gpu_script_publishes_one_at_a_time_and_its_last_checkpoint_whole(tmp_path):
    """The run ends while the minute's publish is writing its warm start: the exit's publish wrote the same
    .tmp at the same time (the two writes interleaved, or one renamed the other's file away and failed, and
    the run folder holding the last checkpoint was kept or $OUT got a half file). Publishes now take turns:
    the exit's waits for the cut one and then publishes the last checkpoint."""
    checkout = tmp_path / "checkout"  # the script cds to its checkout and runs its .venv/bin/python
    (checkout / "scripts").mkdir(parents=True)
    script = checkout / "scripts" / "gpu_train.sh"
    script.write_bytes((REPO / "scripts" / "gpu_train.sh").read_bytes())
    python = checkout / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    fast = tmp_path / "bin"  # the minute between publishes, a tenth of a second
    fast.mkdir()
    (fast / "sleep").write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 0.1\n")
    (fast / "sleep").chmod(0o755)
    (tmp_path / "planes.npz").write_bytes(b"")
    out, scratch, log = tmp_path / "out", tmp_path / "tmp", tmp_path / "publishes.log"
    scratch.mkdir()
    env = dict(os.environ, OUT=str(out), DATA=str(tmp_path / "planes.npz"), VARIANT="baseline", TMPDIR=str(scratch),
               STUB_LOG=str(log), PATH=f"{fast}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(script), "--dry-run"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    deadline = time.monotonic() + 10  # a publish the exit cut may still be writing: let it end before looking
    while log.read_text().count("start") > log.read_text().count("end") and time.monotonic() < deadline:
        time.sleep(0.05)
    events = [line.split() for line in log.read_text().splitlines()]
    assert proc.returncode == 0 and "is kept" not in proc.stderr, proc.stderr[-2000:]
    assert len(events) >= 4  # the minute's publish and the exit's
    assert [e[0] for e in events] == ["start", "end"] * (len(events) // 2), events  # never two at once
    assert all(events[i][1] == events[i + 1][1] for i in range(0, len(events), 2)), events
    assert (out / "warm_start.pth").read_bytes() == b"checkpoint 2\n" * 4000
    assert not list(out.glob("*.tmp*"))
    run = Path(re.search(r"checkpoints in (\S+)", proc.stdout).group(1))
    assert run.name.startswith("gpu_run.") and not run.exists()


def test_gpu_script_without_flock_stops_before_training(tmp_path):
    """publish() takes a lock with flock: without it no checkpoint could be published, so the call would train
    for minutes and return nothing."""
    bare = tmp_path / "bin"  # what the script runs before its check, and not flock
    bare.mkdir()
    (bare / "dirname").symlink_to(shutil.which("dirname"))
    (tmp_path / "planes.npz").write_bytes(b"")
    env = dict(os.environ, OUT=str(tmp_path / "out"), DATA=str(tmp_path / "planes.npz"), VARIANT="baseline",
               PATH=str(bare))
    proc = subprocess.run([shutil.which("bash"), "scripts/gpu_train.sh", "--dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "flock (util-linux) is missing" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
