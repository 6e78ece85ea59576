"""A .sarc scene as a QGIS layer that decodes only what the map canvas shows (docs/architecture.md, "Scene layer").

The layer is a plain GDAL layer on the scene's tile cache (core/scene_cache.py: a sparse tiled GeoTIFF with the
scene's georeferencing, undecoded tiles transparent, overviews from the file's stored overview). A
`SceneLayerController` watches the canvas: after each pan or zoom (debounced) it asks the cache which tiles of
the visible window are still missing and decodes them in a `DecodeTilesTask` (a QgsTask), nearest to the centre
first; after every tile the layer's GDAL dataset is reopened (`reloadData`) and repainted, so the picture fills
in while the user keeps working. Zoomed out past the overview's resolution nothing is decoded: the overview is
what the screen can show. Why this and not a Python QgsRasterDataProvider: see docs/architecture.md.

A project keeps a scene layer as a GDAL layer on a file of the cache, which `evict()` may have deleted by the time
the project is read again. QGIS would read the layer invalid and stop at its modal "Handle Unavailable Layers"
dialog (whose "Remove Unavailable Layers" deletes the layer) before the plugin could repair it at readProject;
a custom bad-layer handler would replace QGIS's own for every other layer. So `rebuild_evicted_cache`, a path
preprocessor QGIS calls before it opens any layer, makes such a file again from the scene's .sarc, which the
cache root's registry names (core/scene_cache.py).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsCoordinateTransform,
    QgsCsException,
    QgsDataProvider,
    QgsMultiBandColorRenderer,
    QgsPathResolver,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsTask,
)
from qgis.gui import QgsCustomDropHandler
from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal
from qgis.PyQt.QtGui import QColor

from .core.errors import CancelledError, InputRasterError, SarCompressError
from .qgis_io import ROLE_PROPERTY, SARC_PATH_PROPERTY, SCENE_ROLE, unique_path
from .utils.deps import check_dependencies
from .utils.settings import PluginSettings

log = logging.getLogger(__name__)

#: The layer's SAR style: "grey:<band>" or "composite:<vv band>,<vh band>" (the style dialog starts from it).
STYLE_PROPERTY = "sar_compress/style"
COMPOSITE_NAME = "composite.vrt"
#: The files of a cache folder a layer shows: the cache GeoTIFF (core.scene_cache.TIFF_NAME, not imported here: see
#: `_controller_showing`) or the VV/VH composite over it.
CACHE_VIEW_NAMES = frozenset({"scene.tif", COMPOSITE_NAME})
#: Percentile stretch of each composite channel (of the pixels decoded or in the stored overview).
COMPOSITE_PERCENTILES = (2.0, 98.0)
#: Grey ramp stops across the band's clip range: piecewise linear in value, so close to linear in dB.
DB_STOPS = 16
DEBOUNCE_MS = 150
#: The scene layer action that writes the whole scene (QGIS's own Save As writes only the tiles decoded so far).
SAVE_SCENE_TEXT = "Save whole scene as GeoTIFF…"


class DecodeTilesTask(QgsTask):
    """Decodes a list of tiles into the cache; `tile_decoded` reaches the controller (main thread) per tile."""

    tile_decoded = pyqtSignal(int)

    def __init__(self, cache, tiles: list[int]):
        super().__init__(f"SAR decode {len(tiles)} tile(s) of {cache.raster.path.name}", QgsTask.Flag.CanCancel)
        self.cache = cache
        self.tiles = tiles
        self.error = ""

    def run(self) -> bool:  # worker thread: no widgets, no layers
        try:
            n = len(self.tiles)
            self.cache.decode(self.tiles, self.isCanceled,
                              lambda t: (self.setProgress(100.0 * (self.tiles.index(t) + 1) / n),
                                         self.tile_decoded.emit(t)))
            return True
        except CancelledError:
            return False
        except SarCompressError as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a worker must report, never raise into QGIS
            log.exception("decoding tiles of %s failed", self.cache.raster.path)
            self.error = f"{type(exc).__name__}: {exc}"
            return False


def db_values(db: float, domain: str) -> float:
    """A dB level as a value of `domain`, the domain the band was coded in."""
    return db if domain == "db" else 10.0 ** (db / (10.0 if domain == "intensity" else 20.0))


def value_db(value: float, domain: str) -> float:
    """The dB level of a value in `domain` (`db_values` reversed); NaN for a linear value that is not positive."""
    if domain == "db":
        return value
    return (10.0 if domain == "intensity" else 20.0) * math.log10(value) if value > 0 else math.nan


def uncoded_scaling(header: dict, band: int) -> tuple[float, float] | None:
    """(scale, offset) of a band that has one but was coded as its stored values, as every file before format
    version 5 was (core.codec.coded_scaling is None for it): its clip range is in the stored values' dB, while
    its reconstruction carries the scale and QGIS shows it through it, 40 dB below every stop under 1e-4.
    None where the clip range is in the physical values' dB already."""
    from .core.codec import coded_scaling  # noqa: PLC0415 - lazy: the codec's packages may be missing
    from .core.raster_io import band_scaling  # noqa: PLC0415

    bands = header["raster"].get("bands") or []
    if band > len(bands) or coded_scaling(header)[band - 1] is not None:
        return None
    return band_scaling(bands[band - 1])


def _reads_through_scale(layer: QgsRasterLayer, band: int) -> bool:
    """Whether QGIS shows `band` of the layer through a GDAL scale or offset: a reconstruction carries the
    header's, the tile cache of a file coded as stored values none (core/scene_cache.py)."""
    provider = layer.dataProvider()
    return (provider.bandScale(band), provider.bandOffset(band)) != (1.0, 0.0)


