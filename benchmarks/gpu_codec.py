"""The codec on a GPU (issue 17, call 2): network speed in PyTorch, the CPU entropy coding beside it, the end-to-end
bound, and decoding across devices.

On the device machine (PyTorch with CUDA; no GDAL, no onnxruntime-gpu; constriction travels as a wheel):
    python3 benchmarks/gpu_codec.py --device cuda --out $OUT
Rehearsal on this CPU (a tiny sweep through the same code):
    .venv/bin/python benchmarks/gpu_codec.py --device cpu --quick --out runs/gpu_codec_dry
Afterwards, here: decode the chunks the device wrote with this machine's core and compare every symbol:
    .venv/bin/python benchmarks/gpu_codec.py --verify-chunks <files_at>/gpu_chunks.npz

What is measured, with the bundled model's weights (the committed warm start; the JSON records both steps):
1. The networks on batched fixed-size tiles cut from the packed real data (.gpu_codec_data/planes.npz), as the codec
   tiles a raster: compress = host-to-device copy of tile + halo, g_a, the quality's gain, h_a, device-to-host copy
   of y and z; reconstruct = host-to-device copy of the latent block (core + halo cells), g_s, device-to-host copy
   of the core pixels. fp32, fp16 and bf16, channels-last, over batch and tile size, eager and as a CUDA graph.
   MP/s counts core pixels (the codec's output), so the halo's extra work is charged: the whole halo, 2 cells on
   every side, where the CPU codec decodes only the decoder's reach (1 cell before a core, 2 after; about 6% less
   decoder work at 512 px), so the reconstruct figures err low.
2. The entropy coding the codec does on the CPU (integer h_s, range coder; core/hyperprior.py), in parallel over
   tiles on every core, one BLAS thread per worker.
3. End to end: networks and entropy coding overlap in a pipeline, so the slower of the two bounds the codec; both
   are reported and the binding one named. The host's file I/O is not included (it is GDAL's, not measured here).
   Then the same with the hyper networks on the device (benchmarks/gpu_entropy.py: h_s, the channel context and
   the symbol choice, batched over tiles, exact float64 for the integer networks): the device stage's MP/s, the
   range coder alone on the CPU cores (given the indices and symbols), and the bound of the three stages
   (networks, device hyper networks, range coder). A decoder would interleave the range coder and the device per
   slice; with enough tiles in flight that costs latency, not throughput, which is what the bound assumes.
   Every scale index the device computes from the CPU's symbols must equal the CPU's (counted in the JSON).
4. Across devices: tiles whose latents came from the GPU (fp16 and fp32) are range-coded and decoded again; the
   decoded symbols must equal the encoded ones bit for bit, and the chunks return in gpu_chunks.npz so that
   another machine (this one) can decode them and compare. Reconstructions from GPU-encoded and CPU-encoded
   chunks are compared with the original (dB RMSE).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sar_compress_plugin.core.hyperprior import HYPERPRIOR_NAME, load_hyperprior  # noqa: E402
from sar_compress_plugin.core.runtime import manifest_distortion_weights, quality_rounding_weights  # noqa: E402
from gpu_entropy import DeviceHyperprior  # noqa: E402
from results_files import bytes_file  # noqa: E402
from trainer.checkpoint import load_model  # noqa: E402
from trainer.data import read_pack  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HALO = 32        # pixels of context per side, as the bundle's manifest says (checked below)
FACTOR = 16


# --- data ---------------------------------------------------------------------------------------------------------

def normalised_planes(pack: Path, count: int) -> list[tuple[np.ndarray, float, float]]:
    """(image in [0, 1], clip lo, clip hi in dB) of the first `count` planes, each clipped to its own 0.5 / 99.5
    percentiles as the codec does per band."""
    out = []
    for p in read_pack(pack)[:count]:
        db = p.db[p.valid]
        lo, hi = (float(v) for v in np.percentile(db, [0.5, 99.5]))
        img = np.clip((np.where(p.valid, p.db, lo) - lo) / (hi - lo), 0, 1).astype(np.float32)
        out.append((img, lo, hi))
    return out


def cut_tiles(planes, size: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, size, size) float32 tiles (reflect-padded where a plane is smaller) and each tile's dB span."""
    rng = np.random.default_rng(seed)
    tiles, spans = np.empty((n, 1, size, size), np.float32), np.empty(n, np.float64)
    for i in range(n):
        img, lo, hi = planes[i % len(planes)]
        h, w = img.shape
        big = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w))), mode="reflect") if min(h, w) < size else img
        r, c = rng.integers(0, big.shape[0] - size + 1), rng.integers(0, big.shape[1] - size + 1)
        tiles[i, 0] = big[r:r + size, c:c + size]
        spans[i] = hi - lo
    return tiles, spans


