"""The "SAR Compress" Processing provider (id `sarcompress`)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..__about__ import __icon_path__, __version__

PROVIDER_ID = "sarcompress"


class SarCompressProvider(QgsProcessingProvider):
    def id(self):
        return PROVIDER_ID

    def name(self):
        return "SAR Compress"

    def longName(self):  # noqa: N802 (QGIS API)
        return f"SAR Compress {__version__}"

    def icon(self):
        return QIcon(str(__icon_path__))

    def versionInfo(self):  # noqa: N802 (QGIS API)
        return __version__

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (QGIS API)
        return ["tif"]

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        from .algorithms import CompressAlgorithm, QualityMapsAlgorithm, ReconstructAlgorithm

        for alg in (CompressAlgorithm(), ReconstructAlgorithm(), QualityMapsAlgorithm()):
            self.addAlgorithm(alg)
