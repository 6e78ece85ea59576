"""What coding VH given VV would buy: a cross-polarisation context, probed on a frozen model.

The codec codes each band alone, and JPEG-2000 too. At low rates, where the codec is behind, both spend their
bits on the scene's structure, and a dual-polarisation product's VV and VH share most of it (fields, water,
towns), while their speckle is nearly independent. So a VH band coded after its VV band could take means and
scales from VV's decoded latents, as the channel context takes them from earlier slices.

The probe: with the model frozen (g_a, g_s, hyperprior, channel context), a small network on VV's decoded
latents (`CrossPolContext`: two 3 x 3 convolutions at the latent's 1/16 resolution) learns a correction to the
mean and the log-scale of every VH latent, on the latents of the training split's dual-polarisation scenes
(random 16 x 16-latent crops at random quality levels, VH's rate as the loss, as the trainer's relaxation with
uniform noise). Then, on the validation split's dual-polarisation scenes at the six trained levels, VH is coded
with and without it (nearest rounding, real symbols and likelihoods, the frozen decoder), and the two curves of
bits against dB error give a BD-rate, for VH alone and for the pair (VV's bits and error the same in both).
dB error is (x_hat - x) * (hi - lo) on the normalised, clipped image over valid pixels: the codec's in-range
error. Frozen latents make this a lower bound on what joint training would give.

    python benchmarks/cross_pol_context.py checkpoints/warm_start_baseline.pth --steps 3000 \
        --out benchmarks/results/cross_pol_context/kernel3_hidden128    # one committed run; the others beside it
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from rate_distortion import bd_text, bd_rate, write_report  # noqa: E402

from trainer.checkpoint import load_model, totals_text  # noqa: E402
from trainer.data import Plane, build_datasets  # noqa: E402
from trainer.models.codec import gaussian_likelihood, round_ste  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sar" / "MANIFEST.json"
CROP = 16  # latents per side of a training crop (256 px)


class CrossPolContext(nn.Module):
    """VV's decoded latents (without the level's gain) -> (mean correction without gain, log-scale correction)
    of each VH latent. The last layer starts at zero: the probe starts as the model without it."""

    def __init__(self, channels: int, hidden: int = 128, kernel: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2), nn.ReLU(),
                                 nn.Conv2d(hidden, 2 * channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, vv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.net(vv).chunk(2, 1)
        return mean, log_scale


def pairs_of(planes: list[Plane]) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, float, float]]:
    """(scene, x_vv, x_vh, valid of both, VV's and VH's clip width in dB) of each scene with a VV and a VH band
    of one shape, cropped to multiples of 64 px (a whole hyper-latent grid)."""
    by_scene: dict[str, dict[str, Plane]] = {}
    for p in planes:
        pol = "VV" if "VV" in p.band.upper() else "VH" if "VH" in p.band.upper() else None
        if pol:
            by_scene.setdefault(p.scene, {})[pol] = p
    out = []
    for scene, pols in sorted(by_scene.items()):
        if set(pols) != {"VV", "VH"} or pols["VV"].x.shape != pols["VH"].x.shape:
            continue
        h, w = (s // 64 * 64 for s in pols["VV"].x.shape)
        if h < 64 or w < 64:
            continue
        vv, vh = pols["VV"], pols["VH"]
        out.append((scene, vv.x[:h, :w], vh.x[:h, :w], (vv.valid & vh.valid)[:h, :w],
                    vv.clip_db[1] - vv.clip_db[0], vh.clip_db[1] - vh.clip_db[0]))
    return out


def code(model, y: torch.Tensor, context: CrossPolContext | None = None, vv_hat: torch.Tensor | None = None,
         gain: torch.Tensor | None = None, training: bool = False) -> dict:
    """The model's slice-by-slice coding of gain-scaled latents `y`, with, given `context`, VV's correction
    applied after the channel context's; y_hat and the bits of y and z."""
    z = model.h_a(model.pad_to_hyper_grid(y))
    z_hat = torch.round(z)
    z_bits = -torch.log2(model.prior.likelihood(z_hat)).sum()
    scales, means = model.entropy_parameters(z_hat, y.shape[-2:])
    if context is not None:
        d_mean, d_log_scale = context(vv_hat)
        d_mean, d_log_scale = (d_mean * gain).chunk(model.context_slices, 1), d_log_scale.chunk(model.context_slices, 1)
    y_hats, symbols, bits = [], [], 0.0
    n = model.context_slices
    for s, (ys, sc, mu) in enumerate(zip(y.chunk(n, 1), scales.chunk(n, 1), means.chunk(n, 1))):
        if s:
            sc = sc + model.context_scale[s - 1](torch.cat(symbols, 1))
            mu = mu + model.context_mean[s - 1](torch.cat(y_hats, 1))
        if context is not None:
            sc = sc * torch.exp(d_log_scale[s])
            mu = mu + d_mean[s]
        sym = torch.round(ys - mu).detach()
        if training:
            noisy = ys + torch.empty_like(ys).uniform_(-0.5, 0.5) - mu
            bits = bits - torch.log2(gaussian_likelihood(noisy, sc)).sum()
            y_hats.append(round_ste(ys - mu) + mu)
        else:
            bits = bits - torch.log2(gaussian_likelihood(sym, sc)).sum()
            y_hats.append(sym + mu)
        symbols.append(sym)
    return {"y_hat": torch.cat(y_hats, 1), "y_bits": bits, "z_bits": z_bits}


