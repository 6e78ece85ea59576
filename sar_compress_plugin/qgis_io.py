"""QGIS-side helpers: layer <-> file, output paths, layer-tree grouping and the quality-map styles."""

from __future__ import annotations

import itertools
import logging
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from qgis.core import (
    Qgis,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsMapLayer,
    QgsProject,
    QgsProviderRegistry,
    QgsRaster,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from .core.errors import InputRasterError
from .core.raster_io import RECONSTRUCTION_TAG

log = logging.getLogger(__name__)

SARC_SUFFIX = ".sarc"
#: Custom property marking a layer-tree group that this plugin made (original + reconstruction + maps).
GROUP_PROPERTY = "sar_compress/group"
ROLE_PROPERTY = "sar_compress/role"
ORIGINAL_PROPERTY = "sar_compress/original_layer_id"
#: Custom property of a layer the plugin compressed: the .sarc files it wrote of it (absolute paths), by which
#: their reconstructions find it whatever their names (the default name of a second compression is `<stem>_2`).
COMPRESSED_TO_PROPERTY = "sar_compress/compressed_to"
#: A .sarc opened as a layer (scene_layer.py): its GDAL source is the plugin's tile cache, not the scene's file.
SCENE_ROLE = "scene"
SARC_PATH_PROPERTY = "sar_compress/sarc_path"
#: "NETCDF:", "HDF5:", "GPKG:"... prefix of a GDAL sub-dataset name (two letters or more: not a Windows drive).
_SUBDATASET = re.compile(r"^[A-Za-z0-9_]{2,}:")
OVERLAY_OPACITY = 0.6

#: ENL ratio classes, diverging around 1 (ColorBrewer RdBu), symmetric in log scale: (upper bound, colour,
#: legend label). Classes, not a continuous ramp, so the legend reads as sentences and not as two end numbers.
ENL_RATIO_CLASSES = (
    (0.67, "#b2182b", "rougher than the original (ENL ratio < 0.67)"),
    (0.9, "#ef8a62", "slightly rougher (0.67–0.9)"),
    (1.11, "#f7f7f7", "as the original (0.9–1.11)"),
    (1.5, "#67a9cf", "slightly smoother (1.11–1.5)"),
    (math.inf, "#2166ac", "smoother than the original (> 1.5)"),
)
#: EPI classes, sequential (viridis): edges lost to edges kept.
EPI_CLASSES = (
    (0.25, "#440154", "edges lost (EPI < 0.25)"),
    (0.5, "#3b528b", "edges weakened (0.25–0.5)"),
    (0.75, "#21918c", "edges mostly kept (0.5–0.75)"),
    (math.inf, "#fde725", "edges kept (> 0.75)"),
)
#: Range the renderer reports for each map (what lies beyond goes to the end classes).
QUALITY_RANGES = {"enl_ratio": (0.5, 2.0), "epi": (0.0, 1.0)}


def layer_file_path(layer: QgsMapLayer | None) -> str:
    """The GDAL name of the file behind a raster layer: a local file, or a file inside a local archive as GDAL
    reads it in place (`/vsizip//data/a.zip/scene.tif`, local_output_base names outputs after it); else
    InputRasterError with a message for the user."""
    if layer is None:
        raise InputRasterError("no layer selected: select a raster layer in the Layers panel")
    if not isinstance(layer, QgsRasterLayer):
        raise InputRasterError(f"layer '{layer.name()}' is not a raster layer")
    if not layer.isValid():
        raise InputRasterError(f"layer '{layer.name()}' cannot be read (invalid layer: {layer.source()})")
    if layer.customProperty(ROLE_PROPERTY) == SCENE_ROLE:  # its file is a sparse cache of decoded tiles
        raise InputRasterError(f"'{layer.name()}' is a compressed scene shown from its tile cache; reconstruct it "
                               f"first (Raster > SAR Compress > Reconstruct SAR raster…)")
    if layer.providerType() != "gdal":
        raise InputRasterError(f"layer '{layer.name()}' is not a local GDAL raster "
                               f"(provider '{layer.providerType()}'); save it as a GeoTIFF first")
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    kind = _not_plain_file(parts, path)
    if kind:  # the codec opens one raster by its name: it would read another table, or nothing, from this one
        raise InputRasterError(f"'{layer.name()}' is not a plain raster file ({kind}); export it as GeoTIFF first")
    if parts.get("vsiPrefix") or path.startswith("/vsi"):
        return _archived_file(layer, f"{parts.get('vsiPrefix') or ''}{path}{parts.get('vsiSuffix') or ''}")
    if not os.path.isfile(path):
        raise InputRasterError(f"layer '{layer.name()}': its file {path} does not exist")
    return path


def _not_plain_file(parts: dict, path: str) -> str:
    """What a GDAL layer is when it is not a whole raster file of its own ("" when it is)."""
    if parts.get("layerName"):
        return "a GeoPackage table" if path.lower().endswith(".gpkg") else "a table of a multi-dataset file"
    if _SUBDATASET.match(path) and not os.path.isfile(path):
        return "a sub-dataset of a multi-dataset file"
    return ""


def _archived_file(layer: QgsRasterLayer, name: str) -> str:
    """`name`, a GDAL virtual path, when it is a file inside a local archive, which the codec reads in place and
    a rerun can tell unchanged; else InputRasterError: in GDAL's memory (/vsimem/, this QGIS process's alone),
    remote (/vsicurl/, /vsis3/...) or in an archive that is itself one of those."""
    from .core.raster_io import ARCHIVE_VSI, local_archive

    if local_archive(name) is not None:
        return name
    handler = "/" + name.split("/")[1] + "/"
    if handler == "/vsimem/":
        kind = "kept in GDAL's memory by /vsimem/"
    elif not name.startswith(ARCHIVE_VSI):
        kind = f"a remote or virtual file read by {handler}"
    elif not name.split("/", 2)[2].startswith(("/vsi", "{/vsi")):
        raise InputRasterError(f"layer '{layer.name()}': the archive of {name} does not exist")
    else:
        kind = "inside an archive that is not a local file"
    raise InputRasterError(f"'{layer.name()}' is not a local raster file ({kind}); save it as a GeoTIFF first")


def local_output_base(path: str) -> str:
    """The local file after which outputs made from `path` are named and beside which they go by default: `path`
    itself, or for a file inside a local archive (`/vsizip//data/a.zip/in/scene.tif`), a file of the member's
    name beside the archive (`/data/scene.tif`; `/vsigzip//data/scene.tif.gz` -> `/data/scene.tif`)."""
    from .core.raster_io import is_gdal_virtual_path, local_archive

    archive = local_archive(path) if is_gdal_virtual_path(path) else None
    if archive is None:
        return path
    member = path.rstrip("/").rsplit("/", 1)[-1]
    if path.startswith("/vsigzip/") and member.lower().endswith(".gz"):
        member = member[:-3]
    return str(Path(archive).parent / member)


def layer_with_file(project: QgsProject, path: str | os.PathLike) -> QgsMapLayer | None:
    """The project layer whose data is the file `path` (a scene layer: its .sarc), or None."""
    from .core.raster_io import same_file

    for layer in project.mapLayers().values():
        source = layer.customProperty(SARC_PATH_PROPERTY) or QgsProviderRegistry.instance().decodeUri(
            layer.providerType(), layer.source()).get("path")
        if source and same_file(source, path):
            return layer
    return None


def is_reconstruction(layer: QgsMapLayer) -> bool:
    """True when the layer's file is a reconstruction (the codec tags each with core.raster_io.RECONSTRUCTION_TAG;
    it copies the original's other metadata, VALUE_DOMAIN included, so nothing else tells the two apart)."""
    from osgeo import gdal

    try:
        ds = gdal.OpenEx(layer_file_path(layer), gdal.OF_RASTER)
    except (InputRasterError, RuntimeError):
        return False
    return ds is not None and bool(ds.GetMetadataItem(RECONSTRUCTION_TAG))


def reconstruction_source(path: str) -> str:
    """The .sarc that the reconstruction `path` names in its tag (core.raster_io.RECONSTRUCTION_TAG, a file name),
    taken beside it; "" when it names none."""
    from osgeo import gdal

    try:
        ds = gdal.OpenEx(path, gdal.OF_RASTER)
    except RuntimeError:
        return ""
    name = (ds.GetMetadataItem(RECONSTRUCTION_TAG) or "") if ds is not None else ""
    return str(Path(local_output_base(path)).parent / Path(name).name) if name else ""


def display_image_warning(layer: QgsRasterLayer) -> str:
    """Why `layer` looks like a display image rather than SAR values ("" when it does not).

    RGB(A) composites and 8-bit rasters are pictures (screenshots, quick-looks, map exports): the codec would
    compress them as amplitude without complaint and the result would mean nothing, so the user is asked first.
    """
    provider = layer.dataProvider()
    bands = range(1, layer.bandCount() + 1)
    colours = {provider.colorInterpretation(b) for b in bands}
    rgb = {QgsRaster.ColorInterpretation.RedBand, QgsRaster.ColorInterpretation.GreenBand,
           QgsRaster.ColorInterpretation.BlueBand}
    if rgb <= colours:
        kind = "RGBA" if QgsRaster.ColorInterpretation.AlphaBand in colours else "RGB"
        return (f"'{layer.name()}' is an {kind} colour image, not SAR backscatter: the codec would compress its "
                "colour values as if they were radar amplitudes.")
    byte_types = {Qgis.DataType.Byte, Qgis.DataType.ARGB32, Qgis.DataType.ARGB32_Premultiplied}
    if any(provider.dataType(b) in byte_types for b in data_bands(layer)):
        return (f"'{layer.name()}' holds 8-bit values (0-255), typical of a display image or quick-look, not of "
                "calibrated SAR backscatter: the codec would compress them as if they were radar amplitudes.")
    return ""


def data_bands(layer: QgsRasterLayer) -> list[int]:
    """The layer's bands that hold values, 1-based: all but alpha bands. QGIS's GDAL provider shows a per-dataset
    mask (a GeoTIFF's internal mask or .msk file, which every reconstruction of a masked scene carries) as one
    more band, an 8-bit alpha band, after the data bands; the codec neither codes nor compares an alpha band."""
    provider = layer.dataProvider()
    return [b for b in range(1, layer.bandCount() + 1)
            if provider.colorInterpretation(b) != QgsRaster.ColorInterpretation.AlphaBand]


def _user_nodata(layer: QgsRasterLayer, band: int, why: str) -> float | None:
    """The single no-data value set on `band` of the layer in QGIS (Layer Properties > Transparency), in the
    band's stored values (`_stored_value`), None when there is none; a range is refused (InputRasterError),
    `why` saying what takes one value."""
    ranges = layer.dataProvider().userNoDataValues(band)
    if not ranges:
        return None
    if len(ranges) > 1 or ranges[0].min() != ranges[0].max():
        raise InputRasterError(f"'{layer.name()}': band {band} has a no-data range set in QGIS, and {why}; set a "
                               f"single value in Layer Properties > Transparency")
    return _stored_value(layer, band, ranges[0].min(), why)


def _stored_value(layer: QgsRasterLayer, band: int, value: float, why: str) -> float:
    """The value stored in the file that QGIS shows as `value`, a no-data value set on the layer; InputRasterError
    when none or several do.

    QGIS compares a layer's no-data value with the band's values after the file's scale and offset (applied in
    float32, float64 for a float64 file; equal within 4 machine epsilons, qgsDoubleNear); the codec with the
    stored values. On an int16 product scaled by 0.01 with offset -50, -50 set in QGIS hid the stored 0s on the
    map while the codec took the stored -50s for no-data and coded the 0s as backscatter."""
    provider = layer.dataProvider()
    scale, offset = provider.bandScale(band), provider.bandOffset(band)
    if (scale, offset) == (1.0, 0.0):
        return value
    from osgeo import gdal, gdal_array

    ds = gdal.OpenEx(layer_file_path(layer), gdal.OF_RASTER)
    stored = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(ds.GetRasterBand(band).DataType))
    shown = np.float64 if provider.dataType(band) == Qgis.DataType.Float64 else np.float32

    def shows(x) -> float:
        return float(shown(float(shown(x)) * scale + offset))

    def hides(x) -> bool:
        return x is not None and abs(shows(x) - value) <= 4 * sys.float_info.epsilon

    guess = (value - offset) / scale if scale else 0.0
    if stored.kind == "f":
        nearest = stored.type(guess)
    else:
        limits = np.iinfo(stored)
        nearest = stored.type(min(max(round(guess) if math.isfinite(guess) else 0, limits.min), limits.max))
    # shows() is monotonic in the stored value: the values QGIS hides are consecutive ones
    around, below, above = [nearest], nearest, nearest
    for _ in range(3):
        below, above = _next_stored(below, stored, -1), _next_stored(above, stored, 1)
        around += [x for x in (below, above) if x is not None]
    hidden = [x for x in around if hides(x)]
    said = f"'{layer.name()}': band {band} has no-data value {_exact(value)} set in QGIS, which QGIS compares " \
           f"with its file's values times {_exact(scale)} plus {_exact(offset)}"
    if not hidden:
        raise InputRasterError(f"{said}: none shows as it (the nearest as {_exact(shows(nearest))}); set the "
                               f"value its no-data pixels show in Layer Properties > Transparency")
    if len(hidden) > 1 or hides(_next_stored(hidden[0], stored, -1)) or hides(_next_stored(hidden[0], stored, 1)):
        raise InputRasterError(f"{said}: several show as it, and {why}")
    return float(hidden[0])


