"""Plugin settings in QgsSettings under "sar_compress/": model folders, device preference, tile size, how the rate
is set (quality or a target), the scene layers' cache, the folders the dialogs last wrote in."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from qgis.core import QgsSettings

from ..__about__ import SETTINGS_PREFIX

DEVICES = ("auto", "cuda", "cpu")
#: The settings dialog's label for `model_dirs`; error messages name it so users find the field.
MODEL_FOLDERS_LABEL = "More model folders"
DEVICE_LABELS = {"auto": "Automatic (GPU if available)", "cuda": "GPU (CUDA)", "cpu": "CPU"}
#: How the compress dialog sets the rate -> the CompressOptions keyword (and PluginSettings field) holding its
#: value: a quality, or a target the codec searches the quality for (core/rate_control.py).
RATE_OPTIONS = {"quality": "quality", "bpp": "target_bpp", "db_rmse": "target_db_rmse"}
RATE_MODES = tuple(RATE_OPTIONS)


@dataclass
class PluginSettings:
    #: Default model bundle for compression; "" = the bundled default model.
    model_dir: str = ""
    #: Extra folders searched for the model a .sarc file names when reconstructing (bundles or parents of them).
    model_dirs: list[str] = field(default_factory=list)
    device: str = "auto"
    tile_size: int = 512
    #: None: each model's own default quality (a fixed number may lie outside a model's levels)
    quality: float | None = None
    #: One of RATE_MODES; the values of the other two are kept, so switching back finds them as they were.
    rate_mode: str = "quality"
    #: Bits per pixel per band (about what the bundled model's default quality gives)...
    target_bpp: float = 0.5
    #: ...and error in dB RMSE (the bundled model at its default quality gives about 0.85 dB).
    target_db_rmse: float = 1.0
    #: Scene layers: disk limit of the decoded-tile cache (least recently used scenes are deleted first)...
    tile_cache_mb: int = 2048
    #: ...its folder ("" = tile_cache in the QGIS profile)...
    tile_cache_dir: str = ""
    #: ...and the most pixels decoded per pan/zoom (a zoomed-out view shows the overview instead).
    decode_budget_mpx: float = 16.0
    #: Where the quality-maps dialog writes its maps ("" = beside the reconstruction).
    quality_maps_folder: str = ""
    #: Where the compress dialog offers to write ("" = beside the input): the folder of the last .sarc it was
    #: accepted with, as an analyst compressing scene after scene writes them all into one folder...
    compress_output_folder: str = ""
    #: ...and where the reconstruct dialog offers to write ("" = beside the .sarc).
    reconstruct_output_folder: str = ""

    @classmethod
    def load(cls) -> "PluginSettings":
        s = QgsSettings()
        d = cls()
        dirs = s.value(SETTINGS_PREFIX + "model_dirs", [], type=list) or []
        device = str(s.value(SETTINGS_PREFIX + "device", d.device, type=str))
        rate_mode = str(s.value(SETTINGS_PREFIX + "rate_mode", d.rate_mode, type=str))
        return cls(
            model_dir=str(s.value(SETTINGS_PREFIX + "model_dir", d.model_dir, type=str) or ""),
            model_dirs=[str(p) for p in dirs if str(p).strip()],
            device=device if device in DEVICES else "auto",
            tile_size=int(s.value(SETTINGS_PREFIX + "tile_size", d.tile_size, type=int)),
            quality=_quality(s.value(SETTINGS_PREFIX + "quality_level", -1.0, type=float)),
            rate_mode=rate_mode if rate_mode in RATE_MODES else d.rate_mode,
            target_bpp=_target(s.value(SETTINGS_PREFIX + "target_bpp", d.target_bpp, type=float), d.target_bpp),
            target_db_rmse=_target(s.value(SETTINGS_PREFIX + "target_db_rmse", d.target_db_rmse, type=float),
                                   d.target_db_rmse),
            tile_cache_mb=int(s.value(SETTINGS_PREFIX + "tile_cache_mb", d.tile_cache_mb, type=int)),
            tile_cache_dir=str(s.value(SETTINGS_PREFIX + "tile_cache_dir", d.tile_cache_dir, type=str) or ""),
            decode_budget_mpx=float(s.value(SETTINGS_PREFIX + "decode_budget_mpx", d.decode_budget_mpx,
                                            type=float)),
            quality_maps_folder=str(s.value(SETTINGS_PREFIX + "quality_maps_folder", d.quality_maps_folder,
                                            type=str) or ""),
            compress_output_folder=str(s.value(SETTINGS_PREFIX + "compress_output_folder", "", type=str) or ""),
            reconstruct_output_folder=str(s.value(SETTINGS_PREFIX + "reconstruct_output_folder", "", type=str) or ""),
        )

    def save(self) -> None:
        s = QgsSettings()
        s.setValue(SETTINGS_PREFIX + "model_dir", self.model_dir)
        s.setValue(SETTINGS_PREFIX + "model_dirs", list(self.model_dirs))
        s.setValue(SETTINGS_PREFIX + "device", self.device if self.device in DEVICES else "auto")
        s.setValue(SETTINGS_PREFIX + "tile_size", int(self.tile_size))
        s.setValue(SETTINGS_PREFIX + "quality_level", -1.0 if self.quality is None else float(self.quality))
        s.setValue(SETTINGS_PREFIX + "rate_mode", self.rate_mode if self.rate_mode in RATE_MODES else "quality")
        s.setValue(SETTINGS_PREFIX + "target_bpp", float(self.target_bpp))
        s.setValue(SETTINGS_PREFIX + "target_db_rmse", float(self.target_db_rmse))
        s.setValue(SETTINGS_PREFIX + "tile_cache_mb", int(self.tile_cache_mb))
        s.setValue(SETTINGS_PREFIX + "tile_cache_dir", self.tile_cache_dir)
        s.setValue(SETTINGS_PREFIX + "decode_budget_mpx", float(self.decode_budget_mpx))
        s.setValue(SETTINGS_PREFIX + "quality_maps_folder", self.quality_maps_folder)
        s.setValue(SETTINGS_PREFIX + "compress_output_folder", self.compress_output_folder)
        s.setValue(SETTINGS_PREFIX + "reconstruct_output_folder", self.reconstruct_output_folder)

    @classmethod
    def remember(cls, **values) -> None:
        """Save `values` over the settings as they are now. Not over a copy read when a dialog opened: saving that
        would undo what was saved meanwhile (the device a task that finished remembers)."""
        replace(cls.load(), **values).save()

    def rate_options(self) -> dict:
        """The one CompressOptions keyword the remembered choice sets (quality None: the model's default)."""
        key = RATE_OPTIONS.get(self.rate_mode, "quality")
        return {key: getattr(self, key)}

    def reconstruct_model_dirs(self) -> list[str] | None:
        """Folders to search for a file's model (None lets the codec use its bundled default alone)."""
        dirs = [p for p in [self.model_dir, *self.model_dirs] if p]
        return dirs or None


def existing_folder(folder: str) -> str:
    """A remembered output folder, or "" (the dialog's own default) when it is gone: renamed, or on a drive not
    mounted now. Offered, it was refused on OK as a folder that does not exist. Not forgotten: the drive may
    come back."""
    return folder if folder and Path(folder).is_dir() else ""


def _quality(v) -> float | None:
    """A stored quality; negative (or unreadable) means the model's default."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


def _target(v, default: float) -> float:
    """A stored target; the default when unreadable or not positive (the codec would refuse it)."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) and v > 0 else default


def qgis_wording(message: str) -> str:
    """A codec message as QGIS users should read it: the plugin setting that lists model folders, or the compress
    dialog's "Values are", instead of the command-line flag (the codec stays QGIS-free; the plugin rewords where
    it shows messages)."""
    from ..core.errors import DB_DOMAIN_ADVICE, DOMAIN_DOUBT, MODEL_FOLDER_ADVICE  # noqa: PLC0415

    return (message.replace(MODEL_FOLDER_ADVICE, f'add the folder that holds it under Raster > SAR Compress > '
                                                 f'Settings… > "{MODEL_FOLDERS_LABEL}"')
            .replace(DB_DOMAIN_ADVICE, 'compress it again with "Values are: Decibels"')
            .replace(DOMAIN_DOUBT, 'wrong value domain? Choose it under "Values are"'))


@contextlib.contextmanager
def model_folders_hint():
    """qgis_wording for a missing-model error raised through Processing, which shows exceptions itself."""
    from ..core.errors import ModelMismatchError

    try:
        yield
    except ModelMismatchError as exc:
        worded = qgis_wording(str(exc))
        if worded == str(exc):
            raise
        raise ModelMismatchError(worded) from None
