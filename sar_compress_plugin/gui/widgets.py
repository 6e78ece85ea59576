"""Small shared form pieces."""

from __future__ import annotations

import math

import numpy as np
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QStackedWidget,
                                 QWidget)

from ..core.tiling import MAX_WRITE_TILE, TILE_STEP
from ..utils.settings import DEVICE_LABELS, DEVICES, RATE_MODES, RATE_OPTIONS, PluginSettings

RATE_MODE_LABELS = {"quality": "Quality", "bpp": "Bits per pixel (per band)", "db_rmse": "Error (dB RMSE)"}
#: Targets the dialogs accept. Beyond them a search can only end at a model's bottom or top level (the bundled
#: model spans about 0.12-1.7 bpp per band on its validation scenes); the margins leave room for other models.
BPP_RANGE = (0.05, 4.0)
DB_RMSE_RANGE = (0.3, 3.0)
#: Bits per pixel of one float32 band: what a band's compression ratio is measured against.
FLOAT32_BITS = 32
#: Says where the quality hint's numbers come from: another scene may need more or fewer bits.
TYPICAL = "typical, on the model's validation scenes"


#: What a raster's values are, as the codec and the quality maps take it (None: from its metadata or values).
VALUE_DOMAINS = ((None, "Automatic (from metadata or values)"), ("intensity", "Linear intensity"),
                 ("amplitude", "Linear amplitude"), ("db", "Decibels"))


def domain_combo() -> QComboBox:
    """"Values are": the value domain, automatic unless the user knows better (a mislabelled or untagged
    raster); its currentData() is the codec's `domain` argument."""
    combo = QComboBox()
    for key, label in VALUE_DOMAINS:
        combo.addItem(label, key)
    return combo


def device_combo(current: str = "auto") -> QComboBox:
    combo = QComboBox()
    for key in DEVICES:
        combo.addItem(DEVICE_LABELS[key], key)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    return combo


def tile_size_spin(value: int = 512) -> QSpinBox:
    """The codec's range of tile edges (core.tiling.tile_size_error, which the dialogs check a typed value with): it
    offered 8192, and a tile over MAX_WRITE_TILE was accepted, remembered, and refused by every compression's task
    after its dialog had closed; it refused 16 to 48, which the codec takes."""
    spin = QSpinBox()
    spin.setRange(TILE_STEP, MAX_WRITE_TILE)
    spin.setSingleStep(TILE_STEP)
    spin.setSuffix(" px")
    spin.setValue(int(value))
    spin.setToolTip(f"Tile edge in pixels, a multiple of {TILE_STEP} from {TILE_STEP} to {MAX_WRITE_TILE}. "
                    "Larger tiles are faster on a GPU but use more memory.")
    return spin


def quality_spin(value: float | None = None, top: float = 5.0) -> QDoubleSpinBox:
    """Quality levels 0..top; its minimum (-0.25, shown as "model default") means None: the bundle's default."""
    spin = QDoubleSpinBox()
    spin.setRange(-0.25, top)
    spin.setSpecialValueText("model default")
    spin.setSingleStep(0.25)
    spin.setDecimals(2)
    spin.setValue(-0.25 if value is None else float(value))
    spin.setToolTip("Operating point of the variable-rate model: 0 writes the fewest bits, the top level the "
                   "most (each step up about doubles the bits at low rates); fractions interpolate.")
    return spin


def target_spin(value: float, step: float, suffix: str, tooltip: str) -> QDoubleSpinBox:
    """A rate target's field. It takes any number up to 99.99, so that one out of range gets the dialog's message
    (RateChooser.error) rather than keystrokes the spin box silently drops."""
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 99.99)
    spin.setDecimals(2)
    spin.setSingleStep(step)
    spin.setSuffix(suffix)
    spin.setValue(float(value))
    spin.setToolTip(tooltip)
    return spin


def typical_bpp(val_levels, quality: float) -> float | None:
    """Bits per pixel per band a model spends at `quality` on its validation scenes, log-linear between the
    manifest's `validation.val_levels` (level i is quality i): rate roughly doubles per level, so a straight line
    in bpp would overstate fractional qualities. None when the manifest has no usable levels."""
    try:
        bpps = [float(level["bpp"]) for level in val_levels]
    except (TypeError, KeyError, ValueError):
        return None
    if not bpps or not all(math.isfinite(b) and b > 0 for b in bpps):
        return None
    return float(np.exp(np.interp(float(quality), np.arange(len(bpps)), np.log(bpps))))


