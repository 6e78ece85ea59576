"""The plugin's dialogs: compress, reconstruct, quality maps, settings. Built in code, no .ui files."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayerProxyModel
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
)

from ..utils.settings import PluginSettings
from .widgets import device_combo, file_widget, quality_spin, quality_value, tile_size_spin

SARC_FILTER = "SAR compressed raster (*.sarc)"
TIFF_FILTER = "GeoTIFF (*.tif *.tiff)"


class _FormDialog(QDialog):
    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.form = QFormLayout()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept_if_valid)
        self.buttons.rejected.connect(self.reject)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #b2182b")
        self.error_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

    def validate(self) -> str:
        """An error message, or "" when the form can be accepted."""
        return ""

    def _accept_if_valid(self):
        error = self.validate()
        self.error_label.setText(error)
        if not error:
            self.accept()


class CompressDialog(_FormDialog):
    def __init__(self, layer_name: str, input_path: str, output_path: str, settings: PluginSettings, parent=None):
        super().__init__(f"Compress '{layer_name}' with SAR codec", parent)
        self.input_path = input_path
        self.output = file_widget(QgsFileWidget.StorageMode.SaveFile, output_path, SARC_FILTER,
                                  "Compressed SAR file")
        self.model_dir = file_widget(QgsFileWidget.StorageMode.GetDirectory, settings.model_dir,
                                     dialog_title="Model bundle folder")
        self.model_dir.lineEdit().setPlaceholderText("bundled default model")
        self.device = device_combo(settings.device)
        self.tile_size = tile_size_spin(settings.tile_size)
        self.quality = quality_spin(settings.quality)
        self.form.addRow("Input", QLabel(input_path))
        self.form.addRow("Output (.sarc)", self.output)
        self.form.addRow("Model folder", self.model_dir)
        self.form.addRow("Device", self.device)
        self.form.addRow("Tile size", self.tile_size)
        self.form.addRow("Quality", self.quality)

    def validate(self) -> str:
        out = self.output.filePath().strip()
        if not out:
            return "Choose an output file."
        if Path(out).resolve() == Path(self.input_path).resolve():
            return "The output may not overwrite the input."
        if not Path(out).parent.is_dir():
            return f"Folder {Path(out).parent} does not exist."
        if self.tile_size.value() % 16:
            return "The tile size must be a multiple of 16."
        return ""

    def output_path(self) -> str:
        out = self.output.filePath().strip()
        return out if out.lower().endswith(".sarc") else out + ".sarc"

    def option_values(self) -> dict:
        """Keyword arguments for core.codec.CompressOptions."""
        return {"model_dir": self.model_dir.filePath().strip() or None, "device": self.device.currentData(),
                "tile_size": int(self.tile_size.value()), "quality": quality_value(self.quality)}


class ReconstructDialog(_FormDialog):
    def __init__(self, sarc_path: str, output_path: str, settings: PluginSettings, parent=None):
        super().__init__("Reconstruct SAR raster", parent)
        self.input = file_widget(QgsFileWidget.StorageMode.GetFile, sarc_path, SARC_FILTER, "Compressed SAR file")
        self.output = file_widget(QgsFileWidget.StorageMode.SaveFile, output_path, TIFF_FILTER,
                                  "Reconstructed GeoTIFF")
        self.output.lineEdit().setPlaceholderText("next to the .sarc file")
        self.device = device_combo(settings.device)
        self.input.fileChanged.connect(self._input_changed)
        self.form.addRow("Compressed file", self.input)
        self.form.addRow("Output GeoTIFF", self.output)
        self.form.addRow("Device", self.device)

    def _input_changed(self, path: str):
        from ..qgis_io import default_reconstruction_path

        if path and not self.output.filePath():
            self.output.setFilePath(default_reconstruction_path(path))

    def validate(self) -> str:
        src = self.input.filePath().strip()
        if not src or not Path(src).is_file():
            return "Choose an existing .sarc file."
        out = self.output.filePath().strip()
        if out and not Path(out).parent.is_dir():
            return f"Folder {Path(out).parent} does not exist."
        return ""

    def sarc_path(self) -> str:
        return self.input.filePath().strip()

    def output_path(self) -> str:
        from ..qgis_io import default_reconstruction_path

        out = self.output.filePath().strip()
        if not out:
            return default_reconstruction_path(self.sarc_path())
        return out if out.lower().endswith((".tif", ".tiff")) else out + ".tif"


class QualityMapsDialog(_FormDialog):
    DOMAINS = (("auto", "Automatic (from metadata or values)"), ("intensity", "Linear intensity"),
               ("amplitude", "Linear amplitude"), ("db", "Decibels"))

    def __init__(self, reconstruction_layer, original_layer=None, parent=None):
        super().__init__(f"SAR quality maps of '{reconstruction_layer.name()}'", parent)
        self.reconstruction_layer = reconstruction_layer
        self.original = QgsMapLayerComboBox()
        self.original.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.original.setExceptedLayerList([reconstruction_layer])
        if original_layer is not None:
            self.original.setLayer(original_layer)
        self.window = QSpinBox()
        self.window.setRange(3, 101)
        self.window.setSingleStep(2)
        self.window.setValue(15)
        self.window.setSuffix(" px")
        self.domain = QComboBox()
        for key, label in self.DOMAINS:
            self.domain.addItem(label, key)
        self.form.addRow("Original layer", self.original)
        self.form.addRow("Window", self.window)
        self.form.addRow("Values are", self.domain)

    def validate(self) -> str:
        if self.original.currentLayer() is None:
            return "Choose the original layer."
        if self.window.value() % 2 == 0:
            return "The window must be an odd number of pixels."
        return ""

    def original_layer(self):
        return self.original.currentLayer()

    def window_size(self) -> int:
        return int(self.window.value())

    def value_domain(self) -> str | None:
        key = self.domain.currentData()
        return None if key == "auto" else key


class SettingsDialog(_FormDialog):
    def __init__(self, settings: PluginSettings, parent=None):
        super().__init__("SAR Compress settings", parent)
        self.model_dir = file_widget(QgsFileWidget.StorageMode.GetDirectory, settings.model_dir,
                                     dialog_title="Default model bundle folder")
        self.model_dir.lineEdit().setPlaceholderText("bundled default model")
        self.model_dirs = QLineEdit(";".join(settings.model_dirs))
        self.model_dirs.setPlaceholderText("folder;folder (searched for the model a .sarc file needs)")
        self.device = device_combo(settings.device)
        self.tile_size = tile_size_spin(settings.tile_size)
        self.quality = quality_spin(settings.quality)
        self.form.addRow("Default model", self.model_dir)
        self.form.addRow("More model folders", self.model_dirs)
        self.form.addRow("Device", self.device)
        self.form.addRow("Tile size", self.tile_size)
        self.form.addRow("Quality", self.quality)

    def validate(self) -> str:
        for p in [self.model_dir.filePath().strip(), *self._dirs()]:
            if p and not Path(p).is_dir():
                return f"Folder {p} does not exist."
        if self.tile_size.value() % 16:
            return "The tile size must be a multiple of 16."
        return ""

    def _dirs(self) -> list[str]:
        return [p.strip() for p in self.model_dirs.text().split(";") if p.strip()]

    def settings(self) -> PluginSettings:
        return PluginSettings(model_dir=self.model_dir.filePath().strip(), model_dirs=self._dirs(),
                              device=self.device.currentData(), tile_size=int(self.tile_size.value()),
                              quality=quality_value(self.quality))