# --- timing ---------------------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, device: torch.device, min_seconds: float, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        sync(device)
        if n >= 3 and time.perf_counter() - t0 >= min_seconds:
            return (time.perf_counter() - t0) / n


def pinned(shape, pin: bool) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float32, pin_memory=pin)


class Stage:
    """One network stage on fixed shapes: host buffer -> device (dtype, channels-last) -> body -> host buffer.
    With `graph`, the device part is captured once as a CUDA graph and replayed (no per-layer launch cost)."""

    def __init__(self, body, host_in: torch.Tensor, device: torch.device, dtype: torch.dtype, graph: bool):
        self.body, self.host_in, self.device, self.dtype = body, host_in, device, dtype
        self.static_in = torch.empty(host_in.shape, device=device, dtype=dtype).contiguous(
            memory_format=torch.channels_last)
        with torch.no_grad():
            outs = body(self.static_in)
        self.host_out = [pinned(o.shape, device.type == "cuda") for o in outs]
        self.graph = None
        if graph:
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(3):
                    body(self.static_in)
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.no_grad():
                self.static_out = body(self.static_in)

    def __call__(self) -> list[torch.Tensor]:
        with torch.no_grad():
            self.static_in.copy_(self.host_in, non_blocking=True)
            if self.graph is not None:
                self.graph.replay()
                outs = self.static_out
            else:
                outs = self.body(self.static_in)
            for h, o in zip(self.host_out, outs):
                h.copy_(o, non_blocking=True)
        return self.host_out


def compress_body(model, gain: torch.Tensor, tile: int):
    """g_a on tile + halo, the core's latents times the gain, h_a on them (padded to the hyper grid)."""
    hc, tc = HALO // FACTOR, tile // FACTOR

    def body(x):
        y = (model.g_a(x) * gain)[..., hc:hc + tc, hc:hc + tc]
        z = model.h_a(model.pad_to_hyper_grid(y))
        return y, z

    return body


def reconstruct_body(model, tile: int):
    def body(latents):
        x = model.g_s(latents)
        return (x[..., HALO:HALO + tile, HALO:HALO + tile].clamp(0, 1),)

    return body


# --- entropy coding on the CPU cores ------------------------------------------------------------------------------

_CODER = None


def _worker_init(npz: str) -> None:
    global _CODER
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    threadpool_limits(1, user_api="blas")
    torch.set_num_threads(1)
    _CODER = load_hyperprior(npz)


def _encode(args):
    ys, z, rounding = args
    return _CODER.encode(ys, z, rounding)


def _decode(args):
    chunk, shape = args
    return _CODER.decode(chunk, shape, "benchmark tile")


def _pool_round_trip(npz: Path, workers: int, encode, jobs: list, decode, decode_jobs) -> tuple:
    """(encoded, decoded, encode seconds, decode seconds): `encode` over `jobs`, then `decode` over
    `decode_jobs(encoded)`, on `workers` forked processes, each warmed up first (imports, tables)."""
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(str(npz),)) as pool:
        pool.map(encode, jobs[:1] * workers)
        t0 = time.perf_counter()
        encoded = pool.map(encode, jobs, chunksize=1)
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        decoded = pool.map(decode, decode_jobs(encoded), chunksize=1)
        t_dec = time.perf_counter() - t0
    return encoded, decoded, t_enc, t_dec


