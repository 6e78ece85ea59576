"""Shared harness for the QGIS tests (imported by conftest.py and the test modules): the one headless
QgsApplication, the test iface, dialog answering and event-loop waiting."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "sar"
PLUGIN = "sar_compress_plugin"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/sar")
ARTIFACTS = REPO / "artifacts"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
for _p in ("/usr/share/qgis/python/plugins", "/usr/lib/qgis/python/plugins"):
    if os.path.isdir(_p) and _p not in sys.path:
        sys.path.append(_p)

from qgis.core import QgsApplication, QgsProject  # noqa: E402
from qgis.PyQt.QtCore import QSettings  # noqa: E402

import tempfile  # noqa: E402

# A throw-away QGIS profile: QgsSettings written by the tests never touch the user's real profile. The profile
# folder alone does not move QgsSettings, which went to ~/.config/Unknown Organization.conf, shared by every test
# run at once: one run's plugin settings (model folders, tile cache) were read by another's tasks.
_PROFILE = tempfile.mkdtemp(prefix="sar_compress_qgis_profile_")
for _format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
    QSettings.setPath(_format, QSettings.Scope.UserScope, _PROFILE)
QGS_APP = QgsApplication([], True, _PROFILE)
QgsApplication.setPrefixPath("/usr", True)
QGS_APP.initQgis()

from qgis.gui import (  # noqa: E402
    QgsGui,
    QgsLayerTreeMapCanvasBridge,
    QgsLayerTreeView,
    QgsLayerTreeViewMenuProvider,
    QgsMapCanvas,
    QgsMessageBar,
)
from qgis.core import QgsLayerTreeModel, QgsMapLayer  # noqa: E402
from qgis.PyQt.QtCore import QObject, pyqtSignal  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow, QMenu, QToolBar  # noqa: E402



#: The codec's pip packages (requirements.txt), which a fresh QGIS lacks until the dependency dialog installs them.
CODEC_PACKAGES = ("onnxruntime", "zstandard", "constriction", "threadpoolctl", "jsonschema")


def plugin_without_codec_packages() -> str:
    """Python source for a fresh process: the codec's packages made unimportable, the harness's QGIS started,
    the plugin loaded and its GUI made as `p` on `iface`, and a modal DependencyDialog answered by
    `answer_dependency_dialog(record)`, which passes the open dialog to `record` and closes it."""
    return f"""
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {CODEC_PACKAGES!r}:
            raise ImportError('No module named ' + repr(name))
sys.meta_path.insert(0, Block())
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(REPO)!r}]
import qgis_harness
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication
from sar_compress_plugin import classFactory
from sar_compress_plugin.gui.dependencies import DependencyDialog
iface = qgis_harness.TestIface()
p = classFactory(iface)
p.initGui()
def answer_dependency_dialog(record):
    d = QApplication.activeModalWidget()
    if not isinstance(d, DependencyDialog):
        QTimer.singleShot(20, lambda: answer_dependency_dialog(record))
        return
    record(d)
    d.buttons.button(d.buttons.StandardButton.Close).click()
"""


class IfaceSignals(QObject):
    """QgisInterface's signals the plugin listens to (TestIface is no QObject)."""

    layerSavedAs = pyqtSignal(QgsMapLayer, str)  # noqa: N815 (QGIS API): emitted by QGIS's Save As when written


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
        self.drop_handlers: list = []
        self.raster_menu = QMenu("&Raster", self.main_window)
        self.plugin_menu = QMenu("&Plugins", self.main_window)
        self.toolbar = QToolBar("Plugins", self.main_window)
        self.custom_layer_actions: list = []
        self.messages: list[tuple[str, str, int]] = []
        self.message_bar.widgetAdded.connect(self._record_message)
        self.signals = IfaceSignals()
        self.layerSavedAs = self.signals.layerSavedAs  # noqa: N815 (QGIS API)

    def _record_message(self, _widget):
        item = self.message_bar.currentItem()  # the QgsMessageBarItem just pushed
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

    def registerCustomDropHandler(self, handler):  # noqa: N802
        self.drop_handlers.append(handler)

    def unregisterCustomDropHandler(self, handler):  # noqa: N802
        self.drop_handlers = [h for h in self.drop_handlers if h is not handler]

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


