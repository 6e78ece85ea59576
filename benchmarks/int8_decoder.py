"""What an int8 decoder network would buy on a CPU without AVX-512: its speed, and the error it adds.

Reconstruct misses 2 MP/s on 2 AVX2 cores (docs/results.md, Speed), and the decoder network is most of its time:
"it takes a cheaper decoder, not tuning". Quantising g_s to int8 after training (onnxruntime static QDQ
quantisation: per-channel int8 weights, uint8 activations calibrated on decoder inputs from training scenes) is
the cheaper decoder that needs no training. This measures both sides of it:
* speed: the decoder network alone on one onnxruntime thread, float32 against int8 taking turns, on the largest
  latent tile of the calibration scenes (32 x 32: a 512-px tile), median of `--repeats`;
* error: the held-out GRD scene-bands compressed once per quality, each file reconstructed through the codec
  with the bundle's decoder and again with the int8 one (same bits); dB RMSE of both against the original.

The bitstream does not change (entropy decoding never depends on g_s), so this is a decoder-only trade.

    python benchmarks/int8_decoder.py --out benchmarks/results/int8_decoder
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from rate_distortion import (device_info, grd_scenes, model_info, reconstruction_values, scene_bands,  # noqa: E402
                             versions)
from sar_compress_plugin.core import runtime  # noqa: E402
from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct  # noqa: E402
from sar_compress_plugin.core.evaluation import band_quality  # noqa: E402
from trainer.reporting import publish_files  # noqa: E402

HELD_OUT = ["frankfurt", "panama", "india_900498", "mekong", "srilanka_534068", "paraguay_jja10"]
CALIBRATION = ["berlin", "brazil"]  # training scenes: the int8 ranges never see the held-out ones


class _CapturedDecoderInputs:
    """Patches the codec's decoder call to record its inputs (or to run another session in its place)."""

    def __init__(self, session: ort.InferenceSession | None = None):
        self.inputs: list[np.ndarray] = []
        self.session = session

    def __enter__(self):
        self._orig = runtime.OnnxCodecModel.decode
        capture = self

        def decode(model, latents):
            capture.inputs.append(np.array(latents, np.float32))
            if capture.session is None:
                return capture._orig(model, latents)
            x = np.ascontiguousarray(latents, dtype=np.float32)
            name = capture.session.get_inputs()[0].name
            return np.asarray(capture.session.run(None, {name: x})[0], np.float32)

        runtime.OnnxCodecModel.decode = decode
        return self

    def __exit__(self, *exc):
        runtime.OnnxCodecModel.decode = self._orig


def _session(path: Path, threads: int = 1) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def calibration_inputs(model: Path, qualities, work: Path) -> list[np.ndarray]:
    """Decoder inputs of the calibration scenes at every quality, as the codec produces them."""
    with _CapturedDecoderInputs() as cap:
        for scene in grd_scenes(only=CALIBRATION):
            for sb in scene_bands(scene, work):
                for q in qualities:
                    sarc = work / "calib.sarc"
                    compress(sb.src, sarc, CompressOptions(model_dir=model, quality=q, domain=sb.domain))
                    reconstruct(sarc, work / "calib.tif", model_dirs=[model])
    return cap.inputs


def quantise(decoder: Path, inputs: list[np.ndarray], out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static  # noqa: PLC0415
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    name = _session(decoder).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {name: x}

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(decoder), str(pre))
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return out


def decoder_mp_s(paths: dict[str, Path], tile: np.ndarray, repeats: int) -> dict[str, float]:
    """Megapixels decoded per second (16 x 16 per latent cell), one thread, per decoder; the decoders take turns,
    so that a machine busier at one moment than another slows each alike."""
    sessions = {k: _session(p) for k, p in paths.items()}
    feeds = {k: {s.get_inputs()[0].name: tile} for k, s in sessions.items()}
    times = {k: [] for k in sessions}
    for k, s in sessions.items():
        s.run(None, feeds[k])
    for _ in range(repeats):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds[k])
            times[k].append(time.perf_counter() - t)
    pixels = tile.shape[-1] * 16 * tile.shape[-2] * 16
    return {k: pixels / statistics.median(v) / 1e6 for k, v in times.items()}