def entropy_rates(npz: Path, ys: np.ndarray, zs: np.ndarray, tile: int, workers: int, rounding) -> dict:
    """MP/s of encoding (with the codec's `rounding`, core/rd_rounding.py) and decoding every tile of (ys, zs), in
    parallel over `workers` processes."""
    encoded, _, t_enc, t_dec = _pool_round_trip(
        npz, workers, _encode, [(y, z, rounding) for y, z in zip(ys, zs)],
        _decode, lambda enc: [(c, ys.shape[1:]) for c, _ in enc])
    mp_total = len(ys) * tile * tile / 1e6
    bits = 8 * sum(len(c) for c, _ in encoded)
    return {"workers": workers, "tiles": len(ys), "tile": tile, "encode_s": t_enc, "decode_s": t_dec,
            "encode_mp_s": mp_total / t_enc, "decode_mp_s": mp_total / t_dec,
            "latent_bpp": bits / (mp_total * 1e6)}


def _pack(args):
    return _CODER.pack(*args)


def _unpack(args):
    chunk, idx = args
    _, stream = _CODER.open_chunk(chunk, idx.shape, "benchmark tile")
    width = idx.shape[0] // _CODER.slices
    return [_CODER.read_slice(stream, idx[s * width:(s + 1) * width]) for s in range(_CODER.slices)]


def coder_rates(npz: Path, zqs: np.ndarray, idxs: np.ndarray, syms: np.ndarray, tile: int, workers: int) -> dict:
    """MP/s of the range coder alone, the scale indices and symbols given (as the device computes them), in
    parallel over `workers` processes; the decoded symbols are checked against the coded ones."""
    _, decoded, t_enc, t_dec = _pool_round_trip(npz, workers, _pack, list(zip(zqs, idxs, syms)),
                                                _unpack, lambda chunks: list(zip(chunks, idxs)))
    wrong = sum(int((np.concatenate(d) != s).sum()) for d, s in zip(decoded, syms))
    mp_total = len(zqs) * tile * tile / 1e6
    return {"workers": workers, "tiles": len(zqs), "tile": tile, "encode_mp_s": mp_total / t_enc,
            "decode_mp_s": mp_total / t_dec, "symbols_decoded_wrong": wrong}


def device_hyper(coder, device, ys: np.ndarray, zs: np.ndarray, tile: int, rounding, min_seconds: float,
                 check_tiles: int) -> tuple[dict, tuple]:
    """The device stage (h_s, context, symbol choice for all tiles at once): MP/s; its scale indices against the
    CPU's, given the CPU's symbols (must be equal), and its own symbols against the CPU's. Returns the figures
    and the device's (z symbols, indices, symbols) as numpy, for the range coder's timing."""
    hyper = DeviceHyperprior(coder, device)
    zq = np.stack([coder.quantize_z(z) for z in zs])
    y_dev, z_dev = torch.from_numpy(ys).to(device), torch.from_numpy(zq.astype(np.float64)).to(device)
    with torch.no_grad():
        seconds = seconds_per_call(lambda: hyper.code_slices(y_dev, z_dev, rounding), device, min_seconds)
        idx, _, sym = (t.cpu().numpy() for t in hyper.code_slices(y_dev, z_dev, rounding))
        checked = min(check_tiles, len(ys))
        cpu = [coder.analyse(ys[t], zq[t], rounding) for t in range(checked)]
        # one batched call, as timed: the indices for the CPU's symbols must be the CPU's, tile for tile
        given = torch.from_numpy(np.stack([c[2] for c in cpu]).astype(np.float64)).to(device)
        dev_idx = hyper.code_slices(y_dev[:checked], z_dev[:checked], rounding, given_symbols=given)[0].cpu().numpy()
        differing = int((dev_idx != np.stack([c[0] for c in cpu])).sum())
        own_differing = int((sym[:checked] != np.stack([c[2] for c in cpu])).sum())
    figures = {"tiles": len(ys), "tile": tile, "mp_s": len(ys) * tile * tile / 1e6 / seconds,
               "checked_tiles": checked, "indices_checked": int(checked * ys[0].size),
               "indices_differing_from_cpu": differing, "own_symbols_differing_from_cpu": own_differing}
    return figures, (zq, idx.astype(np.uint8), sym.astype(np.int32))


