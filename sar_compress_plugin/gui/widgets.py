"""Small shared form pieces."""

from __future__ import annotations

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox

from ..utils.settings import DEVICE_LABELS, DEVICES


def device_combo(current: str = "auto") -> QComboBox:
    combo = QComboBox()
    for key in DEVICES:
        combo.addItem(DEVICE_LABELS[key], key)
    combo.setCurrentIndex(max(0, combo.findData(current)))
    return combo


def tile_size_spin(value: int = 512) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(64, 8192)
    spin.setSingleStep(64)
    spin.setSuffix(" px")
    spin.setValue(int(value))
    spin.setToolTip("Tile edge in pixels (a multiple of 16). Larger tiles are faster on a GPU but use more memory.")
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