def accept_next_dialog(configure=None, state: dict | None = None):
    """Answer the next modal dialog the code under test opens: `configure(dialog)`, then press OK.

    The dialog really runs its exec() loop; if OK does not close it (validation failed) it is rejected and
    the error shown to the user is stored in state["error"].
    """
    from qgis.PyQt.QtCore import QTimer
    from qgis.PyQt.QtWidgets import QApplication, QDialog, QDialogButtonBox

    state = state if state is not None else {}

    def find():
        w = QApplication.activeModalWidget()
        if isinstance(w, QDialog):
            return w
        for w in QApplication.topLevelWidgets():
            if isinstance(w, QDialog) and w.isVisible():
                return w
        return None

    def answer():
        dialog = find()
        if dialog is None:
            QTimer.singleShot(20, answer)
            return
        state["dialog_title"] = dialog.windowTitle()
        if configure is not None:
            configure(dialog)
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
        if dialog.isVisible():
            state["error"] = dialog.error_label.text()
            dialog.reject()

    QTimer.singleShot(0, answer)
    return state


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


def click_ok(qtbot, dialog) -> None:
    """Click a plugin dialog's OK button with the mouse, as a user does."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QDialogButtonBox

    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)


def messages(iface, level=None) -> list[str]:
    """What the plugin pushed to the test iface's message bar (at `level`, or all)."""
    return [text for _title, text, lvl in iface.messages if level is None or lvl == int(level)]


def wait_for_task(plugin, task, timeout: float = 180):
    """The result of a task the plugin started, once it has finished (fails when it hangs)."""
    assert task is not None
    assert process_events_until(lambda: id(task) not in plugin.tasks, timeout), f"{task.description()} hung"
    return task.result


def install_plugin_zip(tmp_path: Path) -> Path:
    """Build the release zip with scripts/build_plugin_zip.py and unpack it into a fresh plugins folder."""
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("build_plugin_zip", REPO / "scripts" / "build_plugin_zip.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    plugins_dir = tmp_path / "plugins"
    with zipfile.ZipFile(builder.build(tmp_path / "dist")) as zf:
        zf.extractall(plugins_dir)
    return plugins_dir


@contextmanager
def plugin_installed_from_zip(tmp_path: Path):
    """The release zip installed in a fresh plugins folder that qgis.utils searches alone, as QGIS finds an
    installed plugin; yields that folder. The repository's plugin modules are set aside meanwhile and put back
    after, so the other tests keep one class identity per module."""
    import qgis.utils

    plugins_dir = install_plugin_zip(tmp_path)
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == PLUGIN or k.startswith(PLUGIN + ".")}
    saved_paths = list(qgis.utils.plugin_paths)
    sys.path.insert(0, str(plugins_dir))
    try:
        qgis.utils.plugin_paths = [str(plugins_dir)]
        qgis.utils.updateAvailablePlugins()
        yield plugins_dir
    finally:
        for k in [k for k in sys.modules if k == PLUGIN or k.startswith(PLUGIN + ".")]:
            del sys.modules[k]
        sys.modules.update(saved)
        sys.path.remove(str(plugins_dir))
        qgis.utils.plugin_paths = saved_paths
        qgis.utils.updateAvailablePlugins()


def add_raster(path, name="berlin"):
    """A raster layer of `path`, valid, added to the project."""
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def shared_scene_copy(tmp_path: Path, name: str, as_name: str) -> Path:
    """A private copy of a real scene of the shared data (the tests write beside it)."""
    src = DATA / name
    if not src.is_file():
        # real data is never downloaded; a checkout without ../shared/data/sar cannot run the real-data tests
        import pytest

        pytest.skip(f"shared SAR data missing: {src} (a checkout without ../shared)")
    dst = tmp_path / as_name
    shutil.copy(src, dst)
    return dst


def scene_with_private_cache(codec, model_bundle, source: Path, full: Path, tile: int) -> tuple[Path, Path]:
    """(`source` compressed beside it in `tile`-px tiles with a stored overview, its whole reconstruction at `full`),
    with the plugin's tile cache moved into `full`'s folder: what a scene-layer test opens and compares with."""
    from sar_compress_plugin.utils.settings import PluginSettings

    sarc = source.with_suffix(".sarc")
    codec.compress(str(source), str(sarc), codec.CompressOptions(model_dir=str(model_bundle), device="cpu",
                                                                   tile_size=tile, overview=True))
    codec.reconstruct(str(sarc), str(full), model_dirs=[str(model_bundle)], device="cpu")
    settings = PluginSettings.load()
    settings.tile_cache_dir = str(full.parent / "cache")
    settings.save()
    return sarc, full
