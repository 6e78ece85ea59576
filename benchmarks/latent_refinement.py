"""What encoder-side latent refinement would buy: the latents optimised per image for the rate-distortion loss.

The decoder and the file format fix only what the decoder does with symbols; which symbols the encoder sends is
free. The codec's encoder rounds g_a's output (to the nearest symbol, or floor/ceil by bits + error,
core/rd_rounding.py). Refinement goes further (Campos et al. 2019, "Content adaptive optimization"; Yang et al.
2020, "Improving inference for neural image compression"): starting from g_a's output, gradient steps on
lambda * 255^2 * MSE(g_s(y_hat), x) + bits(y_hat), with the rounding passed straight through, move the latents
to a better point for *this* image. The amortisation gap g_a leaves is what it recovers.

This measures it in PyTorch on the trainer's validation tiles (never trained on), with z fixed at h_a(g_a(x)), so
that only y moves: bpp from the likelihoods (z included), RMSE of the [0, 1] dB image, and the BD-rate of the
refined curve against plain rounding, per number of steps.

    python benchmarks/latent_refinement.py runs/trunk/last.pth --steps 25 50 100 --out benchmarks/results/latent_refinement
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from trainer.checkpoint import load_model, training_totals  # noqa: E402
from trainer.data import build_datasets, validation_tiles  # noqa: E402
from trainer.models.codec import gaussian_likelihood, round_ste  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sar"


def soft_round(v: torch.Tensor, tau: float) -> torch.Tensor:
    """Stochastic Gumbel annealing (Yang et al. 2020): floor or ceil drawn with a Gumbel-softmax of temperature
    tau, the nearer one likelier; tau -> 0 is hard rounding. tau 0 passes rounding straight through."""
    if tau <= 0:
        return round_ste(v)
    f = torch.floor(v).detach()
    r = (v - f).clamp(1e-4, 1 - 1e-4)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], -1) / tau
    w = F.gumbel_softmax(logits, tau=tau, hard=False)[..., 1]
    return f + w


def coded_bits(model, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor,
               tau: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(y_hat, bits per tile) for latents y under the hyperprior's scales and means, slice by slice with the
    channel context; the rounding is soft_round's, so that both depend on y. (The model's `code_slices` detaches
    its symbols, which is what training needs and what a search through them cannot use.)"""
    n = model.context_slices
    y_hats, symbols, bits = [], [], 0
    for s, (ys, sc, mu) in enumerate(zip(y.chunk(n, 1), scales.chunk(n, 1), means.chunk(n, 1))):
        if s:
            sc = sc + model.context_scale[s - 1](torch.cat(symbols, 1))
            mu = mu + model.context_mean[s - 1](torch.cat(y_hats, 1))
        sym = soft_round(ys - mu, tau)
        # The bits' value is the rounded symbols'; their gradient is the unrounded latents', which pulls each
        # towards its mean (rounding's own gradient is zero between integers).
        exact = -torch.log2(gaussian_likelihood(sym, sc))
        smooth = -torch.log2(gaussian_likelihood(ys - mu, sc))
        bits = bits + (smooth + (exact - smooth).detach()).sum((1, 2, 3))
        symbols.append(sym)
        y_hats.append(sym + mu)
    return torch.cat(y_hats, 1), bits


def refine(model, x: torch.Tensor, level: float, steps: list[int], lr: float,
           sga: bool = False) -> dict[int, tuple[float, float]]:
    """{steps: (bpp, RMSE)} for the tiles x at `level`; step 0 is plain rounding of g_a's output. Each tile keeps
    the best latents it has reached (the loss with hard rounding is exact, so best-so-far is a real choice)."""
    lv = torch.full((x.shape[0],), float(level))
    lam = float(model.lambda_of(lv)[0])
    pixels = x.shape[-2] * x.shape[-1]
    with torch.no_grad():
        gain, inverse_gain = model.gains(lv)
        y0 = model.g_a(x) * gain
        z_hat = torch.round(model.h_a(model.pad_to_hyper_grid(y0)))
        z_bits = -torch.log2(model.prior.likelihood(z_hat)).sum((1, 2, 3))
        scales, means = model.entropy_parameters(z_hat, y0.shape[-2:])

    def evaluate(y, tau=0.0):
        y_hat, bits = coded_bits(model, y, scales, means, tau)
        x_hat = model.g_s(y_hat * inverse_gain)
        mse = ((x_hat.clamp(0, 1) - x) ** 2).mean((1, 2, 3))
        bpp = (bits + z_bits) / pixels
        return lam * 255 ** 2 * mse + bpp, bpp, mse

    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    with torch.no_grad():
        best_loss, best_bpp, best_mse = evaluate(y)
    out = {0: (float(best_bpp.mean()), math.sqrt(float(best_mse.mean())))}
    for step in range(1, max(steps) + 1):
        opt.zero_grad()
        tau = 0.5 * math.exp(-3.0 * step / max(steps)) if sga else 0.0
        loss, bpp, mse = evaluate(y, tau)
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            loss, bpp, mse = evaluate(y)
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_bpp = torch.where(better, bpp, best_bpp)
            best_mse = torch.where(better, mse, best_mse)
        if step in steps:
            out[step] = (float(best_bpp.mean()), math.sqrt(float(best_mse.mean())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--lr", type=float, default=0.05, help="Adam step on the latents, in symbol units")
    ap.add_argument("--sga", action="store_true", help="stochastic Gumbel annealing instead of straight-through")
    ap.add_argument("--tiles", type=int, default=16, help="validation tiles of 256 px used")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    from rate_distortion import bd_rate, bd_text  # noqa: PLC0415

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, ckpt = load_model(a.checkpoint)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = ckpt["config"]
    data = build_datasets(a.data, val_fraction=cfg.get("val_fraction", 0.2), seed=cfg.get("split_seed", 0))
    x = torch.cat([t for t, _ in validation_tiles(data.val, 256, 4) if t.shape[-2:] == (256, 256)])
    x = x[torch.linspace(0, x.shape[0] - 1, min(a.tiles, x.shape[0])).long()]
    t0 = time.perf_counter()
    curves: dict[int, list] = {}
    for lv in range(model.levels):
        for s, point in refine(model, x, lv, sorted(a.steps), a.lr, a.sga).items():
            curves.setdefault(s, []).append(point)
        print(f"level {lv}: " + ", ".join(f"{s} steps {b:.4f} bpp rmse {r:.5f}" for s, (b, r) in
                                          ((s, curves[s][-1]) for s in sorted(curves))), flush=True)
    plain = list(zip(*curves[0]))
    result = {"name": "latent_refinement", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "checkpoint": str(a.checkpoint), **training_totals(ckpt), "tiles": int(x.shape[0]), "lr": a.lr,
              "seconds": round(time.perf_counter() - t0, 1),
              "curves": {str(s): {"points": p, "bd_rate_percent": bd_rate(*plain, *zip(*p))["bd_rate_percent"]}
                         for s, p in curves.items()}}
    for s, r in result["curves"].items():
        print(f"{s} steps: BD-rate against plain rounding {bd_text(r['bd_rate_percent'])}")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        publish_files({a.out / "latent_refinement.json": json.dumps(result, indent=1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
