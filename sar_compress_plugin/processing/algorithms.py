"""Processing algorithms. Each calls the same core function as the plugin's tasks and the CLI:
feedback.isCanceled -> is_cancelled, feedback.setProgress -> progress; SarCompressError -> QgsProcessingException."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProject,
)
from qgis.PyQt import sip
from qgis.PyQt.QtGui import QIcon

from ..__about__ import __icon_path__
from ..core.errors import CancelledError, SarCompressError
from ..core.tiling import MAX_WRITE_TILE, TILE_STEP, tile_size_error
from ..utils.deps import check_dependencies, install_hint
from ..utils.settings import model_folders_hint, qgis_wording

DEVICES = ("auto", "cuda", "cpu")
DEVICE_LABELS = ["Automatic (GPU if available)", "GPU (CUDA)", "CPU"]
DOMAINS = (None, "intensity", "amplitude", "db")
DOMAIN_LABELS = ["Automatic (metadata or values)", "Linear intensity", "Linear amplitude", "Decibels"]


def _callbacks(feedback):
    def progress(fraction: float) -> None:
        if feedback is not None:
            feedback.setProgress(100.0 * min(1.0, max(0.0, float(fraction))))

    def is_cancelled() -> bool:
        return feedback is not None and feedback.isCanceled()

    return progress, is_cancelled


def _layer_path(alg, parameters, name, context) -> str:
    layer = alg.parameterAsRasterLayer(parameters, name, context)
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"{name}: not a readable raster layer")
    from ..qgis_io import layer_file_path

    try:
        return layer_file_path(layer)
    except SarCompressError as exc:
        raise QgsProcessingException(str(exc)) from None


def _require_codec_dependencies() -> None:
    missing = check_dependencies()
    if missing:
        raise QgsProcessingException(install_hint(missing))


def _require_sarc_signature(path: str) -> None:
    """Refuse, in one line, a file that does not start with the .sarc signature (whatever its extension)."""
    from ..core.container import MAGIC

    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError as exc:
        raise QgsProcessingException(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if head != MAGIC:
        raise QgsProcessingException(f"{path}: not a SAR compressed file (it does not start with the .sarc "
                                     "signature)")


#: The names the quality maps are written under: the core writes GeoTIFF whatever the name says.
GEOTIFF_SUFFIXES = ("", ".tif", ".tiff")


def _geotiff_name_error(output: str) -> str:
    """Why `output` cannot hold a quality map ("" when it can). The core writes a GeoTIFF under any name, and a
    GeoTIFF named .img or .vrt is opened by other programs as the format its name says, and fails there; the
    Toolbox offers .tif only, but a batch row or a script can type any name (reconstruct already refuses)."""
    suffix = Path(str(output)).suffix
    if suffix.lower() in GEOTIFF_SUFFIXES:
        return ""
    return f"{output}: the quality maps are written as GeoTIFF; name it .tif, not {suffix}"


def _name_loaded_layer(context, output: str, generic: str, name: str) -> None:
    """Name the layer Processing loads for `output` as the plugin's dialogs name theirs, unless it carries a
    name of its own: a model names its final outputs after the model's outputs, which its author chose."""
    if not context.willLoadLayerOnCompletion(output):
        return
    from ..qgis_io import unique_layer_name

    details = context.layerToLoadOnCompletionDetails(output)
    if details.name in ("", generic):
        details.name = unique_layer_name(context.project() or QgsProject.instance(), name)


def _refuse_a_project_layers_file(output: str, context, replacing: str = "reconstruction") -> None:
    """Processing replaces an existing output without asking: the file of a project layer, often the original
    scene itself, would be destroyed under that layer; and so would a raster that is not the codec's earlier
    output (`replacing`, core.codec.refuse_to_replace_data), an original not loaded in the project: a batch row
    naming its reconstruction after its .sarc in the originals' folder replaced the original by its lossy copy,
    which sar-reconstruct and the batch refuse."""
    from ..qgis_io import layer_with_file

    project = context.project()
    layer = layer_with_file(project, output) if project is not None else None
    if layer is not None:
        raise QgsProcessingException(f"{output} is the file of layer '{layer.name()}' in this project: choose "
                                     "another output")
    if replacing:  # (the codec's packages: the quality maps, which pass none, run without them)
        from ..core.codec import refuse_to_replace_data

        try:
            refuse_to_replace_data(output, replacing=replacing, remedy="choose another output")
        except SarCompressError as exc:
            raise QgsProcessingException(str(exc)) from None


