"""The Processing algorithms as analysts reach them beside processing.run: several rows of Processing's batch
dialog, a graphical model chaining Compress -> Reconstruct -> Quality maps, temporary outputs, other formats."""

from __future__ import annotations

import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterRasterLayer,
)

from qgis.PyQt import sip

from qgis_harness import process_events_until, shared_scene_copy


@pytest.fixture
def processing_ready(plugin):
    """Processing initialised as in the desktop, with the plugin's provider registered."""
    import processing  # noqa: F401
    from processing.core.Processing import Processing

    Processing.initialize()
    return plugin


@pytest.fixture
def frankfurt(tmp_path):
    return shared_scene_copy(tmp_path, "s1_iw_grd_frankfurt_512.tif", "frankfurt.tif")


def run_batch(qtbot, alg_id: str, rows: list[dict]):
    """Processing's own batch dialog, one table row per dict, run with "Load layers on completion" on."""
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog

    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    dialog = BatchAlgorithmDialog(alg.create())
    panel = dialog.mainWidget()
    panel.addRow(len(rows) - 1)
    for r, row in enumerate(rows):
        for name, value in row.items():
            col = panel.parameter_to_column[name]
            if alg.parameterDefinition(name).isDestination():
                panel.tblParameters.cellWidget(r + 1, col).setValue(value)  # the row's output file box
            else:
                panel.wrappers[r][col].setParameterValue(value, panel.processing_context)
    panel.checkLoadLayersOnCompletion.setChecked(True)
    dialog.runAlgorithm()
    dialog.close()
    sip.delete(dialog)
    assert process_events_until(lambda: QgsApplication.taskManager().countActiveTasks() == 0, 30)


def test_a_batch_of_quality_maps_names_each_pair(processing_ready, qtbot, project, sar_tif, frankfurt, tmp_path):
    """Every row's maps were loaded as "Local ENL ratio" and "Local EPI": a batch over several scenes gave
    pairs of layers that nothing told apart. Named as the plugin's dialog names them."""
    run_batch(qtbot, "sarcompress:qualitymaps", [
        {"ORIGINAL": str(sar_tif), "RECONSTRUCTION": str(sar_tif), "BAND": 1,
         "OUTPUT_ENL_RATIO": str(tmp_path / "b_enl.tif"), "OUTPUT_EPI": str(tmp_path / "b_epi.tif")},
        {"ORIGINAL": str(frankfurt), "RECONSTRUCTION": str(frankfurt), "BAND": 2,
         "OUTPUT_ENL_RATIO": str(tmp_path / "f_enl.tif"), "OUTPUT_EPI": str(tmp_path / "f_epi.tif")},
    ])
    layers = {layer.source(): layer for layer in project.mapLayers().values()}
    names = {source.rsplit("/", 1)[1]: layer.name() for source, layer in layers.items()}
    assert names["b_enl.tif"].startswith("berlin vs berlin — ") and names["b_enl.tif"].endswith(
        "local ENL ratio (15 px)")
    assert names["f_epi.tif"].startswith("frankfurt vs frankfurt — ") and names["f_epi.tif"].endswith(
        "local EPI (15 px)")
    assert len(set(names.values())) == 4, names
    assert all(layer.renderer().opacity() == pytest.approx(0.6) for layer in layers.values())


def test_a_batch_of_reconstructions_loads_each_named_and_styled(processing_ready, qtbot, project, compressed,
                                                                 tmp_path):
    """Rows of one file are told apart as the plugin's dialog tells repeated runs apart. (A failing row is left
    out: QGIS 3.22's batch dialog then leaves its "Batch Processing" progress task running, whatever the
    algorithm; a bad input's one-line error is tested through processing.run in test_processing.py.)"""
    run_batch(qtbot, "sarcompress:reconstruct", [
        {"INPUT": str(compressed), "DEVICE": 2, "OUTPUT": str(tmp_path / "a.tif")},
        {"INPUT": str(compressed), "DEVICE": 2, "OUTPUT": str(tmp_path / "b.tif")},
    ])
    names = sorted(layer.name() for layer in project.mapLayers().values())
    assert names == ["berlin (reconstructed)", "berlin (reconstructed) [2]"]
    assert all(layer.renderer().type() == "singlebandpseudocolor" for layer in project.mapLayers().values())


