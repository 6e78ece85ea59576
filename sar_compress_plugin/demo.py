"""`sar-demo`: the bundled sample scene, compressed and reconstructed with the bundled model, with its figures.

The sample is a real Sentinel-1 IW GRD scene (Frankfurt, VV+VH, linear intensity) that the default model
never saw in training (it is one of the trainer's validation scenes), so the figures printed are honest
held-out figures, measured from the file written to disk.
"""

from __future__ import annotations

from . import cli

try:
    import argparse
    import json
    import math
    import sys
    from pathlib import Path
except KeyboardInterrupt:
    cli.stop_while_starting()

SAMPLE = Path(__file__).resolve().parent / "sample_data" / "s1_iw_grd_frankfurt_512.tif"


def _outputs(input_path: Path, out_dir: Path) -> tuple[Path, Path]:
    """The demo's .sarc and reconstruction of `input_path`."""
    return out_dir / (input_path.stem + ".sarc"), out_dir / (input_path.stem + "_reconstructed.tif")


def run_demo(input_path: Path, out_dir: Path, model_dir: Path | None = None, device: str = "auto") -> dict:
    # here, inside main's signal handling (cli.entry_point): a Ctrl-C while numpy or GDAL load is one line,
    # even one they turn into an ImportError
    from .core.codec import CompressOptions, compress, reconstruct  # noqa: PLC0415
    from .core.evaluation import aggregate, raster_quality  # noqa: PLC0415
    from .core.raster_io import writable_folder  # noqa: PLC0415
    from .core.runtime import default_model_dir, load_manifest  # noqa: PLC0415

    writable_folder(out_dir)  # a --out that is a file or cannot be made: one error line, not a traceback
    compressed, restored = _outputs(input_path, out_dir)
    c = compress(input_path, compressed, CompressOptions(model_dir=model_dir, device=device))
    r = reconstruct(compressed, restored, model_dirs=[model_dir] if model_dir else None, device=device)
    rows = [_finite_or_none(row) for row in raster_quality(input_path, restored, c.domain, c.clip_db)]
    manifest = load_manifest(model_dir or default_model_dir(), verify=False)
    training = manifest.get("training") or {}
    model = {"name": manifest.get("name"), "path": str(model_dir or default_model_dir()),
             "steps": training.get("steps_total"), "patches": training.get("patches_seen_total")}
    return {"input": str(input_path), "compressed": str(compressed), "reconstruction": str(restored),
            "model": model, "quality": c.quality, "domain": c.domain, "input_bytes": c.input_raw_bytes, "compressed_bytes": c.output_bytes,
            "bpp": c.bpp, "bpp_per_band": c.bpp_per_band, "ratio": c.ratio, "provider": c.provider,
            "compress_seconds": c.seconds, "reconstruct_seconds": r.seconds, "bands": rows,
            "overall": _finite_or_none(aggregate(rows))}


def _finite_or_none(row: dict) -> dict:
    """A metric a band cannot have (the ENL ratio or EPI of a constant or 1 x 1 raster) as None: printed as n/a,
    and null in --json, which wrote NaN, which strict JSON readers refuse."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _model_line(model: dict) -> str:
    """The model a figure came from, with how much it was trained: a figure without them cannot be compared."""
    seen = ""
    if isinstance(model["steps"], int) and isinstance(model["patches"], int):
        seen = f" ({model['steps']:,} steps, {model['patches']:,} patches)"
    return f"{model['name']}{seen}"


def _fmt(v, spec=".3f"):
    return "n/a" if v is None else format(v, spec)


@cli.entry_point()
def main(argv, signals) -> int:
    parser = argparse.ArgumentParser(prog="sar-demo", description=__doc__,
                                     formatter_class=cli.HelpFormatter)
    parser.add_argument("--input", type=Path, default=SAMPLE, help="raster to compress")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for the outputs")
    parser.add_argument("--model", type=Path, default=None, help="model bundle (default: the bundled one)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    signals.watch(*map(str, _outputs(args.input, args.out)))

    def go(_cancelled) -> int:  # in cli._run: a SarCompressError is one "error:" line and 2, a bug one line and 3
        res = run_demo(args.input, args.out, args.model, args.device)
        if args.json:
            cli._out(json.dumps(res, indent=2))
            return 0
        lines = [
            f"input          {res['input']} ({res['domain']}, {res['input_bytes']:,} raw bytes)",
            f"compressed     {res['compressed']} ({res['compressed_bytes']:,} bytes, "
            f"{res['compress_seconds']:.2f} s, provider {res['provider']})",
            f"reconstruction {res['reconstruction']} ({res['reconstruct_seconds']:.2f} s)",
            f"model          {_model_line(res['model'])}, quality {res['quality']:g}",
            f"rate           {res['bpp']:.3f} bpp ({res['bpp_per_band']:.3f} per band), ratio {res['ratio']:.1f}:1",
            f"{'band':13} {'clip dB':>12} {'PSNR':>7} {'SSIM':>6} {'dB RMSE':>8} {'in-range':>8} {'out-range':>9} "
            f"{'ENL ratio':>9} {'EPI':>6}",
        ]
        for row in res["bands"] + [dict(res["overall"], band="all", clip_db=None)]:
            clip = "" if row["clip_db"] is None else f"{row['clip_db'][0]:.1f}..{row['clip_db'][1]:.1f}"
            lines.append(f"{row['band'][:13]:13} {clip:>12} {_fmt(row['psnr'], '.2f'):>7} {_fmt(row['ssim']):>6} "
                         f"{_fmt(row['db_rmse']):>8} {_fmt(row['db_rmse_in_range']):>8} "
                         f"{_fmt(row['db_rmse_out_of_range']):>9} {_fmt(row['enl_ratio']):>9} {_fmt(row['epi']):>6}")
        lines.append("PSNR/SSIM on the normalised dB image with each band's clip bounds; dB RMSE over valid pixels, "
                     "split inside/outside the clip range; ENL ratio on linear intensity; EPI on dB.")
        cli._out("\n".join(lines))
        return 0

    return cli._run(go, signals)


if __name__ == "__main__":
    sys.exit(main())