class _SarAlgorithm(QgsProcessingAlgorithm):
    def group(self):
        return "SAR codec"

    def groupId(self):  # noqa: N802 (QGIS API)
        return "sarcodec"

    def icon(self):
        return QIcon(str(__icon_path__))

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CancelledError as exc:
            raise QgsProcessingException(f"Cancelled: {exc}") from None
        except SarCompressError as exc:
            raise QgsProcessingException(qgis_wording(str(exc))) from None


class CompressAlgorithm(_SarAlgorithm):
    INPUT, DOMAIN, MODEL_DIR, DEVICE, TILE_SIZE, QUALITY, TARGET_BPP, TARGET_DB_RMSE, OUTPUT = (
        "INPUT", "DOMAIN", "MODEL_DIR", "DEVICE", "TILE_SIZE", "QUALITY", "TARGET_BPP", "TARGET_DB_RMSE", "OUTPUT")
    #: The ways to set the rate -> CompressOptions keywords; at most one may be given.
    RATE_PARAMETERS = {QUALITY: "quality", TARGET_BPP: "target_bpp", TARGET_DB_RMSE: "target_db_rmse"}

    def name(self):
        return "compress"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Compress SAR raster"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return ("Compresses a SAR raster (intensity, amplitude or dB) into a .sarc file with the learned codec. "
                "The rate is set by at most one of QUALITY, TARGET_BPP (bits per pixel per band) and "
                "TARGET_DB_RMSE (error in dB); for a target the codec searches the quality on sample tiles, and "
                "with none it uses the model's default quality. DOMAIN says what the values are where the "
                "raster's VALUE_DOMAIN tag is wrong. Bits per pixel and ratio are measured from the "
                "file written: BPP counts all bands together (twice the per-band figure for VV+VH), RATIO is "
                "the raster's raw bytes over the file's. PROVIDER says which onnxruntime execution provider "
                "actually ran.")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "SAR raster"))
        # a raster whose VALUE_DOMAIN tag is wrong cannot be compressed without it
        self.addParameter(QgsProcessingParameterEnum(self.DOMAIN, "Values are", options=DOMAIN_LABELS,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.MODEL_DIR, "Model bundle folder (empty: bundled default)",
                                                     behavior=QgsProcessingParameterFile.Behavior.Folder,
                                                     optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", options=DEVICE_LABELS, defaultValue=0))
        # the codec's own range (tiling.tile_size_error), so that the Toolbox refuses a tile before the run, not
        # the run after it
        self.addParameter(QgsProcessingParameterNumber(self.TILE_SIZE, f"Tile size (pixels, multiple of {TILE_STEP}, "
                                                       f"{TILE_STEP} to {MAX_WRITE_TILE})",
                                                       QgsProcessingParameterNumber.Type.Integer, 512,
                                                       minValue=TILE_STEP, maxValue=MAX_WRITE_TILE))
        self.addParameter(QgsProcessingParameterNumber(self.QUALITY, "Quality (0 fewest bits .. model's top level; "
                                                       "empty: the model's default)",
                                                       QgsProcessingParameterNumber.Type.Double, None,
                                                       optional=True, minValue=0.0, maxValue=64.0))
        self.addParameter(QgsProcessingParameterNumber(self.TARGET_BPP, "Target bits per pixel per band (instead "
                                                       "of a quality; a float32 band takes 32)",
                                                       QgsProcessingParameterNumber.Type.Double, None,
                                                       optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterNumber(self.TARGET_DB_RMSE, "Target error in dB RMSE (instead of "
                                                       "a quality)",
                                                       QgsProcessingParameterNumber.Type.Double, None,
                                                       optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, "Compressed file",
                                                                "SAR compressed raster (*.sarc)"))
        # BPP counts every band of a pixel, TARGET_BPP one band: "Bits per pixel" alone read as the target's unit
        for name, desc in (("RATIO", "Compression ratio"), ("BPP", "Bits per pixel, all bands together"),
                           ("SECONDS", "Seconds")):
            self.addOutput(QgsProcessingOutputNumber(name, desc))
        self.addOutput(QgsProcessingOutputString("PROVIDER", "Execution provider that ran"))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """Two ways to set the rate at once, and a tile size the codec refuses, are refused before the run (the
        Toolbox shows why), not guessed or failed once started."""
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        given = [name for name in self.RATE_PARAMETERS if parameters.get(name) not in (None, "")]
        if len(given) > 1:
            return False, (f"Set at most one of QUALITY, TARGET_BPP and TARGET_DB_RMSE, not "
                           f"{' and '.join(given)}: a target makes the codec search the quality.")
        error = tile_size_error(self.parameterAsInt(parameters, self.TILE_SIZE, context))
        return (False, error) if error else (ok, message)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        _require_codec_dependencies()
        from ..core.codec import CompressOptions, compress
        from ..qgis_io import layer_nodata

        input_path = _layer_path(self, parameters, self.INPUT, context)
        try:  # the no-data value set on a project layer in QGIS, which its file lacks
            nodata = layer_nodata(self.parameterAsRasterLayer(parameters, self.INPUT, context))
        except SarCompressError as exc:
            raise QgsProcessingException(str(exc)) from None
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        # a scene layer reads its .sarc while the map is panned; a raster under the name is someone's data
        _refuse_a_project_layers_file(output, context, replacing="sarc")
        options = CompressOptions(
            model_dir=self.parameterAsFile(parameters, self.MODEL_DIR, context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context), nodata=nodata,
            domain=DOMAINS[self.parameterAsEnum(parameters, self.DOMAIN, context)],
            **{keyword: self.parameterAsDouble(parameters, name, context)
               for name, keyword in self.RATE_PARAMETERS.items() if parameters.get(name) not in (None, "")})
        progress, is_cancelled = _callbacks(feedback)
        r = self._call(compress, input_path, output, options, progress=progress, is_cancelled=is_cancelled)
        feedback.pushInfo(f"{r.output_path}: ratio {r.ratio:.2f}:1, {r.bpp:.4f} bpp ({r.bpp_per_band:.4f} per "
                          f"band), {r.seconds:.1f} s on {r.provider}")
        return {self.OUTPUT: r.output_path, "RATIO": r.ratio, "BPP": r.bpp, "SECONDS": r.seconds,
                "PROVIDER": r.provider}


class ReconstructAlgorithm(_SarAlgorithm):
    INPUT, DEVICE, EXTENT, OUTPUT = "INPUT", "DEVICE", "EXTENT", "OUTPUT"

    def name(self):
        return "reconstruct"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "Reconstruct SAR raster"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return ("Reconstructs a .sarc file to a georeferenced GeoTIFF in the original value domain and data type. "
                "The model the file names is looked up in the plugin's model folders and the bundled default. "
                "With an extent, only the tiles covering it are read and decoded, and the output covers the "
                "extent (clipped to the scene, on the scene's pixel grid).")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        # Any name: Compress writes whatever name it is given, so the file's signature decides, not its extension.
        self.addParameter(QgsProcessingParameterFile(self.INPUT, "Compressed file (.sarc)",
                                                     fileFilter="SAR compressed raster (*.sarc);;All files (*)"))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, "Device", options=DEVICE_LABELS, defaultValue=0))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty: whole scene)", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Reconstructed raster"))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Seconds"))
        self.addOutput(QgsProcessingOutputString("PROVIDER", "Execution provider that ran"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        _require_codec_dependencies()
        from ..core.codec import reconstruct
        from ..utils.settings import PluginSettings

        src = self.parameterAsFile(parameters, self.INPUT, context)
        _require_sarc_signature(src)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        _refuse_a_project_layers_file(output, context)
        progress, is_cancelled = _callbacks(feedback)
        device = DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)]
        window = None
        if parameters.get(self.EXTENT):
            window = self._call(self._window, parameters, context, src)

        def run():
            with model_folders_hint():
                return reconstruct(src, output, window=window,
                                   model_dirs=PluginSettings.load().reconstruct_model_dirs(),
                                   device=device, progress=progress, is_cancelled=is_cancelled)

        r = self._call(run)
        if context.willLoadLayerOnCompletion(output):
            from ..qgis_io import reconstruction_layer_name

            # not "Reconstructed raster"; [2], [3]... for repeated runs, as the plugin's dialog names them
            _name_loaded_layer(context, output, self.parameterDefinition(self.OUTPUT).description(),
                               reconstruction_layer_name(src, window))
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(ReconstructionStyler.kept(src))
        feedback.pushInfo(f"{r.output_path}: {r.width} x {r.height}, {r.bands} band(s), {r.seconds:.1f} s "
                          f"on {r.provider}")
        return {self.OUTPUT: r.output_path, "SECONDS": r.seconds, "PROVIDER": r.provider}

    def _window(self, parameters, context, src):
        """The pixel window of the EXTENT parameter, taken in the scene's CRS (whatever CRS it was given in)."""
        from qgis.core import QgsCoordinateReferenceSystem

        from ..core.codec import map_crs_wkt, read_header, window_from_bbox

        header = read_header(src)
        crs = QgsCoordinateReferenceSystem.fromWkt(map_crs_wkt(header["raster"]))
        rect = self.parameterAsExtent(parameters, self.EXTENT, context, crs)  # invalid: the extent as given
        return window_from_bbox(header, (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), src)


