"""How many bits any codec could save against JPEG-2000 on pure speckle: the Shannon lower bound.

Why: benchmarks/speckle_share.py finds the learned codec's whole edge over JPEG-2000 in the speckle (on the
scenes' local means it is at parity), and most of a GRD scene's bits at 0.5-2 bpp go to speckle. For speckle
without spatial correlation the best possible rate has a closed-form lower bound, so the measured JPEG-2000
curve can be set against what no codec can beat:
* L-look intensity speckle is Gamma(L, 1/L); in dB, X = 10 log10(G) has differential entropy
  h(X) = ln Gamma(L) + L - L digamma(L) + ln(10 / ln 10) nats (that of ln G, scaled);
* for any codec, at dB RMSE D: R(D) >= h(X) - 0.5 log2(2 pi e D^2) bits per pixel (Shannon lower bound, for
  the squared error), and R(D) <= log2(sigma / D) (a Gaussian of the same std sigma is the hardest source): the
  two bracket the best rate any codec could reach, and here they lie within a few hundredths of a bit;
* a codec that quantises scalars and entropy-codes them (JPEG-2000, and this project's codec on its latents)
  stays above R(D) by up to 0.25 bits per sample at high rate (the space-filling loss of a cube against a
  sphere, 1.53 dB), less at low rate: a theoretical figure, not measured here;
* EPI (the correlation of the Laplacians of original and reconstruction, in dB) has a ceiling too: a codec that
  reaches R(D) for a white Gaussian source at rate R leaves an error independent of its reconstruction with
  variance sigma^2 2^(-2R), and the Laplacian, a linear filter, keeps that ratio on white content, so its EPI is
  sqrt(1 - 2^(-2R)) (0.866 at 1 bpp). The dB speckle is not Gaussian, but its R(D) lies within a few hundredths
  of a bit of the Gaussian's (above), so that is the ceiling of an MSE codec here to within about as much.
The script codes a synthetic i.i.d. speckle raster (constant backscatter, --looks looks) with JPEG-2000 and the
learned codec as rate_distortion.py does, and reports each curve's BD-rate against JPEG-2000 next to the bound's:
the most any codec could save on this content. Real GRD speckle is spatially correlated (the products are
resampled finer than their resolution), which both codecs can exploit; this bounds the uncorrelated part.

    python benchmarks/speckle_bound.py --out benchmarks/results/speckle_bound
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.special import digamma, gammaln

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jpeg2000  # noqa: E402
from rate_distortion import bd_rate, learned_point, resolve_model, versions, write_report  # noqa: E402
from sar_compress_plugin.core.preprocessing import percentile_bounds, to_db  # noqa: E402
from sar_compress_plugin.core.raster_io import GeoTiffWriter  # noqa: E402
from sar_compress_plugin.core.runtime import load_manifest  # noqa: E402


def speckle_db_entropy_bits(looks: float) -> float:
    """Differential entropy of 10 log10(G), G ~ Gamma(looks, 1/looks), in bits."""
    nats = gammaln(looks) + looks - looks * digamma(looks) + math.log(10.0 / math.log(10.0))
    return float(nats / math.log(2.0))


def shannon_lower_bound(entropy_bits: float, db_rmse) -> np.ndarray:
    """R(D) >= h - 0.5 log2(2 pi e D^2), bits per pixel (clamped at 0)."""
    d = np.asarray(db_rmse, dtype=np.float64)
    return np.maximum(entropy_bits - 0.5 * np.log2(2.0 * math.pi * math.e * d * d), 0.0)


def gaussian_upper_bound(std_db: float, db_rmse) -> np.ndarray:
    """R(D) <= log2(sigma / D): the rate a Gaussian source of the same spread needs (clamped at 0)."""
    return np.maximum(np.log2(std_db / np.asarray(db_rmse, dtype=np.float64)), 0.0)


def mse_optimal_epi(bpp) -> np.ndarray:
    """EPI of the R(D)-achieving codec for a white Gaussian source at `bpp`: sqrt(1 - 2^(-2R))."""
    return np.sqrt(1.0 - 2.0 ** (-2.0 * np.asarray(bpp, dtype=np.float64)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model bundle (default: the bundled default model)")
    p.add_argument("--looks", type=float, default=4.4, help="equivalent number of looks (IW GRDH: 4.4)")
    p.add_argument("--size", type=int, default=1024, help="raster side, px (default %(default)s)")
    p.add_argument("--level-db", type=float, default=-15.0, help="backscatter, dB (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", default=None, help="write speckle_bound.json and speckle_bound.md here")
    a = p.parse_args(argv)
    if not a.looks > 0 or a.size < 64:
        print("error: --looks must be positive and --size at least 64", file=sys.stderr)
        return 2
    model = resolve_model(a.model)
    manifest = load_manifest(model, verify=False)
    rng = np.random.default_rng(a.seed)
    values = (10 ** (a.level_db / 10) * rng.gamma(a.looks, 1.0 / a.looks, (a.size, a.size))).astype(np.float32)
    db, valid = to_db(values, "intensity")
    clip = percentile_bounds(db, valid)
    h = speckle_db_entropy_bits(a.looks)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sarc_bound_") as tmp:
        src = Path(tmp) / "speckle.tif"
        with GeoTiffWriter(src, a.size, a.size, 1, "float32", band_names=["speckle"]) as w:
            w.write(0, 0, 0, values)
        for q in range(int(manifest["rate"]["levels"])):
            rows.append(learned_point(src, values, "intensity", clip, None, float(q), model, a.device, Path(tmp)))
        for t in jpeg2000.DEFAULT_TARGET_BPP:
            rows.append(jpeg2000.run_band(values, "intensity", t, Path(tmp), "speckle", clip_db=clip))
    std = float(np.std(db))
    for r in rows:
        r["shannon_lower_bound_bpp"] = float(shannon_lower_bound(h, r["db_rmse"]))
        r["gaussian_upper_bound_bpp"] = float(gaussian_upper_bound(std, r["db_rmse"]))
        r["mse_optimal_epi"] = float(mse_optimal_epi(r["bpp"]))
        print(f"{r['codec']:>8} {r['setting']:>14}  bpp {r['bpp']:.3f}  dB RMSE {r['db_rmse']:.3f}  "
              f"R(D) in [{r['shannon_lower_bound_bpp']:.3f}, {r['gaussian_upper_bound_bpp']:.3f}]", file=sys.stderr)
    jp2 = [r for r in rows if r["codec"] == "jpeg2000"]
    learned = [r for r in rows if r["codec"] == "learned"]
    grid = np.linspace(min(r["db_rmse"] for r in jp2), max(r["db_rmse"] for r in jp2), 16)
    bound_rates = shannon_lower_bound(h, grid)
    usable = bound_rates > 0
    bd = {"learned": bd_rate([r["bpp"] for r in jp2], [r["db_rmse"] for r in jp2],
                             [r["bpp"] for r in learned], [r["db_rmse"] for r in learned]),
          "shannon_lower_bound": bd_rate([r["bpp"] for r in jp2], [r["db_rmse"] for r in jp2],
                                         bound_rates[usable], grid[usable])}
    doc = {"name": "speckle_bound", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "versions": versions(), "model": {"name": manifest.get("name"), "path": str(model)},
           "settings": {"looks": a.looks, "size": a.size, "level_db": a.level_db, "seed": a.seed,
                        "clip_db": list(clip), "speckle_db_std": std,
                        "entropy_bits": h}, "results": rows, "bd_rate_vs_jpeg2000": bd}
    lines = [f"# Pure speckle: JPEG-2000, the learned codec, and the Shannon lower bound ({doc['date']})", "",
             f"{a.size} x {a.size} px of i.i.d. {a.looks:g}-look speckle at {a.level_db:g} dB (dB std "
             f"{doc['settings']['speckle_db_std']:.2f}; differential entropy {h:.3f} bits); model "
             f"`{manifest.get('name')}`.", "",
             "| codec | setting | bpp | dB RMSE | R(D) at that dB RMSE: Shannon lower bound / Gaussian upper bound "
             "(bpp) | bits above the lower bound | bits saved at the bound | EPI | EPI ceiling at this bpp |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["codec"], r["bpp"])):
        lo = r["shannon_lower_bound_bpp"]
        lines.append(f"| {r['codec']} | {r['setting']} | {r['bpp']:.3f} | {r['db_rmse']:.3f} | "
                     f"{lo:.3f} / {r['gaussian_upper_bound_bpp']:.3f} | {r['bpp'] - lo:+.3f} | "
                     f"{100 * (lo / r['bpp'] - 1):+.0f}% | {r['epi']:.3f} | {r['mse_optimal_epi']:.3f} |")
    for name, b in bd.items():
        value = "not computed: " + b.get("note", "") if b["bd_rate_percent"] is None else \
            f"**{b['bd_rate_percent']:+.1f}%** over {b['overlap'][0]:.3f}-{b['overlap'][1]:.3f} dB"
        lines += ["", f"BD-rate of the {name.replace('_', ' ')} against JPEG-2000: {value}"]
    at_1bpp = {name: float(np.interp(0.0, np.log([r["bpp"] for r in rs]), [r["epi"] for r in rs]))
               for name, rs in (("jpeg2000", sorted(jp2, key=lambda r: r["bpp"])),
                                ("learned", sorted(learned, key=lambda r: r["bpp"])))}
    doc["epi_at_1_bpp"] = {**at_1bpp, "mse_optimal_ceiling": float(mse_optimal_epi(1.0))}
    lines += ["", f"EPI at 1 bpp (log-bpp interpolation): JPEG-2000 {at_1bpp['jpeg2000']:.3f}, learned "
                  f"{at_1bpp['learned']:.3f}; the MSE-optimal codec on a Gaussian of the same spread "
                  f"{float(mse_optimal_epi(1.0)):.3f}."]
    md = "\n".join(lines) + "\n"
    print(md)
    if a.out:
        write_report(a.out, "speckle_bound.json", "speckle_bound.md", doc, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
