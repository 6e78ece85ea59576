"""Trained codec model -> model bundle (encoder.onnx, decoder.onnx, hyper_encoder.onnx, hyperprior.npz,
manifest.json) that the numpy codec runs.

The export checks itself: an ONNX file that disagrees with PyTorch on real SAR tiles is a silent quality
regression for every user of the plugin, so a parity failure stops the export instead of writing a bundle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.decoder_reach import decoder_reach
from export.distortion_weights import manifest_entry
from export.subpixel import with_subpixel_convolutions
from sar_compress_plugin.core.raster_io import writable_folder

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "sar-compress-model"
BUNDLE_VERSION = 2
OPSET = 17
FLOAT32_ATOL = 1e-4
#: float16 weights and activations keep about 3 decimal digits: the [0,1] output may move by a few 1e-3.
FLOAT16_ATOL = 5e-3
class ExportError(RuntimeError):
    """The export could not produce a bundle that matches PyTorch."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _export_module(module: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
                   opset: int) -> None:
    # The TorchScript exporter handles dynamic H/W with plain dynamic_axes and exports these models in a
    # second; the dynamo exporter gives the same graph (checked) ten times slower.
    torch.onnx.export(
        module, (example,), str(path), input_names=[input_name], output_names=[output_name],
        dynamic_axes={input_name: {0: "batch", 2: "height", 3: "width"},
                      output_name: {0: "batch", 2: "out_height", 3: "out_width"}},
        opset_version=opset, dynamo=False,
    )


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _max_abs_diff(session: ort.InferenceSession, inputs: np.ndarray, reference: np.ndarray) -> float:
    name = session.get_inputs()[0].name
    got = session.run(None, {name: inputs.astype(np.float32)})[0]
    return float(np.max(np.abs(got.astype(np.float32) - reference)))


