"""What bounds a trained codec model: its transforms, its latent width, or its entropy model.

Three measurements on the trainer's validation tiles (the scene split sar-train uses, never trained on), from a
checkpoint, in PyTorch:

* **Transform ceiling.** PSNR of g_s(y) with the latents *not* quantised, at each level's gains: no rate can
  take the codec above it. When the quantised PSNR at the top level is near its ceiling, more bits cannot help;
  only better transforms (more training, wider or deeper g_a / g_s, a wider latent) can.
* **Channels in use.** How many of the M latent channels carry 50 / 90 / 99% of the bits at each level: a
  latent whose every channel is busy is a candidate for widening.
* **Spatial context probe** (`--spatial-steps N`). With everything frozen, a checkerboard spatial context
  (He et al. 2021; the anchor half of each slice predicts the scales and means of the other half) is trained for
  N steps on the latents of random training patches, and the bits it saves on the validation tiles are reported.
  With frozen latents this is a lower bound on what joint training would give, and a cheap one: a spatial
  context costs a second pass per slice in the codec, so it should first show that the latents have spatial
  redundancy left that the hyperprior does not already model.
* **Decoder-side reconstruction offsets** (`--offsets N`). Within a quantisation bin the latents are not
  uniform: they crowd towards the mean, so E[y | symbol] lies nearer the mean than the symbol does. A decoder
  that added that expected offset (one per scale index and symbol, fitted on N batches of 8 training patches)
  would spend no more bits; the BD-rate against the plain decoder says whether g_s, trained on the rounded
  latents as they are, gains from it.
* **Encoder-side rounding** (`--deadzone THETA...`). The encoder alone picks the symbols, so rounding y - mu
  towards zero would cost the format nothing; the BD-rate of each offset's curve against plain rounding says
  whether the trade of bits for error pays.

    python benchmarks/model_limits.py runs/ctx_lr/last.pth --spatial-steps 1000 --out benchmarks/results/model_limits
    python benchmarks/model_limits.py runs/snapshots/step20500.pth runs/ctx_lr/last.pth   # a trend, no probe
    python benchmarks/model_limits.py checkpoints/warm_start_baseline.pth --offsets 12 --out benchmarks/results/reconstruction_offsets
"""

from __future__ import annotations

import argparse
import json
import math
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

from trainer.checkpoint import load_model, training_totals  # noqa: E402
from trainer.data import PatchSampler, build_datasets, validation_tiles  # noqa: E402
from trainer.models.codec import gaussian_likelihood, scale_table  # noqa: E402
from trainer.models.layers import conv  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sar"


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return -10 * math.log10(float(((x_hat.clamp(0, 1) - x) ** 2).mean()))


@torch.no_grad()
def level_limits(model, x: torch.Tensor) -> list[dict]:
    rows = []
    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    for lv in range(model.levels):
        c = model.code(x, torch.full((x.shape[0],), float(lv)))
        bits_y = -torch.log2(c["likelihoods"])
        bits = float(bits_y.sum() - torch.log2(c["z_likelihoods"]).sum()) / pixels
        per_channel = np.sort(bits_y.sum((0, 2, 3)).numpy())[::-1]
        cum = np.cumsum(per_channel) / per_channel.sum()
        rows.append({"level": lv, "bpp": bits,
                     "psnr": _psnr(model.g_s(c["y_hat"] * c["inverse_gain"]), x),
                     "ceiling_psnr": _psnr(model.g_s(c["y"] * c["inverse_gain"]), x),
                     "channels_for_bits": {f"{int(f * 100)}%": int((cum < f).sum()) + 1 for f in (0.5, 0.9, 0.99)}})
    return rows


def deadzone(theta: float):
    """Rounding of v towards zero: sign(v) floor(|v| + theta); theta 0.5 is plain rounding (but for ties)."""
    return lambda v: torch.sign(v) * torch.floor(v.abs() + theta)