def _next_stored(x, stored: np.dtype, step: int):
    """The stored value after `x` (`step` 1) or before it (-1), None past the type's range."""
    if x is None:
        return None
    if stored.kind == "f":
        return np.nextafter(x, stored.type(math.inf * step))
    limits = np.iinfo(stored)
    return None if not limits.min <= int(x) + step <= limits.max else stored.type(int(x) + step)


def _exact(value: float) -> str:
    """`value` as short as it reads back as itself: a user compares it with what QGIS shows."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def layer_nodata(layer: QgsRasterLayer) -> list[float | None] | None:
    """Per data band, the no-data value set on the layer in QGIS (Layer Properties > Transparency) where it adds
    one to its file's, for the codec to read as the file's (CompressOptions.nodata); None when no band has one.
    The codec reads the file: a fill value known to QGIS alone was coded as backscatter, stretching the clip
    range over it (a -9999 border spoilt the whole scene) and coming back as data. A .sarc keeps one nodata value
    per band, so a range, or a value beside the file's own (other than NaN), is refused (InputRasterError)."""
    provider = layer.dataProvider()
    values: list[float | None] = []
    for b in data_bands(layer):
        value = _user_nodata(layer, b, "a compressed file keeps one no-data value per band")
        # a file's NaN is no second value: NaN is never a measurement to the codec, whatever the nodata value
        if value is not None and provider.sourceHasNoDataValue(b) and provider.useSourceNoDataValue(b) \
                and not math.isnan(provider.sourceNoDataValue(b)) and provider.sourceNoDataValue(b) != value:
            raise InputRasterError(f"'{layer.name()}': band {b} has no-data value {provider.sourceNoDataValue(b):g} "
                                   f"in its file and {provider.userNoDataValues(b)[0].min():g} set in QGIS, and a "
                                   f"compressed file keeps one per band; remove one in Layer Properties > "
                                   f"Transparency")
        values.append(value)
    return values if any(v is not None for v in values) else None


