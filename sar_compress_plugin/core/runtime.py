"""The one onnxruntime wrapper: a model bundle's manifest, integrity check, sessions and providers.

A compressed file names its decoder by SHA-256, so a bundle is only trusted after its files hash to what the
manifest says. onnxruntime-gpu lists CUDA as available even when its libraries are missing and then silently
runs on CPU, so the provider reported here is the one the session actually got, never the one asked for.
"""

from __future__ import annotations

import json
import functools
import logging
import os
import threading
from pathlib import Path

import numpy as np

from .bundle_files import content_sha256, onnx_source
from .errors import MODEL_FOLDER_ADVICE, ModelBundleError, ModelMismatchError, SarCompressError
from .hyperprior import HyperpriorCoder, check_quality, interpolate_lambda, load_hyperprior
from .rd_rounding import error_weights
from .preprocessing import PreprocessingParams

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "sar-compress-model"
BUNDLE_VERSION = 2  # 2: variable-rate mean-scale hyperprior (encoder, decoder, hyper_encoder, hyperprior.npz)
BUNDLE_PARTS = ("encoder", "decoder", "hyper_encoder", "hyperprior")
#: what a bundle kept only to decode the files it wrote has (manifest `"decode_only": true`): an earlier default
DECODE_PARTS = ("decoder", "hyperprior")
DEVICES = ("auto", "cpu", "cuda")
#: onnxruntime's own default (warnings and above), restored after sessions are created
ORT_DEFAULT_LOG_SEVERITY = 2

#: Set once CUDA failed to load in this process, so "auto" stops retrying (and re-logging) it per session.
_cuda_failed = False


def bundle_parts(manifest: dict) -> tuple[str, ...]:
    return DECODE_PARTS if manifest.get("decode_only") is True else BUNDLE_PARTS


def check_manifest_can_encode(manifest: dict, bundle_dir: str | os.PathLike) -> None:
    """ModelBundleError for a bundle kept only to decode the files it wrote (manifest `"decode_only": true`, an
    earlier default without encoder networks). From the manifest alone, so a batch refuses such a model before it
    starts, as a loaded model refuses to encode."""
    if manifest.get("decode_only") is True:
        raise ModelBundleError(f"{bundle_dir}: model {manifest.get('name', Path(bundle_dir).name)} is kept only to "
                               f"decode the files it wrote; compress with the default model")


def check_manifest_quality(manifest: dict, quality: float | None) -> None:
    """SarCompressError unless `quality` (None: the model's default) is one of the levels the manifest's model was
    trained at (`rate.levels`), from the manifest alone, as a loaded model's coder checks it
    (hyperprior.check_quality): a batch and the compress dialog refuse it before anything starts."""
    levels = (manifest.get("rate") or {}).get("levels")
    if quality is not None and isinstance(levels, int):
        check_quality(quality, levels)


def default_model_dir() -> Path:
    """The bundled default model shipped inside the plugin package."""
    return Path(__file__).resolve().parent.parent / "models" / "default"


