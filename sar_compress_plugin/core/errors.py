"""The only exceptions the codec core raises for bad input.

Callers (CLI, QGIS tasks, Processing algorithms) catch `SarCompressError` alone and show its message,
so every message must stand on its own: name the file and say what is wrong with it.
"""


class SarCompressError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug."""


class InputRasterError(SarCompressError):
    """The input raster cannot be compressed (unreadable, empty, all nodata, unsupported type...)."""


class NoOverlapError(InputRasterError):
    """A map box misses the raster: the plugin tells its user to pan to the scene rather than quoting the box,
    and any other InputRasterError about a box is told as it is."""


class ContainerFormatError(SarCompressError):
    """A compressed file is corrupt, truncated, of another format or of an unsupported version."""


class ModelMismatchError(SarCompressError):
    """The model at hand is not the one a file or checkpoint needs."""


#: How a missing-model error says where to look (the plugin words it for QGIS, utils.settings.qgis_wording).
MODEL_FOLDER_ADVICE = "pass its folder with --model-dir / model_dirs"
#: How compress errors say that the value domain may be wrong (worded for QGIS as MODEL_FOLDER_ADVICE is).
DB_DOMAIN_ADVICE = "pass --domain db"
DOMAIN_DOUBT = "wrong --domain?"


class ModelBundleError(SarCompressError):
    """A model bundle folder is missing files, has a bad manifest or a file whose SHA-256 does not match."""


class OutputPathError(SarCompressError):
    """The output cannot be written (read-only folder, same as the input...)."""


class CancelledError(SarCompressError):
    """The user cancelled the operation; no output was left behind."""