def layer_band_nodata(layer: QgsRasterLayer) -> dict[int, float]:
    """The no-data value set on the layer in QGIS by band number, for the quality maps, which read bands by
    number (core.quality_maps): its fill, a -9999 border say, entered their windows as backscatter. The maps
    mask it beside the file's own, so, unlike `layer_nodata`, a value beside the file's is taken."""
    provider = layer.dataProvider()
    values = {b: _user_nodata(layer, b, "the quality maps take one no-data value per band")
              for b in data_bands(layer)}
    # the maps compare it with the values after scale and offset, as core.quality_maps computes them
    return {b: v * provider.bandScale(b) + provider.bandOffset(b) for b, v in values.items() if v is not None}


def reconstruction_layer_name(sarc_path: str, window) -> str:
    """A window's name says so: named as the whole scene's, a part of the scene could not be told from all of it
    in the Layers panel (unique_layer_name then adds [2], [3]... to repeated runs of either)."""
    stem = Path(sarc_path).stem
    return f"{stem} (reconstructed)" if window is None else f"{stem} (reconstructed, extent)"


def unique_layer_name(project: QgsProject, name: str) -> str:
    """`name`, or `name [2]`, `name [3]`... so that repeated runs can be told apart in the Layers panel."""
    taken = {layer.name() for layer in project.mapLayers().values()}
    if name not in taken:
        return name
    i = 2
    while f"{name} [{i}]" in taken:
        i += 1
    return f"{name} [{i}]"


