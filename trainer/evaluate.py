"""`sar-eval`: compare checkpoints on their run's validation scenes, whole scenes at a time.

Every figure comes from core.metrics (the project's only implementation). PSNR and SSIM are on the
normalised dB image and depend on each band's clip bounds, which are reported beside them; dB RMSE, ENL ratio
(on linear intensity, 10^(dB/10)) and EPI do not depend on normalisation. This evaluates the PyTorch model
in float32 with rounded latents, at every trained quality level, with the rate its entropy model estimates;
evaluation through the ONNX codec (`--bundle`) counts the bits of real files.
"""

from __future__ import annotations

from sar_compress_plugin import cli

try:  # a Ctrl-C or SIGTERM while torch loads (seconds) is one line, as in the evaluation (cli.entry_point)
    with cli.SigtermWhileStarting():
        import argparse
        import functools
        import logging
        import re
        import sys
        from pathlib import Path
        from typing import Callable

        import numpy as np
        import torch
        import torch.nn.functional as F

        from sar_compress_plugin.core.evaluation import aggregate as aggregate_bands
        from sar_compress_plugin.core.evaluation import db_quality
        from sar_compress_plugin.core.errors import SarCompressError
        from sar_compress_plugin.core.preprocessing import denormalise, normalise, percentile_bounds
        from sar_compress_plugin.core.raster_io import writable_folder
        from sar_compress_plugin.core.runtime import load_manifest
        from trainer.checkpoint import load_model, totals_text, training_totals
        from trainer.data import RawPlane, build_datasets
        from trainer.distributed import check_cuda_index
        from trainer.reporting import (configure_cli_logging, new_folders_removed_on_failure, publish_files,
                                       strict_json)
except KeyboardInterrupt:
    cli.stop_while_starting()

log = logging.getLogger(__name__)

#: What a run writes, published by renames, so a signal's line can say whether they were written (cli._Signals)
RESULT_FILES = ("results.json", "results.md", "codec_results.json", "codec_results.md")

Reconstruct = Callable[[np.ndarray], np.ndarray]


def torch_reconstructor(model: torch.nn.Module, level: float, device: torch.device | str = "cpu",
                        bits: list | None = None) -> Reconstruct:
    """[0,1] plane -> reconstruction at quality `level`, whole plane at once, reflect-padded to a multiple of
    64 (the hyperprior's grid); with `bits`, the estimated bits of each plane are appended to it.

    Validation scenes here are at most ~700 px, so no tiling is needed; the codec's tiled path is evaluated
    separately through ONNX.
    """
    model = model.to(device).eval()
    f = model.downsampling_factor * model.hyper_factor

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        h, w = x.shape
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None].to(device)
        ph, pw = (-h) % f, (-w) % f
        if ph or pw:
            t = F.pad(t, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        out = model(t, torch.full((1,), float(level), device=device))
        if bits is not None:
            bits.append(sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values()))
        return out["x_hat"][0, 0, :h, :w].clamp(0, 1).float().cpu().numpy()

    return run


def plane_metrics(raw: RawPlane, x_hat: np.ndarray, lo: float, hi: float) -> dict:
    """All figures for one band (core.evaluation, the same code the demo and the benchmarks use)."""
    out = db_quality(raw.db, denormalise(x_hat, lo, hi), raw.valid, (lo, hi))
    if out["db_rmse_out_of_range"] is None:
        out["db_rmse_out_of_range"] = float("nan")
    out["out_of_range_fraction"] = out["out_of_range_pixels"] / max(out["valid_pixels"], 1)
    return out


def evaluate_planes(reconstruct: Reconstruct, planes: list[RawPlane]) -> dict:
    """Per scene/band figures (with their clip bounds) and the pixel-weighted mean over planes."""
    per_plane = []
    for raw in planes:
        lo, hi = percentile_bounds(raw.db, raw.valid)
        x_hat = reconstruct(normalise(raw.db, lo, hi))
        per_plane.append({"scene": raw.scene, "band": raw.band, "shape": list(raw.db.shape),
                          "clip_db": [lo, hi], **plane_metrics(raw, x_hat, lo, hi)})
    aggregate = aggregate_bands(per_plane)  # pixel-weighted, exactly as for the codec path
    aggregate["planes"] = len(per_plane)
    aggregate["pixels"] = int(sum(p["shape"][0] * p["shape"][1] for p in per_plane))
    return {"per_plane": per_plane, "aggregate": aggregate}


