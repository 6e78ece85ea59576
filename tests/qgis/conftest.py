"""Real headless QGIS for the plugin tests: ONE QgsApplication for the whole session.

QT_QPA_PLATFORM=offscreen is set before Qt is imported. pytest-qt's `qapp` fixture is overridden to return
that QgsApplication (trap 7). `TestIface` is the QgisInterface the plugin gets: a real QMainWindow, a real
QgsMapCanvas, a real QgsLayerTreeView bridged to the canvas with QgsLayerTreeMapCanvasBridge, a real
QgsMessageBar and real menus. The QGIS desktop app's own layer-tree context menu cannot exist headless
(trap 8), so `TestIface` records what `addCustomActionForLayerType` registers, the way QgisApp does, and a
real QgsLayerTreeViewMenuProvider shows those actions in the view's context menu.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "sar"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/sar")
ARTIFACTS = REPO / "artifacts"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
for _p in ("/usr/share/qgis/python/plugins", "/usr/lib/qgis/python/plugins"):
    if os.path.isdir(_p) and _p not in sys.path:
        sys.path.append(_p)

from qgis.core import QgsApplication, QgsProject  # noqa: E402

_QGS_APP = QgsApplication([], True)
QgsApplication.setPrefixPath("/usr", True)
_QGS_APP.initQgis()

from qgis.gui import (  # noqa: E402
    QgsGui,
    QgsLayerTreeMapCanvasBridge,
    QgsLayerTreeView,
    QgsLayerTreeViewMenuProvider,
    QgsMapCanvas,
    QgsMessageBar,
)
from qgis.core import QgsLayerTreeModel  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar  # noqa: E402

pytestmark = pytest.mark.qgis


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).parent == here:
            item.add_marker(pytest.mark.qgis)


@pytest.fixture(scope="session")
def qgis_app():
    return _QGS_APP


@pytest.fixture(scope="session")
def qapp(qgis_app):
    """pytest-qt uses this application instead of creating its own QApplication."""
    return qgis_app


class LayerActionsMenuProvider(QgsLayerTreeViewMenuProvider):
    """Context menu of the layer tree: the actions registered for the current layer's type, as QgisApp does."""

    def __init__(self, view: QgsLayerTreeView, iface: "TestIface"):
        super().__init__()
        self.view = view
        self.iface = iface

    def createContextMenu(self):  # noqa: N802 (QGIS API)
        layer = self.view.currentLayer()
        if layer is None:
            return None
        menu = QMenu()
        for action, submenu, layer_type, all_layers, layers in self.iface.custom_layer_actions:
            if layer.type() != layer_type:
                continue
            if not all_layers and layer not in layers:
                continue
            target = menu
            if submenu:
                found = [a.menu() for a in menu.actions() if a.menu() and a.text() == submenu]
                target = found[0] if found else menu.addMenu(submenu)
            target.addAction(action)
        return menu