def unique_path(path: str | os.PathLike, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """`path`, or `stem_2.ext`, `stem_3.ext`... if it exists or is in `taken` (resolved paths that running tasks
    are writing: their files do not exist until they finish)."""
    p = Path(path)
    candidates = itertools.chain([p], (p.with_name(f"{p.stem}_{i}{p.suffix}") for i in itertools.count(2)))
    return str(next(c for c in candidates if not c.exists() and str(c.resolve()) not in taken))


def default_compressed_path(input_path: str, taken: set[str] | frozenset[str] = frozenset(),
                            folder: str = "") -> str:
    """In `folder` ("": beside the input, or beside the archive that holds it), named after the input with .sarc."""
    base = Path(local_output_base(input_path))
    return unique_path(Path(folder or base.parent) / base.with_suffix(SARC_SUFFIX).name, taken)


def default_reconstruction_path(sarc_path: str, taken: set[str] | frozenset[str] = frozenset(),
                                window: bool = False, folder: str = "") -> str:
    """In `folder` ("": beside the .sarc): `<stem>_reconstructed.tif`, or for a `window` of it `<stem>_extent.tif`,
    as "Export current extent" names one. A window named as the whole scene took its name, and the whole scene
    reconstructed after it became `_reconstructed_2.tif`: on disk the part passed for all of it."""
    p = Path(sarc_path)
    return unique_path(Path(folder or p.parent) / f"{p.stem}_{'extent' if window else 'reconstructed'}.tif", taken)


def default_quality_paths(reconstruction_path: str, band: int, folder: str = "") -> tuple[str, str]:
    """The ENL-ratio and EPI maps of one band, in `folder` ("": beside the reconstruction), with one suffix for
    both (_2, _3... while either name is taken), so that a run's two maps read as a pair. Not made unique against
    running tasks on purpose: the same band's maps asked for twice at once name the same files, and the plugin
    refuses the second run instead of computing them twice."""
    p = Path(local_output_base(reconstruction_path))
    base = Path(folder or p.parent) / f"{p.stem}_band{band}"
    for suffix in itertools.chain([""], (f"_{i}" for i in itertools.count(2))):
        maps = (Path(f"{base}_enl_ratio{suffix}.tif"), Path(f"{base}_epi{suffix}.tif"))
        if not any(m.exists() for m in maps):
            return str(maps[0]), str(maps[1])


def _stem_key(path: str) -> str:
    stem = Path(path).stem
    for suffix in ("_reconstructed", "_extent"):  # "_extent": Export current extent of a scene layer
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


def _compressed_to(layer: QgsMapLayer) -> list[str]:
    value = layer.customProperty(COMPRESSED_TO_PROPERTY) or []
    return [str(v) for v in ([value] if isinstance(value, str) else value)]


def remember_compressed(project: QgsProject, layer: QgsMapLayer, sarc_path: str) -> None:
    """Note on `layer` that the plugin compressed it to `sarc_path` (find_original_layer), and on no other layer:
    a file written again holds the last layer compressed to it."""
    path = str(Path(sarc_path).absolute())
    for other in project.mapLayers().values():
        if other is not layer and path in _compressed_to(other):
            other.setCustomProperty(COMPRESSED_TO_PROPERTY, [p for p in _compressed_to(other) if p != path])
    if path not in _compressed_to(layer):
        layer.setCustomProperty(COMPRESSED_TO_PROPERTY, [*_compressed_to(layer), path])


def find_original_layer(project: QgsProject, compressed_path: str, exclude: QgsMapLayer | None = None):
    """The project raster layer a .sarc (or its reconstruction) was made from: the layer the plugin compressed to
    that file (remember_compressed), else one of the same file stem, else None. By stem alone, the reconstruction
    of a second compression (`berlin_2.sarc`, the name the plugin gives it beside `berlin.sarc`) lost its original:
    put outside its group, in another stretch, and the quality maps' dialog asked which layer it was."""
    path = str(Path(compressed_path).absolute())
    for layer in project.mapLayers().values():
        if layer is not exclude and isinstance(layer, QgsRasterLayer) and path in _compressed_to(layer):
            return layer
    key = _stem_key(compressed_path)
    for layer in project.mapLayers().values():
        if layer is exclude or not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
            continue
        if layer.customProperty(ROLE_PROPERTY):  # our own reconstructions and maps
            continue
        parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
        path = f"{parts.get('vsiPrefix') or ''}{parts.get('path') or ''}{parts.get('vsiSuffix') or ''}"
        if path and Path(local_output_base(path)).stem == key:  # a file in an archive: its own name, not the zip's
            return layer
    return None


def group_for_layer(project: QgsProject, layer: QgsMapLayer) -> QgsLayerTreeGroup:
    """The plugin's group holding `layer`: made (at the layer's place in the tree) if the layer is not in one."""
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        project.addMapLayer(layer, False)
        node = root.insertLayer(0, layer)
    parent = node.parent()
    if isinstance(parent, QgsLayerTreeGroup) and parent.customProperty(GROUP_PROPERTY):
        return parent
    index = parent.children().index(node)
    group = parent.insertGroup(index, f"{layer.name()} — SAR codec")
    group.setCustomProperty(GROUP_PROPERTY, True)
    group.insertChildNode(0, node.clone())
    parent.removeChildNode(node)
    return group


def add_raster_layer(project: QgsProject, path: str, name: str, group: QgsLayerTreeGroup | None = None,
                     above: QgsMapLayer | None = None, role: str = "") -> QgsRasterLayer:
    """Add a GeoTIFF as a layer, in `group` (on top, or just above `above`), else at the top of the tree."""
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise InputRasterError(f"{path}: written but QGIS cannot open it as a raster layer")
    if role:
        layer.setCustomProperty(ROLE_PROPERTY, role)
    project.addMapLayer(layer, False)
    parent = group or project.layerTreeRoot()
    index = 0
    if above is not None:
        node = parent.findLayer(above.id())
        if node is not None and node.parent() is parent:
            index = parent.children().index(node)
    parent.insertChildNode(index, QgsLayerTreeLayer(layer))
    return layer


def show_only_quality_map(parent: QgsLayerTreeGroup, shown: QgsMapLayer) -> None:
    """Hide every quality map directly in `parent` but `shown`: each run's maps go just above the reconstruction,
    so an earlier run's maps lie above a new run's, and semi-transparent overlays left shown blend over it."""
    for node in parent.children():
        layer = node.layer() if isinstance(node, QgsLayerTreeLayer) else None
        if layer is not None and layer is not shown and layer.customProperty(ROLE_PROPERTY) in ("enl_ratio", "epi"):
            node.setItemVisibilityChecked(False)


def _class_renderer(layer: QgsRasterLayer, classes, limits, band: int = 1) -> QgsSingleBandPseudoColorRenderer:
    ramp = QgsColorRampShader(*limits)
    ramp.setColorRampType(QgsColorRampShader.Type.Discrete)
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, QColor(c), label) for v, c, label in classes])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(limits[0])
    renderer.setClassificationMax(limits[1])
    return renderer