def rate_hint(mode: str, value: float | None, manifest: dict | None) -> str:
    """One line saying what a rate choice means in bits and ratio; "" when the model cannot say (no manifest, or
    one without validation levels). `value` None: the model's default quality."""
    if mode == "bpp":
        return f"Ratio {FLOAT32_BITS / value:.1f}:1 for a float32 band." if value > 0 else ""
    if mode == "db_rmse":
        return ("No estimate: the quality that gives this error is searched on sample tiles of the raster "
                "before compressing.")
    if manifest is None:
        return ""
    quality = manifest.get("rate", {}).get("default_quality") if value is None else value
    bpp = None if quality is None else typical_bpp((manifest.get("validation") or {}).get("val_levels"), quality)
    if bpp is None:
        return ""
    which = f"Model default ({quality:g}): about" if value is None else "About"
    return f"{which} {bpp:.3f} bpp per band, ratio {FLOAT32_BITS / bpp:.1f}:1 for a float32 band ({TYPICAL})."


class RateChooser(QWidget):
    """How the rate is set: a quality, or a target in bits per pixel or in dB RMSE that the codec searches the
    quality for, each in its own field (one shown at a time), with `hint` (a label the dialog places) saying what
    the value means, since a quality number alone tells a radar analyst nothing."""

    def __init__(self, settings: PluginSettings, parent=None):
        super().__init__(parent)
        self.mode = QComboBox()
        for key in RATE_MODES:
            self.mode.addItem(RATE_MODE_LABELS[key], key)
        self.quality = quality_spin(settings.quality)
        self.target_bpp = target_spin(settings.target_bpp, 0.05, " bpp", (
            "Bits per pixel per band the compressed file should take (a float32 band takes 32): the codec "
            "searches the quality that gives it on sample tiles of the raster."))
        self.target_db_rmse = target_spin(settings.target_db_rmse, 0.1, " dB", (
            "Root-mean-square error of the reconstruction in dB: the codec searches the lowest quality that "
            "reaches it on sample tiles of the raster."))
        self.fields = {"quality": self.quality, "bpp": self.target_bpp, "db_rmse": self.target_db_rmse}
        self.stack = QStackedWidget()
        for key in RATE_MODES:
            self.stack.addWidget(self.fields[key])
        self.hint = QLabel()
        self.hint.setStyleSheet("color: #555555")
        self.manifest: dict | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.mode)
        layout.addWidget(self.stack, 1)
        self.mode.setCurrentIndex(max(0, self.mode.findData(settings.rate_mode)))
        self.mode.currentIndexChanged.connect(self._show_field)
        for spin in self.fields.values():
            spin.valueChanged.connect(self._update_hint)
        self._show_field()

    def current_mode(self) -> str:
        return self.mode.currentData()

    def value(self) -> float | None:
        """The chosen field's number (None for the model's default quality)."""
        if self.current_mode() == "quality":
            return quality_value(self.quality)
        return float(self.fields[self.current_mode()].value())

    def set_model(self, manifest: dict | None) -> None:
        """The manifest of the model the hint describes (None: no model, no quality hint)."""
        self.manifest = manifest
        self._update_hint()

    def _show_field(self, *_):
        self.stack.setCurrentWidget(self.fields[self.current_mode()])
        self._update_hint()

    def _update_hint(self, *_):
        self.hint.setText(rate_hint(self.current_mode(), self.value(), self.manifest))

    def error(self) -> str:
        """Why the chosen target is refused, or "" (a quality is checked against the model by the dialog)."""
        mode = self.current_mode()
        if mode == "quality":
            return ""
        if mode == "bpp":
            (lo, hi), what = BPP_RANGE, "Bits per pixel (per band)"
        else:
            (lo, hi), what = DB_RMSE_RANGE, "The error (dB RMSE)"
        value = self.value()
        return "" if lo <= value <= hi else f"{what} must be between {lo:g} and {hi:g}, not {value:g}."

    def option_values(self) -> dict:
        """The one CompressOptions keyword the choice sets."""
        return {RATE_OPTIONS[self.current_mode()]: self.value()}

    def store(self, settings: PluginSettings) -> None:
        """Remember the choice and all three values, so that switching back later finds each as it was left."""
        settings.rate_mode = self.current_mode()
        settings.quality = quality_value(self.quality)
        settings.target_bpp = float(self.target_bpp.value())
        settings.target_db_rmse = float(self.target_db_rmse.value())


def file_widget(mode, path: str = "", filter_: str = "", dialog_title: str = "") -> QgsFileWidget:
    w = QgsFileWidget()
    w.setStorageMode(mode)
    if filter_:
        w.setFilter(filter_)
    if dialog_title:
        w.setDialogTitle(dialog_title)
    w.setFilePath(path)
    return w


def output_widget(path: str, filter_: str, dialog_title: str) -> QgsFileWidget:
    """A "save as" field whose picker does not ask about replacing a file: the dialog asks on OK, for typed and
    picked paths alike (dialogs._FormDialog.replace_confirmed)."""
    w = file_widget(QgsFileWidget.StorageMode.SaveFile, path, filter_, dialog_title)
    w.setConfirmOverwrite(False)
    return w


def quality_value(spin: QDoubleSpinBox) -> float | None:
    """The quality a quality_spin holds: None for "model default"."""
    v = float(spin.value())
    return None if v < 0 else v
