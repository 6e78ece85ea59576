"""QGIS-side helpers: layer <-> file, output paths, layer-tree grouping and the quality-map styles."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (
    QgsColorRampShader,
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsMapLayer,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from .core.errors import InputRasterError

SARC_SUFFIX = ".sarc"
#: Custom property marking a layer-tree group that this plugin made (original + reconstruction + maps).
GROUP_PROPERTY = "sar_compress/group"
ROLE_PROPERTY = "sar_compress/role"
ORIGINAL_PROPERTY = "sar_compress/original_layer_id"
OVERLAY_OPACITY = 0.6

#: Diverging around 1 (RdBu, ColorBrewer): red = rougher than the original, blue = smoother.
ENL_RATIO_STOPS = ((0.5, "#b2182b"), (0.75, "#ef8a62"), (1.0, "#f7f7f7"), (1.25, "#67a9cf"), (1.5, "#2166ac"))
#: Sequential (viridis) from 0 (edges lost) to 1 (edges kept).
EPI_STOPS = ((0.0, "#440154"), (0.25, "#3b528b"), (0.5, "#21918c"), (0.75, "#5ec962"), (1.0, "#fde725"))


def layer_file_path(layer: QgsMapLayer | None) -> str:
    """The local file behind a raster layer, or InputRasterError with a message for the user."""
    if layer is None:
        raise InputRasterError("no layer selected: select a raster layer in the Layers panel")
    if not isinstance(layer, QgsRasterLayer):
        raise InputRasterError(f"layer '{layer.name()}' is not a raster layer")
    if not layer.isValid():
        raise InputRasterError(f"layer '{layer.name()}' cannot be read (invalid layer: {layer.source()})")
    if layer.providerType() != "gdal":
        raise InputRasterError(f"layer '{layer.name()}' is not a local GDAL raster "
                               f"(provider '{layer.providerType()}'); save it as a GeoTIFF first")
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if not os.path.isfile(path):
        raise InputRasterError(f"layer '{layer.name()}': its file {path} does not exist")
    return path


def unique_path(path: str | os.PathLike) -> str:
    """`path`, or `stem_2.ext`, `stem_3.ext`... if it exists."""
    p = Path(path)
    if not p.exists():
        return str(p)
    i = 2
    while (p.with_name(f"{p.stem}_{i}{p.suffix}")).exists():
        i += 1
    return str(p.with_name(f"{p.stem}_{i}{p.suffix}"))


def default_compressed_path(input_path: str) -> str:
    return unique_path(Path(input_path).with_suffix(SARC_SUFFIX))


def default_reconstruction_path(sarc_path: str) -> str:
    p = Path(sarc_path)
    return unique_path(p.with_name(f"{p.stem}_reconstructed.tif"))


def default_quality_paths(reconstruction_path: str) -> tuple[str, str]:
    p = Path(reconstruction_path)
    return (unique_path(p.with_name(f"{p.stem}_enl_ratio.tif")),
            unique_path(p.with_name(f"{p.stem}_epi.tif")))


def _stem_key(path: str) -> str:
    stem = Path(path).stem
    for suffix in ("_reconstructed", "_extent"):  # "_extent": Export current extent of a scene layer
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


def find_original_layer(project: QgsProject, compressed_path: str, exclude: QgsMapLayer | None = None):
    """The project raster layer a .sarc (or its reconstruction) was made from: same file stem, else None."""
    key = _stem_key(compressed_path)
    for layer in project.mapLayers().values():
        if layer is exclude or not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
            continue
        if layer.customProperty(ROLE_PROPERTY):  # our own reconstructions and maps
            continue
        path = QgsProviderRegistry.instance().decodeUri("gdal", layer.source()).get("path", "")
        if path and Path(path).stem == key:
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


def _ramp_renderer(layer: QgsRasterLayer, stops, band: int = 1) -> QgsSingleBandPseudoColorRenderer:
    ramp = QgsColorRampShader(stops[0][0], stops[-1][0])
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp.setClip(False)  # values beyond the ends take the end colours
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, QColor(c), f"{v:g}") for v, c in stops])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(stops[0][0])
    renderer.setClassificationMax(stops[-1][0])
    return renderer


def style_quality_layer(layer: QgsRasterLayer, kind: str, band: int = 1) -> None:
    """Pseudocolour ramp (ENL ratio: diverging 0.5..1..1.5; EPI: sequential 0..1), 60% opacity, legend."""
    stops = ENL_RATIO_STOPS if kind == "enl_ratio" else EPI_STOPS
    layer.setRenderer(_ramp_renderer(layer, stops, band))
    layer.renderer().setOpacity(OVERLAY_OPACITY)
    layer.triggerRepaint()
