"""Training data: read SAR files, convert to normalised dB planes, split by scene, sample random patches.

The collection is small (~15 single-band megapixels of Sentinel-1), so everything is held in memory as
tensors on the training device and patches are cut on the fly (crops, flips, 90-degree rotations): no
DataLoader workers to feed, and each epoch sees fresh crops.

Each plane is normalised with its own per-band percentile bounds, the rule the codec applies at compress time
(core.preprocessing), so the network never sees a calibration offset it would not see in use.
The split unit is the *file* (scene): VV and VH of one scene, or the dates of one stack, never straddle it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sar_compress_plugin.core.errors import InputRasterError
from sar_compress_plugin.core.preprocessing import (
    DEFAULT_PERCENTILES, PreprocessingParams, canonical_domain, normalise, percentile_bounds, to_db,
)
from sar_compress_plugin.core.raster_io import physical_values, scaling_of, zero_scale_error

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff")
ARRAY_SUFFIXES = (".npy",)
MANIFEST_NAME = "MANIFEST.json"
#: A packed collection (trainer/pack.py): one .npz of dB planes, for machines without raster libraries.
PACK_FORMAT = "sar-compress-training-pack-2"
#: Domains in the manifest that are not single-band images (skipped with a note).
SKIPPED_DOMAINS = ("complex_covariance",)


class TrainingDataError(InputRasterError):
    """A training input cannot be used; the message names the file."""


@dataclass
class RawPlane:
    """One band of one file in dB, before normalisation (what evaluation compares against)."""

    scene: str          # file name: the unit of the train/val split
    band: str
    domain: str
    db: np.ndarray      # float32 (H, W); invalid pixels hold the noise floor
    valid: np.ndarray   # bool (H, W)

    @property
    def name(self) -> str:
        return f"{self.scene}:{self.band}"


@dataclass
class Plane:
    """A normalised plane held on the training device."""

    scene: str
    band: str
    x: torch.Tensor      # float32 (H, W) in [0, 1]
    valid: torch.Tensor  # bool (H, W)
    clip_db: tuple[float, float]

    @property
    def name(self) -> str:
        return f"{self.scene}:{self.band}"


# --- discovering and reading files ----------------------------------------------------------------------

def load_manifest(path: Path) -> dict[str, dict]:
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{path}: cannot read manifest ({exc})") from None
    if not isinstance(entries, list):
        raise TrainingDataError(f"{path}: manifest must be a JSON list of file entries")
    return {e["file"]: e for e in entries if isinstance(e, dict) and "file" in e}


def discover(data: str | Path, default_domain: str = "intensity") -> list[tuple[Path, dict]]:
    """(file, manifest entry or {}) for a file, a folder or a MANIFEST.json; files sorted by name.

    A folder's MANIFEST.json (or one beside a single file) supplies each file's value domain; files the
    manifest does not list get `default_domain`.
    """
    path = Path(data)
    if not path.exists():
        raise TrainingDataError(f"{path}: no such file or folder")
    canonical_domain(default_domain)  # fail early on a typo
    if path.is_file() and path.name == MANIFEST_NAME:
        manifest = load_manifest(path)
        files = [path.parent / name for name in sorted(manifest)]
    elif path.is_dir():
        manifest = load_manifest(path / MANIFEST_NAME) if (path / MANIFEST_NAME).exists() else {}
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES + ARRAY_SUFFIXES)
    else:
        sibling = path.parent / MANIFEST_NAME
        manifest = load_manifest(sibling) if sibling.exists() else {}
        files = [path]
    if not files:
        raise TrainingDataError(f"{path}: no .tif/.tiff/.npy files found")
    out = []
    for f in files:
        entry = dict(manifest.get(f.name, {}))
        entry.setdefault("value_domain", default_domain)
        out.append((f, entry))
    return out


def _band_names(count: int, entry: dict, descriptions=None) -> list[str]:
    pol = str(entry.get("polarization", ""))
    parts = [p.strip() for p in pol.split("/") if p.strip()]
    if len(parts) == count and all(len(p) <= 3 for p in parts):
        return parts
    if descriptions and all(descriptions) and len(set(descriptions)) == count:
        return list(descriptions)
    return [f"b{i + 1}" for i in range(count)]


def _read_array(path: Path, entry: dict) -> tuple[np.ndarray, list[str], float | None]:
    """(stack (N, H, W), band names, nodata) from a GeoTIFF or .npy."""
    if path.suffix.lower() in ARRAY_SUFFIXES:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TrainingDataError(f"{path}: cannot read .npy ({exc})") from None
        if arr.ndim == 2:
            arr = arr[None]
            names = _band_names(1, entry)
        elif arr.ndim == 3:  # (dates, H, W) stack: each date an image
            names = [f"t{i}" for i in range(arr.shape[0])]
        else:
            raise TrainingDataError(f"{path}: expected a 2-D image or a 3-D (dates, H, W) stack, got shape {arr.shape}")
        return arr, names, None
    import rasterio  # local: only training needs it

    try:
        with rasterio.open(path) as src:
            arr = src.read()
            nodata = src.nodata
            descriptions = list(src.descriptions)
            scalings = [scaling_of(s, o) for s, o in zip(src.scales, src.offsets)]
    except Exception as exc:  # rasterio raises several unrelated types for bad files
        raise TrainingDataError(f"{path}: cannot read raster ({str(exc).splitlines()[0]})") from None
    if arr.ndim != 3 or arr.shape[0] < 1:
        raise TrainingDataError(f"{path}: raster has no bands")
    error = zero_scale_error(path, scalings)
    if error:  # the codec refuses to compress such a file: in a folder it is skipped with this line
        # (read_collection), as other unusable files are
        raise TrainingDataError(error)
    if any(scalings):  # the codec codes a scaled band's physical values, so training must see them too: an int16
        # product in hundredths of a dB was trained on as stored numbers. Nodata (a stored value) becomes NaN.
        arr = np.stack([physical_values(band, nodata, scaling or (1.0, 0.0))[0]
                        for band, scaling in zip(arr, scalings)])
        nodata = None
    return arr, _band_names(arr.shape[0], entry, descriptions), nodata


def read_planes(path: str | Path, entry: dict | None = None, default_domain: str = "intensity") -> list[RawPlane]:
    """Every band of one file as dB planes; [] (with a logged note) for complex covariance data."""
    path = Path(path)
    entry = dict(entry or {})
    domain_name = str(entry.get("value_domain", default_domain))
    if domain_name.lower() in SKIPPED_DOMAINS:
        log.info("skipping %s: %s data is not a single-band image", path.name, domain_name)
        return []
    if not path.is_file():
        raise TrainingDataError(f"{path}: no such file")
    domain = canonical_domain(domain_name)
    arr, names, nodata = _read_array(path, entry)
    if np.iscomplexobj(arr):
        log.info("skipping %s: complex-valued array (covariance/SLC), not a single-band image", path.name)
        return []
    if arr.shape[-1] < 16 or arr.shape[-2] < 16:
        raise TrainingDataError(f"{path}: image {arr.shape[-2]}x{arr.shape[-1]} is smaller than 16x16")
    planes, empty = [], []
    for band, name in zip(arr, names):
        db, valid = to_db(band, domain, nodata)
        if valid.any():
            planes.append(RawPlane(path.name, name, domain, db, valid))
        else:
            empty.append(name)
    if not planes:
        raise TrainingDataError(f"{path}: all pixels are invalid (nodata/NaN/non-positive) in every band")
    if empty:  # only where the file is used: an empty file is one line, the error above
        log.warning("%s band(s) %s: all pixels invalid, skipped", path.name, ", ".join(empty))
    return planes


def read_collection(data: str | Path,
                    default_domain: str = "intensity") -> Iterator[tuple[Path, list[RawPlane]]]:
    """(file, its planes) for every file of `data` (discover). In a folder or a manifest, a file that cannot
    be used (unreadable, all nodata, under 16 px) is skipped with one warning line and no planes: one such file
    in a user's folder stopped the whole run. A single file given alone still fails with its error."""
    sources = discover(data, default_domain)
    for path, entry in sources:
        try:
            yield path, read_planes(path, entry, default_domain)
        except TrainingDataError as exc:
            if len(sources) == 1:
                raise
            log.warning("skipping %s", exc)
            yield path, []


