"""Test helpers shared by tests/unit and tests/qgis: a tiny ONNX model bundle built at test time (no committed
binaries) and a small GeoTIFF writer. A module of its own name, so both test folders import the same thing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAR_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar"
if not SAR_DATA.is_dir():  # checkout elsewhere: fall back to the documented location
    SAR_DATA = Path("/work/shared/data/sar")


def build_tiny_bundle(out: Path, channels: int = 4, halo: int = 32, name: str = "tiny",
                      seed: int = 0, context_slices: int = 1) -> Path:
    """A real export (export.onnx_export.export_bundle) of a tiny codec model whose transforms are replaced by
    a deterministic smooth autoencoder: 4 x (4x4 stride-2 blur) -> 1x1 mix to C channels, and back.

    It is not trained, but it is smooth and spatially extended (receptive field of several latent cells), so
    it exposes seams, halo handling and tiling bugs the way a real model would, and reconstructs a low-pass
    version of the input (a few dB RMSE on speckle) so round trips can be checked numerically. Its entropy
    model (h_a, h_s, the z prior, the gains) is the real class, so the bundle goes through the real integer
    hyper-decoder, tables and range coder. With `context_slices` > 1 it has a channel context whose last
    layers are random (a trained context is never silent; a fresh one is zero), so the context changes scales
    and means.
    """
    import torch  # noqa: PLC0415  (tests only)
    from torch import nn  # noqa: PLC0415

    from export.onnx_export import export_bundle  # noqa: PLC0415
    from trainer.models.baseline import BaselineCodec  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    blur = torch.outer(k1, k1) / 64.0
    up = torch.outer(k1, k1) / 16.0  # transposed conv with these weights = bilinear x2 upsampling
    # latents in about [0, 40]: the quantiser's unit step is then ~1% of the range at the middle quality
    mix = 40.0 * torch.linspace(1.0, 0.25, channels) * (1 + 0.1 * torch.randn(channels, generator=g))

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(1, 1, 4, 2, 1, bias=False) for _ in range(4))
            for c in self.convs:
                c.weight.data[:] = blur
            self.mix = nn.Conv2d(1, channels, 1, bias=False)
            self.mix.weight.data[:, 0, 0, 0] = mix

        def forward(self, x):
            for c in self.convs:
                x = c(x)
            return self.mix(x)

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.unmix = nn.Conv2d(channels, 1, 1, bias=False)
            self.unmix.weight.data[0, :, 0, 0] = mix / (mix * mix).sum()
            self.ups = nn.ModuleList(nn.ConvTranspose2d(1, 1, 4, 2, 1, bias=False) for _ in range(4))
            for u in self.ups:
                u.weight.data[:] = up

        def forward(self, y):
            x = self.unmix(y)
            for u in self.ups:
                x = u(x)
            return x

    torch.manual_seed(seed)
    model = BaselineCodec(channels=4, latent_channels=channels, hyper_channels=4, lambdas=[0.001, 0.01, 0.1],
                          context_slices=context_slices)
    model.g_a, model.g_s = Enc(), Dec()
    with torch.no_grad():
        model.log_gain.zero_()          # the middle level keeps the latents' own scale ...
        model.log_gain[0] -= 1.0        # ... except the lowest, which quantises 2.7x coarser,
        model.log_gain[2] += 0.7        # and the top, 2x finer: the rate grows strictly with the quality
        model.log_inverse_gain.copy_(-model.log_gain)
        last = model.h_s[-1]
        last.weight.mul_(0.01)          # predicted scales near 3 and means near 0
        last.bias.zero_()
        last.bias[:channels] = 3.0
        for net in [*model.context_scale, *model.context_mean]:
            net[-1].weight.normal_(0.0, 0.02, generator=g)
            net[-1].bias.normal_(0.0, 0.2, generator=g)
    rng = np.random.default_rng(seed)
    speckle = rng.gamma(4.0, 0.25, size=(4, 1, 128, 128)) * np.linspace(0.2, 2.0, 128)[None, None, None, :]
    tiles = np.clip((10 * np.log10(speckle) + 15) / 25, 0, 1).astype(np.float32)
    export_bundle(model, out, name=name, variant="tiny-test", halo=halo, calibration_tiles=tiles,
                  default_quality=1.0,
                  preprocessing={"input_domain": "intensity", "clip_rule": "per_band_percentile",
                                 "clip_percentiles": [0.5, 99.5], "clip_db": None, "noise_floor_db": -100.0,
                                 "extra": {}},
                  training={"note": "untrained test model"})
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



def half_masked_geotiff(path: Path, x: np.ndarray) -> np.ndarray:
    """`x` (bands, h, w) as a float32 GeoTIFF whose internal GDAL mask hides its left half; returns the valid
    pixels. Pixels under such a mask come back bit for bit, so a measurement that counts them looks far better
    than the scene's valid pixels are."""
    from osgeo import gdal  # noqa: PLC0415

    _, h, w = x.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), w, h, x.shape[0], gdal.GDT_Float32)
    for b in range(x.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(x[b])
    gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
    try:
        ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    finally:
        gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
    valid = np.ones((h, w), dtype=bool)
    valid[:, : w // 2] = False
    ds.GetRasterBand(1).GetMaskBand().WriteArray(np.where(valid, 255, 0).astype(np.uint8))
    ds = None
    return valid

def compressed_scene(folder: Path, bundle: Path, height: int, width: int, seed: int) -> tuple[Path, Path]:
    """A two-band linear speckle raster (write_geotiff's UTM grid) and its .sarc in tiles of 64, for the tests
    that feed the CLIs and the codec hostile variations of one good pair."""
    from sar_compress_plugin.core.codec import CompressOptions, compress

    x = np.random.default_rng(seed).gamma(1.0, 0.05, (2, height, width)).astype(np.float32)
    src = write_geotiff(folder / "in.tif", x)
    sarc = folder / "in.sarc"
    compress(src, sarc, CompressOptions(model_dir=bundle, device="cpu", tile_size=64))
    return src, sarc


def gcp_georeferenced_copy(src: Path, dst: Path) -> Path:
    """A copy of the north-up EPSG:4326 scene `src` georeferenced as Sentinel-1 GRD measurement GeoTIFFs are: a
    3 x 3 grid of ground control points in EPSG:4326 and no geotransform. The points follow `src`'s
    geotransform turned by about 8 degrees, as a satellite track is, so that neither pixel coordinates nor
    `src`'s own box would place the copy where its GCPs do."""
    from osgeo import gdal  # noqa: PLC0415

    ds = gdal.Open(str(src))
    g0, g1, _, g3, _, g5 = ds.GetGeoTransform()
    turn = 0.15
    gcps = [gdal.GCP(g0 + p * g1 + ln * g1 * turn, g3 + ln * g5 - p * g5 * turn, 0.0, p, ln)
            for p in (0, ds.RasterXSize // 2, ds.RasterXSize) for ln in (0, ds.RasterYSize // 2, ds.RasterYSize)]
    gdal.Translate(str(dst), ds, GCPs=gcps, outputSRS="EPSG:4326")
    return dst


#: The shared collection's float32 sigma0 dB chip (VV, VH; 512 x 512, EPSG:4326), the source of `int16_db_product`.
GHANA_DB = "s1_iw_grd_sen1floods11_ghana_53713_vv_vh_db.tif"
#: Where `int16_db_product` puts its nodata block: rows and columns 64..95.
INT16_DB_NODATA_BLOCK = (slice(64, 96), slice(64, 96))


def int16_db_product(src: Path, dst: Path) -> Path:
    """The float dB GeoTIFF `src` as a quantized sigma0 product: int16 hundredths of a dB under a GDAL scale of
    0.01, nodata -32768 (`src`'s NaNs and the block INT16_DB_NODATA_BLOCK), with `src`'s georeferencing and band
    descriptions and no metadata: no VALUE_DOMAIN tag, so the domain is told from the values through the scale."""
    from osgeo import gdal  # noqa: PLC0415

    ds = gdal.Open(str(src))
    db = ds.ReadAsArray().astype(np.float64).reshape(ds.RasterCount, ds.RasterYSize, ds.RasterXSize)
    stored = np.where(np.isfinite(db), np.clip(np.rint(np.nan_to_num(db) / 0.01), -32767, 32767), -32768)
    stored[(slice(None), *INT16_DB_NODATA_BLOCK)] = -32768
    out = gdal.GetDriverByName("GTiff").Create(str(dst), ds.RasterXSize, ds.RasterYSize, ds.RasterCount,
                                               gdal.GDT_Int16)
    out.SetGeoTransform(ds.GetGeoTransform())
    out.SetProjection(ds.GetProjection())
    for b in range(ds.RasterCount):
        band = out.GetRasterBand(b + 1)
        band.SetNoDataValue(-32768)
        band.SetScale(0.01)
        band.SetDescription(ds.GetRasterBand(b + 1).GetDescription())
        band.WriteArray(stored[b].astype(np.int16))
        band = None
    out = None
    return dst


#: A prelude after which the process signals itself when `module` is first imported: a real SIGINT, landing where
#: a Ctrl-C in the first second lands, inside the imports of the module a console script imports.
SIGNAL_IN_IMPORT = """
import os, signal, sys
class SignalInImport:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, SignalInImport())
"""