def _set_metadata(path: Path, metadata: dict) -> None:
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def _float16_copy(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _topological_sort(model.graph)  # the converter appends its input casts after the nodes that use them
    onnx.save(model, str(dst))
    onnx.checker.check_model(str(dst), full_check=True)


def _topological_sort(graph: onnx.GraphProto) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("float16 graph has a cycle or a dangling input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def within(tolerance: float, *diffs: float) -> bool:
    """Every difference at most `tolerance`; a NaN (an output NaN on either side) is not: `nan > tol` is False,
    and `max(nan, d)` is nan, so `max(...) > tol` let a bundle whose ONNX files give NaN pass its parity check."""
    return all(d <= tolerance for d in diffs)


def _refuse_non_finite_weights(model: torch.nn.Module) -> None:
    """A checkpoint with NaN or infinite weights (a diverged run, an fp16 copy of a weight over 65504) gives a
    model that outputs NaN: refused in one line, before the export measures its decoder's reach on it."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise ExportError(f"the model has non-finite (NaN or infinite) weights in {shown}; export a checkpoint "
                          f"from before the run diverged")


def _foreign_entries(folder: Path) -> list[str]:
    """What replacing `folder` would lose: all it holds, unless it is a model bundle as this tool writes them
    (a manifest.json of this format and the files it lists, nothing else)."""
    names = sorted(p.name for p in folder.iterdir())
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        ours = manifest["format"] == BUNDLE_FORMAT
        listed = {"manifest.json", *(str(f["path"]) for f in manifest["files"].values())} if ours else set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        listed = set()
    return [n for n in names if n not in listed]


def _refuse_unsafe_out_dir(out_dir: Path, checkpoint: Path | None = None) -> None:
    """The bundle replaces `out_dir` as a whole: it must be new, empty or a bundle, and not hold the input."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ExportError(f"{out_dir}: exists and is not a folder; choose another OUTDIR")
    if checkpoint is not None and out_dir.resolve() in Path(checkpoint).resolve().parents:
        raise ExportError(f"{out_dir}: holds the input checkpoint {checkpoint}; choose another OUTDIR")
    foreign = _foreign_entries(out_dir) if out_dir.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ExportError(f"{out_dir}: exists and is not a model bundle to replace (it holds {shown}); "
                          f"choose another OUTDIR")


def _refuse_decode_only(out_dir: Path) -> None:
    """A retired model's decode-only copy (export/retire.py) is what decodes the files it wrote: a new model
    exported over it would leave them undecodable."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
        retired = manifest.get("decode_only") is True
    except (OSError, ValueError, AttributeError):
        return
    if retired:
        raise ExportError(f"{out_dir}: holds the decode-only copy of the retired model {manifest.get('name')!r}, "
                          f"which the files it wrote need to decode; choose another OUTDIR")


def check_out_dir(out_dir: str | Path, checkpoint: str | Path | None = None,
                  replace_decode_only: bool = False) -> Path:
    """`out_dir` as an absolute path, refused in one line before any work if the export could not write it or
    would lose something there (a file, other data, the input `checkpoint`, a retired model's decode-only copy
    unless `replace_decode_only`: export/retire.py renews such copies)."""
    out_dir = Path(os.path.abspath(out_dir))  # "" and "." name the current folder, whose parent is not "."
    _refuse_unsafe_out_dir(out_dir, None if checkpoint is None else Path(checkpoint))
    if not replace_decode_only:
        _refuse_decode_only(out_dir)
    writable_folder(out_dir.parent)  # the bundle is assembled beside out_dir, then moved into place
    return out_dir


def swap_in(work: Path, out_dir: Path) -> None:
    """Move the finished bundle to `out_dir`. A bundle already there is set aside and removed only once the
    new one is in place; the folder is checked again first, as it may have changed during the export."""
    _refuse_unsafe_out_dir(out_dir)
    work.chmod(0o755)  # mkdtemp makes it private; a bundle is shared with every user of the plugin
    if not out_dir.exists():
        os.replace(work, out_dir)
        return
    log.info("replacing the model bundle in %s", out_dir)
    aside = Path(tempfile.mkdtemp(prefix=".export-old-", dir=out_dir.parent))
    os.replace(out_dir, aside / out_dir.name)
    try:
        os.replace(work, out_dir)
    except OSError:
        os.replace(aside / out_dir.name, out_dir)
        aside.rmdir()
        raise
    shutil.rmtree(aside)


def export_bundle(model: torch.nn.Module, out_dir: str | Path, *, name: str, variant: str,
                  preprocessing: dict, calibration_tiles: np.ndarray, halo: int = 32,
                  default_quality: float | None = None, training: dict | None = None,
                  validation: dict | None = None, float16: bool = False, opset: int = OPSET) -> dict:
    """Write a verified bundle to `out_dir` and return its manifest.

    `calibration_tiles` are real normalised tiles (N, 1, H, W), H and W multiples of 64: they calibrate the
    integer hyper-decoder and are the inputs of the parity checks. The bundle is assembled in a temporary
    folder and moved into place only once every check passed. `default_quality` (a float level; default the
    middle of the trained range) is what the codec uses when the user names no quality or target.
    """
    out_dir = check_out_dir(out_dir)
    if int(halo) != halo or halo < 0 or halo % 16:  # the codec refuses such a bundle (core/runtime.py)
        raise ExportError(f"halo must be a multiple of 16 and >= 0, got {halo}")
    tiles = np.ascontiguousarray(calibration_tiles, dtype=np.float32)
    if tiles.ndim != 4 or tiles.shape[1] != 1 or tiles.shape[2] % 64 or tiles.shape[3] % 64:
        raise ExportError(f"calibration tiles must be (N,1,H,W) with H, W multiples of 64, got {tiles.shape}")
    model = model.eval().cpu().float()
    _refuse_non_finite_weights(model)
    top = model.levels - 1
    default_quality = top / 2 if default_quality is None else float(default_quality)
    if not 0 <= default_quality <= top:
        raise ExportError(f"default quality {default_quality} is outside the model's levels 0..{top}")
    with torch.no_grad():
        latents = torch.cat([model.g_a(torch.from_numpy(t[None])) for t in tiles]).numpy()
        recon = torch.cat([model.g_s(torch.from_numpy(y[None])) for y in latents]).numpy()

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    try:
        enc, dec = work / "encoder.onnx", work / "decoder.onnx"
        _export_module(model.g_a, torch.from_numpy(tiles[:1]), enc, "x", "y", opset)
        _export_module(with_subpixel_convolutions(model.g_s), torch.from_numpy(latents[:1]), dec, "y", "x_hat",
                       opset)
        reach = decoder_reach(model.g_s, int(latents.shape[1]), int(halo) // 16)
        info = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "name": name, "variant": variant,
                "latent_channels": int(latents.shape[1]), "downsampling_factor": 16, "halo": int(halo),
                "decoder_reach": reach,
                "preprocessing": preprocessing,
                "rate": {"levels": model.levels, "lambdas": list(model.config["lambdas"]),
                         "default_quality": default_quality,
                         "loss": "per patch: lambda * 255^2 * MSE(normalised dB) + bpp"},
                "model_config": dict(model.config), "training": training or {}, "validation": validation or {}}
        for path in (enc, dec):
            _set_metadata(path, {"sar_compress": info})

        scale = max(1.0, float(np.abs(latents).max()))
        parity = {"encoder_max_rel_diff": _max_abs_diff(_session(enc), tiles, latents) / scale,
                  "decoder_max_abs_diff": _max_abs_diff(_session(dec), latents, recon),
                  "tolerance": FLOAT32_ATOL, "tiles": int(tiles.shape[0]), "tile_shape": list(tiles.shape[2:])}
        log.info("ONNX parity: %s", parity)
        if not within(FLOAT32_ATOL, parity["encoder_max_rel_diff"], parity["decoder_max_abs_diff"]):
            raise ExportError(f"ONNX output differs from PyTorch by more than {FLOAT32_ATOL}: {parity}")
        files = {"encoder": {"path": enc.name, "sha256": sha256_of(enc)},
                 "decoder": {"path": dec.name, "sha256": sha256_of(dec)}}
        from export.hyperprior_export import export_hyperprior  # noqa: PLC0415

        try:
            hp_files, hyperprior = export_hyperprior(model, work, latents, _export_module, opset, FLOAT32_ATOL)
        except ValueError as exc:
            raise ExportError(f"hyperprior: {exc}") from None
        files.update(hp_files)

        if float16:
            enc16, dec16 = work / "encoder_fp16.onnx", work / "decoder_fp16.onnx"
            _float16_copy(enc, enc16)
            _float16_copy(dec, dec16)
            diffs = (_max_abs_diff(_session(enc16), tiles, latents) / scale,
                     _max_abs_diff(_session(dec16), latents, recon))
            # max() of the two hid a NaN in the second (`nan > d` is False), so a float16 decoder that gives
            # NaN passed its check; both are checked, and the error names the NaN
            fp16_diff = float("nan") if any(np.isnan(diffs)) else max(diffs)
            if not within(FLOAT16_ATOL, *diffs):
                raise ExportError(f"float16 copy differs from float32 by {fp16_diff:.2e} > {FLOAT16_ATOL}")
            parity["float16_max_diff"] = fp16_diff
            parity["float16_tolerance"] = FLOAT16_ATOL
            files["encoder_fp16"] = {"path": enc16.name, "sha256": sha256_of(enc16)}
            files["decoder_fp16"] = {"path": dec16.name, "sha256": sha256_of(dec16)}

        dec_session = _session(dec)
        rounding = manifest_entry(lambda y: dec_session.run(None, {"y": y})[0], latents)
        manifest = dict(info, files=files, parity=parity, hyperprior=hyperprior, rounding=rounding)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        swap_in(work, out_dir)
        return manifest
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
