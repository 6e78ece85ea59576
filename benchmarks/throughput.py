"""Speed and memory of the learned codec and of JPEG-2000, measured in the same run on the same raster.

The raster is one Sentinel-1 polarisation (default: the VV band of the shared Berlin GRD scene), mirrored and
tiled up to --size x --size pixels, written as a float32 GeoTIFF. Each measurement runs in its own subprocess, so
its peak RSS (resource.getrusage, ru_maxrss) belongs to that measurement alone:

* codec_compress     core.codec.compress: GeoTIFF on disk -> .sarc (end to end: statistics, model load, tiles)
* codec_reconstruct  core.codec.reconstruct: .sarc -> GeoTIFF (end to end)
* model_load         OnnxCodecModel(bundle): manifest check and session creation, paid once per call above
* onnx_encode        OnnxCodecModel.encode of the in-memory normalised raster, tile by tile (no I/O, no coding),
                     on the codec's workers
* onnx_decode        OnnxCodecModel.decode of those latents, each with the margin of cells the codec decodes
                     around a tile (the decoder's reach), on the codec's workers; MP/s counts the cores
* latents_hyperprior the entropy coding of those tiles' latents at --quality (range-meanscale-int16): encode =
                     gains + hyper-encoder (ONNX) + integer hyper-decoder + range coding; decode = integer
                     hyper-decoder + range decoding + means; times listed separately
* jp2_encode         GeoTIFF -> dB -> clip -> uint16 -> .jp2 (benchmarks/jpeg2000.py)
* jp2_decode         .jp2 -> dB -> original domain -> GeoTIFF

For each: the median of --repeats runs, megapixels per second, peak RSS, the onnxruntime provider that actually
ran (session.get_providers(), as the codec reports it), and the time projected for one 25,000 x 17,000
Sentinel-1 polarisation (model load once + the per-pixel rate measured here).

    .venv/bin/python benchmarks/throughput.py --model sar_compress_plugin/models/default --size 4096 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import jpeg2000  # noqa: E402
from codec_memory import peak_rss_mb  # noqa: E402
from rate_distortion import DATA_DIR, device_info, model_info, resolve_model, versions  # noqa: E402
from sar_compress_plugin.core.preprocessing import normalise, percentile_bounds, to_db  # noqa: E402
from sar_compress_plugin.core.raster_io import GeoTiffWriter, RasterReader  # noqa: E402
from sar_compress_plugin.core.runtime import default_model_dir  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

DEFAULT_SOURCE = DATA_DIR / "s1_iw_grd_berlin_512.tif"
PROJECT_SHAPE = (25_000, 17_000)
MEASUREMENTS = ("model_load", "codec_compress", "codec_reconstruct", "onnx_encode", "onnx_decode",
                "latents_hyperprior", "jp2_encode", "jp2_decode")


def build_raster(source: Path, out: Path, size: int | None, band: int = 0) -> dict:
    """One band of `source`, mirrored and tiled to size x size (or as is when size is None), as a GeoTIFF."""
    with RasterReader(source) as r:
        i = r.info
        tile = r.read(band, 0, 0, i.width, i.height)
    if size:
        period = np.block([[tile, tile[:, ::-1]], [tile[::-1], tile[::-1, ::-1]]])
        reps = -(-size // period.shape[0]), -(-size // period.shape[1])
        arr = np.tile(period, reps)[:size, :size]
    else:
        arr = tile
    gt = i.geotransform if not size else (0.0, 10.0, 0.0, 0.0, 0.0, -10.0)
    with GeoTiffWriter(out, arr.shape[1], arr.shape[0], 1, arr.dtype.name, crs_wkt=i.crs_wkt if not size else "",
                       geotransform=gt, band_names=[i.band_names[band] or "VV"]) as w:
        for r0 in range(0, arr.shape[0], 1024):
            w.write(0, 0, r0, arr[r0:r0 + 1024])
    return {"width": int(arr.shape[1]), "height": int(arr.shape[0]), "dtype": arr.dtype.name,
            "source": str(source), "band": band}


# --- one measurement, in a subprocess ---------------------------------------------------------------------

def _read_all(path) -> tuple[np.ndarray, object]:
    with RasterReader(path) as r:
        return r.read(0, 0, 0, r.info.width, r.info.height), r.info


def _tiles(x: np.ndarray, tile: int):
    h, w = x.shape
    for r0 in range(0, h, tile):
        for c0 in range(0, w, tile):
            t = x[r0:r0 + tile, c0:c0 + tile]
            ph, pw = -t.shape[0] % 16, -t.shape[1] % 16
            yield np.pad(t, ((0, ph), (0, pw)), mode="reflect")[None, None] if (ph or pw) else t[None, None]


def worker(spec: dict) -> dict:
    """Run one measurement `spec['what']` `spec['repeats']` times; returns seconds, provider, peak RSS."""
    from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct  # noqa: PLC0415
    from sar_compress_plugin.core.pipeline import ordered_map, thread_pool  # noqa: PLC0415
    from sar_compress_plugin.core.runtime import OnnxCodecModel  # noqa: PLC0415

    what, work = spec["what"], Path(spec["work"])
    raster, model, device = spec["raster"], spec["model"], spec["device"]
    base_rss = peak_rss_mb()
    seconds, extra = [], {}
    provider = None
    prep = None
    if what in ("onnx_encode", "onnx_decode", "latents_hyperprior"):
        values, _ = _read_all(raster)
        db, valid = to_db(values, "intensity")
        x = normalise(db, *percentile_bounds(db, valid))
        del values, db, valid
        m = OnnxCodecModel(model, device=device)
        provider = m.provider
        if what == "onnx_decode":  # each tile's latents with the margin the codec decodes (the decoder's reach)
            before, after = m.decoder_reach
            prep = [np.pad(m.encode(t), ((0, 0), (0, 0), (before, after), (before, after)), mode="edge")
                    for t in _tiles(x, spec["tile"])]
        elif what == "latents_hyperprior":
            hp = m.hyperprior
            quality = m.default_quality if spec["quality"] is None else spec["quality"]
            gain = hp.gain(quality)
            prep = [m.encode(t)[0] for t in _tiles(x, spec["tile"])]
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        if what == "model_load":
            provider = OnnxCodecModel(model, device=device).provider
        elif what == "codec_compress":
            res = compress(raster, work / "bench.sarc",
                           CompressOptions(model_dir=model, device=device, tile_size=spec["tile"],
                                           quality=spec["quality"], domain="intensity"))
            provider = res.provider
            extra = {"bpp": res.bpp, "file_bytes": res.output_bytes}
        elif what == "codec_reconstruct":
            provider = reconstruct(work / "bench.sarc", work / "bench_rec.tif", model_dirs=[model],
                                   device=device).provider
        elif what == "onnx_encode":  # the networks alone, on the codec's workers (core/pipeline.py)
            with thread_pool(m.workers, "bench") as pool:
                list(ordered_map(pool, m.encode, _tiles(x, spec["tile"]), ahead=m.workers + 1))
        elif what == "onnx_decode":
            with thread_pool(m.workers, "bench") as pool:
                list(ordered_map(pool, m.decode, prep, ahead=m.workers + 1))
        elif what == "latents_hyperprior":
            coded = [hp.encode(y * gain, m.hyper_encode(y * gain)) for y in prep]
            t1 = time.perf_counter()
            for y, (data, y_hat) in zip(prep, coded):
                if not np.array_equal(hp.decode(data, y.shape, "bench"), y_hat):
                    raise RuntimeError(f"{what}: decoded latents differ from the encoder's")
            extra = {"latent_bytes": sum(len(c) for c, _ in coded), "symbols": int(sum(y.size for y in prep)),
                     "encode_s": extra.get("encode_s", []) + [t1 - t0],
                     "decode_s": extra.get("decode_s", []) + [time.perf_counter() - t1]}
        elif what == "jp2_encode":
            values, info = _read_all(raster)
            u16, clip, _ = jpeg2000.to_uint16(values, "intensity")
            t1 = time.perf_counter()
            n = jpeg2000.encode(u16, work / "bench.jp2", jpeg2000.quality_for_bpp(spec["jp2_bpp"]),
                                info.geotransform, info.crs_wkt)
            (work / "bench_jp2_clip.json").write_text(json.dumps(clip))
            extra = {"bpp": 8.0 * n / values.size, "file_bytes": n,
                     "jp2_codestream_s": extra.get("jp2_codestream_s", []) + [time.perf_counter() - t1]}
        elif what == "jp2_decode":
            clip = json.loads((work / "bench_jp2_clip.json").read_text())
            rec = jpeg2000.from_uint16(jpeg2000.decode(work / "bench.jp2"), clip, "intensity").astype(np.float32)
            with GeoTiffWriter(work / "bench_jp2_rec.tif", rec.shape[1], rec.shape[0], 1, "float32") as w:
                w.write(0, 0, 0, rec)
        else:
            raise ValueError(f"unknown measurement {what!r}")
        seconds.append(time.perf_counter() - t0)
    return {"what": what, "seconds": seconds, "provider": provider, "baseline_rss_mb": base_rss,
            "peak_rss_mb": peak_rss_mb(), **extra}


def measure(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['what']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=f"model bundle folder (default: {default_model_dir()})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: %(default)s")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="raster whose first band is used")
    p.add_argument("--size", type=int, default=2048,
                   help="tile the source band up to SIZE x SIZE pixels (0 = the source as is; default %(default)s)")
    p.add_argument("--tile", type=int, default=512, help="codec tile size (default %(default)s)")
    p.add_argument("--quality", type=float, default=None, help="codec operating point (default: the bundle's)")
    p.add_argument("--jp2-bpp", type=float, default=1.0, help="JPEG-2000 target bpp (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    p.add_argument("--only", nargs="+", choices=MEASUREMENTS, default=list(MEASUREMENTS))
    p.add_argument("--out", default=None, help="write throughput.json here")
    p.add_argument("--timing-note", default="", help="free text recorded with the timings (e.g. 'machine busy')")
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return 0

    model = resolve_model(a.model)
    results = []
    with tempfile.TemporaryDirectory(prefix="sarc_tp_") as tmp:
        work = Path(tmp)
        raster = work / "bench.tif"
        rinfo = build_raster(Path(a.source), raster, a.size or None)
        mp = rinfo["width"] * rinfo["height"] / 1e6
        spec = {"work": str(work), "raster": str(raster), "model": str(model), "device": a.device,
                "tile": a.tile, "quality": a.quality, "jp2_bpp": a.jp2_bpp, "repeats": a.repeats}
        order = [m for m in MEASUREMENTS if m in a.only]
        # reconstruct needs a .sarc and jp2_decode a .jp2: make them (untimed) when their producer is not run
        if "codec_reconstruct" in order and "codec_compress" not in order:
            measure({**spec, "what": "codec_compress", "repeats": 1})
        if "jp2_decode" in order and "jp2_encode" not in order:
            measure({**spec, "what": "jp2_encode", "repeats": 1})
        for what in order:
            print(f"measuring {what} ...", file=sys.stderr)
            results.append(measure({**spec, "what": what}))
    load = next((r for r in results if r["what"] == "model_load"), None)
    load_s = statistics.median(load["seconds"]) if load else 0.0
    proj_mp = PROJECT_SHAPE[0] * PROJECT_SHAPE[1] / 1e6
    for r in results:
        med = statistics.median(r["seconds"])
        r["median_s"] = med
        r["megapixels"] = mp if r["what"] != "model_load" else None
        if r["what"] == "model_load":
            r["mp_s"] = r["projected_s"] = None
            continue
        r["mp_s"] = mp / med
        fixed = load_s if r["what"] in ("codec_compress", "codec_reconstruct") else 0.0
        per_mp = max(med - fixed, 1e-9) / mp
        r["mp_s_excluding_model_load"] = 1.0 / per_mp if fixed else None
        r["projected_s"] = fixed + per_mp * proj_mp
    providers = [r["provider"] for r in results if r.get("provider")]
    doc = {
        "name": "throughput",
        "description": "megapixels/s and peak RSS per measurement (one subprocess each), learned codec and "
                       "JPEG-2000 on the same raster in the same run; projection to one 25,000 x 17,000 "
                       "Sentinel-1 polarisation",
        "device": device_info(providers), "versions": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model_info(model), "timing_note": a.timing_note,
        "settings": {"raster": rinfo, "megapixels": mp, "tile": a.tile, "quality": a.quality,
                     "jp2_target_bpp": a.jp2_bpp, "repeats": a.repeats, "device_requested": a.device,
                     "projected_shape": list(PROJECT_SHAPE),
                     "threads_env": {k: os.environ.get(k) for k in ("SAR_COMPRESS_THREADS", "GDAL_NUM_THREADS",
                                                                    "OMP_NUM_THREADS")}},
        "results": results,
    }
    print(f"raster {rinfo['width']} x {rinfo['height']} ({mp:.2f} MP), model {doc['model']['name']}, "
          f"device requested {a.device}, median of {a.repeats}")
    print(f"{'measurement':<18} {'median s':>9} {'MP/s':>8} {'peak RSS MB':>12} {'25000x17000 s':>14}  provider")
    for r in results:
        mps = "-" if r["mp_s"] is None else f"{r['mp_s']:.2f}"
        proj = "-" if r["projected_s"] is None else f"{r['projected_s']:.0f}"
        print(f"{r['what']:<18} {r['median_s']:>9.3f} {mps:>8} {r['peak_rss_mb']:>12.0f} "
              f"{proj:>14}  {r.get('provider') or '-'}"
              + (f"  bpp {r['bpp']:.3f}" if "bpp" in r else "")
              + (f"  encode {statistics.median(r['encode_s']):.3f} s, decode {statistics.median(r['decode_s']):.3f} s, "
                 f"{8 * r['latent_bytes'] / r['symbols']:.3f} bits/symbol" if "encode_s" in r else "")
              + (f"  (JPEG-2000 codestream alone {statistics.median(r['jp2_codestream_s']):.3f} s)"
                 if "jp2_codestream_s" in r else ""))
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        publish_files({out / "throughput.json": json.dumps(doc, indent=1)})
        print(f"wrote {out / 'throughput.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
