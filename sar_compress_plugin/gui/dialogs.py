"""The plugin's dialogs: compress, reconstruct, quality maps, scene layer style, settings. Built in code, no .ui
files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qgis.core import QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QDoubleSpinBox,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QVBoxLayout,
)

from ..core.tiling import tile_size_error
from ..utils.settings import MODEL_FOLDERS_LABEL, PluginSettings, existing_folder, qgis_wording
from .widgets import RateChooser, device_combo, domain_combo, file_widget, output_widget, tile_size_spin

SARC_FILTER = "SAR compressed raster (*.sarc)"
TIFF_FILTER = "GeoTIFF (*.tif *.tiff)"


def resolve_output(typed: str, folder: str | Path, suffix: str, also: tuple[str, ...] = ()) -> str:
    """The file a typed output names: a relative name is taken in `folder` (the input's, not QGIS's working
    directory), and `suffix` is added unless it ends with it or one of `also`. A folder stays a folder, so that
    destination_error refuses it instead of writing `folder.sarc` beside it."""
    typed = typed.strip()
    if not typed:
        return ""
    p = Path(typed).expanduser()
    p = p if p.is_absolute() else Path(folder) / p
    if p.is_dir() or p.name.lower().endswith((suffix, *also)):
        return str(p)
    return f"{p}{suffix}"


def destination_error(out: str, taken=frozenset()) -> str:
    """Why `out` cannot be written, or "": checked on OK, so a task never starts only to fail at its last step.
    `taken`: resolved outputs of running tasks (the plugin starts no second task on one of them), or a function
    that returns them now (a task may finish while the dialog is open)."""
    from ..qgis_io import layer_with_file

    p = Path(out)
    if not out or not p.name:
        return "Choose an output file."
    if p.is_dir():
        return f"{p} is a folder: choose a file name in it."
    if str(p.resolve()) in (taken() if callable(taken) else taken):  # not on disk yet: "Replace it?" misses it
        return f"{p} is being written by a running task: wait for it to finish or choose another output."
    layer = layer_with_file(QgsProject.instance(), p)
    if layer is not None:  # replacing it would destroy the data that layer shows (often the original scene)
        return f"{p} is the file of layer '{layer.name()}' in this project: choose another output."
    if not p.parent.is_dir():
        return f"Folder {p.parent} does not exist."
    error = folder_write_error(p.parent)
    return f"{error}: choose another output." if error else ""


def typed_path(widget) -> str:
    """The path typed in a QgsFileWidget, stripped and with "~" expanded, as the output fields take it: typed in a
    folder field ("~/models/mine"), it was refused as a folder that "does not exist", which it did."""
    typed = widget.filePath().strip()
    return str(Path(typed).expanduser()) if typed else ""


def _data_raster_error(out: str) -> str:
    """Why `out`, an existing raster, may not be replaced by a reconstruction ("" when it may): one without the
    codec's reconstruction tag is someone's data, most often the very original the .sarc was made from, not loaded
    in the project. The dialog asked "Replace it?", and a Yes replaced the original by its lossy copy, which
    sar-reconstruct and the batch refuse (core.codec.refuse_to_replace_data)."""
    from ..core.codec import refuse_to_replace_data
    from ..core.errors import OutputPathError

    try:
        refuse_to_replace_data(out, remedy="choose another output")
    except OutputPathError as exc:
        return str(exc).removesuffix("; nothing written") + "."
    return ""


def folder_error(path: str) -> str:
    """Why a typed folder cannot be used as one ("" when it is a folder): a file typed there (a bundle's
    manifest.json rather than its folder, say) was called a folder that "does not exist"."""
    p = Path(path)
    if p.is_dir():
        return ""
    return f"{p} is a file, not a folder." if p.exists() else f"Folder {p} does not exist."


def folder_write_error(folder: Path) -> str:
    """"Folder … is not writable (reason)" or "" (core.raster_io.write_refusal: a real file is tried)."""
    from ..core.raster_io import write_refusal  # noqa: PLC0415 (the dialogs load before the codec's dependencies)

    why = write_refusal(folder)
    return f"Folder {folder} is not writable ({why})" if why else ""


def decode_only_error(manifest: dict | None, folder: str = "") -> str:
    """Why a bundle cannot compress ("" when it can): an earlier default kept under models/ only to decode the
    files it wrote has no encoder, and the codec refuses it once the task has started. Decided by the codec's own
    check (runtime.check_manifest_can_encode), worded for this form: its remedy is a field here. `manifest` comes
    from runtime.load_manifest, so the codec's packages are there whenever there is one."""
    if not manifest:
        return ""
    from ..core.errors import ModelBundleError
    from ..core.runtime import check_manifest_can_encode, default_model_dir

    try:
        check_manifest_can_encode(manifest, folder or default_model_dir())
    except ModelBundleError:
        where = f" in {folder}" if folder else ""
        return (f"Model '{manifest.get('name', folder)}'{where} is kept only to decode the files it wrote and "
                f"cannot compress: choose another model folder, or leave it empty for the bundled default model.")
    return ""