def _grey_db_stops(layer: QgsRasterLayer, header: dict, band: int) -> list:
    """Black to white over the band's clip range, in the values the layer shows, labelled in the dB of the
    physical values (`uncoded_scaling`)."""
    lo, hi = header["clip_db"][band - 1]
    domain = header["domain"]
    scaling = uncoded_scaling(header, band)
    scale, offset = scaling or (1.0, 0.0)
    shown_scale, shown_offset = (scale, offset) if _reads_through_scale(layer, band) else (1.0, 0.0)
    items = []
    for i in range(DB_STOPS + 1):
        db = lo + (hi - lo) * i / DB_STOPS
        coded = db_values(db, domain)
        grey = round(255 * i / DB_STOPS)
        if scaling is not None:
            db = value_db(coded * scale + offset, domain)
        label = f"{db:.1f} dB" if (i in (0, DB_STOPS) or i == DB_STOPS // 2) and math.isfinite(db) else ""
        items.append(QgsColorRampShader.ColorRampItem(coded * shown_scale + shown_offset, QColor(grey, grey, grey),
                                                      label))
    return items


def style_scene_layer(layer: QgsRasterLayer, header: dict, band: int = 1) -> None:
    """Grey dB stretch of one band over the file's clip range (what the codec saw as 0..1), legend in dB."""
    layer.setCustomProperty(STYLE_PROPERTY, f"grey:{band}")
    items = _grey_db_stops(layer, header, band)
    ramp = QgsColorRampShader(items[0].value, items[-1].value)
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp.setClip(False)
    ramp.setColorRampItemList(items)
    # The legend is a continuous bar labelled with its ends' values, linear intensities unless told otherwise.
    legend = QgsColorRampLegendNodeSettings()
    legend.setMinimumLabel(items[0].label)
    legend.setMaximumLabel(items[-1].label)
    ramp.setLegendSettings(legend)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(items[0].value)
    renderer.setClassificationMax(items[-1].value)
    layer.setRenderer(renderer)


def _vrt_source(name: str, band: int, scaling: tuple[float, float] | None = None, fill: float | None = None) -> str:
    """A VRT source reading `band` of the file `name` beside the VRT. With `scaling` (the band's GDAL scale and
    offset), through it: a VRT reads a source's stored values, and a cache band coded as physical values holds
    stored ones under its scale and offset (core/scene_cache.py). A finite `fill`, a stored value, is left out
    (the VRT band's NaN): read through, a uint16 amplitude's fill 0 came out of the dB pixel function as -inf
    and a scaled band's fill as a value."""
    where = f'<SourceFilename relativeToVRT="1">{escape(name)}</SourceFilename><SourceBand>{band}</SourceBand>'
    nodata = f"<NODATA>{float(fill)!r}</NODATA>" if fill is not None and math.isfinite(fill) else ""
    if scaling is None and not nodata:
        return f"<SimpleSource>{where}</SimpleSource>"
    scale = "" if scaling is None else (f"<ScaleOffset>{float(scaling[1])!r}</ScaleOffset>"
                                        f"<ScaleRatio>{float(scaling[0])!r}</ScaleRatio>")
    return f"<ComplexSource>{where}{scale}{nodata}</ComplexSource>"


def _vrt_band(index: int, sources, function: str = "", fact: float = 0.0, description: str = "") -> str:
    """One band of a VRT: a plain copy of one source, or a GDAL pixel function of its sources (`_vrt_source`)."""
    xml_sources = "".join(sources)
    about = f"<Description>{escape(description)}</Description>" if description else ""
    if not function:
        return (f'<VRTRasterBand dataType="Float32" band="{index}">{about}<NoDataValue>nan</NoDataValue>'
                f'{xml_sources}</VRTRasterBand>')
    args = f'<PixelFunctionArguments fact="{fact:g}"/>' if fact else ""
    return (f'<VRTRasterBand dataType="Float32" band="{index}" subClass="VRTDerivedRasterBand">{about}'
            f'<NoDataValue>nan</NoDataValue><PixelFunctionType>{function}</PixelFunctionType>{args}'
            f'<SourceTransferType>Float32</SourceTransferType>{xml_sources}</VRTRasterBand>')


def _vrt_georeferencing(raster: dict) -> str:
    """The cache GeoTIFF's georeferencing as VRT elements (a VRT takes none from its sources): the scene's GCPs
    where it has them, else its geotransform."""
    gcps = raster.get("gcps")
    if not gcps:
        return f'<GeoTransform>{", ".join(repr(float(v)) for v in raster["geotransform"])}</GeoTransform>'
    points = "".join('<GCP Id="{}" Pixel="{!r}" Line="{!r}" X="{!r}" Y="{!r}" Z="{!r}"/>'.format(
        i, *(float(v) for v in point)) for i, point in enumerate(gcps["points"], 1))
    crs = quoteattr(gcps.get("crs_wkt") or raster.get("crs_wkt") or "")
    return f"<GCPList Projection={crs}>{points}</GCPList>"


def _cache_scaling(cache, band: int) -> tuple[float, float] | None:
    """What turns the cache's values of `band` into physical ones: the scale the cache band carries (a band coded
    as physical values), else that of a band coded as its stored values (`uncoded_scaling`), whose cache holds
    them with no scale."""
    return cache.raster.scaling[band - 1] or uncoded_scaling(cache.header, band)


def write_composite_vrt(cache, vv: int, vh: int) -> Path:
    """VRTs beside the cache GeoTIFF: bands dB(VV), dB(VH), dB(VV) - dB(VH) = VV/VH in dB, of the physical
    values of bands with a scale and offset (`_vrt_source`).

    GDAL's built-in pixel functions compute them on the fly from the cache, so tiles decoded later show up, and
    zoomed out they are read from the cache's overviews. Two files because a pixel function cannot take the
    output of another: `db.vrt` holds the dB bands, `composite.vrt` copies them and takes their difference.
    """
    r = cache.header["raster"]
    head = f'<VRTDataset rasterXSize="{r["width"]}" rasterYSize="{r["height"]}">{_vrt_georeferencing(r)}'
    domain = cache.header["domain"]
    tiff, fills = cache.tiff_path.name, cache.fill_values
    vv_source, vh_source = (_vrt_source(tiff, b, _cache_scaling(cache, b), fills[b - 1]) for b in (vv, vh))
    if domain == "db":
        db_bands = _vrt_band(1, [vv_source]) + _vrt_band(2, [vh_source])
    else:
        fact = 10.0 if domain == "intensity" else 20.0
        db_bands = _vrt_band(1, [vv_source], "dB", fact) + _vrt_band(2, [vh_source], "dB", fact)
    from .core.scene_cache import register_scene  # noqa: PLC0415 - lazy, as SceneCache

    register_scene(cache.folder, cache.raster.path, composite=(vv, vh))  # to write them again once evicted
    (cache.folder / "db.vrt").write_text(head + db_bands + "</VRTDataset>\n")
    composite = cache.folder / COMPOSITE_NAME
    # Named, so that the legend (and Identify) says which channel is which polarisation, not "Band 1, 2, 3".
    names = cache.header["raster"].get("band_names") or []
    vv_name, vh_name = (str(names[b - 1]) if b <= len(names) and names[b - 1] else f"band {b}" for b in (vv, vh))
    db_vv, db_vh = _vrt_source("db.vrt", 1), _vrt_source("db.vrt", 2)
    composite.write_text(head + _vrt_band(1, [db_vv], description=f"{vv_name} (dB)")
                         + _vrt_band(2, [db_vh], description=f"{vh_name} (dB)")
                         + _vrt_band(3, [db_vv, db_vh], "diff",
                                     description=f"{vv_name} / {vh_name} (dB)")
                         + "</VRTDataset>\n")
    return composite


def composite_stretch(vrt: Path, header: dict, vv: int, vh: int) -> list[tuple[float, float]]:
    """(min, max) dB of each composite channel: percentiles of what is readable now at about 512 px across
    (the stored overview and any decoded tile), or the file's clip ranges when nothing is."""
    import numpy as np
    from osgeo import gdal

    ds = gdal.Open(str(vrt))
    scale = max(1, max(ds.RasterXSize, ds.RasterYSize) // 512)
    px = ds.ReadAsArray(buf_xsize=max(1, ds.RasterXSize // scale), buf_ysize=max(1, ds.RasterYSize // scale))
    ds = None
    (lo_vv, hi_vv), (lo_vh, hi_vh) = header["clip_db"][vv - 1], header["clip_db"][vh - 1]
    fallback = [(lo_vv, hi_vv), (lo_vh, hi_vh), (lo_vv - hi_vh, hi_vv - lo_vh)]
    ranges = []
    for channel, default in zip(px, fallback):
        finite = channel[np.isfinite(channel)]
        lo, hi = np.percentile(finite, COMPOSITE_PERCENTILES) if finite.size else default
        ranges.append((float(lo), float(hi)) if hi > lo else default)
    return ranges


def style_scene_composite(layer: QgsRasterLayer, cache, vv: int, vh: int) -> None:
    """False-colour VV/VH composite (R = VV dB, G = VH dB, B = VV/VH dB), each channel percentile-stretched.

    The layer's source becomes the composite VRT over the same cache; the controller keeps decoding into the
    cache and reloading the layer as before."""
    vrt = write_composite_vrt(cache, vv, vh)
    layer.setDataSource(str(vrt), layer.name(), "gdal", QgsDataProvider.ProviderOptions())
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for setter, (lo, hi) in zip(setters, composite_stretch(vrt, cache.header, vv, vh)):
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(1))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
        ce.setMinimumValue(lo)
        ce.setMaximumValue(hi)
        setter(ce)
    layer.setRenderer(renderer)
    layer.setCustomProperty(STYLE_PROPERTY, f"composite:{vv},{vh}")
    layer.triggerRepaint()


def style_scene_grey(layer: QgsRasterLayer, cache, band: int) -> None:
    """Back to the grey dB style of one band, on the cache GeoTIFF itself, opened anew: the layer may hold a file
    the cache has replaced since (one rebuilt when a project is read), placed as that one was."""
    layer.setDataSource(str(cache.tiff_path), layer.name(), "gdal", QgsDataProvider.ProviderOptions())
    style_scene_layer(layer, cache.header, band)
    layer.triggerRepaint()


def restyle_scene_layer(layer: QgsRasterLayer, cache, style: str) -> None:
    """Apply a STYLE_PROPERTY value ("grey:2", "composite:1,2") on `cache`; grey band 1 where the scene lacks
    its bands or the value is not one (the layer's source becomes that style's: the cache or its VRT)."""
    kind, _, numbers = style.partition(":")
    try:
        bands = [int(n) for n in numbers.split(",")]
    except ValueError:
        bands = []
    fits = bool(bands) and all(1 <= b <= cache.raster.bands for b in bands)
    if fits and kind == "composite" and len(bands) == 2 and bands[0] != bands[1]:
        style_scene_composite(layer, cache, *bands)
    else:
        style_scene_grey(layer, cache, bands[0] if fits and kind == "grey" and len(bands) == 1 else 1)


class SceneLayerController(QObject):
    """Keeps one scene's visible tiles decoded for every layer showing it (the one opened and its copies, e.g. by
    "Duplicate Layer"): one cache, one writer. Lives in the main thread (all slots run there)."""

    idle = pyqtSignal()  # no task running and nothing pending: tests and the benchmark wait on it
    failed = pyqtSignal(str)  # once per failure until a tile is decoded again (see _task_done)
    source_changed = pyqtSignal()  # the .sarc on disk is not the file opened: nothing more is decoded

    def __init__(self, layer: QgsRasterLayer, cache, canvas, max_decode_pixels: int):
        super().__init__()
        self.layers: list[QgsRasterLayer] = [layer]
        self.cache, self.canvas = cache, canvas
        self.max_decode_pixels = int(max_decode_pixels)
        self.task: DecodeTilesTask | None = None
        self._pending = False
        self._stale_render = False
        self._failures: set[str] = set()  # reported since the last tile decoded
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.update)
        canvas.extentsChanged.connect(self.schedule)
        canvas.layersChanged.connect(self.schedule)
        canvas.mapCanvasRefreshed.connect(self._canvas_refreshed)

    @property
    def layer(self) -> QgsRasterLayer:
        """The first layer showing the scene (the one opened, until it is removed)."""
        return self.layers[0]

    def add_layer(self, layer: QgsRasterLayer) -> None:
        """Serve a copy of the scene layer too: it reads the same cache, so it needs the same reloads."""
        if layer not in self.layers:
            self.layers.append(layer)
        self.schedule()

    def remove_layer(self, layer_id: str) -> bool:
        """Stop serving that layer; True when none is left (then close())."""
        self.layers = [layer for layer in self.layers if layer.id() != layer_id]
        return not self.layers

    def schedule(self) -> None:
        """Update after the view has been still for DEBOUNCE_MS (a drag emits many extent changes)."""
        self._timer.start()

    @property
    def busy(self) -> bool:
        return self.task is not None or self._pending or self._timer.isActive() or self._stale_render

    def visible_window(self):
        """(pixel window, raster pixels per screen pixel) of the canvas view in the scene, or None."""
        shown = self.canvas.layers()
        layer = next((layer for layer in self.layers if layer in shown), None)  # a copy alone may be shown
        if layer is None:
            return None
        settings = self.canvas.mapSettings()
        extent = settings.mapToLayerCoordinates(layer, self.canvas.extent())
        window = self.cache.window_for_bbox((extent.xMinimum(), extent.yMinimum(), extent.xMaximum(),
                                             extent.yMaximum()))
        if window is None:
            return None
        return window, extent.width() / self.cache.pixel_size / max(1, settings.outputSize().width())

    def tiles_to_decode(self) -> list[int]:
        """Missing tiles of the view, centre first, within the pixel budget; none when the overview suffices."""
        view = self.visible_window()
        if view is None:
            return []
        window, downsample = view
        f = self.cache.overview_factor
        if f and downsample >= f / 4:  # GDAL reads the factor/4 overview level or coarser: nothing to decode
            return []
        tiles, pixels = [], 0
        for t in self.cache.missing_tiles(window):
            _c, _r, w, h = self.cache.grid.core_in_raster(t)
            if tiles and pixels + w * h > self.max_decode_pixels:
                break
            tiles.append(t)
            pixels += w * h
        return tiles

    def update(self) -> None:
        """Start decoding what the view lacks; a running task is cancelled first (it stops between tiles)."""
        if self.task is not None:
            self._pending = True
            self.task.cancel()
            return
        self._pending = False
        if self.cache.source_changed():
            self.source_changed.emit()
            return
        tiles = self.tiles_to_decode()
        if not tiles:
            self.idle.emit()
            return
        task = DecodeTilesTask(self.cache, tiles)
        task.tile_decoded.connect(self._tile_decoded)
        task.taskCompleted.connect(lambda t=task: self._task_done(t))
        task.taskTerminated.connect(lambda t=task: self._task_done(t))
        self.task = task
        QgsApplication.taskManager().addTask(task)

    def _tile_decoded(self, _tile: int) -> None:
        """Show the new tile, unless the controller was closed: a task's signals queued before it stopped are
        still delivered, and by then the layer may be deleted."""
        if self.task is not None:
            self._failures.clear()
            self._reload()

    def _reload(self) -> None:
        """Reopen the GeoTIFF (GDAL handles opened before a tile was written do not see it) and repaint. A
        layer that cannot reopen its file is pointed at the cache anew, in its style: its composite VRT went
        with a cache folder deleted in use (by hand, or evicted by another QGIS), which decode() built again
        without it, and the layer stayed blank for good."""
        for layer in self.layers:
            layer.dataProvider().reloadData()
            if not layer.dataProvider().isValid():
                _restyle(layer, self.cache)
            layer.triggerRepaint()
        # A render still running holds a handle opened before this tile; QGIS pools it for reuse when the
        # render ends, so the next render would show the tile missing: reload once more after it.
        self._stale_render = self.canvas.isDrawing()

    def _canvas_refreshed(self) -> None:
        if self._stale_render:
            self._reload()

    def _task_done(self, task: DecodeTilesTask) -> None:
        """A failure that lasts (a full disk, a read-only cache folder) fails the decode of every pan and zoom
        again: it is reported once, and again only after a tile has been decoded since; another failure
        meanwhile (other words) is reported too."""
        if task is not self.task:
            return
        self.task = None
        if task.error:
            self._pending = False
            if self.cache.source_changed():
                # The file was replaced in place (a copy over it) or cut short while its tiles decoded: the
                # decoder's words ("file is truncated", a checksum) blamed a file that is no longer the one
                # opened, in a message that stayed until closed. It is reopened as it is now, as after a pan.
                self.source_changed.emit()
                return
            if task.error not in self._failures:
                self._failures.add(task.error)
                self.failed.emit(f"{self.layer.name()}: {task.error}")
        elif self._pending:  # the view moved while decoding: decode for the new view
            self.update()
        else:  # the budget is per view change: a zoomed-out view never starts an unbounded decode
            self._reload()  # after the last tile, also once any render still running has ended
            self.idle.emit()

    def close(self) -> None:
        self._timer.stop()
        try:
            self.canvas.extentsChanged.disconnect(self.schedule)
            self.canvas.layersChanged.disconnect(self.schedule)
            self.canvas.mapCanvasRefreshed.disconnect(self._canvas_refreshed)
        except TypeError:  # canvas already gone
            pass
        task, self.task = self.task, None  # its queued signals must find the controller closed
        if task is not None:
            task.cancel()
            task.waitForFinished(60_000)  # the cache's file handles must not close under a running decode
        self.cache.close()


def scene_layer(cache, name: str | None = None) -> QgsRasterLayer:
    """A GDAL layer on the cache GeoTIFF, named after the scene, styled as SAR, marked with its .sarc path (not
    in a project yet)."""
    path = cache.raster.path
    layer = QgsRasterLayer(str(cache.tiff_path), name or Path(path).stem, "gdal")
    if not layer.isValid():
        raise SarCompressError(f"{path}: its tile cache {cache.tiff_path} cannot be opened by QGIS")
    layer.setCustomProperty(ROLE_PROPERTY, SCENE_ROLE)
    layer.setCustomProperty(SARC_PATH_PROPERTY, str(path))
    style_scene_layer(layer, cache.header)
    return layer


def _cache_root(settings: PluginSettings) -> Path:
    return Path(settings.tile_cache_dir) if settings.tile_cache_dir else tile_cache_root()


def tile_cache_root() -> Path:
    """Default tile cache folder, in the QGIS profile (survives sessions, one per user profile)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "sar_compress" / "tile_cache"


def rebuild_evicted_cache(path: str) -> str:
    """QgsPathResolver path preprocessor: `path` (a stored layer source, maybe relative to the project file) when it
    is not a missing file of a scene's cache folder; else that file made again from the .sarc the registry names
    for the folder, under the settings' cache root, as an absolute path (the stored one, relative, need not lead
    to that root). QGIS calls it for every path of every project read, so a path of no cache file costs a string
    split, and it never raises: what cannot be made is left to the repair at readProject, as before (one line in
    the log). A composite's VRTs are made only where the registry knows its bands; a .sarc that has become another
    scene makes nothing here: the layer must take that scene's stretch, which the repair gives it."""
    head, _, name = path.replace("\\", "/").rpartition("/")
    if name not in CACHE_VIEW_NAMES or not head:
        return path
    try:
        return _rebuild_cache_file(path, head.rpartition("/")[2], name)
    except Exception as exc:  # noqa: BLE001 - QGIS is reading a project: it must go on as before
        log.warning("%s: cannot make the scene's tile cache again (%s: %s)", path, type(exc).__name__, exc)
        return path


def _rebuild_cache_file(path: str, folder_name: str, name: str) -> str:
    stored = Path(path)
    if not stored.is_absolute():
        home = QgsProject.instance().absolutePath()  # what QGIS resolves a project's relative paths against
        stored = Path(home) / stored if home else None
    if (stored is not None and stored.is_file()) or check_dependencies():
        return path
    from .core.scene_cache import registered_scene  # noqa: PLC0415 - lazy, as SceneCache

    settings = PluginSettings.load()
    root = _cache_root(settings)
    entry = registered_scene(root, folder_name)
    if entry is None:  # no scene's folder, a damaged registry, or a folder of another cache root
        return path
    made = root / folder_name / name
    if made.is_file():
        return str(made)
    bands = entry.get("composite")
    if name == COMPOSITE_NAME and bands is None:
        return path
    from .core.codec import CompressedRaster  # noqa: PLC0415
    from .core.scene_cache import SceneCache, raster_cache_folder  # noqa: PLC0415

    raster = CompressedRaster(entry["sarc"], model_dirs=settings.reconstruct_model_dirs(), device=settings.device)
    try:
        if raster_cache_folder(raster, root).name != folder_name:
            log.info("%s: %s is another scene now; its layers are pointed at it as the project is read", path,
                     entry["sarc"])
            return path
        cache = SceneCache(raster.path, root, raster=raster)
        if name == COMPOSITE_NAME:
            write_composite_vrt(cache, *bands)
    finally:
        raster.close()
    log.info("%s: tile cache deleted (evicted); made again from %s", path, entry["sarc"])
    return str(made)


#: providerKey of the "custom" mime uri of a .sarc Browser item (gui/browser.py): QGIS hands a drop of that
#: uri to the drop handler whose customUriProviderKey() is the same.
SCENE_URI_KEY = "sar_compress_scene"


class SarcDropHandler(QgsCustomDropHandler):
    """Dropping a .sarc file on the QGIS window, from the file manager or the Browser, opens it as a scene
    layer (other files: QGIS as usual)."""

    def __init__(self, open_scene):
        super().__init__()
        self.open_scene = open_scene

    def handleFileDrop(self, file):  # noqa: N802 (QGIS API)
        if not str(file).lower().endswith(".sarc"):
            return False
        self.open_scene(str(file))
        return True

    def customUriProviderKey(self):  # noqa: N802 (QGIS API)
        return SCENE_URI_KEY

    def handleCustomUriDrop(self, uri):  # noqa: N802 (QGIS API)
        self.open_scene(uri.uri)


def _restyle(layer: QgsRasterLayer, cache) -> None:
    """`layer` on `cache` in the SAR style it was given (STYLE_PROPERTY)."""
    restyle_scene_layer(layer, cache, str(layer.customProperty(STYLE_PROPERTY, "grey:1")))


def _point(layer: QgsRasterLayer, cache, reopen: bool) -> None:
    """`layer` on `cache` in its own style, where it shows another file, none, or (`reopen`) any. The renderer
    it has (read with a project: the analyst's opacity and stretch) stays where it reads the same bands as the
    style's and its file was a cache of the same scene (a folder of the same name: file stem and body SHA-256),
    and one made anew lost them; a .sarc replaced by another scene since gets that scene's clip range."""
    if reopen or not layer.isValid() or Path(layer.source()).parent != cache.folder:
        same_scene = Path(layer.source()).parent.name == cache.folder.name
        kept = layer.renderer().clone() if layer.renderer() is not None and same_scene else None
        _restyle(layer, cache)
        made = layer.renderer()
        if kept is not None and (kept.type(), kept.usesBands()) == (made.type(), made.usesBands()):
            layer.setRenderer(kept)


def _saved_window(layer: QgsRasterLayer, cache, path: str):
    """The scene's pixel window under a file written from `layer` (QGIS's Save As may write the map view's
    extent only, in another CRS); the whole scene where the file cannot tell."""
    saved = QgsRasterLayer(path, "saved", "gdal")
    if saved.isValid():
        try:
            box = QgsCoordinateTransform(saved.crs(), layer.crs(), QgsProject.instance()).transformBoundingBox(
                saved.extent())
        except QgsCsException:
            box = None
        window = box and cache.window_for_bbox((box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()))
        if window:
            return window
    return 0, 0, cache.raster.width, cache.raster.height


class SceneLayers:
    """The open scene layers of the plugin: open (menu, Browser, drop), close on layer removal, export the view."""

    def __init__(self, iface, logger, ensure_dependencies, reconstruct_file, running_outputs, layer_actions):
        """`running_outputs()`: resolved paths that running tasks write (an export's default name avoids them).
        `layer_actions`: added to each scene layer's context menu."""
        self.iface, self.logger = iface, logger
        self.ensure_dependencies = ensure_dependencies
        self.reconstruct_file = reconstruct_file
        self.running_outputs = running_outputs
        self.controllers: dict[str, SceneLayerController] = {}
        self.layer_actions = list(layer_actions)
        project = QgsProject.instance()
        project.layersWillBeRemoved.connect(self._layers_removed)
        project.layersAdded.connect(self._layers_added)
        project.readProject.connect(self._adopt_project_layers)
        iface.layerSavedAs.connect(self._saved_as)
        self._path_hook = QgsPathResolver.setPathPreprocessor(rebuild_evicted_cache)
        self._adopt_project_layers()

    def _adopt_project_layers(self, *_) -> None:
        """Decode on demand, and offer the scene actions, in the scene layers already in the project: left by the
        plugin before it was reloaded, or read with a project. Unknown to this object, they showed only the tiles
        decoded before, and opening their .sarc again added it a second time."""
        project = QgsProject.instance()
        # the Layers panel's order, top first: the first layer of a scene is the one its controller names and
        # open() returns; the project's own order of layers is by id, which is random
        place = {layer.id(): i for i, layer in enumerate(project.layerTreeRoot().layerOrder())}
        ordered = sorted(project.mapLayers().values(), key=lambda layer: place.get(layer.id(), len(place)))
        scenes = [layer for layer in ordered
                  if layer.customProperty(ROLE_PROPERTY) == SCENE_ROLE and layer.customProperty(SARC_PATH_PROPERTY)
                  and layer.id() not in self.controllers]
        if not scenes or check_dependencies():  # no dialog here: without the codec they show what is cached
            return
        # A cache made now (for one damaged, or one from before GCPs were kept) is not the file QGIS opened for
        # the layers: they are pointed at it anew.
        for layer in scenes:
            controller, cache = self._open_scene(str(layer.customProperty(SARC_PATH_PROPERTY)))
            if controller is not None:  # a copy of an open scene layer: one cache, one writer
                self._join(layer, controller, reopen=controller.cache.created)
            elif cache is not None:
                self._attach(layer, cache, reopen=cache.created)

    def _layers_added(self, layers) -> None:
        """A copy of an open scene layer ("Duplicate Layer", a copied layer pasted) is served by the scene's
        controller. Left alone, the copy showed only the tiles the original had decoded: shown alone it stayed
        blank where panned, and "Export current extent…" refused it. Other scene layers come from open() (served
        before they are added) or with a project (readProject), which attach them."""
        for layer in layers:
            path = layer.customProperty(ROLE_PROPERTY) == SCENE_ROLE and layer.customProperty(SARC_PATH_PROPERTY)
            if path and layer.id() not in self.controllers:
                controller = self._controller_showing(str(path))
                if controller is not None:
                    self._join(layer, controller)

    def _controller_showing(self, sarc_path: str) -> SceneLayerController | None:
        """The controller of `sarc_path`'s scene: of that file, or of the same scene at another path (a copy
        under the same name elsewhere), whose tiles go to the same cache folder. Two controllers on one folder
        were two writers of one GeoTIFF and one tile list ("cannot write the tile cache", tiles listed by
        neither). Imports the codec only when a scene is open: without its dependencies (no scene can be open
        then) opening a .sarc raised an ImportError here, before the dependency dialog could be shown."""
        shown = self._controller_of_file(sarc_path)
        if shown is not None or not self.controllers:
            return shown
        from .core.scene_cache import cache_folder  # noqa: PLC0415 - lazy, as SceneCache

        try:
            folder = cache_folder(sarc_path, _cache_root(PluginSettings.load()))
        except (OSError, SarCompressError):  # unreadable: opening it says why
            return None
        return next((c for c in self.controllers.values() if c.cache.folder == folder), None)

    def _controller_of_file(self, sarc_path: str) -> SceneLayerController | None:
        """The controller of the file at `sarc_path` (no read of it)."""
        path = Path(sarc_path).resolve()
        return next((c for c in self.controllers.values() if Path(c.cache.raster.path).resolve() == path), None)

    def _join(self, layer: QgsRasterLayer, controller: SceneLayerController, reopen: bool = False) -> None:
        """Serve `layer`, another layer of the scene `controller` decodes, from that controller and its cache
        (pointed at it as `_attach` says)."""
        _point(layer, controller.cache, reopen)
        self.controllers[layer.id()] = controller
        controller.add_layer(layer)
        for action in self.layer_actions:
            self.iface.addCustomActionForLayer(action, layer)

    def open(self, sarc_path: str) -> QgsRasterLayer | None:
        """Add a .sarc file as a layer decoded on demand (or return the layer already showing its scene)."""
        if not self.ensure_dependencies():  # none missing while a scene is open: asks nothing then
            return None
        shown, cache = self._open_scene(sarc_path)
        if shown is not None:
            if Path(shown.cache.raster.path).resolve() != Path(sarc_path).resolve():
                self.logger.info(f"{sarc_path}: the same scene as the layer '{shown.layer.name()}' (opened from "
                                 f"{shown.cache.raster.path}), which shows it", push=True)
            return shown.layer
        if cache is None:
            return None
        try:
            layer = scene_layer(cache)
        except SarCompressError as exc:
            cache.close()
            self.logger.error(f"Cannot open {Path(sarc_path).name}: {exc}")
            return None
        # Served before it is added: `_layers_added` would otherwise read the file's header once more to tell
        # whether it is a copy of an open scene's layer.
        self._attach(layer, cache)
        QgsProject.instance().addMapLayer(layer)
        return layer

    def _attach(self, layer: QgsRasterLayer, cache, reopen: bool = False) -> None:
        """Decode `layer`'s view from `cache` on demand and offer the scene actions in its menu. A layer that shows
        another file (the cache folder changed in the settings), none (its cache was evicted meanwhile) or, with
        `reopen`, files of the cache folder as they were before `cache` made its own, is pointed at `cache`
        first, in its own style."""
        _point(layer, cache, reopen)
        self._watch(layer, cache)
        for action in self.layer_actions:
            self.iface.addCustomActionForLayer(action, layer)

    def _open_scene(self, sarc_path: str):
        """(the controller showing `sarc_path`'s scene, None), else (None, the file's SceneCache under the settings'
        cache folder), the other scenes' caches then trimmed to the size limit; (None, None), the error shown, when
        it cannot open. One open answers both: opened to find its cache folder and again for its cache, the
        file's header and tile index were parsed twice on QGIS's main thread."""
        shown = self._controller_of_file(sarc_path)
        if shown is not None:
            return shown, None
        from .core.codec import CompressedRaster  # lazy: onnxruntime may be missing
        from .core.scene_cache import SceneCache, raster_cache_folder

        settings = PluginSettings.load()
        root = _cache_root(settings)
        raster = None
        try:
            raster = CompressedRaster(sarc_path, model_dirs=settings.reconstruct_model_dirs(), device=settings.device)
            folder = raster_cache_folder(raster, root)
            shown = next((c for c in self.controllers.values() if c.cache.folder == folder), None)
            if shown is not None:  # the same scene at another path: one cache, one writer
                raster.close()
                return shown, None
            cache = SceneCache(sarc_path, root, raster=raster)
        except SarCompressError as exc:
            if raster is not None:
                raster.close()
            self.logger.error(f"Cannot open {Path(sarc_path).name}: {exc}")
            return None, None
        # after opening, not before: the scene's own cache, until now the least recently used, must not go
        self._trim_caches(cache.folder)
        return None, cache

    def _trim_caches(self, *also_keep) -> None:
        """Delete the least recently used caches of scenes not open until the cache folder is under its limit.
        Run when a scene opens and whenever a scene layer has decoded its view: decoding in the open scenes
        would otherwise take the folder past its limit until the next scene is opened."""
        from .core.scene_cache import evict  # noqa: PLC0415

        settings = PluginSettings.load()
        evict(_cache_root(settings), settings.tile_cache_mb << 20,
              keep=[*also_keep, *(c.cache.folder for c in self.controllers.values())])

    def _watch(self, layer: QgsRasterLayer, cache) -> None:
        """The controller that keeps the layer's visible tiles decoded, started on the current view."""
        budget = int(PluginSettings.load().decode_budget_mpx * 1e6)
        controller = SceneLayerController(layer, cache, self.iface.mapCanvas(), budget)
        controller.failed.connect(lambda msg: self.logger.error(f"Decoding failed: {msg}"))
        controller.source_changed.connect(lambda: self._reopen(controller))
        controller.idle.connect(self._trim_caches)
        self.controllers[layer.id()] = controller
        controller.schedule()

    def _reopen(self, old: SceneLayerController) -> None:
        """The scene's .sarc was replaced, rewritten or deleted: its cache holds the old file's pixels. The same
        layers (their place in the tree, their names and their styles where the new file has the bands) are
        pointed at a cache of the file as it is now, or removed with the error when it cannot be opened. Each
        layer goes with its own file: one of the same scene at another path (served by this controller, see
        `_controller_showing`) was pointed at the changed file, or removed with it, while its own was intact."""
        layers = list(old.layers)
        changed = Path(old.cache.raster.path).resolve()
        for layer in layers:
            self.controllers.pop(layer.id(), None)
        old.close()
        files: dict[Path, tuple[str, list[QgsRasterLayer]]] = {}
        for layer in layers:
            path = str(layer.customProperty(SARC_PATH_PROPERTY))
            files.setdefault(Path(path).resolve(), (path, []))[1].append(layer)
        for resolved, (path, group) in files.items():
            if resolved == changed:
                self.logger.warning(f"{Path(path).name} changed on disk since it was opened: showing it as it is now")
            controller, cache = self._open_scene(path)  # the changed file may hold the other path's scene now
            cache = controller.cache if controller is not None else cache
            if cache is None:
                QgsProject.instance().removeMapLayers([layer.id() for layer in group])
                continue
            for layer in group:
                if resolved == changed:
                    _restyle(layer, cache)
                else:
                    _point(layer, cache, cache.created)
            if controller is None:
                self._watch(group[0], cache)
                controller = self.controllers[group[0].id()]
            for layer in group:
                if layer.id() not in self.controllers:
                    self._join(layer, controller)
                self.iface.layerTreeView().refreshLayerSymbology(layer.id())

    def _layers_removed(self, layer_ids) -> None:
        for layer_id in layer_ids:
            controller = self.controllers.pop(layer_id, None)
            if controller is not None and controller.remove_layer(layer_id):
                controller.close()

    def choose_style(self, layer) -> bool:
        """The "SAR style…" dialog for a scene layer: grey dB of one band or the VV/VH composite; True if applied."""
        from qgis.PyQt.QtWidgets import QDialog

        from .gui.dialogs import SarStyleDialog

        controller = self.controllers.get(layer.id()) if layer is not None else None
        if controller is None:
            self.logger.warning("SAR style: select a layer opened from a .sarc file")
            return False
        names = controller.cache.header["raster"].get("band_names") or []
        names = [str(n) for n in names] + [""] * (controller.cache.raster.bands - len(names))
        dialog = SarStyleDialog(layer.name(), names, str(layer.customProperty(STYLE_PROPERTY, "grey:1")),
                                self.iface.mainWindow())
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return False
        kind, bands = dialog.choice()
        try:
            if kind == "composite":
                style_scene_composite(layer, controller.cache, *bands)
            else:
                style_scene_grey(layer, controller.cache, bands[0])
        except (OSError, RuntimeError) as exc:  # the composite's VRTs, written beside the cache, read by GDAL
            self.logger.error(f"SAR style: cannot write the composite of '{layer.name()}' beside its tile "
                              f"cache ({exc}); is the cache folder deleted or read-only?")
            return False
        self.iface.layerTreeView().refreshLayerSymbology(layer.id())
        return True

    def export_view(self, layer, output_path: str | None = None):
        """Reconstruct the part of the scene the canvas shows, at full resolution, to a GeoTIFF."""
        controller = self.controllers.get(layer.id()) if layer is not None else None
        if controller is None:
            self.logger.warning("Export current extent: select a layer opened from a .sarc file")
            return None
        if controller.cache.source_changed():
            # The view maps to the old file's pixels: a file replaced by another scene gave a window of that
            # scene cut where the old one was, reported as a success. The layer shows the file as it is now
            # first (or goes, with the error), as after a pan.
            layer_id = layer.id()
            self._reopen(controller)
            controller = self.controllers.get(layer_id)
            if controller is None:  # the layer is deleted
                return None
        view = controller.visible_window()
        if view is None:
            self.logger.warning(f"Export current extent: '{layer.name()}' is not in the current view")
            return None
        sarc = str(controller.cache.raster.path)
        if output_path is None:
            p = Path(sarc)
            output_path = unique_path(p.with_name(f"{p.stem}_extent.tif"), self.running_outputs())
        try:
            return self.reconstruct_file(sarc, output_path, window=view[0])
        except InputRasterError as exc:
            self.logger.warning(f"Export current extent: {exc}")
            return None

    def _saved_as(self, layer, path: str) -> None:
        """QGIS's own "Export > Save As…" of a scene layer writes what the layer's file holds: the tiles decoded so
        far, and the cache's declared nodata (which the writer copies) where none is yet. QGIS 3.22 gives no way to
        decode the rest before its writer reads (docs/architecture.md), so a file that lacks tiles is named at once,
        with the action that writes the whole scene: it would otherwise pass for the scene with no data there.
        Shown after QGIS's own "Successfully saved" (pushed right after this signal), which would cover it."""
        controller = self.controllers.get(layer.id()) if layer is not None else None
        if controller is None:
            return
        cache = controller.cache
        window = _saved_window(layer, cache, path)
        missing = len(cache.missing_tiles(window))
        if not missing:
            return
        covered = len(cache.grid.tiles_overlapping(window))
        message = (f"{Path(path).name} holds only {covered - missing} of the {covered} tiles of '{layer.name()}' "
                   f"it covers: QGIS's Save As writes the tiles decoded so far, the other {missing} are nodata in "
                   f"it. \"{SAVE_SCENE_TEXT}\" in the layer's menu writes the whole scene.")
        QTimer.singleShot(0, lambda: self.logger.log(message, Qgis.MessageLevel.Warning, push=True, duration=0))

    def unload(self) -> None:
        QgsPathResolver.removePathPreprocessor(self._path_hook)
        project = QgsProject.instance()
        try:
            project.layersWillBeRemoved.disconnect(self._layers_removed)
            project.layersAdded.disconnect(self._layers_added)
            project.readProject.disconnect(self._adopt_project_layers)
            self.iface.layerSavedAs.disconnect(self._saved_as)
        except TypeError:
            pass
        for controller in {id(c): c for c in self.controllers.values()}.values():  # a copy shares its scene's
            controller.close()
        self.controllers.clear()