def train_context(model, train_pairs, steps: int, batch: int, lr: float, seed: int, hidden: int, kernel: int,
                  weight_decay: float, log_every: int = 250):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    with torch.no_grad():
        latents = [(model.g_a(vv[None, None]), model.g_a(vh[None, None])) for _, vv, vh, *_ in train_pairs]
    context = CrossPolContext(model.latent_channels, hidden, kernel)
    opt = torch.optim.AdamW(context.parameters(), lr=lr, weight_decay=weight_decay)
    history, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        if step == int(0.8 * steps):
            for g in opt.param_groups:
                g["lr"] = lr / 4
        total_bits, total_px = 0.0, 0
        for _ in range(batch):
            gv, gh = rng.choice(latents)
            h, w = gv.shape[-2:]
            r0, c0 = rng.randrange(0, h - CROP + 1, 4), rng.randrange(0, w - CROP + 1, 4)
            gv, gh = (g[..., r0:r0 + CROP, c0:c0 + CROP] for g in (gv, gh))
            level = torch.tensor([rng.uniform(0, model.levels - 1)])
            gain, inverse = model.gains(level)
            with torch.no_grad():
                vv_hat = code(model, gv * gain)["y_hat"] * inverse
            coded = code(model, gh * gain, context, vv_hat, gain, training=True)
            total_bits = total_bits + coded["y_bits"]
            total_px += CROP * CROP * 256
        loss = total_bits / total_px
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if step % log_every == 0:
            print(f"step {step}: VH y bpp {np.mean(history[-log_every:]):.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return context, history


@torch.no_grad()
def evaluate(model, context, pairs) -> list[dict]:
    """Per level: the pooled bits and squared dB errors of VV, VH and VH with the context."""
    rows = []
    for level in range(model.levels):
        gain, inverse = model.gains(torch.tensor([float(level)]))
        acc = {k: 0.0 for k in ("px", "vv_bits", "vh_bits", "vh_ctx_bits", "vv_se", "vh_se", "vh_ctx_se", "n_valid")}
        for _, vv, vh, valid, width_vv, width_vh in pairs:
            x_vv, x_vh = vv[None, None], vh[None, None]
            c_vv = code(model, model.g_a(x_vv) * gain)
            vv_hat = c_vv["y_hat"] * inverse
            y_vh = model.g_a(x_vh) * gain
            c_vh = code(model, y_vh)
            c_ctx = code(model, y_vh, context, vv_hat, gain)
            m = valid.float()
            acc["px"] += float(vv.numel())
            acc["n_valid"] += float(m.sum())
            for key, c, x, width in (("vv", c_vv, x_vv, width_vv), ("vh", c_vh, x_vh, width_vh),
                                     ("vh_ctx", c_ctx, x_vh, width_vh)):
                x_hat = model.g_s(c["y_hat"] * inverse).clamp(0, 1)
                acc[f"{key}_bits"] += float(c["y_bits"] + c["z_bits"])
                acc[f"{key}_se"] += float((((x_hat - x) * width) ** 2 * m).sum())
        row = {"level": level}
        for key in ("vv", "vh", "vh_ctx"):
            row[f"{key}_bpp"] = acc[f"{key}_bits"] / acc["px"]
            row[f"{key}_db_rmse"] = math.sqrt(acc[f"{key}_se"] / acc["n_valid"])
        for key, vh in (("pair", "vh"), ("pair_ctx", "vh_ctx")):  # bpp per band of the pair, error over both
            row[f"{key}_bpp"] = (row["vv_bpp"] + row[f"{vh}_bpp"]) / 2
            row[f"{key}_db_rmse"] = math.sqrt((acc["vv_se"] + acc[f"{vh}_se"]) / (2 * acc["n_valid"]))
        rows.append(row)
        print(f"level {level}: VH {row['vh_bpp']:.4f} bpp {row['vh_db_rmse']:.3f} dB -> "
              f"{row['vh_ctx_bpp']:.4f} bpp {row['vh_ctx_db_rmse']:.3f} dB", flush=True)
    return rows


def markdown(doc: dict) -> str:
    r = doc["results"]
    threads = doc["settings"]["threads"]
    lines = [f"# Cross-polarisation context probe ({doc['date'][:10]})", "",
             f"Model: `{doc['checkpoint']}` ({doc['model_training']}). Probe: {doc['settings']['steps']} steps of "
             f"{doc['settings']['batch']} crops of {CROP} x {CROP} latents on {len(doc['train_scenes'])} training "
             f"pairs ({doc['seconds_training']:.0f} s, {threads} thread{'' if threads == 1 else 's'}); evaluated "
             f"on {len(doc['val_scenes'])} validation pairs: {', '.join(doc['val_scenes'])}.", "",
             "| level | VV bpp | VV dB RMSE | VH bpp | VH dB RMSE | VH given VV: bpp | dB RMSE | VH bits saved |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["levels"]:
        saved = 100 * (1 - row["vh_ctx_bpp"] / row["vh_bpp"])
        lines.append(f"| {row['level']} | {row['vv_bpp']:.4f} | {row['vv_db_rmse']:.3f} | {row['vh_bpp']:.4f} | "
                     f"{row['vh_db_rmse']:.3f} | {row['vh_ctx_bpp']:.4f} | {row['vh_ctx_db_rmse']:.3f} | "
                     f"{saved:.1f}% |")
    # a BD-rate is null where the two curves' errors do not overlap: said, instead of a crash after the run
    vh, pair, trained_on = (bd_text(bd["bd_rate_percent"]) for bd in
                            (r["bd_vh"], r["bd_pair"], doc["training_pairs"]["bd_vh"]))
    lines += ["", f"BD-rate of VH given VV against VH alone: **{vh}**; of the pair (VV's bits and error "
              f"unchanged): **{pair}**. On the training pairs it learned from, VH: {trained_on}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--kernel", type=int, default=3, help="the context's convolution size, in latents")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    ap.add_argument("--out", default=None, help="write cross_pol_context.json and .md here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, ckpt = load_model(a.checkpoint)
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = ckpt.get("config") or {}
    data = build_datasets(a.data, val_fraction=float(cfg.get("val_fraction", 0.2)), seed=int(cfg.get("split_seed", 0)))
    train_pairs = [p for p in pairs_of(data.train) if min(p[1].shape) >= 16 * CROP]  # a whole training crop
    val_pairs = pairs_of(data.val)
    print(f"{len(train_pairs)} training pairs, {len(val_pairs)} validation pairs", flush=True)
    t0 = time.perf_counter()
    context, history = train_context(model, train_pairs, a.steps, a.batch, a.lr, a.seed, a.hidden, a.kernel,
                                     a.weight_decay)
    seconds = time.perf_counter() - t0
    print("on the training pairs:", flush=True)
    train_rows = evaluate(model, context.eval(), train_pairs)
    print("on the validation pairs:", flush=True)
    rows = evaluate(model, context, val_pairs)
    pick = lambda rs, key: ([r[f"{key}_bpp"] for r in rs], [r[f"{key}_db_rmse"] for r in rs])  # noqa: E731
    doc = {"name": "cross_pol_context", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(["python", "benchmarks/cross_pol_context.py", *(argv or sys.argv[1:])]),
           "checkpoint": a.checkpoint,
           "model_training": totals_text(ckpt),
           "settings": {"steps": a.steps, "batch": a.batch, "lr": a.lr, "seed": a.seed, "crop_latents": CROP,
                        "hidden": a.hidden, "kernel": a.kernel, "weight_decay": a.weight_decay,
                        "threads": a.threads,
                        "context_parameters": sum(p.numel() for p in context.parameters())},
           "train_scenes": [p[0] for p in train_pairs], "val_scenes": [p[0] for p in val_pairs],
           "seconds_training": seconds, "training_bpp_every_250": [float(np.mean(history[i:i + 250]))
                                                                  for i in range(0, len(history), 250)],
           "results": {"levels": rows, "bd_vh": bd_rate(*pick(rows, "vh"), *pick(rows, "vh_ctx")),
                       "bd_pair": bd_rate(*pick(rows, "pair"), *pick(rows, "pair_ctx"))},
           "training_pairs": {"levels": train_rows, "bd_vh": bd_rate(*pick(train_rows, "vh"), *pick(train_rows, "vh_ctx"))}}
    md = markdown(doc)
    print(md)
    if a.out:  # both files under temporary names, renamed once whole: a failure mid-write leaves the last report
        write_report(a.out, "cross_pol_context.json", "cross_pol_context.md", doc, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