def style_quality_layer(layer: QgsRasterLayer, kind: str, band: int = 1) -> None:
    """Labelled classes (ENL ratio: diverging around 1; EPI: sequential), at OVERLAY_OPACITY so the grey
    reconstruction under it (style_db_grey) stays readable."""
    classes = ENL_RATIO_CLASSES if kind == "enl_ratio" else EPI_CLASSES
    layer.setRenderer(_class_renderer(layer, classes, QUALITY_RANGES[kind], band))
    layer.renderer().setOpacity(OVERLAY_OPACITY)
    layer.triggerRepaint()


def style_db_grey(layer: QgsRasterLayer, band: int = 1, domain: str | None = None,
                  alike: tuple[QgsRasterLayer, ...] = ()) -> None:
    """Show one band in grey, stretched linearly in dB (2-98 % of a block sample of `layer`), whatever the file's
    domain; the layers `alike` (in the same domain) get the same band and the same stops, so that toggling
    between them compares values, not stretches.

    SAR intensity spans decades: a linear stretch shows a few bright targets on black, and an RGB composite of
    VV/VH fights with the overlay's colours. Grey ramp stops placed at dB steps converted back to the layer's
    own values give the dB look without writing a dB copy of the raster. The sample is read through the band's
    GDAL scale and offset, as QGIS reads the values the stops apply to (an int16 sigma0 product in hundredths
    of a dB: its stored values were dB to the stretch, every stop at the noise floor).
    """
    from osgeo import gdal

    from .core.preprocessing import from_db, to_db
    from .core.quality_maps import band_values, block_sample, guess_domain

    ds = gdal.Open(layer_file_path(layer))
    domain = domain or guess_domain(ds, band)
    b = ds.GetRasterBand(band)
    values, nodata = band_values(b, block_sample(_MaskedBand(b)))
    db, ok = to_db(values, domain, nodata)
    lo, hi = (np.percentile(db[ok], (2, 98)) if ok.any() else (-25.0, 0.0))
    hi = max(hi, lo + 1.0)
    stops_db = np.linspace(lo, hi, 9)
    values = from_db(stops_db, domain)
    for each in (layer, *alike):
        _set_grey_ramp(each, band, values, stops_db)