def error_rows(model: Path, int8: Path, qualities, work: Path, held_out=HELD_OUT, log=print) -> list[dict]:
    rows = []
    int8_session = _session(int8)
    for scene in grd_scenes(only=held_out, sigma0=True):
        for sb in scene_bands(scene, work):
            for q in qualities:
                sarc = work / "held_out.sarc"
                compress(sb.src, sarc, CompressOptions(model_dir=model, quality=q, domain=sb.domain))
                row = {"scene": sb.scene, "band": sb.band, "quality": q,
                       "bpp": 8.0 * sarc.stat().st_size / sb.values.size}
                for label, session in (("float32", None), ("int8", int8_session)):
                    rec_path = work / f"held_out_{label}.tif"
                    with _CapturedDecoderInputs(session):
                        reconstruct(sarc, rec_path, model_dirs=[model])
                    rec = reconstruction_values(sb.src, rec_path)
                    row[f"db_rmse_{label}"] = band_quality(sb.values, rec, sb.domain, sb.clip, sb.nodata)["db_rmse"]
                rows.append(row)
                log(f"  {sb.scene:>18} {sb.band} quality {q:g}: bpp {row['bpp']:.3f}  dB RMSE float32 "
                    f"{row['db_rmse_float32']:.4f}  int8 {row['db_rmse_int8']:.4f}")
    return rows


def per_quality(rows: list[dict]) -> list[dict]:
    out = []
    for q in sorted({r["quality"] for r in rows}):
        sel = [r for r in rows if r["quality"] == q]
        f32 = float(np.mean([r["db_rmse_float32"] for r in sel]))
        i8 = float(np.mean([r["db_rmse_int8"] for r in sel]))
        out.append({"quality": q, "mean_bpp": float(np.mean([r["bpp"] for r in sel])), "db_rmse_float32": f32,
                    "db_rmse_int8": i8, "added_db": i8 - f32})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=runtime.default_model_dir())
    p.add_argument("--qualities", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--held-out", nargs="+", default=HELD_OUT, help="scenes measured (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="write int8_decoder.json here")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = calibration_inputs(a.model, a.qualities, work)
        same = [x for x in inputs if x.shape == inputs[0].shape]  # onnxruntime's calibrator stacks its batches
        int8 = quantise(a.model / "decoder.onnx", same, work / "decoder_int8.onnx")
        tile = max(inputs, key=lambda x: x.shape[-1] * x.shape[-2])
        speed = decoder_mp_s({"float32": a.model / "decoder.onnx", "int8": int8}, tile, a.repeats)
        size = f"{tile.shape[-2] * 16} x {tile.shape[-1] * 16} px"
        print(f"decoder network, one thread, {size}: float32 {speed['float32']:.2f} MP/s, "
              f"int8 {speed['int8']:.2f} MP/s ({speed['int8'] / speed['float32']:.2f}x)")
        rows = error_rows(a.model, int8, a.qualities, work, a.held_out)
    summary = per_quality(rows)
    for s in summary:
        print(f"quality {s['quality']:g}: {s['mean_bpp']:.3f} bpp, dB RMSE float32 {s['db_rmse_float32']:.4f}, "
              f"int8 {s['db_rmse_int8']:.4f} ({s['added_db']:+.4f} dB)")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        doc = {"name": "int8_decoder", "description": __doc__.split("\n\n")[0],
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": " ".join(sys.argv),
               "device": device_info(), "versions": versions(), "model": model_info(a.model),
               "calibration_scenes": CALIBRATION, "held_out_scenes": a.held_out,
               "calibration_tiles": len(same), "decoder_mp_s_one_thread": speed, "per_quality": summary,
               "rows": rows}
        publish_files({a.out / "int8_decoder.json": json.dumps(doc, indent=1) + "\n"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