# --- split --------------------------------------------------------------------------------------------

def split_scenes(scenes: list[str], val_fraction: float = 0.2, seed: int = 0,
                 groups: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Deterministic scene-level split: ~val_fraction of the scenes (at least one) held out.

    With `groups` (scene -> value domain) the split is stratified: every group of two or more scenes gives at
    least one validation scene, so the validation set covers each kind of product the model is trained on
    (linear GRD intensity, calibrated dB chips, SLC amplitude) instead of whatever a single draw picks.
    With a single scene there is nothing to hold out; the caller then splits that scene spatially.
    """
    scenes = sorted(set(scenes))
    if len(scenes) < 2:
        return scenes, []
    by_group: dict[str, list[str]] = {}
    for scene in scenes:
        by_group.setdefault((groups or {}).get(scene, ""), []).append(scene)
    rng = np.random.default_rng(seed)
    val: list[str] = []
    for _, members in sorted(by_group.items()):
        if len(members) < 2:
            continue
        order = rng.permutation(len(members))
        n_val = min(len(members) - 1, max(1, int(round(val_fraction * len(members)))))
        val += [members[i] for i in order[:n_val]]
    if not val:  # every group is a single scene: hold out one scene overall
        val = [scenes[int(rng.integers(len(scenes)))]]
    val = sorted(val)
    return sorted(set(scenes) - set(val)), val


def subset_scenes(train: list[str], fraction: float, seed: int = 0) -> list[str]:
    """The first ceil(fraction * n) training scenes in a seeded order (at least one): same subset every run."""
    if not 0 < fraction <= 1:
        raise ValueError(f"data_fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return list(train)
    order = np.random.default_rng(seed + 1).permutation(len(train))
    n = max(1, math.ceil(fraction * len(train)))
    return sorted(train[i] for i in order[:n])


def _strip_split(plane: RawPlane, fraction: float) -> tuple[RawPlane, RawPlane]:
    """Top rows for training, bottom rows for validation (a multiple of 16 each)."""
    h = plane.db.shape[0]
    cut = max(16, int(round((1 - fraction) * h / 16)) * 16)
    cut = min(cut, h - 16)

    def part(rows: slice) -> RawPlane:
        return RawPlane(plane.scene, plane.band, plane.domain, plane.db[rows], plane.valid[rows])

    return part(slice(0, cut)), part(slice(cut, h))


# --- normalisation and the dataset ----------------------------------------------------------------------

def normalise_plane(raw: RawPlane, device: torch.device | str = "cpu",
                    percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> Plane:
    lo, hi = percentile_bounds(raw.db, raw.valid, percentiles)
    x = normalise(raw.db, lo, hi)
    x[~raw.valid] = 0.0
    return Plane(raw.scene, raw.band, torch.from_numpy(x).to(device),
                 torch.from_numpy(raw.valid).to(device), (lo, hi))


@dataclass
class SarData:
    train: list[Plane]
    val: list[Plane]
    val_raw: list[RawPlane]
    params: PreprocessingParams
    summary: dict


def read_pack(path: str | Path) -> list[RawPlane]:
    """The planes of a packed collection (trainer/pack.py), dB restored to within 0.005 dB."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes().decode())
            if meta.get("format") != PACK_FORMAT:
                raise ValueError(f"not a {PACK_FORMAT} file")
            planes = []
            for i, m in enumerate(meta["planes"]):
                shape = tuple(m["shape"])
                high, low = npz[f"db_{i}"].astype(np.uint16)  # trainer/pack.py stores the two byte planes
                db = ((high << 8) | low).astype(np.float32) * np.float32(meta["db_step"]) + np.float32(m["db_offset"])
                valid = np.unpackbits(npz[f"valid_{i}"], count=int(np.prod(shape))).astype(bool).reshape(shape)
                planes.append(RawPlane(m["scene"], m["band"], m["domain"], db.reshape(shape), valid))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise TrainingDataError(f"{path}: cannot read packed training data ({exc})") from None
    return planes


def build_datasets(data: str | Path, *, default_domain: str = "intensity", val_fraction: float = 0.2,
                   data_fraction: float = 1.0, seed: int = 0, device: torch.device | str = "cpu") -> SarData:
    """Read (files, or a packed .npz), split by scene, normalise; also the training split's global clip bounds
    for PreprocessingParams."""
    planes: list[RawPlane] = []
    skipped: list[str] = []
    if str(data).endswith(".npz"):
        planes = read_pack(data)
    else:
        files = 0
        for path, got in read_collection(data, default_domain):
            files += 1
            if not got:
                skipped.append(path.name)
            planes.extend(got)
        if skipped:
            log.info("%d of %d file(s) used; skipped: %s", files - len(skipped), files, ", ".join(skipped))
    if not planes:
        raise TrainingDataError(f"{data}: no usable single-band images found")
    scenes = sorted({p.scene for p in planes})
    train_scenes, val_scenes = split_scenes(scenes, val_fraction, seed, {p.scene: p.domain for p in planes})
    train_scenes = subset_scenes(train_scenes, data_fraction, seed)
    if val_scenes:
        train_raw = [p for p in planes if p.scene in train_scenes]
        val_raw = [p for p in planes if p.scene in val_scenes]
        split_rule = "by_scene"
    else:
        log.warning("only one scene (%s): validating on its bottom %.0f%% rows; validation is not "
                    "scene-independent", scenes[0], 100 * val_fraction)
        pairs = [_strip_split(p, val_fraction) for p in planes]
        train_raw, val_raw = [a for a, _ in pairs], [b for _, b in pairs]
        split_rule = "single_scene_row_strips"
    train_valid = np.concatenate([p.db[p.valid] for p in train_raw])
    lo, hi = percentile_bounds(train_valid, None, DEFAULT_PERCENTILES)
    domains = sorted({p.domain for p in train_raw})
    params = PreprocessingParams(
        input_domain=canonical_domain(default_domain) if len(domains) != 1 else domains[0],
        clip_db=(lo, hi),
        extra={"training_domains": domains, "clip_db_scope": "training split, all valid pixels"},
    )
    summary = {
        "data": str(data),
        "split_rule": split_rule,
        "seed": int(seed),
        "data_fraction": float(data_fraction),
        "train_scenes": sorted({p.scene for p in train_raw}),
        "val_scenes": sorted({p.scene for p in val_raw}),
        "skipped_files": skipped,
        "train_planes": len(train_raw),
        "val_planes": len(val_raw),
        "train_pixels": int(sum(p.db.size for p in train_raw)),
        "train_valid_pixels": int(sum(p.valid.sum() for p in train_raw)),
        "val_pixels": int(sum(p.db.size for p in val_raw)),
    }
    return SarData([normalise_plane(p, device) for p in train_raw], [normalise_plane(p, device) for p in val_raw],
                   val_raw, params, summary)


# --- patches ------------------------------------------------------------------------------------------

class PatchSampler:
    """Random augmented patches from in-memory planes; a fresh seeded stream per (seed, rank, epoch).

    Seeding per epoch makes a resumed run draw exactly the patches an uninterrupted one would have.
    Planes are drawn in proportion to their area; patches with less than `min_valid` valid pixels are
    redrawn (invalid pixels are carried losslessly by the codec, the network need not learn them), up to DRAWS
    times; then the last draw is used all the same, and counted: `patches_under_valid` of `patches_drawn` since
    the epoch began, which the trainer reports once an epoch, so data that is mostly nodata shows instead of
    silently filling batches with invalid pixels.
    """

    DRAWS = 50

    def __init__(self, planes: list[Plane], patch_size: int, min_valid: float = 0.9, seed: int = 0, rank: int = 0):
        self.planes = [p for p in planes if min(p.x.shape) >= patch_size]
        dropped = [p.name for p in planes if min(p.x.shape) < patch_size]
        if dropped:
            log.info("%d plane(s) smaller than the %d px patch are not used for training: %s",
                     len(dropped), patch_size, ", ".join(dropped))
        if not self.planes:
            raise TrainingDataError(f"no training image is at least {patch_size}x{patch_size}; use a smaller --patch-size")
        self.patch_size = patch_size
        self.min_valid = min_valid
        self.seed = seed
        self.rank = rank
        areas = np.array([p.x.numel() for p in self.planes], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.rng = np.random.default_rng([seed, rank, 0])
        self.patches_drawn = self.patches_under_valid = 0

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, self.rank, epoch])
        self.patches_drawn = self.patches_under_valid = 0

    def _one(self) -> torch.Tensor:
        ps = self.patch_size
        self.patches_drawn += 1
        for _ in range(self.DRAWS):
            plane = self.planes[self.rng.choice(len(self.planes), p=self.weights)]
            h, w = plane.x.shape
            r = int(self.rng.integers(0, h - ps + 1))
            c = int(self.rng.integers(0, w - ps + 1))
            if plane.valid[r:r + ps, c:c + ps].float().mean() >= self.min_valid:
                break
        else:
            self.patches_under_valid += 1
        patch = plane.x[r:r + ps, c:c + ps]
        k = int(self.rng.integers(0, 4))
        if k:
            patch = torch.rot90(patch, k, dims=(0, 1))
        if self.rng.random() < 0.5:
            patch = torch.flip(patch, dims=(1,))
        return patch

    def sample_levels(self, batch_size: int, levels: int) -> torch.Tensor:
        """(B,) float quality levels, one per patch, uniform over the trained levels (from the same seeded
        stream as the patches, so a resumed epoch draws the same pairs)."""
        return torch.from_numpy(self.rng.integers(0, levels, batch_size).astype(np.float32))

    def sample(self, batch_size: int) -> torch.Tensor:
        """(B, 1, P, P) float32 on the planes' device."""
        return torch.stack([self._one() for _ in range(batch_size)])[:, None].contiguous()


def validation_tiles(planes: list[Plane], patch_size: int, max_tiles_per_plane: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, deterministic validation batches: non-overlapping tiles of each plane, (x, valid) per plane.

    Planes smaller than a patch give one tile of their largest multiple-of-16 size.
    """
    out = []
    for p in planes:
        h, w = p.x.shape
        th = min(patch_size, h // 16 * 16)
        tw = min(patch_size, w // 16 * 16)
        tiles_x, tiles_m = [], []
        for r in range(0, h - th + 1, th):
            for c in range(0, w - tw + 1, tw):
                tiles_x.append(p.x[r:r + th, c:c + tw])
                tiles_m.append(p.valid[r:r + th, c:c + tw])
        tiles_x, tiles_m = tiles_x[:max_tiles_per_plane], tiles_m[:max_tiles_per_plane]
        out.append((torch.stack(tiles_x)[:, None], torch.stack(tiles_m)[:, None]))
    return out