def compress_model_error(folder: str) -> str:
    """Why `folder` cannot be the model that compresses ("" when it can, or when the codec cannot be loaded to
    tell: the compress dialog checks again once it can)."""
    try:
        from ..core.errors import SarCompressError
        from ..core.runtime import load_manifest
    except ImportError:  # the codec's dependencies are missing: the compress dialog asks for them first
        return ""
    try:
        manifest = load_manifest(folder, verify=False)
    except SarCompressError as exc:
        return str(exc)
    return decode_only_error(manifest, folder)


def cuda_error() -> str:
    """Why device "cuda" cannot run here ("" when it may, or when the codec cannot be loaded to tell: an action
    asks for its dependencies first)."""
    try:
        from ..core.runtime import cuda_unavailable
    except ImportError:
        return ""
    return cuda_unavailable()


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

    def output_path(self) -> str:
        """The file this dialog's task will write ("" for none): if it exists, OK asks before replacing it."""
        return ""

    def _accept_if_valid(self):
        error = self.validate()
        self.error_label.setText(error)
        if not error and self.replace_confirmed():
            self.accept()

    def replace_confirmed(self) -> bool:
        """False when the output exists and the user answers No to replacing it. Asked here, on OK, for typed
        paths too; the output widgets' own file pickers do not ask (output_widget), so the question comes once."""
        out = self.output_path()
        if not out or not Path(out).exists():
            return True
        answer = QMessageBox.question(self, self.windowTitle(), f"{out} exists. Replace it?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes


class CompressDialog(_FormDialog):
    def __init__(self, layer_name: str, input_path: str, output_path: str, settings: PluginSettings, parent=None,
                 display_image_warning: str = "", taken=frozenset()):
        """`display_image_warning`: why the layer looks like a display image (RGB, 8-bit), not SAR values; the
        user must tick "compress anyway" to go on, because the codec would silently treat it as amplitude.
        `taken`: resolved outputs of running tasks, refused as this output (or a function returning them)."""
        super().__init__(f"Compress '{layer_name}' with SAR codec", parent)
        self.input_path = input_path
        self.taken = taken
        self.compress_anyway = QCheckBox("Compress it anyway (its values are treated as SAR amplitude)")
        if display_image_warning:
            warning = QLabel(display_image_warning)
            warning.setWordWrap(True)
            warning.setStyleSheet("color: #8c510a")
            self.form.addRow(warning)
            self.form.addRow(self.compress_anyway)
        self.display_image_warning = display_image_warning
        self.output = output_widget(output_path, SARC_FILTER, "Compressed SAR file")
        self.model_dir = file_widget(QgsFileWidget.StorageMode.GetDirectory, settings.model_dir,
                                     dialog_title="Model bundle folder")
        self.model_dir.lineEdit().setPlaceholderText("bundled default model")
        self.device = device_combo(settings.device)
        self.tile_size = tile_size_spin(settings.tile_size)
        self.rate = RateChooser(settings)
        self.quality = self.rate.quality
        # Not remembered: it says what one raster holds (a mislabelled one is refused until it is chosen here).
        self.domain = domain_combo()
        self.form.addRow("Input", QLabel(input_path))
        self.form.addRow("Values are", self.domain)
        self.form.addRow("Output (.sarc)", self.output)
        self.form.addRow("Model folder", self.model_dir)
        self.form.addRow("Device", self.device)
        self.form.addRow("Tile size", self.tile_size)
        self.form.addRow("Rate set by", self.rate)
        self.form.addRow("", self.rate.hint)
        self.model_dir.fileChanged.connect(self._model_changed)
        self._model_changed()

    def _model_changed(self, *_):
        """The hint describes the model chosen here; a folder that is not (yet: being typed) a bundle has none."""
        from ..core.errors import SarCompressError

        try:
            manifest = self._manifest()
        except SarCompressError:
            manifest = None
        # a decode-only bundle cannot compress: a hint of its bits per pixel would promise what it cannot do
        self.rate.set_model(None if decode_only_error(manifest) else manifest)

    def _manifest(self) -> dict:
        from ..core.runtime import default_model_dir, load_manifest

        return load_manifest(typed_path(self.model_dir) or default_model_dir(), verify=False)

    def validate(self) -> str:
        if self.display_image_warning and not self.compress_anyway.isChecked():
            return "This looks like a display image, not SAR data: tick \"Compress it anyway\" or Cancel."
        out = self.output_path()
        if out:
            self.output.setFilePath(out)  # the user sees the absolute path that will be written
        if out and Path(out).resolve() == Path(self.input_path).resolve():
            return "The output may not overwrite the input."
        error = destination_error(out, self.taken)
        if error:
            return error
        error = tile_size_error(self.tile_size.value())
        if error:
            return error
        return self.rate.error() or self._model_error()

    def _model_error(self) -> str:
        """Why the model folder or the quality cannot be used ("" when they can): refused here, not by the task
        after the dialog has closed (and the quality has been saved as the default). The quality by the codec's
        own check of a manifest, in its words."""
        from ..core.errors import SarCompressError
        from ..core.runtime import check_manifest_quality

        folder = typed_path(self.model_dir)
        error = folder_error(folder) if folder else ""
        if error:
            return error
        try:
            manifest = self._manifest()
        except SarCompressError as exc:
            return str(exc)
        error = decode_only_error(manifest, folder)
        if error:
            return error
        try:
            check_manifest_quality(manifest, self.rate.option_values().get("quality"))
        except SarCompressError as exc:
            return str(exc)
        return ""

    def output_path(self) -> str:
        """A relative name is taken in the input's folder; for a file inside an archive, the archive's."""
        from ..qgis_io import local_output_base

        return resolve_output(self.output.filePath(), Path(local_output_base(self.input_path)).parent, ".sarc")

    def option_values(self) -> dict:
        """Keyword arguments for core.codec.CompressOptions: one of quality, target_bpp and target_db_rmse."""
        return {"model_dir": typed_path(self.model_dir) or None, "device": self.device.currentData(),
                "tile_size": int(self.tile_size.value()), "domain": self.domain.currentData(),
                **self.rate.option_values()}


class ReconstructDialog(_FormDialog):
    AREAS = (("whole", "Whole scene"), ("extent", "Current map extent"))

    def __init__(self, sarc_path: str, output_path: str, settings: PluginSettings, parent=None, canvas=None,
                 taken=frozenset()):
        """`canvas`: the map canvas whose extent "Current map extent" takes (None: only the whole scene).
        `taken`: resolved outputs of running tasks, which the default output avoids. `settings`: the device
        offered first and the model folders a file's model must be found in. `taken` may be a function that
        returns those outputs now (a task may start or finish while the dialog is open). The default output goes
        in the folder the last reconstruction from this dialog went to, while it is there."""
        super().__init__("Reconstruct SAR raster", parent)
        self.canvas = canvas
        self._taken = taken
        self.model_dirs = settings.reconstruct_model_dirs()
        self._default_folder = existing_folder(settings.reconstruct_output_folder)
        self._window = None
        self.input = file_widget(QgsFileWidget.StorageMode.GetFile, sarc_path, SARC_FILTER, "Compressed SAR file")
        self.output = output_widget(output_path, TIFF_FILTER, "Reconstructed GeoTIFF")
        self.output.lineEdit().setPlaceholderText(f"in {self._default_folder}" if self._default_folder
                                                  else "next to the .sarc file")
        self.device = device_combo(settings.device)
        # The output follows the input (next to it) until the user types an output of their own.
        self._output_follows_input = not output_path
        self.input.fileChanged.connect(self._input_changed)
        self.output.lineEdit().textEdited.connect(self._output_edited)
        # A window of a large scene: only the tiles under it are read and decoded, so it is much faster.
        self.area = QComboBox()
        for key, label in self.AREAS:
            self.area.addItem(label, key)
        if canvas is None:
            self.area.model().item(1).setEnabled(False)
            self.area.setToolTip("No map canvas: only the whole scene can be reconstructed.")
        self.area.currentIndexChanged.connect(self._area_changed)
        self.form.addRow("Compressed file", self.input)
        self.form.addRow("Area", self.area)
        self.form.addRow("Output GeoTIFF", self.output)
        self.form.addRow("Device", self.device)

    @property
    def taken(self):
        return self._taken() if callable(self._taken) else self._taken

    def _output_edited(self, text: str):
        self._output_follows_input = not text.strip()

    def _extent_chosen(self) -> bool:
        return self.area.currentData() == "extent"

    def _area_changed(self, *_):
        """A window is named `<stem>_extent.tif` (qgis_io.default_reconstruction_path) while the output follows
        the input."""
        if self._output_follows_input and self.output.filePath().strip():
            self._input_changed(self.input.filePath())

    def _input_changed(self, path: str):
        """Called on every keystroke while a path is typed: "/" or "/da" are normal intermediate states."""
        if not self._output_follows_input:
            return
        path = path.strip()
        if path and Path(path).name and not Path(path).is_dir():
            self.output.setFilePath(self._default_output(path))
        else:
            self.output.setFilePath("")

    def _default_output(self, sarc_path: str) -> str:
        from ..qgis_io import default_reconstruction_path

        return default_reconstruction_path(sarc_path, self.taken, window=self._extent_chosen(),
                                           folder=self._default_folder)

    def validate(self) -> str:
        from ..core.codec import read_header, same_file
        from ..core.errors import NoOverlapError, SarCompressError

        src = self.sarc_path()
        if not src or not Path(src).is_file():
            return "Choose an existing .sarc file."
        try:  # a wrong, empty or truncated file is refused here, where another can be chosen, not by the task
            header = read_header(src)
        except SarCompressError as exc:
            return str(exc)
        self._window = None
        if self.area.currentData() == "extent":
            try:
                self._window = self._canvas_window(src, header)
            except NoOverlapError:  # its message quotes the box in the scene's CRS, which the user never typed
                return (f"The current map extent does not overlap {Path(src).name}: pan to the scene or choose "
                        f"\"Whole scene\".")
            except SarCompressError as exc:
                return qgis_wording(str(exc))
        if self.output.filePath().strip():
            self.output.setFilePath(self.output_path())  # the user sees the absolute path that will be written
        if same_file(self.output_path(), src):  # before "exists. Replace it?", which would mean the input
            return "The output may not overwrite the input."
        return (destination_error(self.output_path(), self.taken) or _data_raster_error(self.output_path())
                or self._model_error(src, header))

    def _model_error(self, src: str, header: dict) -> str:
        """Why the model `header` names cannot be found in the model folders ("" when it can): refused here, where
        the user can still choose another file or go to Settings, not by the task after the dialog has closed."""
        from ..core.errors import ModelMismatchError
        from ..core.runtime import find_file_bundle

        try:
            find_file_bundle(header, self.model_dirs)
        except ModelMismatchError as exc:
            return f"{src}: {qgis_wording(str(exc))}"
        return ""

    def _canvas_window(self, src: str, header: dict):
        """The canvas extent as a pixel window of the scene: transformed to the scene's CRS, clipped to it."""
        from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsCsException, QgsProject

        from ..core.codec import map_crs_wkt, window_from_bbox
        from ..core.errors import InputRasterError

        crs = QgsCoordinateReferenceSystem.fromWkt(map_crs_wkt(header["raster"]))
        rect = self.canvas.extent()
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        if crs.isValid() and canvas_crs.isValid() and crs != canvas_crs:
            try:
                rect = QgsCoordinateTransform(canvas_crs, crs, QgsProject.instance()).transformBoundingBox(rect)
            except QgsCsException:  # e.g. a world view that the scene's projection cannot represent
                raise InputRasterError(f"{src}: the map extent cannot be transformed to the scene's CRS; zoom in "
                                       f"to the scene or choose \"Whole scene\"") from None
        return window_from_bbox(header, (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), src)

    def window(self):
        """The pixel window (col, row, width, height) to reconstruct, or None for the whole scene (after OK)."""
        return self._window

    def sarc_path(self) -> str:
        return typed_path(self.input)

    def output_path(self) -> str:
        out = self.output.filePath().strip()
        if not out:
            return self._default_output(self.sarc_path())
        return resolve_output(out, Path(self.sarc_path()).parent, ".tif", also=(".tiff",))


class QualityMapsDialog(_FormDialog):
    def __init__(self, reconstruction_layer=None, original_layer=None, parent=None, folder: str = ""):
        """Either layer may be None: the user then chooses it (a guessed role could swap the two). `folder`: where
        the maps go ("": beside the reconstruction)."""
        super().__init__("SAR quality maps", parent)
        self.reconstruction, self.original = self._layer_combo(), self._layer_combo()
        self.reconstruction.setLayer(reconstruction_layer)
        self.original.setLayer(original_layer)
        self.window = QSpinBox()
        self.window.setRange(3, 101)
        self.window.setSingleStep(2)
        self.window.setValue(15)
        self.window.setSuffix(" px")
        self.domain = domain_combo()
        self.folder = file_widget(QgsFileWidget.StorageMode.GetDirectory, folder,
                                  dialog_title="Folder for the quality maps")
        self.folder.lineEdit().setPlaceholderText("beside the reconstruction")
        # One band at a time: the maps, and the grey reconstruction under them, show the band chosen here.
        self.band = QComboBox()
        self.reconstruction.layerChanged.connect(self._list_bands)
        self._list_bands(reconstruction_layer)
        self.form.addRow("Reconstruction", self.reconstruction)
        self.form.addRow("Original layer", self.original)
        self.form.addRow("Band", self.band)
        self.form.addRow("Window", self.window)
        self.form.addRow("Values are", self.domain)
        self.form.addRow("Output folder", self.folder)

    @staticmethod
    def _layer_combo() -> QgsMapLayerComboBox:
        combo = QgsMapLayerComboBox()
        combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        combo.setAllowEmptyLayer(True)  # empty, not the first layer of the project, when the role is unknown
        return combo

    def _list_bands(self, layer):
        """The data bands of the chosen reconstruction (none until one is chosen): not the alpha band under
        which QGIS shows the mask a reconstruction of a masked scene carries (qgis_io.data_bands). The band it
        shows is chosen: band 1 was, and the maps of VV came over a layer the analyst was viewing in VH, which
        the maps' grey restyle then switched to VV."""
        from ..qgis_io import data_bands

        self.band.clear()
        bands = data_bands(layer) if layer is not None else []
        for b in bands:
            self.band.addItem(layer.bandName(b), b)
        shown = [b for b in (layer.renderer().usesBands() if bands and layer.renderer() else []) if b in bands]
        if shown:
            self.band.setCurrentIndex(self.band.findData(shown[0]))

    def validate(self) -> str:
        if self.reconstruction_layer() is None:
            return "Choose the reconstruction."
        if self.original_layer() is None:
            return "Choose the original layer."
        if self.original_layer() is self.reconstruction_layer():
            return "Choose two different layers: the reconstruction and its original."
        if self.window.value() % 2 == 0:
            return "The window must be an odd number of pixels."
        return self._pair_error() or self._folder_error()

    def _pair_error(self) -> str:
        """Why the chosen layers cannot be mapped ("" when they can): refused here, where another layer can be
        chosen, and not by the task once the dialog has closed."""
        from ..core.errors import SarCompressError
        from ..core.quality_maps import open_pair
        from ..qgis_io import layer_band_nodata, layer_file_path

        original, reconstruction = self.original_layer(), self.reconstruction_layer()
        try:
            open_pair(layer_file_path(original), layer_file_path(reconstruction), [self.band_number()],
                      self.value_domain(), original_nodata=layer_band_nodata(original),
                      reconstruction_nodata=layer_band_nodata(reconstruction))
        except SarCompressError as exc:
            return str(exc)[:1].upper() + str(exc)[1:]
        return ""

    def _folder_error(self) -> str:
        """Why the maps cannot be written where they go ("" when they can)."""
        chosen = self.output_folder()
        if chosen:
            self.folder.setFilePath(chosen)  # the user sees the absolute folder that will be written
        folder = Path(chosen) if chosen else self._reconstruction_folder()
        if not folder.is_dir():
            return f"Folder {folder} does not exist."
        error = folder_write_error(folder)
        if error and not chosen:
            return f"{error}: the maps are written beside the reconstruction unless you choose an output folder."
        return f"{error}: choose another output folder." if error else ""

    def _reconstruction_folder(self) -> Path:
        """The reconstruction's folder (for one inside an archive, the archive's): where the maps go by default."""
        from ..qgis_io import layer_file_path, local_output_base

        return Path(local_output_base(layer_file_path(self.reconstruction_layer()))).parent

    def output_folder(self) -> str:
        """The folder typed, absolute (a relative one is taken in the reconstruction's folder, as typed output
        files are, not in QGIS's working directory), or "" for beside the reconstruction."""
        typed = self.folder.filePath().strip()
        if not typed:
            return ""
        folder = Path(typed).expanduser()
        return str(folder if folder.is_absolute() else self._reconstruction_folder() / folder)

    def reconstruction_layer(self):
        return self.reconstruction.currentLayer()

    def original_layer(self):
        return self.original.currentLayer()

    def window_size(self) -> int:
        return int(self.window.value())

    def band_number(self) -> int:
        return int(self.band.currentData())

    def value_domain(self) -> str | None:
        return self.domain.currentData()


class SarStyleDialog(_FormDialog):
    """How a scene layer shows: grey dB of one band, or a VV/VH false-colour composite (two bands or more)."""

    STYLES = (("grey", "Grey dB (one band)"), ("composite", "VV/VH composite (R: VV, G: VH, B: VV/VH, in dB)"))

    def __init__(self, layer_name: str, band_names: list[str], current: str = "grey:1", parent=None):
        """`current`: the layer's style as scene_layer.STYLE_PROPERTY stores it ("grey:2", "composite:1,2")."""
        super().__init__(f"SAR style of '{layer_name}'", parent)
        self.style = QComboBox()
        for key, label in self.STYLES:
            self.style.addItem(label, key)
        if len(band_names) < 2:
            self.style.model().item(1).setEnabled(False)
            self.style.setToolTip("A composite needs two bands (VV and VH).")
        self.band, self.vv, self.vh = QComboBox(), QComboBox(), QComboBox()
        for combo in (self.band, self.vv, self.vh):
            for b, name in enumerate(band_names, 1):
                combo.addItem(f"{b}: {name}" if name else f"Band {b}", b)

        def guess(pol: str, default: int) -> int:  # Sentinel-1 names its bands VV, VH (or HH, HV)
            return next((b for b, n in enumerate(band_names, 1) if pol in str(n).upper()), default)

        kind, _, bands = current.partition(":")
        numbers = [int(v) for v in bands.split(",") if v.strip().isdigit()]
        self.style.setCurrentIndex(max(0, self.style.findData(kind)))
        self.band.setCurrentIndex(max(0, self.band.findData(numbers[0] if kind == "grey" and numbers else 1)))
        vv, vh = numbers if kind == "composite" and len(numbers) == 2 else (guess("VV", 1), guess("VH", 2))
        self.vv.setCurrentIndex(max(0, self.vv.findData(vv)))
        self.vh.setCurrentIndex(max(0, self.vh.findData(vh)))
        self.form.addRow("Style", self.style)
        self.form.addRow("Band", self.band)
        self.form.addRow("VV band", self.vv)
        self.form.addRow("VH band", self.vh)
        self.style.currentIndexChanged.connect(self._style_changed)
        self._style_changed()

    def _style_changed(self, *_):
        composite = self.style.currentData() == "composite"
        self.band.setEnabled(not composite)
        self.vv.setEnabled(composite)
        self.vh.setEnabled(composite)

    def validate(self) -> str:
        if self.style.currentData() == "composite" and self.vv.currentData() == self.vh.currentData():
            return "Choose two different bands for VV and VH."
        return ""

    def choice(self) -> tuple[str, tuple[int, ...]]:
        """("grey", (band,)) or ("composite", (vv band, vh band)), bands 1-based."""
        if self.style.currentData() == "composite":
            return "composite", (int(self.vv.currentData()), int(self.vh.currentData()))
        return "grey", (int(self.band.currentData()),)


class SettingsDialog(_FormDialog):
    def __init__(self, settings: PluginSettings, parent=None):
        super().__init__("SAR Compress settings", parent)
        self._loaded = settings  # what other dialogs remember (the quality maps' folder) is kept as it was
        self.model_dir = file_widget(QgsFileWidget.StorageMode.GetDirectory, settings.model_dir,
                                     dialog_title="Default model bundle folder")
        self.model_dir.lineEdit().setPlaceholderText("bundled default model")
        self.model_dirs = QLineEdit(";".join(settings.model_dirs))
        self.model_dirs.setPlaceholderText("folder;folder (searched for the model a .sarc file needs)")
        self.device = device_combo(settings.device)
        self.tile_size = tile_size_spin(settings.tile_size)
        self.rate = RateChooser(settings)
        # Scene layers (.sarc opened as a layer): where decoded tiles are kept, how much disk they may take, and
        # how many pixels one pan/zoom may decode (a slow CPU wants less, a GPU more).
        self.tile_cache_dir = file_widget(QgsFileWidget.StorageMode.GetDirectory, settings.tile_cache_dir,
                                          dialog_title="Scene tile cache folder")
        self.tile_cache_dir.lineEdit().setPlaceholderText("tile_cache in the QGIS profile")
        self.tile_cache_mb = QSpinBox()
        self.tile_cache_mb.setRange(64, 1024 * 1024)
        self.tile_cache_mb.setSingleStep(256)
        self.tile_cache_mb.setSuffix(" MB")
        self.tile_cache_mb.setValue(int(settings.tile_cache_mb))
        self.tile_cache_mb.setToolTip("Least recently opened scenes are deleted from the cache beyond this size.")
        self.decode_budget = QDoubleSpinBox()
        self.decode_budget.setRange(0.25, 1024.0)
        self.decode_budget.setDecimals(2)
        self.decode_budget.setSuffix(" Mpx")
        self.decode_budget.setValue(float(settings.decode_budget_mpx))
        self.decode_budget.setToolTip("Most pixels decoded after one pan or zoom; zoomed out, the stored overview "
                                      "is shown instead.")
        self.form.addRow("Default model", self.model_dir)
        self.form.addRow(MODEL_FOLDERS_LABEL, self.model_dirs)
        self.form.addRow("Device", self.device)
        self.form.addRow("Tile size", self.tile_size)
        self.form.addRow("Rate set by", self.rate)
        self.form.addRow("Scene tile cache folder", self.tile_cache_dir)
        self.form.addRow("Scene tile cache size", self.tile_cache_mb)
        self.form.addRow("Decode per pan/zoom", self.decode_budget)

    def validate(self) -> str:
        for p in [typed_path(self.model_dir), *self._dirs()]:
            error = folder_error(p) if p else ""
            if error:
                return error
        model = typed_path(self.model_dir)
        error = compress_model_error(model) if model else ""
        if error:  # refused here, not by every compression after it
            return f"Default model: {error}"
        error = cuda_error() if self.device.currentData() == "cuda" else ""
        if error:  # saved, it failed every compression, reconstruction and scene layer until changed back
            return f"Device: GPU (CUDA) cannot run on this machine ({error}): choose Automatic or CPU."
        error = tile_size_error(self.tile_size.value())
        if error:
            return error
        error = self.rate.error()
        if error:
            return error
        cache = typed_path(self.tile_cache_dir)
        if cache:  # refused here rather than when the next scene is opened, far from this setting
            error = folder_error(cache)
            if error:
                return f"Scene tile cache: {error}"
            error = folder_write_error(Path(cache))
            if error:
                return f"Scene tile cache: {error}; choose another folder or leave it empty for the default."
        return ""

    def _dirs(self) -> list[str]:
        return [str(Path(p.strip()).expanduser()) for p in self.model_dirs.text().split(";") if p.strip()]

    def settings(self) -> PluginSettings:
        settings = dataclasses.replace(self._loaded, model_dir=typed_path(self.model_dir),
                                       model_dirs=self._dirs(), device=self.device.currentData(),
                                       tile_size=int(self.tile_size.value()),
                                       tile_cache_mb=int(self.tile_cache_mb.value()),
                                       tile_cache_dir=typed_path(self.tile_cache_dir),
                                       decode_budget_mpx=float(self.decode_budget.value()))
        self.rate.store(settings)
        return settings