class _KeptStyler(QgsProcessingLayerPostProcessorInterface):
    """A post-processor per run, kept referenced until QGIS has used it. Processing holds only a pointer to it,
    so a styler nobody referenced could be collected before the layer loads; and QGIS deletes the C++ side once
    it has run (setPostProcessor takes ownership), so one styler cannot serve a second run: a second
    Reconstruct of the same file failed with "wrapped C/C++ object ... has been deleted"."""

    _pending: list = []

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    @classmethod
    def kept(cls, key: str):
        cls._pending[:] = [s for s in cls._pending if not sip.isdeleted(s)]  # the ones QGIS has used and freed
        styler = cls(key)
        cls._pending.append(styler)
        return styler


class ReconstructionStyler(_KeptStyler):
    """Shows a reconstruction loaded by Processing as the plugin does: band 1 in grey dB over the codec's clip
    range (from the .sarc header, the key). QGIS's default min/max stretch of linear intensity, which spans
    decades, shows most of a SAR scene black under a few bright targets."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        from ..core.codec import read_header
        from ..scene_layer import style_scene_layer  # only where results are loaded: a desktop with qgis.gui

        style_scene_layer(layer, read_header(self.key), 1)


class QualityStyler(_KeptStyler):
    """Gives a quality map loaded by Processing the plugin's own style (labelled classes, overlay opacity),
    instead of QGIS's default grey stretch, which hides what 1 means. The key is the map's kind."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        from ..qgis_io import style_quality_layer

        style_quality_layer(layer, self.key)


