"""The plugin's three background jobs. Each calls the same core function the CLI and Processing call."""

from __future__ import annotations

from pathlib import Path

from .base import SarTask


class CompressTask(SarTask):
    def __init__(self, input_path: str, output_path: str, options=None, on_finished=None, layer_id: str = ""):
        super().__init__(f"SAR compress {Path(input_path).name}", on_finished, outputs=(output_path,))
        self.input_path = str(input_path)
        self.output_path = str(output_path)
        self.options = options
        self.layer_id = layer_id

    def _run(self):
        from ..core.codec import compress  # lazy: onnxruntime may be missing

        return compress(self.input_path, self.output_path, self.options,
                        progress=self.report_progress, is_cancelled=self.is_cancelled)


class ReconstructTask(SarTask):
    def __init__(self, input_path: str, output_path: str, model_dirs=None, device: str = "auto",
                 window=None, on_finished=None):
        super().__init__(f"SAR reconstruct {Path(input_path).name}", on_finished, outputs=(output_path,))
        self.input_path = str(input_path)
        self.output_path = str(output_path)
        self.model_dirs = model_dirs
        self.device = device
        self.window = window

    def _run(self):
        from ..core.codec import reconstruct  # lazy: onnxruntime may be missing

        return reconstruct(self.input_path, self.output_path, window=self.window, model_dirs=self.model_dirs,
                           device=self.device, progress=self.report_progress, is_cancelled=self.is_cancelled)


class QualityMapsTask(SarTask):
    def __init__(self, original_path: str, reconstruction_path: str, enl_ratio_path: str, epi_path: str,
                 window: int = 15, domain: str | None = None, bands=None, on_finished=None,
                 layers: dict[str, str] | None = None, original_nodata: dict[int, float] | None = None,
                 reconstruction_nodata: dict[int, float] | None = None):
        """`layers`: {layer id: name} of the pair in the project, whose removal cancels the task (plugin.py).
        `original_nodata`, `reconstruction_nodata`: the layers' no-data values beyond their files'
        (qgis_io.layer_band_nodata), read on the main thread, where the layers live."""
        super().__init__(f"SAR quality maps of {Path(reconstruction_path).name}", on_finished,
                         outputs=(enl_ratio_path, epi_path))
        self.original_path = str(original_path)
        self.reconstruction_path = str(reconstruction_path)
        self.enl_ratio_path = str(enl_ratio_path)
        self.epi_path = str(epi_path)
        self.window = int(window)
        self.domain = domain
        self.bands = bands
        self.original_nodata = dict(original_nodata or {})
        self.reconstruction_nodata = dict(reconstruction_nodata or {})
        self.layers = dict(layers or {})
        #: the name of the pair's layer whose removal from the project cancelled the task, else ""
        self.removed = ""

    def _run(self):
        from ..core.quality_maps import compute_quality_maps

        return compute_quality_maps(self.original_path, self.reconstruction_path, self.enl_ratio_path,
                                    self.epi_path, domain=self.domain, window=self.window, bands=self.bands,
                                    original_nodata=self.original_nodata,
                                    reconstruction_nodata=self.reconstruction_nodata,
                                    progress=self.report_progress, is_cancelled=self.is_cancelled)