# --- the run --------------------------------------------------------------------------------------------------------

def device_info(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cpu_cores": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def network_sweep(model, device, dtypes, tiles_sizes, batches, graphs, planes, gain_f32, min_seconds, log):
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        net = model.to(device=device, dtype=dtype).to(memory_format=torch.channels_last)
        gain = gain_f32.to(device=device, dtype=dtype)
        for tile in tiles_sizes:
            for batch in batches:
                x, _ = cut_tiles(planes, tile + 2 * HALO, batch, seed=tile + batch)
                lat_shape = (batch, model.latent_channels, tile // FACTOR + 2 * HALO // FACTOR,
                             tile // FACTOR + 2 * HALO // FACTOR)
                lat = torch.randn(lat_shape) * 2
                for use_graph in graphs:
                    row = {"dtype": dname, "tile": tile, "batch": batch, "cuda_graph": use_graph}
                    try:
                        host_x = pinned(x.shape, device.type == "cuda")
                        host_x.copy_(torch.from_numpy(x))
                        host_l = pinned(lat_shape, device.type == "cuda")
                        host_l.copy_(lat)
                        enc = Stage(compress_body(net, gain, tile), host_x, device, dtype, use_graph)
                        dec = Stage(reconstruct_body(net, tile), host_l, device, dtype, use_graph)
                        core_mp = batch * tile * tile / 1e6
                        row["compress_mp_s"] = core_mp / seconds_per_call(enc, device, min_seconds)
                        row["reconstruct_mp_s"] = core_mp / seconds_per_call(dec, device, min_seconds)
                        row["peak_gpu_memory_gib"] = (torch.cuda.max_memory_allocated(device) / 2**30
                                                      if device.type == "cuda" else None)
                    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                        row["error"] = str(exc).splitlines()[0][:200]
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats(device)
                    rows.append(row)
                    log(f"  {dname} tile {tile} batch {batch:>3} graph {int(use_graph)}: "
                        + (f"compress {row['compress_mp_s']:8.1f} MP/s  reconstruct {row['reconstruct_mp_s']:8.1f} MP/s"
                           if "error" not in row else row["error"]))
    model.to(device="cpu", dtype=torch.float32).to(memory_format=torch.contiguous_format)
    return rows


@torch.no_grad()
def cross_device(model, coder, device, planes, tile: int, n: int, quality: float, rounding) -> tuple[dict, dict]:
    """Encode the same tiles with the GPU's fp16 and fp32 latents and with the CPU's fp32 latents; decode every
    chunk again and check each symbol; reconstruct all of them in fp32 and compare with the original."""
    x, spans = cut_tiles(planes, tile + 2 * HALO, n, seed=99)
    gain = torch.from_numpy(coder.gain(quality))[None]
    inverse = coder.inverse_gain(quality)
    results, arrays = {}, {}
    for name, dev, dtype in (("gpu_fp16", device, torch.float16), ("gpu_fp32", device, torch.float32),
                             ("cpu_fp32", torch.device("cpu"), torch.float32)):
        if dev.type == "cpu" and name.startswith("gpu"):
            continue  # the rehearsal has no GPU: the CPU row is the reference
        net = model.to(device=dev, dtype=dtype)
        y, z = compress_body(net, gain.to(dev, dtype), tile)(torch.from_numpy(x).to(dev, dtype))
        y, z = y.float().cpu().numpy(), z.float().cpu().numpy()
        chunks, mismatched, expected = [], 0, []
        for t in range(n):
            chunk, coded = coder.encode(y[t], z[t], rounding)
            back = coder.decode(chunk, y[t].shape, f"{name} tile {t}")
            mismatched += decoding_difference(back, coded)[0]
            chunks.append(chunk)
            expected.append(back)
        model.float().cpu()
        # each tile reconstructed alone from its core latents (no neighbours' halo cells): the same for every row
        rec = model.g_s(torch.from_numpy(np.stack(expected) * inverse[None])).clamp(0, 1).numpy()
        orig = x[..., HALO:HALO + tile, HALO:HALO + tile]
        db_rmse = float(np.sqrt(np.mean(((rec - orig) * spans[:, None, None, None]) ** 2)))
        results[name] = {"tiles": n, "symbols": int(y.size), "decoded_symbols_differing": mismatched,
                         "bytes": int(sum(len(c) for c in chunks)), "db_rmse_vs_original": db_rmse}
        arrays[f"{name}_chunks"] = np.frombuffer(b"".join(chunks), np.uint8)
        arrays[f"{name}_lengths"] = np.array([len(c) for c in chunks], np.int64)
        arrays[f"{name}_decoded"] = np.stack(expected)
    return results, arrays


def stage_bound(compress: dict, reconstruct: dict) -> dict:
    """Each direction's pipeline bound: the slowest of its stages' MP/s, and which stage that is."""
    out = {}
    for direction, stages in (("compress", compress), ("reconstruct", reconstruct)):
        slowest = min(stages, key=stages.get)
        out[f"{direction}_mp_s"], out[f"{direction}_bound"] = stages[slowest], slowest
    return out


def decoding_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(latents whose integer symbols differ, the largest drift among the rest) between two decodings of
    (symbol + mean) values. Only the symbols must be bit-exact across machines: the means come from a float32
    network whose last bits depend on the BLAS kernel and thread count (docs/format.md), so they shift a value
    by about 1e-6, while a different symbol moves it by 1 or more."""
    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    differing = delta > 0.5
    return int(differing.sum()), float(delta[~differing].max(initial=0.0))


def verify_chunks(path: Path, bundle: Path) -> int:
    """Decode every chunk of a gpu_chunks.npz with this machine's core; compare with what the device decoded."""
    coder = load_hyperprior(bundle / HYPERPRIOR_NAME)
    bad = 0
    with np.load(path, allow_pickle=False) as f:
        if str(f["hyperprior_sha256"]) != coder.sha256:
            print(f"error: chunks were coded with hyperprior {str(f['hyperprior_sha256'])[:12]}..., this bundle "
                  f"has {coder.sha256[:12]}...", file=sys.stderr)
            return 2
        for name in sorted({k.rsplit("_", 1)[0] for k in f.files if k.endswith("_chunks")}):
            data, lengths, want = f[f"{name}_chunks"].tobytes(), f[f"{name}_lengths"], f[f"{name}_decoded"]
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            diff, mean_shift = 0, 0.0
            for t in range(len(lengths)):
                got = coder.decode(data[offsets[t]:offsets[t + 1]], want.shape[1:], f"{name} tile {t}")
                differing, drift = decoding_difference(got, want[t])
                diff, mean_shift = diff + differing, max(mean_shift, drift)
            bad += diff
            print(f"{name}: {len(lengths)} tiles, {want.size} latents, {diff} differ from the device's decoding "
                  f"(where the symbols agree, the float means differ by at most {mean_shift:.1e})")
    return 0 if bad == 0 else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="the model's weights (default: checkpoints/warm_start_<the bundle's variant>.pth)")
    p.add_argument("--bundle", type=Path, default=REPO / "sar_compress_plugin" / "models" / "default")
    p.add_argument("--data", type=Path, default=REPO / ".gpu_codec_data" / "planes.npz")
    p.add_argument("--quick", action="store_true", help="tiny sweep (the CPU rehearsal)")
    p.add_argument("--quality", type=float, default=None, help="operating point (default: the bundle's)")
    p.add_argument("--out", type=Path, default=None, help="write gpu_codec.json and gpu_chunks.npz here")
    p.add_argument("--verify-chunks", type=Path, default=None, help="decode a device's gpu_chunks.npz here")
    a = p.parse_args(argv)
    if a.verify_chunks:
        return verify_chunks(a.verify_chunks, a.bundle)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but PyTorch sees no CUDA device here (use --device cpu --quick to rehearse)",
              file=sys.stderr)
        return 2
    if not a.data.is_file():
        print(f"error: {a.data} is missing: python -m trainer.pack --data ../shared/data/sar/MANIFEST.json "
              f"--max-planes 16 --min-side 512 --out {a.data}", file=sys.stderr)
        return 2
    manifest = json.loads((a.bundle / "manifest.json").read_text())
    if int(manifest.get("halo", HALO)) != HALO:
        print(f"error: the bundle's halo is {manifest.get('halo')}, this benchmark tiles with {HALO}", file=sys.stderr)
        return 2
    if a.checkpoint is None:
        a.checkpoint = REPO / "checkpoints" / f"warm_start_{manifest['variant']}.pth"
    log = (lambda s: print(s, flush=True))
    started = time.perf_counter()
    model, ckpt = load_model(a.checkpoint)
    coder = load_hyperprior(a.bundle / HYPERPRIOR_NAME, manifest["files"]["hyperprior"]["sha256"])
    quality = float(manifest["rate"]["default_quality"] if a.quality is None else a.quality)
    gain = torch.from_numpy(coder.gain(quality))[None]
    weights = manifest_distortion_weights(manifest, coder.latent_channels, a.bundle / "manifest.json")
    rounding = quality_rounding_weights(weights, manifest["rate"]["lambdas"], coder, quality)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    planes = normalised_planes(a.data, 24)
    if a.quick:
        dtypes, tile_sizes, batches, graphs, min_s, n_entropy, workers = ["fp32"], [128], [1, 2], [False], 0.2, 4, 2
    else:
        dtypes, tile_sizes, batches = ["fp32", "fp16", "bf16"], [256, 512, 1024], [1, 8, 32]
        graphs, min_s, n_entropy, workers = [False, True], 0.5, 64, os.cpu_count() or 1
    log(f"networks on {device} ({'quick' if a.quick else 'full'} sweep)")
    rows = network_sweep(model, device, dtypes, tile_sizes, batches, graphs, planes, gain, min_s, log)

    log("entropy coding on the CPU cores")
    entropy = []
    for tile in tile_sizes:
        x, _ = cut_tiles(planes, tile + 2 * HALO, n_entropy, seed=7)
        with torch.no_grad():
            net = model.to(device=device, dtype=torch.float32)
            ys, zs = [], []
            for i in range(0, n_entropy, 8):
                y, z = compress_body(net, gain.to(device), tile)(torch.from_numpy(x[i:i + 8]).to(device))
                ys.append(y.cpu().numpy())
                zs.append(z.cpu().numpy())
            model.cpu()
        ys, zs = np.concatenate(ys), np.concatenate(zs)
        e = entropy_rates(a.bundle / HYPERPRIOR_NAME, ys, zs, tile, workers, rounding)
        log(f"  tile {tile}: encode {e['encode_mp_s']:.1f} MP/s, decode {e['decode_mp_s']:.1f} MP/s on "
            f"{workers} processes ({e['latent_bpp']:.3f} bpp of latents)")
        e["device_hyper"], coded = device_hyper(coder, device, ys, zs, tile, rounding, min_s, 2 if a.quick else 8)
        e["coder_alone"] = coder_rates(a.bundle / HYPERPRIOR_NAME, *coded, tile, workers)
        entropy.append(e)
        d, c = e["device_hyper"], e["coder_alone"]
        log(f"  tile {tile}, hyper networks on {device}: {d['mp_s']:.1f} MP/s ({d['indices_differing_from_cpu']} of "
            f"{d['indices_checked']} scale indices differ from the CPU's); range coder alone on {workers} "
            f"processes: encode {c['encode_mp_s']:.1f}, decode {c['decode_mp_s']:.1f} MP/s")

    ends = []
    for tile in tile_sizes:
        ok = [r for r in rows if r["tile"] == tile and "error" not in r]
        e = next(x for x in entropy if x["tile"] == tile)
        if not ok:
            continue
        best_c = max(ok, key=lambda r: r["compress_mp_s"])
        best_r = max(ok, key=lambda r: r["reconstruct_mp_s"])
        c, r = min(best_c["compress_mp_s"], e["encode_mp_s"]), min(best_r["reconstruct_mp_s"], e["decode_mp_s"])
        ends.append({"tile": tile, "compress_mp_s": c, "reconstruct_mp_s": r,
                     "compress_bound": "network" if best_c["compress_mp_s"] < e["encode_mp_s"] else "entropy coding",
                     "reconstruct_bound": "network" if best_r["reconstruct_mp_s"] < e["decode_mp_s"]
                     else "entropy coding",
                     "best_compress_network": best_c, "best_reconstruct_network": best_r,
                     "hyper_on_device": stage_bound({"network": best_c["compress_mp_s"],
                                                     "device hyper networks": e["device_hyper"]["mp_s"],
                                                     "range coder": e["coder_alone"]["encode_mp_s"]},
                                                    {"network": best_r["reconstruct_mp_s"],
                                                     "device hyper networks": e["device_hyper"]["mp_s"],
                                                     "range coder": e["coder_alone"]["decode_mp_s"]})})
        h = ends[-1]["hyper_on_device"]
        log(f"  end to end, tile {tile}: compress {c:.1f} MP/s ({ends[-1]['compress_bound']}), reconstruct "
            f"{r:.1f} MP/s ({ends[-1]['reconstruct_bound']}); with the hyper networks on {device}: compress "
            f"{h['compress_mp_s']:.1f} ({h['compress_bound']}), reconstruct {h['reconstruct_mp_s']:.1f} "
            f"({h['reconstruct_bound']})")

    log("decoding across devices")
    cross, arrays = cross_device(model, coder, device, planes, tile_sizes[0], 4 if a.quick else 16, quality,
                                  rounding)
    for k, v in cross.items():
        log(f"  {k}: {v['decoded_symbols_differing']} of {v['symbols']} decoded symbols differ; "
            f"dB RMSE {v['db_rmse_vs_original']:.3f}")
    doc = {"name": "gpu_codec", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
           "environment": device_info(device),
           "model": {"bundle": manifest.get("name"), "bundle_steps": manifest.get("training", {}).get("steps"),
                     "checkpoint": str(a.checkpoint.relative_to(REPO)) if a.checkpoint.is_relative_to(REPO)
                     else str(a.checkpoint), "checkpoint_step": ckpt.get("step"), "quality": quality,
                     "rounding": "nearest" if rounding is None else "rate_distortion"},
           "settings": {"halo": HALO, "dtypes": dtypes, "tiles": tile_sizes, "batches": batches,
                        "cuda_graphs": graphs, "entropy_tiles": n_entropy, "entropy_workers": workers},
           "networks": rows, "entropy_coding": entropy, "end_to_end": ends, "cross_device": cross,
           "seconds": time.perf_counter() - started}
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        chunks = io.BytesIO()  # np.savez would add .npz to publish_files' partial name, which lacks it
        np.savez_compressed(chunks, hyperprior_sha256=np.array(coder.sha256), **arrays)
        publish_files({a.out / "gpu_codec.json": json.dumps(doc, indent=1),
                       a.out / "gpu_chunks.npz": bytes_file(chunks.getvalue())})
        log(f"wrote {a.out / 'gpu_codec.json'} and {a.out / 'gpu_chunks.npz'}")
    bad = sum(v["decoded_symbols_differing"] for v in cross.values())
    bad += sum(e["device_hyper"]["indices_differing_from_cpu"] + e["coder_alone"]["symbols_decoded_wrong"]
               for e in entropy)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