def _chain_model(model_bundle) -> QgsProcessingModelAlgorithm:
    """Compress -> Reconstruct -> Quality maps, as drawn in the graphical modeler: the scene is the model's one
    input, the reconstruction and both maps its outputs."""
    model = QgsProcessingModelAlgorithm("sar chain", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "SAR scene"),
                            QgsProcessingModelParameter("scene"))

    def child(alg_id, child_id, sources, outputs=()):
        c = QgsProcessingModelChildAlgorithm(alg_id)
        c.setChildId(child_id)
        for name, source in sources.items():
            c.addParameterSources(name, [source])
        model_outputs = {}
        for name, child_output in outputs:
            out = QgsProcessingModelOutput(name, name)
            out.setChildId(child_id)
            out.setChildOutputName(child_output)
            model_outputs[name] = out
        c.setModelOutputs(model_outputs)
        model.addChildAlgorithm(c)

    static = QgsProcessingModelChildParameterSource.fromStaticValue
    scene = QgsProcessingModelChildParameterSource.fromModelParameter("scene")
    child("sarcompress:compress", "compress", {"INPUT": scene, "MODEL_DIR": static(str(model_bundle)),
                                               "DEVICE": static(2), "TILE_SIZE": static(256)})
    child("sarcompress:reconstruct", "reconstruct",
          {"INPUT": QgsProcessingModelChildParameterSource.fromChildOutput("compress", "OUTPUT"),
           "DEVICE": static(2)}, [("Reconstruction", "OUTPUT")])
    child("sarcompress:qualitymaps", "maps",
          {"ORIGINAL": scene, "WINDOW": static(15), "DOMAIN": static(0),
           "RECONSTRUCTION": QgsProcessingModelChildParameterSource.fromChildOutput("reconstruct", "OUTPUT")},
          [("ENL ratio", "OUTPUT_ENL_RATIO"), ("EPI", "OUTPUT_EPI")])
    model.updateDestinationParameters()
    return model


@pytest.mark.parametrize("temporary", [True, False], ids=["temporary outputs", "files"])
def test_a_model_chaining_the_three_keeps_its_output_names_and_the_plugin_styles(
        processing_ready, project, model_bundle, sar_tif, tmp_path, temporary):
    """A model's outputs carry the names its author gave them: Reconstruct renamed its model output
    "OUTPUT (reconstructed)", after the temporary .sarc the compress step wrote."""
    import processing

    model = _chain_model(model_bundle)
    params = {"scene": str(sar_tif)}
    for name, file in (("reconstruct:Reconstruction", "r.tif"), ("maps:ENL ratio", "enl.tif"),
                       ("maps:EPI", "epi.tif")):
        params[name] = "TEMPORARY_OUTPUT" if temporary else str(tmp_path / file)
    context = QgsProcessingContext()
    context.setProject(project)
    result = processing.runAndLoadResults(model, params, feedback=QgsProcessingFeedback(), context=context)
    loaded = {layer.source(): layer for layer in project.mapLayers().values()}
    recon = loaded[result["reconstruct:Reconstruction"]]
    enl, epi = loaded[result["maps:ENL ratio"]], loaded[result["maps:EPI"]]
    assert (recon.name(), enl.name(), epi.name()) == ("Reconstruction", "ENL ratio", "EPI")
    assert recon.renderer().type() == "singlebandpseudocolor" and recon.renderer().band() == 1
    assert enl.renderer().opacity() == pytest.approx(0.6) and epi.renderer().opacity() == pytest.approx(0.6)
    if not temporary:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["berlin.tif", "enl.tif", "epi.tif", "r.tif"]


@pytest.mark.parametrize("suffix", [".img", ".vrt"])
def test_quality_maps_refuse_a_name_of_another_format(processing_ready, project, sar_tif, tmp_path, suffix):
    """A GeoTIFF was written under an .img or .vrt name typed in a batch row; other programs open such a file
    as the format its name says, and fail. Refused in one line, before the run and in it."""
    import processing

    params = {"ORIGINAL": str(sar_tif), "RECONSTRUCTION": str(sar_tif), "BAND": 1,
              "OUTPUT_ENL_RATIO": str(tmp_path / f"enl{suffix}"), "OUTPUT_EPI": str(tmp_path / "epi.tif")}
    alg = QgsApplication.processingRegistry().algorithmById("sarcompress:qualitymaps")
    ok, message = alg.checkParameterValues(params, QgsProcessingContext())
    assert not ok and message == (f"{tmp_path / f'enl{suffix}'}: the quality maps are written as GeoTIFF; name "
                                  f"it .tif, not {suffix}")
    with pytest.raises(QgsProcessingException) as refused:
        processing.run("sarcompress:qualitymaps", params, feedback=QgsProcessingFeedback())
    assert str(refused.value).splitlines()[-1] == message  # under Processing's "Unable to execute algorithm"
    with pytest.raises(QgsProcessingException, match=f"^{message}$"):  # a caller that skips the check
        alg.create().processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml")) == ["berlin.tif"]
    for suffix_ok in ("tiff", "TIF"):  # a GeoTIFF's other names stay accepted
        res = processing.run("sarcompress:qualitymaps",
                             {**params, "OUTPUT_ENL_RATIO": str(tmp_path / f"e.{suffix_ok}")},
                             feedback=QgsProcessingFeedback())
        assert gdal.Open(res["OUTPUT_ENL_RATIO"]).GetDriver().ShortName == "GTiff"
