"""Qt5/Qt6 and QGIS 3/4 differences in one place."""

from qgis.core import Qgis

try:  # Qt6 (QGIS 4): QAction moved to QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:  # Qt5 (QGIS 3)
    from qgis.PyQt.QtWidgets import QAction

if hasattr(Qgis, "LayerType"):  # QGIS >= 3.30
    RASTER_LAYER_TYPE = Qgis.LayerType.Raster
else:  # QGIS 3.22 - 3.28
    from qgis.core import QgsMapLayerType

    RASTER_LAYER_TYPE = QgsMapLayerType.RasterLayer

__all__ = ["QAction", "RASTER_LAYER_TYPE"]