def save_panel(raw: RawPlane, x_hat: np.ndarray, lo: float, hi: float, title: str, path: Path) -> None:
    """original | reconstruction | |difference| in dB, for a quick visual check; a PNG whatever `path`'s suffix
    (publish_files draws it under a partial name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    orig = np.clip(raw.db, lo, hi)
    rec = denormalise(x_hat, lo, hi)
    diff = np.abs(rec - raw.db)
    diff[~raw.valid] = np.nan
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    for ax, img, name, kw in ((axes[0], orig, "original (dB)", {"vmin": lo, "vmax": hi, "cmap": "gray"}),
                              (axes[1], rec, "reconstruction (dB)", {"vmin": lo, "vmax": hi, "cmap": "gray"}),
                              (axes[2], diff, "|difference| (dB)", {"vmin": 0, "vmax": max(1.0, float(np.nanpercentile(diff, 99))), "cmap": "magma"})):
        im = ax.imshow(img, **kw)
        ax.set_title(name)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)


def _fmt(value, spec: str) -> str:
    """A figure for a table cell; undefined metrics (e.g. EPI of a constant reconstruction) show as n/a."""
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def _seen(r: dict) -> str:
    """Steps and patches the weights saw in all, for a table cell: the project's figures all say both, and a
    table of steps alone cannot tell a batch-32 GPU leg from a batch-4 CPU one."""
    seen = (r.get("steps_total", r.get("step")), r.get("patches_seen_total"))
    return " / ".join("?" if v is None else f"{v:,}" for v in seen)


def markdown_table(results: dict) -> str:
    lines = ["| Model | Steps / patches (in all) | Level | bpp (estimated) | PSNR (dB) | SSIM | dB RMSE "
             "| ENL ratio | EPI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        for lv in r["levels"]:
            a = lv["aggregate"]
            cells = [_fmt(a[k], s) for k, s in (("bpp_estimated", ".3f"), ("psnr", ".2f"), ("ssim", ".4f"),
                                                 ("db_rmse", ".3f"), ("enl_ratio", ".3f"), ("epi", ".3f"))]
            lines.append(f"| {label} | {_seen(r)} | {lv['level']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("PyTorch, rounded latents, whole validation scenes; bpp estimated from the entropy model's "
                 "likelihoods (the codec's files add headers and masks); PSNR/SSIM on the normalised dB image, "
                 "per-band 0.5-99.5 percentile clip bounds (listed per plane in the JSON).")
    cut = {label: (r["levels"][0]["aggregate"]["planes"], r["val_planes_total"]) for label, r in results.items()
           if r["levels"][0]["aggregate"]["planes"] < r["val_planes_total"]}
    if cut:  # the first planes' figures, not the validation set's, and not comparable with a whole evaluation
        lines += ["", "**Only some validation planes** (--max-planes): "
                  + "; ".join(f"{label}: the first {used} of {total}" for label, (used, total) in cut.items())]
    return "\n".join(lines) + "\n"


def _label(path: Path, variant: str, taken: set[str]) -> str:
    label = variant if variant not in taken else f"{variant} ({path.parent.name}/{path.name})"
    taken.add(label)
    return label


def evaluate_checkpoints(paths: list[str | Path], out: str | Path, data: str | None = None,
                         device: str = "cpu", max_planes: int | None = None) -> dict:
    """Evaluate each checkpoint on its own run's validation split; write results.json, results.md, PNGs.

    Nothing is written until every checkpoint has been evaluated, so one that cannot be read leaves `out` as
    it was rather than with the panels of the checkpoints before it."""
    out = Path(out)
    results: dict[str, dict] = {}
    panels: dict[Path, Callable[[Path], None]] = {}  # path -> its drawing, for publish_files
    cache: dict[tuple, list[RawPlane]] = {}
    taken: set[str] = set()
    for path in map(Path, paths):
        model, ckpt = load_model(path, map_location="cpu")
        cfg = ckpt["config"]
        split_seed = cfg.get("split_seed", cfg.get("seed", 0))  # runs older than split_seed split by seed
        source = data or cfg.get("data")
        if not source:  # build_datasets(None) was a TypeError traceback; "" would have scanned the current folder
            raise SarCompressError(f"{path}: the checkpoint does not name its training data; pass --data")
        key = (source, cfg.get("domain", "intensity"), cfg.get("val_fraction", 0.2),
               split_seed, cfg.get("data_fraction", 1.0))
        if key not in cache:
            try:
                ds = build_datasets(key[0], default_domain=key[1], val_fraction=key[2], seed=key[3],
                                    data_fraction=key[4])
            except SarCompressError as exc:
                if data:
                    raise
                raise SarCompressError(f"{path}: its training data: {exc} (pass --data if it moved)") from None
            cache[key] = ds.val_raw
        planes = cache[key][:max_planes]
        label = _label(path, ckpt["model_name"], taken)
        levels = []
        for level in range(model.levels):
            bits: list[float] = []
            res = evaluate_planes(torch_reconstructor(model, level, device, bits), planes)
            res["aggregate"]["bpp_estimated"] = sum(bits) / res["aggregate"]["pixels"]
            levels.append({"level": level, "lambda": model.config["lambdas"][level], **res})
            log.info("%s level %d: %.3f bpp (estimated), PSNR %.2f dB, dB RMSE %.3f on %d planes", label, level,
                     res["aggregate"]["bpp_estimated"], res["aggregate"]["psnr"], res["aggregate"]["db_rmse"],
                     res["aggregate"]["planes"])
        results[label] = {"variant": ckpt["model_name"], "checkpoint": str(path), "params": model.count_parameters(),
                          "model_config": model.config, "epoch": ckpt["epoch"], "step": ckpt["step"],
                          "patches_seen": ckpt["data_summary"].get("patches_seen"), **training_totals(ckpt),
                          "data_summary": ckpt["data_summary"], "val_planes_total": len(cache[key]),
                          "levels": levels}
        first = planes[0]
        lo, hi = percentile_bounds(first.db, first.valid)
        mid = model.levels // 2
        x_hat = torch_reconstructor(model, mid, device)(normalise(first.db, lo, hi))
        title = f"{label}: {totals_text(ckpt)}\nlevel {mid}: {first.name}, clip [{lo:.1f}, {hi:.1f}] dB"
        panels[out / f"panel_{label.split()[0]}_{len(results)}.png"] = functools.partial(
            save_panel, first, x_hat, lo, hi, title)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"name": "sar-eval", "description": "PyTorch checkpoints on their validation scenes (whole scenes, "
           "rounded latents, every quality level, per-band percentile normalisation); metrics from "
           "sar_compress_plugin.core.metrics",
           "results": results}
    # the panels renamed into place with the tables, once all are whole: a full disk at the table left the new
    # panels, and none of the earlier ones, beside the earlier results.json
    publish_files({**panels, out / "results.json": strict_json(doc), out / "results.md": markdown_table(results)})
    for stale in set(out.glob("panel_*.png")) - set(panels):
        stale.unlink()  # an earlier evaluation's, of a checkpoint results.json no longer lists
    return doc


def codec_markdown_table(results: dict) -> str:
    lines = ["| Model | Params | Steps / patches (in all) | Quality | bpp (file) | PSNR (dB) | SSIM "
             "| dB RMSE | ENL ratio | EPI |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        a = r["aggregate"]
        params = r["params"].get("total")
        params_s = f"{params / 1e6:.2f}M" if params else "?"
        cells = [_fmt(a[k], s) for k, s in (("bpp_per_band", ".3f"), ("psnr", ".2f"), ("ssim", ".4f"),
                                             ("db_rmse", ".3f"), ("enl_ratio", ".3f"), ("epi", ".3f"))]
        lines.append(f"| {label} | {params_s} | {_seen(r)} | {r['quality']} | " + " | ".join(cells) + " |")
    others = {label: [f"{f['scene']} ({f['split']})" for f in r["files"] if f["split"] != "validation"]
              for label, r in results.items()}
    others = {label: scenes for label, scenes in others.items() if scenes}
    lines.append("")
    lines.append("Through the codec: range-coded latents, file on disk; bpp = 8 x file bytes / band pixels; "
                 f"pixel-weighted means over the {'' if others else 'validation '}scene-bands; PSNR/SSIM on the "
                 "normalised dB image with each band's 0.5-99.5 percentile clip bounds (per band in the JSON).")
    if others:  # a scene the model trained on flatters it
        lines += ["", "**Not validation scenes** of the model's training run: "
                  + "; ".join(f"{label}: {', '.join(scenes)}" for label, scenes in others.items())]
    return "\n".join(lines) + "\n"


def evaluate_bundles(bundles: list[str], out: str | Path, scenes: list[str] | None = None, data: str | None = None,
                     quality: float | None = None, device: str = "cpu") -> dict:
    from trainer.codec_eval import evaluate_bundle

    out = Path(out)
    results, taken = {}, set()
    for bundle in bundles:
        res = evaluate_bundle(bundle, scenes, data, quality, device=device)
        results[_label(Path(bundle), res["variant"] or "model", taken)] = res
    out.mkdir(parents=True, exist_ok=True)
    doc = {"name": "sar-eval --bundle", "description": "model bundles through the real codec on their validation "
           "scenes; metrics from sar_compress_plugin.core.evaluation", "results": results}
    publish_files({out / "codec_results.json": strict_json(doc),
                   out / "codec_results.md": codec_markdown_table(results)})
    return doc


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before the work starts: a wrong --device, --out, --bundle or --scenes
    would otherwise end a long evaluation with a traceback. --max-planes 0 evaluated every plane and -1 all but
    the last."""
    if args.max_planes is not None and args.max_planes < 1:
        raise SarCompressError(f"--max-planes must be >= 1, got {args.max_planes}")
    if args.checkpoints:
        check_torch_device(args.device)
    for bundle in args.bundle:
        load_manifest(bundle, verify=False)
    paths = [s for s in args.scenes or [] if Path(s).name != s]
    if paths:
        raise SarCompressError(f"--scenes takes scene file names under the data location, not paths: "
                               f"{paths[0]}")
    if args.bundle:
        from trainer.codec_eval import scene_files  # noqa: PLC0415 (onnxruntime only with --bundle)

        for bundle in args.bundle:
            scene_files(bundle, args.scenes, args.data)
    writable_folder(args.out)


