"""`sar-export CHECKPOINT OUTDIR`: a trained checkpoint -> verified model bundle."""

from __future__ import annotations

from sar_compress_plugin import cli

try:  # a Ctrl-C or SIGTERM while torch and onnx load (seconds) is one line, as in the export (cli.entry_point)
    with cli.SigtermWhileStarting():
        import argparse
        import json
        import logging
        import os
        import sys
        from pathlib import Path

        import numpy as np

        from export.onnx_export import ExportError, check_out_dir, export_bundle
        from sar_compress_plugin.core.errors import SarCompressError
        from trainer.checkpoint import load_model, training_totals
        from trainer.config import TrainConfig
        from trainer.reporting import configure_cli_logging, new_folders_removed_on_failure
except KeyboardInterrupt:
    cli.stop_while_starting()

log = logging.getLogger(__name__)


def calibration_tiles(paths: list[Path], tile: int, max_tiles: int, domain: str) -> np.ndarray:
    """Non-overlapping normalised tiles from real scenes, normalised exactly as training and the codec do; files
    no MANIFEST.json lists are read in `domain` (`run_domain`)."""
    from trainer.data import normalise_plane, read_collection

    tiles: list[np.ndarray] = []
    for path in paths:
        for _, planes in read_collection(path, domain):
            for raw in planes:
                x = normalise_plane(raw).x.numpy()
                h, w = x.shape
                size = min(tile, h // 16 * 16, w // 16 * 16)
                for r in range(0, h - size + 1, size):
                    for c in range(0, w - size + 1, size):
                        if size == tile:
                            tiles.append(x[r:r + size, c:c + size])
    if not tiles:
        raise SarCompressError(f"no {tile}x{tile} calibration tiles could be cut from {', '.join(map(str, paths))}")
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(tiles))[:max_tiles]
    return np.stack([tiles[i] for i in sorted(pick)])[:, None]


def run_domain(config: dict | None) -> str:
    """The value domain a training run read the files its data's MANIFEST.json does not list in (its --domain,
    from the config a checkpoint or a bundle's manifest records), so calibration reads them as it did: a folder
    of dB chips trained with --domain sigma0_db, read as linear intensity, had its negative dB values thrown out
    as invalid (bands skipped, the others' tiles mostly noise floor)."""
    return (config or {}).get("domain") or TrainConfig.domain


def _default_calibration_paths(ckpt: dict) -> list[Path]:
    summary = ckpt.get("data_summary", {})
    root = Path(summary.get("data", ""))
    folder = root.parent if root.suffix else root
    return [folder / name for name in summary.get("val_scenes", []) if (folder / name).is_file()]


def check_numbers(args: argparse.Namespace) -> None:
    """--halo 20 wrote a bundle that the codec then refused to load (its halo must be a multiple of 16); --halo
    -16 and --max-tiles 0 ended the export in a traceback after the model and the scenes had loaded."""
    if args.halo < 0 or args.halo % 16:
        raise ExportError(f"--halo must be a multiple of 16 and >= 0 (the codec's latent grid), got {args.halo}")
    if args.tile < 64 or args.tile % 64:
        raise ExportError(f"--tile must be a positive multiple of 64 (the hyperprior's grid), got {args.tile}")
    if args.max_tiles < 1:
        raise ExportError(f"--max-tiles must be >= 1, got {args.max_tiles}")


