"""The QGIS plugin: layer context-menu actions, plugin menu, Browser items, Processing provider.

Heavy work runs in QgsTasks (tasks/); this module only gathers inputs, starts tasks and, when a task has
finished (main thread), adds layers and shows messages. Python dependencies (onnxruntime, zstandard) are checked
lazily, when an action needs them, so the plugin always loads; when they are missing the dependency dialog
(gui/dependencies.py) says what is missing and installs it with one click.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QDialog

from .__about__ import __icon_path__, __title__
from .core.errors import SarCompressError
from .gui.compat import RASTER_LAYER_TYPE, QAction
from .qgis_io import (
    ORIGINAL_PROPERTY,
    ROLE_PROPERTY,
    SARC_PATH_PROPERTY,
    SCENE_ROLE,
    add_raster_layer,
    default_compressed_path,
    default_quality_paths,
    default_reconstruction_path,
    display_image_warning,
    find_original_layer,
    group_for_layer,
    is_reconstruction,
    layer_band_nodata,
    layer_file_path,
    layer_nodata,
    reconstruction_layer_name,
    reconstruction_source,
    remember_compressed,
    show_only_quality_map,
    style_db_grey,
    style_quality_layer,
    unique_layer_name,
)
from .tasks import CompressTask, QualityMapsTask, ReconstructTask, SarTask, TaskResult, TaskStatus
from .utils.deps import check_dependencies
from .utils.log import PluginLogger, install_log_handler, remove_log_handler
from .utils.settings import PluginSettings, existing_folder

log = logging.getLogger(__name__)

MENU = "&SAR Compress"
#: Roles of the plugin's layers whose pixels are no SAR scene: a scene layer (tile cache) and the quality maps.
NOT_SAR_ROLES = (SCENE_ROLE, "enl_ratio", "epi")


class SarCompressPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.logger = PluginLogger(iface)
        self.provider = None
        self.layer_actions: list[QAction] = []
        self.menu_actions: list[QAction] = []
        self.tasks: dict[int, SarTask] = {}
        self.last_task: SarTask | None = None
        self._log_handler = None
        self._browser_provider = None
        self._browser_gui_provider = None
        self.scenes = None  # scene_layer.SceneLayers: .sarc files opened as layers decoded on demand
        self._drop_handler = None
        self._watching_layers = False  # offering the layer actions to each raster layer added

    # --- QGIS plugin API ---------------------------------------------------------------------------------
    def initProcessing(self):  # noqa: N802 (QGIS API)
        if self.provider is None:
            from .processing.provider import SarCompressProvider

            self.provider = SarCompressProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API)
        self._log_handler = install_log_handler()
        self.initProcessing()
        parent = self.iface.mainWindow()
        icon = QIcon(str(__icon_path__))

        self.compress_action = self._action(icon, "Compress with SAR codec…", "sar_compress_compress",
                                            self.compress_active_layer, parent)
        self.quality_action = self._action(icon, "SAR quality maps…", "sar_compress_quality_maps",
                                           self.quality_maps_active_layer, parent)
        for action in (self.compress_action, self.quality_action):  # offered layer by layer, below
            self.iface.addCustomActionForLayerType(action, "", RASTER_LAYER_TYPE, False)
            self.layer_actions.append(action)
        project = QgsProject.instance()
        self._offer_raster_actions(project.mapLayers().values())
        project.layersAdded.connect(self._offer_raster_actions)
        project.layersWillBeRemoved.connect(self._cancel_maps_of_removed_layers)
        self._watching_layers = True

        self.reconstruct_action = self._action(icon, "Reconstruct SAR raster…", "sar_compress_reconstruct",
                                               self.reconstruct_with_dialog, parent)
        self.settings_action = self._action(QIcon(), "Settings…", "sar_compress_settings",
                                            self.show_settings, parent)
        from .scene_layer import SAVE_SCENE_TEXT, SarcDropHandler, SceneLayers

        self.open_scene_action = self._action(icon, "Open compressed scene…", "sar_compress_open_scene",
                                              self.open_scene_with_dialog, parent)
        self.export_view_action = self._action(icon, "Export current extent as GeoTIFF…",
                                               "sar_compress_export_extent",
                                               lambda: self.scenes.export_view(self._active_layer()), parent)
        # QGIS's own Save As writes only the tiles decoded so far: the whole scene is the codec's reconstruction,
        # in the Reconstruct dialog on the layer's file (whole scene, output next to it unless chosen).
        self.save_scene_action = self._action(icon, SAVE_SCENE_TEXT, "sar_compress_save_scene",
                                              lambda: self.reconstruct_with_dialog(self._selected_scene_file()),
                                              parent)
        self.style_action = self._action(icon, "SAR style…", "sar_compress_scene_style",
                                         lambda: self.scenes.choose_style(self._active_layer()), parent)
        scene_actions = [self.save_scene_action, self.export_view_action, self.style_action]
        for action in scene_actions:  # on scene layers only
            self.iface.addCustomActionForLayerType(action, "", RASTER_LAYER_TYPE, False)
            self.layer_actions.append(action)
        self.scenes = SceneLayers(self.iface, self.logger, self._ensure_dependencies, self.reconstruct_file,
                                  self.running_outputs, scene_actions)
        self._drop_handler = SarcDropHandler(self.scenes.open)
        self.iface.registerCustomDropHandler(self._drop_handler)

        self.dependencies_action = self._action(QIcon(), "Python dependencies…", "sar_compress_dependencies",
                                                self.show_dependencies, parent)
        for action in (self.open_scene_action, self.compress_action, self.reconstruct_action, self.quality_action,
                       self.settings_action, self.dependencies_action):
            self.iface.addPluginToRasterMenu(MENU, action)
            self.menu_actions.append(action)

        from .gui.browser import SarcDataItemGuiProvider, SarcDataItemProvider
        from qgis.gui import QgsGui

        self._browser_provider = SarcDataItemProvider()
        QgsApplication.dataItemProviderRegistry().addProvider(self._browser_provider)
        self._browser_gui_provider = SarcDataItemGuiProvider(self.reconstruct_file, self.reconstruct_with_dialog,
                                                             self.scenes.open)
        QgsGui.dataItemGuiProviderRegistry().addProvider(self._browser_gui_provider)

    def _offer_raster_actions(self, layers) -> None:
        """Compress and quality maps in the context menu of every raster layer but a scene layer or a quality
        map: an action for a whole layer type shows on every layer of it; a scene layer's file is a sparse cache
        of decoded tiles, which neither action can use, and a quality map holds ratios and correlations, which
        the codec would compress as radar backscatter without a word and the maps' dialog cannot compare."""
        for layer in layers:
            if isinstance(layer, QgsRasterLayer) and layer.customProperty(ROLE_PROPERTY) not in NOT_SAR_ROLES:
                for action in (self.compress_action, self.quality_action):
                    self.iface.addCustomActionForLayer(action, layer)

    def _cancel_maps_of_removed_layers(self, layer_ids) -> None:
        """Cancel the quality maps of a pair one layer of which leaves the project (removed, or the project
        closed): they were added over nothing, or into the next project opened, and reported as a success."""
        for task in list(self.tasks.values()):  # a task not started yet ends (and leaves self.tasks) on cancel()
            if isinstance(task, QualityMapsTask) and not task.removed:
                task.removed = next((name for i, name in task.layers.items() if i in layer_ids), "")
                if task.removed:
                    task.cancel()

    def unload(self):
        if self._watching_layers:
            QgsProject.instance().layersAdded.disconnect(self._offer_raster_actions)
            QgsProject.instance().layersWillBeRemoved.disconnect(self._cancel_maps_of_removed_layers)
            self._watching_layers = False
        for task in list(self.tasks.values()):
            # Its end can no longer be reported (the plugin's code is going), so it is said now: a compression
            # running during a reload or an update vanished without a word and without its file.
            task.on_finished = None
            task.cancel()
            self.logger.warning(f"{task.description()} cancelled: the plugin was unloaded (reloaded or updated); "
                                "start it again.")
        self.tasks.clear()
        if self._drop_handler is not None:
            self.iface.unregisterCustomDropHandler(self._drop_handler)
            self._drop_handler = None
        if self.scenes is not None:
            self.scenes.unload()
            self.scenes = None
        for action in self.layer_actions:
            self.iface.removeCustomActionForLayerType(action)
        for action in self.menu_actions:
            self.iface.removePluginRasterMenu(MENU, action)
        for action in {id(a): a for a in self.layer_actions + self.menu_actions}.values():
            action.deleteLater()
        self.layer_actions.clear()
        self.menu_actions.clear()
        if self._browser_gui_provider is not None:
            from qgis.gui import QgsGui

            QgsGui.dataItemGuiProviderRegistry().removeProvider(self._browser_gui_provider)
            self._browser_gui_provider = None
        if self._browser_provider is not None:
            QgsApplication.dataItemProviderRegistry().removeProvider(self._browser_provider)
            self._browser_provider = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        remove_log_handler(self._log_handler)
        self._log_handler = None

    # --- helpers -----------------------------------------------------------------------------------------
    @staticmethod
    def _action(icon, text, name, slot, parent) -> QAction:
        action = QAction(icon, text, parent)
        action.setObjectName(name)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _ensure_dependencies(self) -> bool:
        """True when the codec can run; otherwise the dependency dialog, and True if it installed them all."""
        if not check_dependencies():
            return True
        self.show_dependencies()
        return not check_dependencies()

    def show_dependencies(self) -> None:
        from .gui.dependencies import DependencyDialog

        DependencyDialog(self.iface.mainWindow()).exec()

    def _active_layer(self):
        view = self.iface.layerTreeView() if hasattr(self.iface, "layerTreeView") else None
        layer = view.currentLayer() if view is not None else None
        return layer or self.iface.activeLayer()

    def running_outputs(self) -> set[str]:
        """Resolved paths that running tasks are writing (their files appear only when they finish)."""
        return {str(Path(p).resolve()) for task in self.tasks.values() for p in task.outputs}

    def _start(self, task: SarTask, done) -> SarTask | None:
        """Run `task`, then `done(task, result)` in the main thread; refused (None) when a running task writes
        one of its outputs: both would report success and one result would be lost."""
        busy = self.running_outputs()
        clash = next((p for p in task.outputs if str(Path(p).resolve()) in busy), None)
        if clash is not None:
            self.logger.warning(f"{clash} is already being written by a running task: wait for it to finish or "
                                f"choose another output.")
            return None
        key = id(task)

        def finished(result: TaskResult):
            self.tasks.pop(key, None)
            try:
                done(task, result)
            except Exception as exc:  # noqa: BLE001 - never let a callback raise into Qt
                log.exception("handling the end of %s failed", task.description())
                self.logger.error(f"{task.description()}: {type(exc).__name__}: {exc}")

        task.on_finished = finished
        self.tasks[key] = task
        self.last_task = task
        QgsApplication.taskManager().addTask(task)
        self.logger.info(f"{task.description()} started")
        return task

    def _report_failure(self, what: str, result: TaskResult) -> bool:
        if result.status is TaskStatus.CANCELLED:
            self.logger.warning(f"{what} cancelled; no file was written.")
            return True
        if result.status is TaskStatus.FAILED:
            self.logger.error(f"{what} failed: {result.message}")
            return True
        return False

    # --- compress ----------------------------------------------------------------------------------------
    def compress_active_layer(self):
        return self.compress_layer(self._active_layer())

    def compress_layer(self, layer, output_path: str | None = None, options=None, ask: bool = True):
        """Compress a raster layer's file. With `ask`, a dialog collects output path and options first."""
        from .core.raster_io import read_raster_info

        try:
            input_path = layer_file_path(layer)
            nodata = layer_nodata(layer)
            # a raster the codec cannot take (complex SLC, bands of mixed types...) is refused before the dialog:
            # it opened, was filled in, and the task failed once it had closed
            read_raster_info(input_path)
        except SarCompressError as exc:
            self.logger.warning(f"Cannot compress: {exc}")
            return None
        if not self._ensure_dependencies():
            return None
        from .core.codec import CompressOptions

        settings = PluginSettings.load()
        output_path = output_path or default_compressed_path(input_path, self.running_outputs(),
                                                             existing_folder(settings.compress_output_folder))
        if ask:
            from .gui.dialogs import CompressDialog

            dialog = CompressDialog(layer.name(), input_path, output_path, settings, self.iface.mainWindow(),
                                    display_image_warning=display_image_warning(layer),
                                    taken=self.running_outputs)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            values = dialog.option_values()
            output_path = dialog.output_path()
            # The device is remembered only once it has worked (_compress_done): a CUDA choice that fails must
            # not become the default that fails again next time. Saved over the settings as they are now, not as
            # read before the dialog: a task that finished meanwhile may have remembered its device. The output's
            # folder is offered to the next scene's compression.
            chosen = PluginSettings.load()
            chosen.tile_size = values["tile_size"]
            chosen.compress_output_folder = str(Path(output_path).parent)
            dialog.rate.store(chosen)
            chosen.save()
            options = CompressOptions(**values, nodata=nodata)
        elif options is None:
            options = CompressOptions(model_dir=settings.model_dir or None, device=settings.device,
                                      tile_size=settings.tile_size, nodata=nodata, **settings.rate_options())
        task = CompressTask(input_path, output_path, options, layer_id=layer.id())
        return self._start(task, functools.partial(self._compress_done, layer.name(), options.device if ask else None))

    def _compress_done(self, layer_name: str, remember_device: str | None, task: CompressTask, result: TaskResult):
        if self._report_failure(f"Compression of '{layer_name}'", result):
            return
        if remember_device:
            PluginSettings.remember(device=remember_device)
        r = result.value
        project = QgsProject.instance()
        layer = project.mapLayer(task.layer_id)
        if layer is not None:  # its reconstructions find it by this, whatever the file is called
            remember_compressed(project, layer, r.output_path)
        extra = f", {r.outlier_pixels} out-of-range pixels coded exactly" if getattr(r, "outlier_pixels", 0) else ""
        self.logger.success(
            f"'{layer_name}' compressed to {Path(r.output_path).name}: ratio {r.ratio:.1f}:1, "
            f"{r.bpp_per_band:.3f} bpp per band, {r.seconds:.1f} s on {r.provider}{extra}")

    # --- reconstruct -------------------------------------------------------------------------------------
    def reconstruct_with_dialog(self, sarc_path: str = ""):
        """The Reconstruct dialog, on `sarc_path` (the Browser's "Reconstruct…") or else on the scene layer selected
        in the Layers panel: the file the analyst is looking at."""
        from .gui.dialogs import ReconstructDialog

        if not self._ensure_dependencies():  # the dialog reads the file's header for "Current map extent"
            return None
        dialog = ReconstructDialog(sarc_path or self._selected_scene_file(), "", PluginSettings.load(),
                                   self.iface.mainWindow(), self.iface.mapCanvas(), taken=self.running_outputs)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        output_path = dialog.output_path()
        PluginSettings.remember(reconstruct_output_folder=str(Path(output_path).parent))  # offered next time
        return self.reconstruct_file(dialog.sarc_path(), output_path, dialog.device.currentData(),
                                     window=dialog.window())

    def _selected_scene_file(self) -> str:
        """The .sarc of the scene layer selected in the Layers panel, or "" when the selection is no scene layer."""
        layer = self._active_layer()
        if layer is None or layer.customProperty(ROLE_PROPERTY) != SCENE_ROLE:
            return ""
        return str(layer.customProperty(SARC_PATH_PROPERTY) or "")

    def open_scene_with_dialog(self):
        from qgis.PyQt.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.iface.mainWindow(), "Open compressed SAR scene", "",
                                              "SAR compressed raster (*.sarc)")
        return self.scenes.open(path) if path else None

    def reconstruct_file(self, sarc_path: str, output_path: str | None = None, device: str | None = None,
                         window=None):
        """Reconstruct a .sarc file (or a pixel window of it) to a GeoTIFF (next to it by default) and add it
        as a layer. `device`: the user's choice, remembered once it has worked (a CUDA choice that fails must not
        become the default that fails again); None: the settings' device."""
        if not Path(sarc_path).is_file():
            self.logger.warning(f"Cannot reconstruct: {sarc_path} does not exist")
            return None
        if not self._ensure_dependencies():
            return None
        settings = PluginSettings.load()
        output_path = output_path or default_reconstruction_path(sarc_path, self.running_outputs(),
                                                                 window=window is not None)
        task = ReconstructTask(sarc_path, output_path,
                               model_dirs=settings.reconstruct_model_dirs(), device=device or settings.device,
                               window=window)
        return self._start(task, functools.partial(self._reconstruct_done, str(sarc_path), device))

    def _reconstruct_done(self, sarc_path: str, remember_device: str | None, task: ReconstructTask,
                          result: TaskResult):
        if self._report_failure(f"Reconstruction of {Path(sarc_path).name}", result):
            return
        if remember_device:
            PluginSettings.remember(device=remember_device)
        r = result.value
        project = QgsProject.instance()
        original = find_original_layer(project, sarc_path)
        name = unique_layer_name(project, reconstruction_layer_name(sarc_path, task.window))
        if original is not None:
            group = group_for_layer(project, original)
            # On top of the group: just above the original, a second one went under the first (opaque), and so
            # did the quality maps made of it, placed just above it.
            layer = add_raster_layer(project, r.output_path, name, group, role="reconstruction")
            layer.setCustomProperty(ORIGINAL_PROPERTY, original.id())
        else:
            layer = add_raster_layer(project, r.output_path, name, role="reconstruction")
        self._style_reconstruction(layer, original, sarc_path)
        self.logger.success(f"{Path(sarc_path).name} reconstructed to {Path(r.output_path).name} "
                            f"({r.width} x {r.height}, {r.bands} band(s)) in {r.seconds:.1f} s on {r.provider}")
        return layer

    @staticmethod
    def _style_reconstruction(layer: QgsRasterLayer, original: QgsRasterLayer | None, sarc_path: str) -> None:
        """The original's renderer when it shows the same bands: the two then compare by toggling visibility.
        Otherwise band 1 in grey dB, as the .sarc opened as a scene layer shows: QGIS's default min/max stretch
        of linear intensity, which spans decades, shows most of the scene black under a few bright targets. The
        stretch is the codec's clip range from the file's header: statistics of a full scene's pixels would hold
        QGIS up for seconds, and every window of one scene gets the same stretch."""
        if original is not None and original.renderer() is not None and original.bandCount() == layer.bandCount():
            layer.setRenderer(original.renderer().clone())
        else:
            from .core.codec import read_header
            from .scene_layer import style_scene_layer

            style_scene_layer(layer, read_header(sarc_path), 1)

    # --- quality maps ------------------------------------------------------------------------------------
    def quality_maps_active_layer(self):
        layer = self._active_layer()
        try:
            layer_file_path(layer)
        except SarCompressError as exc:
            self.logger.warning(f"Cannot make quality maps: {exc}")
            return None
        from .gui.dialogs import QualityMapsDialog

        settings = PluginSettings.load()
        dialog = QualityMapsDialog(*self.quality_roles(layer), self.iface.mainWindow(),
                                   folder=existing_folder(settings.quality_maps_folder))
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return None
        folder = dialog.output_folder()
        PluginSettings.remember(quality_maps_folder=folder)
        return self.quality_maps(dialog.reconstruction_layer(), dialog.original_layer(), dialog.window_size(),
                                 dialog.value_domain(), dialog.band_number(), folder)

    def quality_roles(self, layer):
        """(reconstruction, original) for the quality-maps dialog, from the layer the user right-clicked: it may be
        either. None where a role cannot be told (the user chooses; a wrong guess would swap the two)."""
        if is_reconstruction(layer):
            return layer, self.guess_original(layer)
        mine = [other for other in QgsProject.instance().mapLayers().values()
                if other is not layer and isinstance(other, QgsRasterLayer) and is_reconstruction(other)
                and self.guess_original(other) is layer]
        if not mine:
            return None, None
        return (mine[0] if len(mine) == 1 else None), layer  # several reconstructions of it: the user picks one

    @staticmethod
    def guess_original(layer):
        project = QgsProject.instance()
        original = project.mapLayer(layer.customProperty(ORIGINAL_PROPERTY) or "")
        if original is None:
            try:
                path = layer_file_path(layer)
            except SarCompressError:
                return None
            # the .sarc its tag names, beside it (as the plugin and Processing write it), then its own name
            sarc = reconstruction_source(path)
            original = find_original_layer(project, sarc, exclude=layer) if sarc else None
            original = original or find_original_layer(project, path, exclude=layer)
        return original

    def quality_maps(self, reconstruction: QgsRasterLayer, original: QgsRasterLayer, window: int = 15,
                     domain: str | None = None, band: int = 1, folder: str = ""):
        """Maps of one band, written in `folder` ("": beside the reconstruction)."""
        try:
            recon_path = layer_file_path(reconstruction)
            original_path = layer_file_path(original)
            original_nodata, recon_nodata = layer_band_nodata(original), layer_band_nodata(reconstruction)
        except SarCompressError as exc:
            self.logger.warning(f"Cannot make quality maps: {exc}")
            return None
        enl_path, epi_path = default_quality_paths(recon_path, band, folder)
        task = QualityMapsTask(original_path, recon_path, enl_path, epi_path, window=window, domain=domain,
                               bands=[band], layers={layer.id(): layer.name() for layer in (reconstruction, original)},
                               original_nodata=original_nodata, reconstruction_nodata=recon_nodata)
        return self._start(task, functools.partial(self._quality_done, reconstruction.id(), original.id(),
                                                   (reconstruction.name(), original.name()),
                                                   band, reconstruction.bandName(band)))

    def _quality_done(self, recon_id: str, original_id: str, names: tuple[str, str], band: int, band_name: str,
                      task: QualityMapsTask, result: TaskResult):
        """`names` (of the reconstruction and the original) lead the maps' names: with several originals in the
        project, a map alone says which pair it compares."""
        pair_name = " vs ".join(names)
        quoted = " vs ".join(f"'{name}'" for name in names)
        if task.removed and result.status is not TaskStatus.FAILED:  # it may have ended before it saw the cancel
            written = (f"its maps are {result.value.enl_ratio_path} and {result.value.epi_path}" if result.ok
                       else "no file was written")
            self.logger.warning(f"Quality maps of {quoted} not added: '{task.removed}' was removed from the "
                                f"project; {written}.")
            return
        if self._report_failure(f"Quality maps of {quoted}", result):
            return
        r = result.value
        project = QgsProject.instance()
        recon = project.mapLayer(recon_id)
        node = project.layerTreeRoot().findLayer(recon_id) if recon is not None else None
        group = node.parent() if node is not None else None
        epi = add_raster_layer(project, r.epi_path,
                               unique_layer_name(project, f"{pair_name} — {band_name} local EPI ({r.window} px)"),
                               group, above=recon, role="epi")
        enl = add_raster_layer(project, r.enl_ratio_path,
                               unique_layer_name(project,
                                                 f"{pair_name} — {band_name} local ENL ratio ({r.window} px)"),
                               group, above=epi, role="enl_ratio")
        style_quality_layer(enl, "enl_ratio")
        style_quality_layer(epi, "epi")
        if recon is not None:
            # Under a coloured overlay only grey reads: the same band, in dB (a colour composite would mix). The
            # original compared gets the same stops, so that toggling the two compares values, not stretches.
            original = project.mapLayer(original_id)
            style_db_grey(recon, band, r.domain, alike=(original,) if original is not None else ())
        # One overlay at a time reads best: the ENL ratio is shown, the EPI map is one click away.
        show_only_quality_map(group or project.layerTreeRoot(), enl)
        self.logger.success(f"Quality maps of {quoted} ({band_name}): median local ENL ratio "
                            f"{r.enl_ratio_median[0]:.2f} (1 is ideal), median local EPI {r.epi_median[0]:.2f} "
                            f"(1 is perfect), {r.seconds:.1f} s")
        return enl, epi

    # --- settings ----------------------------------------------------------------------------------------
    def show_settings(self):
        from .gui.dialogs import SettingsDialog

        dialog = SettingsDialog(PluginSettings.load(), self.iface.mainWindow())
        if dialog.exec() == QDialog.DialogCode.Accepted:
            dialog.settings().save()
            self.logger.info("Settings saved.")
            return True
        return False

    def __repr__(self) -> str:
        return f"<{__title__} plugin>"