class TestIface:
    """The QgisInterface methods the plugin uses, on real widgets (see the module docstring)."""

    __test__ = False  # not a test class

    def __init__(self):
        self.main_window = QMainWindow()
        self.canvas = QgsMapCanvas(self.main_window)
        self.canvas.resize(600, 600)
        self.main_window.setCentralWidget(self.canvas)
        self.layer_tree_view = QgsLayerTreeView(self.main_window)
        root = QgsProject.instance().layerTreeRoot()
        self.layer_tree_model = QgsLayerTreeModel(root, self.main_window)
        self.layer_tree_view.setModel(self.layer_tree_model)
        self.bridge = QgsLayerTreeMapCanvasBridge(root, self.canvas, self.main_window)
        self.menu_provider = LayerActionsMenuProvider(self.layer_tree_view, self)
        self.layer_tree_view.setMenuProvider(self.menu_provider)
        self.message_bar = QgsMessageBar(self.main_window)
        self.plugin_menus: dict[str, QMenu] = {}
        self.raster_menu = QMenu("&Raster", self.main_window)
        self.plugin_menu = QMenu("&Plugins", self.main_window)
        self.toolbar = QToolBar("Plugins", self.main_window)
        self.custom_layer_actions: list = []
        self.messages: list[tuple[str, str, int]] = []
        self.message_bar.widgetAdded.connect(self._record_message)

    def _record_message(self, item):
        self.messages.append((item.title(), item.text(), int(item.level())))

    # --- QgisInterface --------------------------------------------------------------------------------
    def mainWindow(self):  # noqa: N802
        return self.main_window

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def layerTreeView(self):  # noqa: N802
        return self.layer_tree_view

    def activeLayer(self):  # noqa: N802
        return self.layer_tree_view.currentLayer()

    def setActiveLayer(self, layer):  # noqa: N802
        self.layer_tree_view.setCurrentLayer(layer)
        return True

    def messageBar(self):  # noqa: N802
        return self.message_bar

    def addCustomActionForLayerType(self, action, menu, layer_type, allLayers):  # noqa: N802,N803
        self.custom_layer_actions.append((action, menu, layer_type, bool(allLayers), []))

    def addCustomActionForLayer(self, action, layer):  # noqa: N802
        for entry in self.custom_layer_actions:
            if entry[0] is action:
                entry[4].append(layer)

    def removeCustomActionForLayerType(self, action):  # noqa: N802
        before = len(self.custom_layer_actions)
        self.custom_layer_actions = [e for e in self.custom_layer_actions if e[0] is not action]
        return len(self.custom_layer_actions) < before

    def _menu(self, parent: QMenu, name: str) -> QMenu:
        key = f"{id(parent)}:{name}"
        if key not in self.plugin_menus:
            self.plugin_menus[key] = parent.addMenu(name)
        return self.plugin_menus[key]

    def addPluginToRasterMenu(self, name, action):  # noqa: N802
        self._menu(self.raster_menu, name).addAction(action)

    def removePluginRasterMenu(self, name, action):  # noqa: N802
        self._menu(self.raster_menu, name).removeAction(action)

    def addPluginToMenu(self, name, action):  # noqa: N802
        self._menu(self.plugin_menu, name).addAction(action)

    def removePluginMenu(self, name, action):  # noqa: N802
        self._menu(self.plugin_menu, name).removeAction(action)

    def addRasterToolBarIcon(self, action):  # noqa: N802
        self.toolbar.addAction(action)

    def removeRasterToolBarIcon(self, action):  # noqa: N802
        self.toolbar.removeAction(action)

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.removeAction(action)

    def raster_menu_actions(self, name: str) -> list:
        return self._menu(self.raster_menu, name).actions()


@pytest.fixture
def project():
    QgsProject.instance().clear()
    yield QgsProject.instance()
    QgsProject.instance().clear()


@pytest.fixture
def test_iface(qgis_app, project):
    import qgis.utils

    QgsGui.instance()  # make sure the GUI registries exist
    iface = TestIface()
    previous = qgis.utils.iface
    qgis.utils.iface = iface
    yield iface
    qgis.utils.iface = previous


@pytest.fixture
def sar_tif(tmp_path) -> Path:
    """A private copy of a real 2-band float32 Sentinel-1 GRD intensity scene (VV, VH; EPSG:4326)."""
    src = DATA / "s1_iw_grd_berlin_512.tif"
    if not src.is_file():
        pytest.skip(f"shared SAR data missing: {src}")
    dst = tmp_path / "berlin.tif"
    shutil.copy(src, dst)
    return dst


def _codec_available() -> bool:
    try:
        import sar_compress_plugin.core.codec  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def codec():
    if not _codec_available():
        pytest.skip("sar_compress_plugin.core.codec has not landed yet")
    from sar_compress_plugin.core import codec as module

    return module


@pytest.fixture(scope="session")
def model_bundle(tmp_path_factory) -> Path:
    """A model bundle: the codec engineer's tiny test bundle when it exists, else the bundled default model."""
    try:
        from tests.unit.conftest import make_tiny_bundle  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - fixture helper not there (yet)
        make_tiny_bundle = None
    if make_tiny_bundle is not None:
        return Path(make_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle")))
    default = REPO / "sar_compress_plugin" / "models" / "default"
    if (default / "manifest.json").is_file():
        return default
    pytest.skip("no model bundle: neither tests.unit.conftest.make_tiny_bundle nor models/default exists yet")


def process_events_until(predicate, timeout: float = 120.0) -> bool:
    """Spin the Qt event loop (task manager signals, finished()) until predicate() or timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QgsApplication.processEvents()
        if predicate():
            return True
        time.sleep(0.02)
    QgsApplication.processEvents()
    return bool(predicate())
