"""Test helpers shared by tests/unit and tests/qgis: a tiny ONNX model bundle built at test time (no committed
binaries) and a small GeoTIFF writer. A module of its own name, so both test folders import the same thing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

SAR_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar"
if not SAR_DATA.is_dir():  # checkout elsewhere: fall back to the documented location
    SAR_DATA = Path("/work/shared/data/sar")


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def build_tiny_bundle(out: Path, channels: int = 4, halo: int = 32, name: str = "tiny",
                      seed: int = 0) -> Path:
    """A deterministic smooth autoencoder: 4 x (4x4 stride-2 blur) -> 1x1 mix to C channels, and back.

    It is not trained, but it is smooth and spatially extended (receptive field of several latent cells), so
    it exposes seams, halo handling and tiling bugs the way a real model would, and reconstructs a low-pass
    version of the input (a few dB RMSE on speckle) so round trips can be checked numerically.
    """
    import torch  # noqa: PLC0415  (tests only)
    from torch import nn  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    blur = torch.outer(k1, k1) / 64.0
    up = torch.outer(k1, k1) / 16.0  # transposed conv with these weights = bilinear x2 upsampling

    mix = torch.zeros(channels, 1, 1, 1)
    mix[:, 0, 0, 0] = torch.linspace(1.0, 0.25, channels) * (1 + 0.1 * torch.randn(channels, generator=g))

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(1, 1, 4, 2, 1, bias=False) for _ in range(4))
            for c in self.convs:
                c.weight.data[:] = blur
            self.mix = nn.Conv2d(1, channels, 1, bias=False)
            self.mix.weight.data[:] = mix

        def forward(self, x):
            for c in self.convs:
                x = c(x)
            return self.mix(x)

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.unmix = nn.Conv2d(channels, 1, 1, bias=False)
            w = mix[:, 0, 0, 0]
            self.unmix.weight.data[0, :, 0, 0] = w / (w * w).sum()
            self.ups = nn.ModuleList(nn.ConvTranspose2d(1, 1, 4, 2, 1, bias=False) for _ in range(4))
            for u in self.ups:
                u.weight.data[:] = up

        def forward(self, y):
            x = self.unmix(y)
            for u in self.ups:
                x = u(x)
            return torch.clamp(x, 0.0, 1.0)

    out.mkdir(parents=True, exist_ok=True)
    enc, dec = Enc().eval(), Dec().eval()
    x = torch.rand(1, 1, 64, 64)
    dyn = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(enc, (x,), str(out / "encoder.onnx"), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": dyn, "y": dyn}, opset_version=17, dynamo=False)
    torch.onnx.export(dec, (enc(x),), str(out / "decoder.onnx"), input_names=["y"], output_names=["x_hat"],
                      dynamic_axes={"y": dyn, "x_hat": dyn}, opset_version=17, dynamo=False)
    w = mix[:, 0, 0, 0].numpy()
    manifest = {
        "format": "sar-compress-model", "version": 1, "name": name, "variant": "tiny-test",
        "latent_channels": channels, "downsampling_factor": 16, "halo": halo,
        "preprocessing": {"input_domain": "intensity", "clip_rule": "per_band_percentile",
                          "clip_percentiles": [0.5, 99.5], "clip_db": None, "noise_floor_db": -100.0, "extra": {}},
        # latent channel c lies in [0, w_c]: centre it, 254 steps over the range
        "quantization": {"step": [float(abs(v) / 254.0) for v in w], "offset": [float(v / 2) for v in w],
                         "qmin": -127, "qmax": 127},
        "files": {"encoder": {"path": "encoder.onnx", "sha256": _sha256(out / "encoder.onnx")},
                  "decoder": {"path": "decoder.onnx", "sha256": _sha256(out / "decoder.onnx")}},
        "training": {"note": "untrained test model"}, "validation": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def write_geotiff(path: Path, arr: np.ndarray, nodata=None, gt=(500000.0, 10.0, 0.0, 5800000.0, 0.0, -10.0),
                  epsg: int = 32633, names=None) -> Path:
    """Small helper for synthetic rasters (bands, h, w)."""
    from osgeo import gdal, gdal_array, osr  # noqa: PLC0415

    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0],
                    gdal_array.NumericTypeCodeToGDALTypeCode(arr.dtype.type))
    ds.SetGeoTransform(gt)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(arr.shape[0]):
        b = ds.GetRasterBand(i + 1)
        if nodata is not None:
            b.SetNoDataValue(float(nodata))
        if names:
            b.SetDescription(names[i])
        b.WriteArray(arr[i])
    ds = None
    return path