def check_torch_device(name: str) -> None:
    """The device of the PyTorch path (the codec path checks its own): torch meets a typo or a CPU-only build
    with a traceback, after the data has loaded."""
    if name not in ("cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise SarCompressError(f"--device must be cpu or cuda, got {name!r}")
    if name != "cpu" and not torch.cuda.is_available():
        raise SarCompressError(f"--device {name}: this torch has no CUDA device")
    check_cuda_index(torch.device(name))


@cli.entry_point()
def main(argv: list[str] | None, signals) -> int:
    p = argparse.ArgumentParser(prog="sar-eval", description=__doc__,
                                formatter_class=cli.HelpFormatter)
    p.add_argument("checkpoints", nargs="*", help="checkpoint files (best.pth of each run)")
    p.add_argument("--bundle", nargs="+", default=[], help="exported model bundles: evaluate through the real codec")
    p.add_argument("--scenes", nargs="+", default=None,
                   help="with --bundle: names of scene files under the data location (--data or the bundle's "
                        "training data), e.g. s1_iw_grd_berlin_512.tif, to use instead of its validation scenes")
    p.add_argument("--quality", type=float, default=None,
                   help="with --bundle: codec quality (0 to the model's top level) [the bundle's default]")
    p.add_argument("--out", default="runs/eval", help="folder for results.json, results.md and panels (with "
                   "--bundle: codec_results.json and codec_results.md)")
    p.add_argument("--data", default=None, help="data location if it moved since training (same split rule)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--max-planes", type=int, default=None,
                   help="checkpoints: evaluate only the first N validation planes (the table says so)")
    args = p.parse_args(argv)
    if not args.checkpoints and not args.bundle:
        p.error("give checkpoints and/or --bundle folders")
    signals.watch(*(str(Path(args.out) / name) for name in RESULT_FILES))
    configure_cli_logging()
    try:
        with new_folders_removed_on_failure(Path(args.out)):
            cli._given(("--out", args.out), ("--data", args.data))  # "": the current folder, to Path
            check_arguments(args)
            if args.checkpoints:
                doc = evaluate_checkpoints(args.checkpoints, args.out, args.data, args.device, args.max_planes)
                print(markdown_table(doc["results"]), end="")
            if args.bundle:
                doc = evaluate_bundles(args.bundle, args.out, args.scenes, args.data, args.quality, args.device)
                print(codec_markdown_table(doc["results"]), end="")
    except SarCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