@torch.no_grad()
def deadzone_rd(model, x: torch.Tensor, thetas) -> dict:
    """Per theta, (bpp, RMSE of the [0, 1] image) at every level when the encoder rounds y - mu with a deadzone,
    and the BD-rate of each curve against plain rounding (theta 0.5). The decoder is unchanged: only which
    symbols the encoder picks."""
    from rate_distortion import bd_rate  # noqa: PLC0415

    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    curves = {}
    for theta in sorted({0.5, *thetas}, reverse=True):
        points = []
        for lv in range(model.levels):
            c = model.code(x, torch.full((x.shape[0],), float(lv)), rounding=deadzone(theta))
            bits = float(-torch.log2(c["likelihoods"]).sum() - torch.log2(c["z_likelihoods"]).sum())
            x_hat = model.g_s(c["y_hat"] * c["inverse_gain"]).clamp(0, 1)
            points.append((bits / pixels, float(torch.sqrt(((x_hat - x) ** 2).mean()))))
        curves[theta] = points
    plain = list(zip(*curves[0.5]))
    return {f"{t:g}": {"points": p, "bd_rate_percent": bd_rate(*plain, *zip(*p))["bd_rate_percent"]}
            for t, p in curves.items()}


OFFSET_SYMBOLS = 4  # symbols beyond +-4 share the offset of +-4