class QualityMapsAlgorithm(_SarAlgorithm):
    ORIGINAL, RECONSTRUCTION, BAND, WINDOW, DOMAIN, OUTPUT_ENL_RATIO, OUTPUT_EPI = (
        "ORIGINAL", "RECONSTRUCTION", "BAND", "WINDOW", "DOMAIN", "OUTPUT_ENL_RATIO", "OUTPUT_EPI")

    def name(self):
        return "qualitymaps"

    def displayName(self):  # noqa: N802 (QGIS API)
        return "SAR quality maps"

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        return ("Local ENL ratio (ENL of the reconstruction / ENL of the original, on linear intensity; 1 is "
                "ideal, above 1 means smoothing) and local edge preservation index (correlation of Laplacians "
                "in dB; 1 is perfect), as float32 GeoTIFFs (.tif) aligned with the reconstruction, one band per "
                "band.")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.ORIGINAL, "Original SAR raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.RECONSTRUCTION, "Reconstructed raster"))
        self.addParameter(QgsProcessingParameterBand(self.BAND, "Band (empty: every band)", None,
                                                     self.RECONSTRUCTION, optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.WINDOW, "Window (pixels, odd)",
                                                       QgsProcessingParameterNumber.Type.Integer, 15,
                                                       minValue=3, maxValue=101))
        self.addParameter(QgsProcessingParameterEnum(self.DOMAIN, "Values are", options=DOMAIN_LABELS,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_ENL_RATIO, "Local ENL ratio"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_EPI, "Local EPI"))

    def _alpha_band_error(self, parameters, context) -> str:
        """Why BAND cannot be mapped ("" when it can): the band list the Toolbox shows is the layer's, in which
        QGIS's GDAL provider adds a per-dataset mask (internal or .msk, which every reconstruction of a masked
        scene carries) as an 8-bit alpha band after the data bands; the maps compare data bands only
        (qgis_io.data_bands, as the plugin's dialog lists them)."""
        band = self.parameterAsInt(parameters, self.BAND, context)
        layer = self.parameterAsRasterLayer(parameters, self.RECONSTRUCTION, context)
        if band <= 0 or layer is None or not layer.isValid() or not 1 <= band <= layer.bandCount():
            return ""
        from ..qgis_io import data_bands

        data = data_bands(layer)
        if band in data:
            return ""
        listed = ", ".join(str(b) for b in data)
        return (f"band {band} of '{layer.name()}' is the alpha band under which QGIS shows the raster's mask, not "
                f"data: choose one of its data bands ({listed}), or none for every band")

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API)
        """An alpha band chosen as BAND is refused before the run, so the Toolbox says why."""
        ok, message = super().checkParameterValues(parameters, context)
        error = self._alpha_band_error(parameters, context) if ok else ""
        if ok and not error:
            error = self._output_name_error(parameters, context)
        return (False, error) if error else (ok, message)

    def _output_name_error(self, parameters, context) -> str:
        for name in (self.OUTPUT_ENL_RATIO, self.OUTPUT_EPI):
            error = _geotiff_name_error(self.parameterAsOutputLayer(parameters, name, context))
            if error:
                return error
        return ""

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ..core.quality_maps import compute_quality_maps
        from ..qgis_io import layer_band_nodata

        window = self.parameterAsInt(parameters, self.WINDOW, context)
        if window % 2 == 0:
            raise QgsProcessingException(f"the window must be an odd number of pixels, got {window}")
        error = self._alpha_band_error(parameters, context)  # also for callers that skip checkParameterValues
        if error:
            raise QgsProcessingException(error)
        progress, is_cancelled = _callbacks(feedback)
        band = self.parameterAsInt(parameters, self.BAND, context)
        enl_out = self.parameterAsOutputLayer(parameters, self.OUTPUT_ENL_RATIO, context)
        epi_out = self.parameterAsOutputLayer(parameters, self.OUTPUT_EPI, context)
        for output in (enl_out, epi_out):  # another scene of the project, say: the core knows only its inputs
            error = _geotiff_name_error(output)
            if error:
                raise QgsProcessingException(error)
            _refuse_a_project_layers_file(output, context, replacing="")
        original_path = _layer_path(self, parameters, self.ORIGINAL, context)
        recon_path = _layer_path(self, parameters, self.RECONSTRUCTION, context)
        recon = self.parameterAsRasterLayer(parameters, self.RECONSTRUCTION, context)
        original = self.parameterAsRasterLayer(parameters, self.ORIGINAL, context)
        r = self._call(compute_quality_maps, original_path, recon_path, enl_out, epi_out,
                       domain=DOMAINS[self.parameterAsEnum(parameters, self.DOMAIN, context)], window=window,
                       bands=[band] if band > 0 else None,
                       original_nodata=self._call(layer_band_nodata, original),
                       reconstruction_nodata=self._call(layer_band_nodata, recon),
                       progress=progress, is_cancelled=is_cancelled)
        # Named as the plugin's dialog names them, after the pair and the band: every run's maps were "Local ENL
        # ratio" and "Local EPI", so a batch of scenes loaded pairs that nothing told apart.
        what = f"{recon.name()} vs {original.name()} — {recon.bandName(band) + ' ' if band > 0 else ''}"
        for path, kind, label, name in ((enl_out, "enl_ratio", "local ENL ratio", self.OUTPUT_ENL_RATIO),
                                        (epi_out, "epi", "local EPI", self.OUTPUT_EPI)):
            if context.willLoadLayerOnCompletion(path):
                _name_loaded_layer(context, path, self.parameterDefinition(name).description(),
                                   f"{what}{label} ({window} px)")
                context.layerToLoadOnCompletionDetails(path).setPostProcessor(QualityStyler.kept(kind))
        feedback.pushInfo(f"median local ENL ratio {r.enl_ratio_median}, median local EPI {r.epi_median}")
        return {self.OUTPUT_ENL_RATIO: r.enl_ratio_path, self.OUTPUT_EPI: r.epi_path}
