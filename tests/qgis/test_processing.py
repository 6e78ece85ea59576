"""The Processing provider through processing.run (and qgis_process when installed): same results as the codec."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

from qgis_harness import install_plugin_zip


@pytest.fixture
def processing_ready(plugin):
    """Processing initialised the way a standalone script does, with the plugin's provider registered."""
    import processing  # noqa: F401  (Debian: /usr/share/qgis/python/plugins is on sys.path via the harness)
    from processing.core.Processing import Processing

    Processing.initialize()
    return plugin


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self, cancel_above: float | None = None):
        super().__init__()
        self.values: list[float] = []
        self.cancel_above = cancel_above
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, value):
        self.values.append(value)
        if self.cancel_above is not None and value > self.cancel_above:
            self.cancel()


def _run(alg, params, feedback=None):
    import processing

    return processing.run(alg, params, feedback=feedback or RecordingFeedback(), context=QgsProcessingContext())


def _arrays(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_processing_compress_reconstruct_quality_match_the_codec(processing_ready, sar_tif, model_bundle, codec,
                                                                  tmp_path):
    fb = RecordingFeedback()
    res = _run("sarcompress:compress", {"INPUT": str(sar_tif), "MODEL_DIR": str(model_bundle), "DEVICE": 2,
                                        "TILE_SIZE": 256, "QUALITY": 1.0, "OUTPUT": str(tmp_path / "p.sarc")}, fb)
    assert res["OUTPUT"] == str(tmp_path / "p.sarc") and res["PROVIDER"] == "CPUExecutionProvider"
    assert max(fb.values) == pytest.approx(100.0)
    direct = codec.compress(str(sar_tif), str(tmp_path / "d.sarc"),
                            codec.CompressOptions(model_dir=str(model_bundle), device="cpu", tile_size=256,
                                                  quality=1.0))
    assert res["BPP"] == pytest.approx(direct.bpp) and res["RATIO"] == pytest.approx(direct.ratio)
    assert os.path.getsize(res["OUTPUT"]) == direct.output_bytes

    rec = _run("sarcompress:reconstruct", {"INPUT": res["OUTPUT"], "DEVICE": 2,
                                           "OUTPUT": str(tmp_path / "p.tif")})
    codec.reconstruct(direct.output_path, str(tmp_path / "d.tif"), model_dirs=[str(model_bundle)], device="cpu")
    a, b = _arrays(rec["OUTPUT"]), _arrays(tmp_path / "d.tif")
    assert a.shape == (2, 512, 512) and np.array_equal(a, b)
    assert gdal.Open(rec["OUTPUT"]).GetGeoTransform() == gdal.Open(str(sar_tif)).GetGeoTransform()

    qm = _run("sarcompress:qualitymaps", {"ORIGINAL": str(sar_tif), "RECONSTRUCTION": rec["OUTPUT"], "WINDOW": 15,
                                          "DOMAIN": 0, "OUTPUT_ENL_RATIO": str(tmp_path / "enl.tif"),
                                          "OUTPUT_EPI": str(tmp_path / "epi.tif")})
    from sar_compress_plugin.core.quality_maps import compute_quality_maps

    want = compute_quality_maps(sar_tif, rec["OUTPUT"], tmp_path / "enl_d.tif", tmp_path / "epi_d.tif")
    np.testing.assert_array_equal(_arrays(qm["OUTPUT_ENL_RATIO"]), _arrays(want.enl_ratio_path))
    np.testing.assert_array_equal(_arrays(qm["OUTPUT_EPI"]), _arrays(want.epi_path))


def test_processing_cancel_and_bad_input(processing_ready, sar_tif, model_bundle, codec, tmp_path):
    out = tmp_path / "cancel.sarc"
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        _run("sarcompress:compress", {"INPUT": str(sar_tif), "MODEL_DIR": str(model_bundle), "DEVICE": 2,
                                      "TILE_SIZE": 128, "OUTPUT": str(out)}, RecordingFeedback(cancel_above=30))
    assert not out.exists()
    garbage = tmp_path / "garbage.sarc"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(QgsProcessingException, match="garbage.sarc"):
        _run("sarcompress:reconstruct", {"INPUT": str(garbage), "OUTPUT": str(tmp_path / "g.tif")})
    assert not (tmp_path / "g.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["berlin.tif", "garbage.sarc"]


def test_qgis_process(tmp_path, sar_tif, model_bundle):
    # Debian 12's /usr/bin/qgis_process wrapper adds --noversioncheck from /etc/default/qgis, which the 3.22
    # binary rejects ("Command --noversioncheck not known!"): call the binary it wraps.
    exe = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
    if exe is None:
        pytest.skip("qgis_process not on PATH: Debian package qgis missing (scripts/setup.sh installs it; python3-qgis alone lacks it)")
    import sysconfig

    plugins = install_plugin_zip(tmp_path)
    # QGIS's own Python must see the venv's packages (onnxruntime, zstandard), as a user's QGIS would after
    # `pip install`; a throw-away profile keeps the user's QGIS settings untouched.
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(plugins),
               PYTHONPATH=sysconfig.get_paths()["purelib"], QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"))
    subprocess.run([exe, "plugins", "enable", "sar_compress_plugin"], env=env, capture_output=True, timeout=120)
    out = tmp_path / "q.sarc"
    done = subprocess.run([exe, "run", "sarcompress:compress", "--", f"INPUT={sar_tif}",
                           f"MODEL_DIR={model_bundle}", "DEVICE=2", f"OUTPUT={out}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file() and "CPUExecutionProvider" in done.stdout


def test_reconstruct_takes_any_name_with_the_sarc_signature(processing_ready, sar_tif, model_bundle, tmp_path):
    """Compress writes whatever name it is given; reconstruct must read it back by its signature, not its name."""
    odd = tmp_path / "scene.bin"
    _run("sarcompress:compress", {"INPUT": str(sar_tif), "MODEL_DIR": str(model_bundle), "DEVICE": 2,
                                  "TILE_SIZE": 256, "OUTPUT": str(odd)})
    assert odd.is_file()
    rec = _run("sarcompress:reconstruct", {"INPUT": str(odd), "DEVICE": 2, "OUTPUT": str(tmp_path / "r.tif")})
    assert _arrays(rec["OUTPUT"]).shape == (2, 512, 512)
    with pytest.raises(QgsProcessingException, match=r"berlin.tif: not a SAR compressed file"):
        _run("sarcompress:reconstruct", {"INPUT": str(sar_tif), "OUTPUT": str(tmp_path / "x.tif")})


def _in_project(project) -> QgsProcessingContext:
    """A context as the Toolbox makes one: with the current project."""
    context = QgsProcessingContext()
    context.setProject(project)
    return context


def test_reconstruct_refuses_to_write_over_the_file_of_a_project_layer(processing_ready, sar_tif, compressed,
                                                                       project):
    """Processing replaces an existing output without asking: the original scene, loaded in the project and
    typed as the output, was overwritten by its reconstruction under its layer."""
    import processing
    from qgis.core import QgsRasterLayer

    project.addMapLayer(QgsRasterLayer(str(sar_tif), "berlin", "gdal"))
    before = sar_tif.read_bytes()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("sarcompress:reconstruct", {"INPUT": str(compressed), "DEVICE": 2, "OUTPUT": str(sar_tif)},
                       feedback=RecordingFeedback(), context=_in_project(project))
    assert str(refused.value) == (f"{sar_tif} is the file of layer 'berlin' in this project: choose another "
                                  "output")
    assert sar_tif.read_bytes() == before


def test_a_reconstruction_loaded_by_processing_is_named_after_its_file_and_shown_in_grey_db(
        processing_ready, compressed, tmp_path, project):
    """As from the Toolbox with "Open output file": the layer was named "Reconstructed raster" (every run alike)
    and kept QGIS's red/green min/max stretch of linear intensity, mostly black on SAR."""
    import processing

    processing.runAndLoadResults("sarcompress:reconstruct", {"INPUT": str(compressed), "DEVICE": 2,
                                                             "OUTPUT": str(tmp_path / "r.tif")},
                                 feedback=RecordingFeedback(), context=_in_project(project))
    [layer] = project.mapLayers().values()
    assert layer.name() == "berlin (reconstructed)"
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor" and renderer.band() == 1
    ramp = renderer.shader().rasterShaderFunction().colorRampItemList()
    assert all(i.color.red() == i.color.green() == i.color.blue() for i in ramp)
    assert ramp[0].label.endswith(" dB") and ramp[-1].label.endswith(" dB")


def test_an_extent_loaded_by_processing_is_named_as_the_plugin_names_one(processing_ready, compressed, sar_tif,
                                                                         tmp_path, project):
    """Processing named the reconstruction of an extent "berlin (reconstructed)", as the whole scene's: the two
    could not be told apart in the Layers panel. Named as the plugin's dialog names it."""
    import processing

    gt = gdal.Open(str(sar_tif)).GetGeoTransform()  # EPSG:4326, the scene's CRS
    dx, dy = 0.01 * gt[1], -0.01 * gt[5]  # box edges a hair inside pixel boundaries: exactly 64 x 48 pixels
    x0, x1 = gt[0] + 100 * gt[1] + dx, gt[0] + 164 * gt[1] - dx
    y0, y1 = gt[3] + 248 * gt[5] + dy, gt[3] + 200 * gt[5] - dy
    for out in ("r.tif", "r2.tif"):  # a second run of the same extent: told apart as the dialog's are
        processing.runAndLoadResults("sarcompress:reconstruct", {
            "INPUT": str(compressed), "DEVICE": 2, "EXTENT": f"{x0!r},{x1!r},{y0!r},{y1!r} [EPSG:4326]",
            "OUTPUT": str(tmp_path / out)}, feedback=RecordingFeedback(), context=_in_project(project))
    layers = sorted(project.mapLayers().values(), key=lambda layer: layer.source())
    assert [(layer.width(), layer.height()) for layer in layers] == [(64, 48)] * 2
    assert [layer.name() for layer in layers] == ["berlin (reconstructed, extent)",
                                                  "berlin (reconstructed, extent) [2]"]


@pytest.mark.no_qt_log  # a GCP layer: "Creating Warped VRT." from render threads (test_quality_maps.py)
def test_an_extent_of_a_scene_placed_by_gcps_is_mapped_through_them(processing_ready, gcp_compressed, tmp_path):
    """The EXTENT of a Sentinel-1 GRD scene, placed by ground control points only, was refused in the command
    line's words ("--bbox cannot be mapped to pixels; use --window"). A box about one of its GCPs reconstructs
    the pixels under it."""
    import processing
    from qgis.core import QgsRasterLayer, QgsRectangle

    src, sarc = gcp_compressed
    centre = next(g for g in gdal.Open(str(src)).GetGCPs() if (g.GCPPixel, g.GCPLine) == (256, 256))
    box = QgsRectangle(centre.GCPX - 0.003, centre.GCPY - 0.002, centre.GCPX + 0.003, centre.GCPY + 0.002)
    out = tmp_path / "r.tif"
    processing.run("sarcompress:reconstruct", {
        "INPUT": str(sarc), "DEVICE": 2, "OUTPUT": str(out),
        "EXTENT": f"{box.xMinimum()!r},{box.xMaximum()!r},{box.yMinimum()!r},{box.yMaximum()!r} [EPSG:4326]"},
        feedback=RecordingFeedback())
    layer = QgsRasterLayer(str(out), "r", "gdal")
    assert layer.extent().contains(box) and layer.width() < 256 and layer.height() < 256
    moved = next(g for g in gdal.Open(str(out)).GetGCPs() if (g.GCPX, g.GCPY) == (centre.GCPX, centre.GCPY))
    assert 0 < moved.GCPPixel < layer.width() and 0 < moved.GCPLine < layer.height()


def test_quality_maps_loaded_by_processing_get_the_plugin_style(processing_ready, sar_tif, tmp_path, project):
    """As from the Toolbox: outputs loaded into the project come styled (classes, overlay opacity), one band;
    and so does a second run's (QGIS frees each run's styler once it has used it)."""
    import processing
    from qgis.core import QgsRasterLayer

    for run in ("a", "b"):
        res = processing.runAndLoadResults("sarcompress:qualitymaps", {
            "ORIGINAL": str(sar_tif), "RECONSTRUCTION": str(sar_tif), "BAND": 2, "WINDOW": 15, "DOMAIN": 0,
            "OUTPUT_ENL_RATIO": str(tmp_path / f"enl_{run}.tif"), "OUTPUT_EPI": str(tmp_path / f"epi_{run}.tif")},
            feedback=RecordingFeedback())
        loaded = {lyr.source(): lyr for lyr in project.mapLayers().values() if isinstance(lyr, QgsRasterLayer)}
        for key, first_label in (("OUTPUT_ENL_RATIO", "rougher than the original"), ("OUTPUT_EPI", "edges lost")):
            layer = loaded[res[key]]
            assert layer.bandCount() == 1
            r = layer.renderer()
            assert r.type() == "singlebandpseudocolor" and r.opacity() == pytest.approx(0.6)
            assert r.shader().rasterShaderFunction().colorRampItemList()[0].label.startswith(first_label)


def test_processing_compress_meets_a_bpp_target_and_refuses_two_rate_settings(processing_ready, sar_tif, codec,
                                                                                tmp_path):
    crop = tmp_path / "crop.tif"  # one 256-px tile of the real scene, with the bundled default model
    gdal.Translate(str(crop), str(sar_tif), srcWin=[128, 128, 256, 256])
    out = tmp_path / "t.sarc"
    res = _run("sarcompress:compress", {"INPUT": str(crop), "DEVICE": 2, "TILE_SIZE": 256, "TARGET_BPP": 0.5,
                                        "OUTPUT": str(out)})
    rate = codec.read_header(out)["rate"]
    assert rate["chosen_by"] == "bpp" and rate["target"] == 0.5
    assert res["BPP"] / 2 == pytest.approx(0.5, rel=0.25)  # BPP counts both bands; the target is per band

    for two in ({"QUALITY": 1.0, "TARGET_BPP": 0.5}, {"TARGET_BPP": 0.5, "TARGET_DB_RMSE": 1.0}):
        with pytest.raises(QgsProcessingException, match="at most one of QUALITY, TARGET_BPP and TARGET_DB_RMSE"):
            _run("sarcompress:compress", {"INPUT": str(crop), "DEVICE": 2, "OUTPUT": str(tmp_path / "two.sarc"),
                                          **two})
    assert not (tmp_path / "two.sarc").exists()


def test_compress_refuses_to_write_over_the_sarc_of_an_open_scene_layer(processing_ready, sar_tif, compressed,
                                                                         project, tmp_path):
    """A compressed scene layer reads its .sarc while the map is panned: Processing compress, given that file as
    its output, replaced it under the layer (the dialog and Processing reconstruct already refused)."""
    import processing

    scene = processing_ready.scenes.open(str(compressed))
    before = compressed.read_bytes()
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("sarcompress:compress", {"INPUT": str(sar_tif), "DEVICE": 2, "TILE_SIZE": 256,
                                                "OUTPUT": str(compressed)},
                       feedback=RecordingFeedback(), context=_in_project(project))
    assert str(refused.value) == (f"{compressed} is the file of layer '{scene.name()}' in this project: choose "
                                  "another output")
    assert compressed.read_bytes() == before
    assert sorted(p.name for p in compressed.parent.iterdir() if p.name.startswith(".")) == []
