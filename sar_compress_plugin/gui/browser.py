"""Browser integration: .sarc files show up as items; double-click, "Open as layer" or a drag onto the map or
the layers panel adds the scene as a layer decoded on demand, "Reconstruct" writes a GeoTIFF beside the file,
"Reconstruct…" opens the Reconstruct dialog on it (another output, a window, a device)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from qgis.core import Qgis, QgsDataItem, QgsDataItemProvider, QgsDataProvider, QgsMimeDataUtils
from qgis.gui import QgsDataItemGuiProvider
from qgis.PyQt.QtGui import QIcon

from ..__about__ import __icon_path__
from ..qgis_io import SARC_SUFFIX
from ..scene_layer import SCENE_URI_KEY
from .compat import QAction

PROVIDER_NAME = "SAR compressed files"


def is_sarc_path(path: str) -> bool:
    return str(path).lower().endswith(SARC_SUFFIX) and os.path.isfile(path)


class SarcDataItem(QgsDataItem):
    """A .sarc file in the Browser (no children, not a layer until it is reconstructed)."""

    def __init__(self, parent, name: str, path: str):
        super().__init__(Qgis.BrowserItemType.Custom, parent, name, path)
        self.setState(Qgis.BrowserItemState.Populated)
        self.setIcon(QIcon(str(__icon_path__)))
        self.setToolTip(f"{path}\nSAR compressed raster: double-click to open, right-click > Reconstruct "
                        f"(beside it) or Reconstruct… (choose the output)")

    def hasDragEnabled(self):  # noqa: N802 (QGIS API)
        return True

    def mimeUris(self):  # noqa: N802 (QGIS API)
        """A "custom" uri, which QGIS hands to the drop handler whose key it carries (SarcDropHandler): a drop
        from the Browser carries no file URL, so without it the scene could not be dragged onto the map."""
        uri = QgsMimeDataUtils.Uri()
        uri.layerType = "custom"
        uri.providerKey = SCENE_URI_KEY
        uri.name = Path(self.path()).stem
        uri.uri = self.path()
        return [uri]


class SarcDataItemProvider(QgsDataItemProvider):
    def name(self):
        return PROVIDER_NAME

    def dataProviderKey(self):  # noqa: N802 (QGIS API)
        return ""

    def capabilities(self):
        return QgsDataProvider.DataCapability.File

    def createDataItem(self, path, parentItem):  # noqa: N802,N803 (QGIS API)
        if is_sarc_path(path):
            return SarcDataItem(parentItem, Path(path).name, path)
        return None


class SarcDataItemGuiProvider(QgsDataItemGuiProvider):
    def __init__(self, on_reconstruct: Callable[[str], object], on_reconstruct_with_dialog: Callable[[str], object],
                 on_open: Callable[[str], object]):
        super().__init__()
        self.on_reconstruct = on_reconstruct
        self.on_reconstruct_with_dialog = on_reconstruct_with_dialog
        self.on_open = on_open

    def name(self):
        return PROVIDER_NAME

    def populateContextMenu(self, item, menu, selectedItems, context):  # noqa: N802,N803 (QGIS API)
        paths = [i.path() for i in (selectedItems or [item]) if i is not None and is_sarc_path(i.path())]
        if not paths:
            return
        open_action = QAction(QIcon(str(__icon_path__)), "Open as layer", menu)
        open_action.setObjectName("sar_compress_browser_open")
        open_action.triggered.connect(lambda _checked=False, ps=tuple(paths): [self.on_open(p) for p in ps])
        menu.addAction(open_action)
        action = QAction(QIcon(str(__icon_path__)), "Reconstruct", menu)
        action.setObjectName("sar_compress_browser_reconstruct")
        action.setStatusTip("Reconstruct to a GeoTIFF beside the .sarc file")
        action.triggered.connect(lambda _checked=False, ps=tuple(paths): [self.on_reconstruct(p) for p in ps])
        menu.addAction(action)
        clicked = item.path() if item is not None and is_sarc_path(item.path()) else paths[0]
        menu.addAction(self._dialog_action(clicked, menu))

    def _dialog_action(self, path: str, menu) -> QAction:
        """"Reconstruct…": the dialog on `path`, where another output can be chosen (a read-only folder, a
        full disk), a window or a device. The file right-clicked in a selection of several: the dialog takes one."""
        action = QAction(QIcon(str(__icon_path__)), "Reconstruct…", menu)
        action.setObjectName("sar_compress_browser_reconstruct_dialog")
        action.setStatusTip("Choose the output, the area and the device of the reconstruction")
        action.triggered.connect(lambda _checked=False: self.on_reconstruct_with_dialog(path))
        return action

    def handleDoubleClick(self, item, context):  # noqa: N802 (QGIS API)
        if item is None or not is_sarc_path(item.path()):
            return False
        self.on_open(item.path())
        return True