class _MaskedBand:
    """A GDAL band read with the pixels its GDAL mask marks invalid (mask band or alpha band) as NaN, for
    core.quality_maps.block_sample, which reads windows of it. A reconstruction restores masked pixels bit for
    bit (often fill or garbage far from the scene's values) and marks them in its mask; read as data, they
    pulled the grey dB stretch away from the scene."""

    def __init__(self, band):
        from .core.raster_io import mask_kind

        self.band = band
        self.XSize, self.YSize = band.XSize, band.YSize  # noqa: N815 (GDAL's names)
        self.mask = band.GetMaskBand() if mask_kind(band.GetMaskFlags()) else None

    def GetBlockSize(self):  # noqa: N802 (GDAL's name)
        return self.band.GetBlockSize()

    def ReadAsArray(self, *window):  # noqa: N802 (GDAL's name)
        values = self.band.ReadAsArray(*window)
        if self.mask is None:
            return values
        values = values.astype(np.float64)
        values[self.mask.ReadAsArray(*window) == 0] = np.nan
        return values


def _set_grey_ramp(layer: QgsRasterLayer, band: int, values: np.ndarray, stops_db: np.ndarray) -> None:
    """Black to white through `values` (the layer's own values at the dB `stops_db`), labelled in dB."""
    ramp = QgsColorRampShader(float(values[0]), float(values[-1]))
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    items = []
    for i, (v, d) in enumerate(zip(values, stops_db)):
        g = int(round(255 * i / (len(values) - 1)))
        label = f"{d:.0f} dB" if i in (0, len(values) - 1) else ""
        items.append(QgsColorRampShader.ColorRampItem(float(v), QColor(g, g, g), label))
    ramp.setColorRampItemList(items)
    # The legend is a continuous bar labelled with its ends' values, linear intensities unless told otherwise.
    legend = QgsColorRampLegendNodeSettings()
    legend.setMinimumLabel(items[0].label)
    legend.setMaximumLabel(items[-1].label)
    ramp.setLegendSettings(legend)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(float(values[0]))
    renderer.setClassificationMax(float(values[-1]))
    layer.setRenderer(renderer)
    layer.triggerRepaint()