def _offset_keys(c: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per latent: the index of the codec's scale table nearest its scale, and its symbol clipped to +-4."""
    table = torch.tensor(scale_table()).log()
    idx = torch.bucketize(c["scales"].clamp(min=table[0].exp()).log(), (table[1:] + table[:-1]) / 2)
    return idx, c["symbols"].clamp(-OFFSET_SYMBOLS, OFFSET_SYMBOLS).long() + OFFSET_SYMBOLS


@torch.no_grad()
def fit_offsets(model, data, batches: int, seed: int = 1, min_count: int = 50) -> torch.Tensor:
    """(levels, scale indices, 2 * 4 + 1) mean of y - y_hat per level, scale index and symbol over `batches`
    batches of 8 training patches (0 where fewer than `min_count` latents fell)."""
    sampler = PatchSampler(data.train, 256, 0.9, seed=seed)
    shape = (model.levels, len(scale_table()), 2 * OFFSET_SYMBOLS + 1)
    sums, counts = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    for _ in range(batches):
        x = sampler.sample(8)
        for lv in range(model.levels):
            c = model.code(x, torch.full((8,), float(lv)))
            idx, q = _offset_keys(c)
            key = (idx * shape[2] + q).flatten()
            sums[lv].view(-1).index_add_(0, key, (c["y"] - c["y_hat"]).double().flatten())
            counts[lv].view(-1).index_add_(0, key, torch.ones(key.numel(), dtype=torch.float64))
    return torch.where(counts >= min_count, sums / counts.clamp(min=1), torch.zeros(())).float()


@torch.no_grad()
def offsets_rd(model, data, x: torch.Tensor, batches: int) -> dict:
    """Per level, (bpp, RMSE of the [0, 1] image) with the plain decoder and with the fitted offsets added to
    its input (the same symbols, so the same bits), and the BD-rate of the second against the first."""
    from rate_distortion import bd_rate  # noqa: PLC0415

    offsets = fit_offsets(model, data, batches)
    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    plain, shifted = [], []
    for lv in range(model.levels):
        c = model.code(x, torch.full((x.shape[0],), float(lv)))
        bits = float(-torch.log2(c["likelihoods"]).sum() - torch.log2(c["z_likelihoods"]).sum()) / pixels
        idx, q = _offset_keys(c)
        for y_hat, points in ((c["y_hat"], plain), (c["y_hat"] + offsets[lv][idx, q], shifted)):
            x_hat = model.g_s(y_hat * c["inverse_gain"]).clamp(0, 1)
            points.append((bits, float(torch.sqrt(((x_hat - x) ** 2).mean()))))
    mean_offset = [[float(v) for v in offsets[lv].mean(0)] for lv in range(model.levels)]
    return {"batches": batches, "patches": 8 * batches, "plain": plain, "offsets": shifted,
            "mean_offset_by_symbol": mean_offset,
            "bd_rate_percent": bd_rate(*zip(*plain), *zip(*shifted))["bd_rate_percent"]}


class CheckerboardContext(nn.Module):
    """Per slice: anchors (checkerboard 'black' positions) -> corrections to the other half's scales and means."""

    def __init__(self, slices: int, width: int, hidden: int = 64):
        super().__init__()

        def net():
            n = nn.Sequential(conv(width, hidden, 5), nn.ReLU(), conv(hidden, width, 3))
            nn.init.zeros_(n[-1].weight)
            nn.init.zeros_(n[-1].bias)
            return n

        self.slices, self.width = slices, width
        self.scale = nn.ModuleList(net() for _ in range(slices))
        self.mean = nn.ModuleList(net() for _ in range(slices))

    def bits(self, c: dict, noisy: bool) -> torch.Tensor:
        y, scales, means = c["y"], c["scales"], c["means"]
        anchor = torch.zeros(y.shape[-2:])
        anchor[0::2, 0::2] = anchor[1::2, 1::2] = 1
        total = y.new_zeros(())
        for s in range(self.slices):
            part = slice(s * self.width, (s + 1) * self.width)
            ys, sc, mu = y[:, part], scales[:, part], means[:, part]
            symbols = torch.round(ys - mu)
            sc = sc + self.scale[s](symbols * anchor) * (1 - anchor)
            mu = mu + self.mean[s](((symbols + mu) * anchor)) * (1 - anchor)
            v = ys - mu
            v = v + torch.empty_like(v).uniform_(-0.5, 0.5) if noisy else torch.round(v)
            total = total - torch.log2(gaussian_likelihood(v, sc)).sum()
        return total


def spatial_probe(model, data, x_val: torch.Tensor, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    sampler = PatchSampler(data.train, 256, 0.9, seed=seed)
    ctx = CheckerboardContext(model.context_slices, model.latent_channels // model.context_slices)
    opt = torch.optim.Adam(ctx.parameters(), 1e-3)
    val = [model.code(x_val, torch.full((x_val.shape[0],), float(lv))) for lv in range(model.levels)]
    pixels = x_val.shape[0] * x_val.shape[-2] * x_val.shape[-1]

    def bpp_y() -> list[float]:
        with torch.no_grad():
            return [float(ctx.bits(c, noisy=False)) / pixels for c in val]

    before, curve, t0 = bpp_y(), [], time.monotonic()
    for step in range(1, steps + 1):
        x = sampler.sample(8)
        c = model.code(x, sampler.sample_levels(8, model.levels))
        loss = ctx.bits(c, noisy=True) / x.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps:
            after = bpp_y()
            curve.append({"step": step, "bpp_y": after,
                          "saving_percent": [100 * (1 - a / b) for a, b in zip(after, before)]})
            print(f"spatial probe step {step} ({time.monotonic() - t0:.0f} s): bits saved per level "
                  + " ".join(f"{p:+.2f}%" for p in curve[-1]["saving_percent"]), flush=True)
    return {"steps": steps, "patches": 8 * steps, "bpp_y_before": before, "curve": curve}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+", help="one or more (a trend); the probe runs on the first")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--spatial-steps", type=int, default=0, help="train the spatial context probe this long")
    ap.add_argument("--offsets", type=int, default=0, metavar="N",
                    help="fit decoder-side reconstruction offsets on N batches of 8 training patches and measure them")
    ap.add_argument("--deadzone", type=float, nargs="*", default=[],
                    help="also measure encoder-side deadzone rounding with these offsets (0.5 = plain rounding)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write model_limits.json and .md here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    result = {"name": "model_limits", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "models": []}
    lines = ["# What bounds the codec model: transform ceiling, latent channels in use, spatial redundancy", "",
             "Validation tiles of 256 px (the training split's validation scenes, never trained on). PSNR on the "
             "[0, 1] dB image; bpp estimated from the likelihoods. Ceiling: g_s of the unquantised latents.", ""]
    data = split = None
    for i, path in enumerate(a.checkpoints):
        model, ckpt = load_model(path)
        cfg = ckpt["config"]
        if split != (cfg.get("val_fraction", 0.2), cfg.get("split_seed", 0)):
            split = (cfg.get("val_fraction", 0.2), cfg.get("split_seed", 0))
            data = build_datasets(a.data, val_fraction=split[0], seed=split[1])
            x_val = torch.cat([t for t, _ in validation_tiles(data.val, 256, 4) if t.shape[-2:] == (256, 256)])
        totals = training_totals(ckpt)
        entry = {"checkpoint": str(path), "model_config": ckpt["model_config"], **totals,
                 "validation_tiles": int(x_val.shape[0]), "levels": level_limits(model, x_val)}
        result["models"].append(entry)
        lines += [f"## `{path}`: {totals['steps_total']:,} steps, {totals['patches_seen_total']:,} patches, "
                  f"M = {model.latent_channels}, {model.context_slices} slice(s); {x_val.shape[0]} tiles", "",
                  "| level | bpp | PSNR | ceiling PSNR | gap | channels for 50 / 90 / 99% of bits |",
                  "|---:|---:|---:|---:|---:|---|"]
        for r in entry["levels"]:
            ch = r["channels_for_bits"]
            lines.append(f"| {r['level']} | {r['bpp']:.3f} | {r['psnr']:.2f} | {r['ceiling_psnr']:.2f} | "
                         f"{r['ceiling_psnr'] - r['psnr']:.2f} | {ch['50%']} / {ch['90%']} / {ch['99%']} "
                         f"of {model.latent_channels} |")
        lines.append("")
        print("\n".join(lines[-10:]), flush=True)
        if a.deadzone:
            entry["deadzone"] = dz = deadzone_rd(model, x_val, a.deadzone)
            lines += ["Encoder-side deadzone rounding (symbol = sign(v) floor(|v| + theta)), BD-rate against plain "
                      "rounding: " + ", ".join(f"theta {t}: {r['bd_rate_percent']:+.2f}%"
                                               for t, r in dz.items() if t != "0.5") + ".", ""]
            print(lines[-2], flush=True)
        if a.offsets:
            entry["offsets"] = off = offsets_rd(model, data, x_val, a.offsets)
            lines += [f"Decoder-side reconstruction offsets (E[y - y_hat | scale index, symbol], fitted on "
                      f"{off['patches']:,} training patches; the same bits): BD-rate against the plain decoder "
                      + ("n/a (the curves do not overlap)" if off["bd_rate_percent"] is None
                         else f"{off['bd_rate_percent']:+.2f}%") + "; PSNR per level "
                      + ", ".join(f"{-20 * math.log10(p[1]):.2f} -> {-20 * math.log10(o[1]):.2f}"
                                  for p, o in zip(off["plain"], off["offsets"])) + ".", ""]
            print(lines[-2], flush=True)
        if a.spatial_steps and i == 0:
            entry["spatial_probe"] = probe = spatial_probe(model, data, x_val, a.spatial_steps)
            lines += [f"Checkerboard spatial context on this frozen model, trained {probe['steps']:,} steps "
                      f"({probe['patches']:,} patches): bits of y saved per level "
                      + ", ".join(f"{p:+.2f}%" for p in probe["curve"][-1]["saving_percent"]) + ".", ""]
            print(lines[-2], flush=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        publish_files({a.out / "model_limits.json": json.dumps(result, indent=1),
                       a.out / "model_limits.md": "\n".join(lines)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
