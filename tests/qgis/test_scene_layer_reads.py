"""What opening a scene layer costs QGIS's main thread: the .sarc header (with its tile index, large for a big
scene) is parsed once per scene opened, from the menu or with a project."""

from __future__ import annotations

import shutil

import pytest
from qgis.core import QgsProject

from test_scene_layer import scene  # noqa: F401 (fixture)


@pytest.fixture
def header_reads(monkeypatch) -> list:
    """The paths of the .sarc headers parsed from now on, in order."""
    from sar_compress_plugin.core import container

    reads = []
    parse = container.ContainerReader._read_header

    def counted(reader):
        reads.append(reader.path)
        return parse(reader)

    monkeypatch.setattr(container.ContainerReader, "_read_header", counted)
    return reads


def test_opening_scenes_reads_each_header_once(plugin, test_iface, scene, tmp_path, header_reads):
    """A second scene opened beside a first read its header three times: once to tell whether an open layer
    shows it already, once to open it, and once more when its layer was added."""
    sarc, _full = scene
    other = sarc.with_name("other.sarc")  # another name: another scene to the cache
    shutil.copy(sarc, other)
    backup = tmp_path / "backup" / sarc.name  # the same scene at another path
    backup.parent.mkdir()
    shutil.copy(sarc, backup)

    first = plugin.scenes.open(str(sarc))
    assert header_reads == [sarc]
    second = plugin.scenes.open(str(other))
    assert second is not first and header_reads == [sarc, other]
    assert plugin.scenes.open(str(other)) is second and plugin.scenes.open(str(backup)) is first
    assert header_reads == [sarc, other, backup]
    assert len(QgsProject.instance().mapLayers()) == 2

    project = QgsProject.instance()
    assert project.write(str(tmp_path / "two.qgz"))
    project.clear()
    header_reads.clear()
    assert project.read(str(tmp_path / "two.qgz"))
    assert len(plugin.scenes.controllers) == 2
    assert sorted(header_reads) == sorted([sarc, other])