@cli.entry_point()
def main(argv: list[str] | None, signals) -> int:
    parser = argparse.ArgumentParser(prog="sar-export", description=__doc__,
                                     formatter_class=cli.HelpFormatter)
    parser.add_argument("checkpoint",
                        help="a sar-train checkpoint file (a run folder's best.pth or last.pth)")
    parser.add_argument("outdir",
                        help="bundle folder to write: a new one, or an earlier bundle to replace")
    parser.add_argument("--name", help="model name recorded in the bundle (default: variant + checkpoint folder)")
    parser.add_argument("--calibration", nargs="+",
                        help="real rasters for quantiser calibration and the parity check, in the value domain "
                             "the run trained with unless a MANIFEST.json beside them names theirs "
                             "(default: the checkpoint's validation scenes)")
    parser.add_argument("--tile", type=int, default=256, help="calibration tile size (multiple of 64)")
    parser.add_argument("--max-tiles", type=int, default=32, help="calibration tiles used at most")
    parser.add_argument("--halo", type=int, default=32,
                        help="context pixels the codec adds around each tile (multiple of 16). The GDN transforms reach "
                             "about 30 px: with the first variable-rate model, halos 32 and 64 gave identical "
                             "reconstructions and no seams at 128-px tiles (benchmarks/seams.py)")
    parser.add_argument("--default-quality", type=float, default=None,
                        help="the quality the codec uses when the user gives none [middle of the trained levels]")
    parser.add_argument("--fp16", action="store_true", help="also write float16 copies for GPU inference")
    args = parser.parse_args(argv)
    given = [("checkpoint", args.checkpoint), ("outdir", args.outdir),
             *(("--calibration", path) for path in args.calibration or [])]
    args.checkpoint, args.outdir = Path(args.checkpoint), Path(args.outdir)
    args.calibration = [Path(path) for path in args.calibration] if args.calibration else None
    signals.watch(str(args.outdir))  # the bundle is published by one rename: a signal after it says so
    configure_cli_logging("%(message)s")
    try:
        with new_folders_removed_on_failure(Path(os.path.abspath(args.outdir)).parent):
            # "" is the current folder to Path: `sar-export CKPT "$OUT"` with OUT unset, in an empty folder,
            # replaced that folder (the shell's current one) with the bundle
            cli._given(*given)
            check_numbers(args)
            check_out_dir(args.outdir, args.checkpoint)  # seconds of work would otherwise end in a traceback
            model, ckpt = load_model(args.checkpoint)
            paths = args.calibration or _default_calibration_paths(ckpt)
            if not paths:
                raise SarCompressError(f"{args.checkpoint}: no validation scenes found on disk; "
                                       f"pass --calibration FILE")
            tiles = calibration_tiles(paths, args.tile, args.max_tiles, run_domain(ckpt.get("config")))
            history = ckpt.get("history") or []
            # the validation of the weights being exported: the epoch that ended at the checkpoint's step (a
            # best.pth or a last.pth alike), not the best epoch of its history, which may be other weights
            own = next((h for h in reversed(history) if h.get("step") == ckpt.get("step")), {})
            variant = ckpt["model_name"]
            # the folder's name from the absolute path: `sar-export ./best.pth` in the run folder named the
            # bundle "baseline-" (the relative path's parent is "."), `../best.pth` "baseline-.."
            folder = Path(os.path.abspath(args.checkpoint)).parent.name
            manifest = export_bundle(
                model, args.outdir, name=args.name or f"{variant}-{folder}",
                variant=variant,
                preprocessing=ckpt["preprocessing_params"], calibration_tiles=tiles, halo=args.halo,
                training={"data_summary": ckpt.get("data_summary", {}), "epochs": ckpt.get("epoch"),
                          "steps": ckpt.get("step"), **training_totals(ckpt),
                          "config": ckpt.get("config", {}),
                          "parameters": model.count_parameters()},
                validation={k: own[k] for k in ("val_loss", "val_psnr", "val_ssim", "val_bpp", "val_levels",
                                                "epoch", "step") if k in own},
                default_quality=args.default_quality, float16=args.fp16,
            )
    except (SarCompressError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {"bundle": str(args.outdir), "files": manifest["files"], "parity": manifest["parity"],
               # how close the integer h_s the codec runs is to the trained float one
               "hyperprior_integer_vs_float": manifest["hyperprior"]["integer_vs_float"]}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