def load_manifest(bundle_dir: str | os.PathLike, verify: bool = True) -> dict:
    """Read and check a bundle's manifest.json (and, with verify, the SHA-256 of its ONNX files)."""
    d = Path(bundle_dir)
    mp = d / MANIFEST_NAME
    if not mp.is_file():
        raise ModelBundleError(f"{d}: not a model bundle (no {MANIFEST_NAME})")
    try:
        m = json.loads(mp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelBundleError(f"{mp}: cannot read manifest ({exc})") from None
    if not isinstance(m, dict) or m.get("format") != BUNDLE_FORMAT:
        raise ModelBundleError(f"{mp}: not a {BUNDLE_FORMAT} manifest")
    if not isinstance(m.get("version"), int) or m["version"] > BUNDLE_VERSION:
        raise ModelBundleError(f"{mp}: manifest version {m.get('version')} is not supported "
                               f"(this codec reads up to {BUNDLE_VERSION})")
    if m["version"] < BUNDLE_VERSION:
        raise ModelBundleError(f"{mp}: a bundle of the retired fixed-bottleneck model (version {m['version']}); "
                               f"this codec needs a version {BUNDLE_VERSION} bundle (sar-export of a variable-rate "
                               f"checkpoint)")
    try:
        factor = int(m.get("downsampling_factor", 16))
        halo = int(m.get("halo", 0))
        int(m["latent_channels"])
        files = m["files"]
        for part in bundle_parts(m):
            name = str(files[part]["path"])
            str(files[part]["sha256"])  # noqa: B018 (presence check)
            if Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"{part} path {name!r} is not a file name inside the bundle")
        float(m["rate"]["default_quality"])
        PreprocessingParams.from_dict(m.get("preprocessing", {}))
    except (KeyError, TypeError, ValueError, SarCompressError) as exc:
        raise ModelBundleError(f"{mp}: manifest is incomplete or malformed ({exc})") from None
    if factor != 16 or halo < 0 or halo % factor:
        raise ModelBundleError(f"{mp}: downsampling_factor must be 16 and halo a multiple of it")
    reach = m.get("decoder_reach")
    if reach is not None and not (isinstance(reach, dict) and all(
            isinstance(reach.get(k), int) and 0 <= reach[k] <= halo // factor for k in ("before", "after"))):
        raise ModelBundleError(f"{mp}: decoder_reach must give 'before' and 'after' latent cells within the halo "
                               f"({halo // factor}), got {reach!r}")
    if verify:
        for part in (p for p in bundle_parts(m) if p != "hyperprior"):
            f = d / files[part]["path"]
            if not f.is_file():
                raise ModelBundleError(f"{d}: {part} file {files[part]['path']} is missing")
            got = content_sha256(f)
            if got != str(files[part]["sha256"]).lower():
                raise ModelBundleError(f"{f}: SHA-256 {got[:12]}... does not match the manifest "
                                       f"({str(files[part]['sha256'])[:12]}...); the bundle is damaged")
    return m


def thread_budget(threads: int | None = None) -> int:
    """Cores the codec's networks may use in all: `threads`, else SAR_COMPRESS_THREADS (the batch engine
    sets it per worker), else the cores this process may run on."""
    if not threads:
        threads = int(os.environ.get("SAR_COMPRESS_THREADS", "0") or 0)
    if not threads:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, int(threads))


@functools.lru_cache(maxsize=1)
def _nvidia_driver_present() -> bool:
    """True when the NVIDIA driver library loads: without it no CUDA session can run, so 'auto' goes to CPU."""
    import ctypes  # noqa: PLC0415

    try:
        ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
        return True
    except OSError:
        return False


def _providers_for(device: str) -> list[str]:
    import onnxruntime as ort  # noqa: PLC0415

    device = (device or "auto").lower()
    if device not in DEVICES:
        raise SarCompressError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto" and not _nvidia_driver_present():
        return ["CPUExecutionProvider"]  # onnxruntime-gpu lists CUDA even without a GPU, then logs a failure
    if "CUDAExecutionProvider" in available and not (device == "auto" and _cuda_failed):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise SarCompressError("device 'cuda' requested but this onnxruntime has no CUDAExecutionProvider "
                               f"(available: {', '.join(available)})")
    return ["CPUExecutionProvider"]


def cuda_unavailable() -> str:
    """Why device 'cuda' cannot run on this machine, or "" when it may (whether CUDA's libraries load is known
    only once a session tries). Without a session, so a settings form can refuse a default device that every
    task would then fail on."""
    import onnxruntime as ort  # noqa: PLC0415

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return f"this onnxruntime has no CUDAExecutionProvider (available: {', '.join(available)})"
    if not _nvidia_driver_present():
        return "no NVIDIA driver is installed"
    return ""


class OnnxCodecModel:
    """Encoder and decoder sessions of one verified bundle; created once, reused for every tile."""

    def __init__(self, bundle_dir: str | os.PathLike, device: str = "auto", threads: int | None = None,
                 optimize: bool = True):
        """`optimize=False` turns onnxruntime's graph optimisations off (a second numerical path, used by the
        tests that show hyperprior decoding does not depend on how the encoder's floats were computed)."""
        import onnxruntime as ort  # noqa: PLC0415

        self.bundle_dir = Path(bundle_dir)
        self.manifest = load_manifest(self.bundle_dir, verify=True)
        m = self.manifest
        self.name = str(m.get("name", self.bundle_dir.name))
        self.variant = str(m.get("variant", ""))
        self.latent_channels = int(m["latent_channels"])
        self.factor = int(m.get("downsampling_factor", 16))
        self.halo = int(m.get("halo", 0))
        # latent cells before / after a tile's core that decide its pixels (export/decoder_reach.py); a bundle
        # exported before it was measured decodes with the whole halo
        reach = m.get("decoder_reach") or {}
        self.decoder_reach = (int(reach.get("before", self.halo // self.factor)),
                              int(reach.get("after", self.halo // self.factor)))
        #: an earlier default kept only to decode its files: no encoder networks
        self.decode_only = m.get("decode_only") is True
        self.encoder_sha256 = None if self.decode_only else str(m["files"]["encoder"]["sha256"]).lower()
        self.decoder_sha256 = str(m["files"]["decoder"]["sha256"]).lower()
        self.preprocessing = PreprocessingParams.from_dict(m.get("preprocessing", {}))
        self.device = device
        wanted = _providers_for(device)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        # Edge tiles give the sessions several input shapes, and with memory patterns on onnxruntime keeps a
        # planned buffer set per shape: measured on the default decoder, 6 shapes took RSS from 461 MB to
        # 954 MB at the same speed, which is what pushed an 8k x 8k reconstruct past 1.9 GB.
        so.enable_mem_pattern = False
        # The codec runs entropy coding in a worker thread beside the network; onnxruntime's spinning pool
        # threads would hold both cores while waiting for work and starve it. Without spinning a 2048^2
        # reconstruct on 2 cores went from 1.80 to 2.0 MP/s and the network itself did not slow down.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        budget = thread_budget(threads)
        # Two tiles' networks at once, each on half the cores (core/pipeline.py says why)
        self.workers = 2 if budget >= 2 else 1
        so.intra_op_num_threads = max(1, budget // self.workers)
        if not optimize:
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._session_options, self._providers_wanted = so, wanted
        sessions = {}
        for part in ("decoder",) if self.decode_only else ("encoder", "decoder"):
            sessions[part] = _session(self.bundle_dir / m["files"][part]["path"], f"the {part}", so, wanted)
        self._enc, self._dec = sessions.get("encoder"), sessions["decoder"]
        self.providers = list(self._dec.get_providers())
        if "CUDAExecutionProvider" in wanted and "CUDAExecutionProvider" not in self.providers:
            global _cuda_failed
            _cuda_failed = True
            if device != "cuda":  # an explicit request fails just below, with its own line
                log.warning("CUDA was requested but onnxruntime runs %s on CPU", self.bundle_dir)
        if device == "cuda" and "CUDAExecutionProvider" not in self.providers:
            raise SarCompressError(f"device 'cuda' requested but onnxruntime fell back to CPU for {self.bundle_dir} "
                                   "(CUDA/cuDNN libraries missing?)")
        t = m["files"]["hyperprior"]
        self.hyperprior: HyperpriorCoder = load_hyperprior(self.bundle_dir / str(t["path"]), t["sha256"])
        if self.hyperprior.latent_channels != self.latent_channels:
            raise ModelBundleError(f"{self.bundle_dir}: hyperprior predicts {self.hyperprior.latent_channels} "
                                   f"latent channels, the model has {self.latent_channels}")
        self.default_quality = self.hyperprior.check_quality(m["rate"]["default_quality"])
        lambdas = m["rate"].get("lambdas")
        if not (isinstance(lambdas, list) and len(lambdas) == self.hyperprior.levels
                and all(isinstance(v, (int, float)) and 0 < v < 1e6 for v in lambdas)):
            raise ModelBundleError(f"{self.bundle_dir}: manifest rate.lambdas must list one positive lambda per "
                                   f"quality level ({self.hyperprior.levels})")
        self.lambdas = [float(v) for v in lambdas]
        self.distortion_weights = manifest_distortion_weights(m, self.latent_channels, self.bundle_dir / MANIFEST_NAME)
        self._hyper_enc = None
        self._hyper_enc_lock = threading.Lock()
        self._enc_in = None if self._enc is None else self._enc.get_inputs()[0].name
        self._dec_in = self._dec.get_inputs()[0].name
        log.info("model %s (%s) on %s", self.name, self.variant, self.provider)

    @property
    def provider(self) -> str:
        """The provider that actually runs the decoder, e.g. 'CPUExecutionProvider'."""
        return self.providers[0] if self.providers else "unknown"

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """(N,1,H,W) float32 in [0,1], H and W multiples of 16 -> (N,C,H/16,W/16) float32."""
        self.check_can_encode()
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self._enc.run(None, {self._enc_in: x})[0], dtype=np.float32)

    def check_can_encode(self) -> None:
        check_manifest_can_encode(self.manifest, self.bundle_dir)

    def hyper_encode(self, y: np.ndarray) -> np.ndarray:
        """(C, h, w) gain-scaled latents of one tile -> unrounded z (N, ceil(h/4), ceil(w/4)), float32.

        Zero-padded at the bottom/right to multiples of 4 as in training. Encoder side only: its floats may
        differ between machines, which changes which z gets stored but never how a stored file decodes.
        The session is created on first use, so decoding never loads it.
        """
        self.check_can_encode()
        with self._hyper_enc_lock:  # the codec's network workers call this at once
            if self._hyper_enc is None:
                self._hyper_enc = _session(self.bundle_dir / self.manifest["files"]["hyper_encoder"]["path"],
                                           "the hyper-encoder", self._session_options, self._providers_wanted)
        y = np.asarray(y, dtype=np.float32)
        f = self.hyperprior.decoder.upsampling
        y = np.pad(y, ((0, 0), (0, -y.shape[1] % f), (0, -y.shape[2] % f)))[None]
        name = self._hyper_enc.get_inputs()[0].name
        return np.asarray(self._hyper_enc.run(None, {name: np.ascontiguousarray(y)})[0][0], dtype=np.float32)

    def rounding_weights(self, quality: float) -> np.ndarray | None:
        """(M,) error weights for rate-distortion optimised rounding at `quality` (core/rd_rounding.py), or None
        for a bundle exported before its decoder's distortion weights were measured (nearest rounding)."""
        return quality_rounding_weights(self.distortion_weights, self.lambdas, self.hyperprior, quality)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """(N,C,h,w) float32 -> (N,1,16h,16w) float32 in [0,1]."""
        y = np.ascontiguousarray(latents, dtype=np.float32)
        return np.asarray(self._dec.run(None, {self._dec_in: y})[0], dtype=np.float32)


def quality_rounding_weights(distortion_weights, lambdas, coder: HyperpriorCoder, quality: float):
    """(M,) error weights at `quality` for a bundle's distortion weights (None: nearest rounding)."""
    if distortion_weights is None:
        return None
    return error_weights(distortion_weights, interpolate_lambda(lambdas, quality), coder.inverse_gain(quality))


def manifest_distortion_weights(manifest: dict, channels: int, mp: Path) -> np.ndarray | None:
    """The manifest's `rounding.distortion_weights` (export/distortion_weights.py) as (M,) float64, if any."""
    rounding = manifest.get("rounding")
    if rounding is None:
        return None
    try:
        w = np.asarray(rounding["distortion_weights"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        w = np.empty(0)
    if w.shape != (channels,) or not np.isfinite(w).all() or (w <= 0).any():
        raise ModelBundleError(f"{mp}: rounding.distortion_weights must be {channels} positive numbers, one per "
                               f"latent channel")
    return w


def _session(path: Path, what: str, options, providers: list[str]):
    """An onnxruntime session for one bundle part; its failures are one ModelBundleError line.

    A CUDA provider whose libraries are missing makes onnxruntime print coloured C++ errors for every session
    before it falls back to the CPU; the fallback is reported in one line by the caller, so they are silenced.
    """
    import onnxruntime as ort  # noqa: PLC0415

    source = onnx_source(path, what)
    ort.set_default_logger_severity(4 if "CUDAExecutionProvider" in providers else ORT_DEFAULT_LOG_SEVERITY)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelBundleError(f"{path}: onnxruntime cannot load {what} "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    finally:
        ort.set_default_logger_severity(ORT_DEFAULT_LOG_SEVERITY)


def check_model_dirs(dirs) -> None:
    """Each folder a user named to be searched for models exists and is a folder, else ModelBundleError.

    `find_bundle` skips a folder that is not there (the plugin's saved folders may be on a drive not mounted
    now) and finds the decoder among the shipped models instead, so a typo in `--model-dir` went unnoticed until
    the day a file needed a model only that folder holds. The command lines call this before any work."""
    for d in dirs:
        if str(d) == "":  # Path("") is the current folder
            raise ModelBundleError("a model folder is an empty path")
        if not Path(d).is_dir():
            raise ModelBundleError(f"{d}: {'not a folder' if Path(d).exists() else 'no such folder'} (given as a "
                                   f"model folder)")


def _candidate_dirs(search_dirs) -> list[Path]:
    out: list[Path] = []
    for d in search_dirs:
        if d is None:
            continue
        p = Path(d)
        if (p / MANIFEST_NAME).is_file():
            out.append(p)
        elif p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if (c / MANIFEST_NAME).is_file()))
    return out


def find_bundle(decoder_sha256: str, search_dirs, model_name: str = "") -> Path:
    """The first bundle (a folder, or a folder of bundles) whose decoder hashes to `decoder_sha256`.

    Raises ModelMismatchError naming the model the file needs when none matches.
    """
    want = str(decoder_sha256).lower()
    seen, damaged = [], []
    for d in _candidate_dirs(search_dirs):
        try:
            m = load_manifest(d, verify=False)
        except ModelBundleError as exc:
            log.debug("skipping %s: %s", d, exc)
            continue
        seen.append(f"{d} ({m.get('name', '?')})")
        if str(m["files"]["decoder"]["sha256"]).lower() != want:
            continue
        f = d / m["files"]["decoder"]["path"]
        if f.is_file() and content_sha256(f) == want:
            return d
        damaged.append(str(f))
    label = f"model {model_name!r} " if model_name else "model "
    missing = [str(d) for d in search_dirs if d is not None and not Path(d).exists()]
    # A copy whose decoder is missing or altered is named as damaged: listed with the folders searched, it read
    # as "not found in <the folder that holds it>", and the advice to add that folder sent the user in a circle.
    broken = (f"; damaged copy (its decoder is missing or altered; copy it again): {', '.join(damaged)}"
              if damaged else "")
    raise ModelMismatchError(f"{label}with decoder SHA-256 {want} is needed but was not found in "
                             f"{', '.join(seen) if seen else 'any model folder searched'}"
                             f"{'; no such folder: ' + ', '.join(missing) if missing else ''}{broken}; "
                             f"{MODEL_FOLDER_ADVICE}")


def find_file_bundle(header: dict, model_dirs=None) -> Path:
    """The bundle holding the decoder a .sarc header names: in `model_dirs`, then among the models shipped with the
    plugin (where an earlier default is kept to decode its files). Read-only and without an onnxruntime session
    (manifests, and the hash of a matching decoder), so a dialog can refuse a file whose model is missing while the
    user can still act. Raises ModelMismatchError naming the model when no folder has it."""
    model = header["model"]
    return find_bundle(model["decoder_sha256"], [*(model_dirs or []), default_model_dir().parent],
                       model_name=str(model.get("name", "?")))
