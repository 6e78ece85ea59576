"""Reading, splitting and sampling training data (real shared scenes where cheap, tiny synthetic files otherwise)."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_compress_plugin.core.errors import InputRasterError
from sar_compress_plugin.core.preprocessing import percentile_bounds, to_db
from trainer.data import (PatchSampler, TrainingDataError, build_datasets, discover, read_planes, split_scenes,
                          subset_scenes, validation_tiles)

SAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar"
needs_data = pytest.mark.skipif(not (SAR / "MANIFEST.json").exists(), reason="shared SAR data not present")


def _npy(folder: Path, name: str, arr: np.ndarray) -> Path:
    path = folder / name
    np.save(path, arr)
    return path


@pytest.fixture
def synthetic_folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        _npy(tmp_path, f"scene{i}.npy", rng.gamma(1.0, 100.0 * (i + 1), (2, 96, 80)).astype(np.float32))
    _npy(tmp_path, "cov.npy", (rng.random((32, 32, 2, 2)) + 1j).astype(np.complex64))
    (tmp_path / "MANIFEST.json").write_text(json.dumps([
        {"file": "scene0.npy", "value_domain": "amplitude"},
        {"file": "cov.npy", "value_domain": "complex_covariance"},
    ]))
    return tmp_path


def test_split_is_by_scene_deterministic_and_disjoint():
    scenes = [f"s{i}.tif" for i in range(11)]
    train, val = split_scenes(scenes, 0.2, seed=3)
    assert not set(train) & set(val) and set(train) | set(val) == set(scenes)
    assert len(val) == 2
    assert split_scenes(scenes, 0.2, seed=3) == (train, val)
    assert split_scenes(scenes, 0.2, seed=4) != (train, val)
    assert split_scenes(["a", "b"], 0.2, 0)[1] != []  # at least one held out
    assert subset_scenes(train, 0.5, 3) == subset_scenes(train, 0.5, 3)
    assert len(subset_scenes(train, 0.5, 3)) == 5 and set(subset_scenes(train, 0.5, 3)) <= set(train)


def test_folder_domains_stacks_and_skips(synthetic_folder):
    found = dict((p.name, e["value_domain"]) for p, e in discover(synthetic_folder, "intensity"))
    assert found["scene0.npy"] == "amplitude" and found["scene1.npy"] == "intensity"
    assert read_planes(synthetic_folder / "cov.npy", {"value_domain": "complex_covariance"}) == []
    planes = read_planes(synthetic_folder / "scene0.npy", {"value_domain": "amplitude"})
    assert [p.band for p in planes] == ["t0", "t1"]  # 3-D stack: each slice an image
    raw = np.load(synthetic_folder / "scene0.npy")[1]
    np.testing.assert_allclose(planes[1].db, to_db(raw, "amplitude")[0])


def test_build_datasets_normalises_per_band_and_records_clip_bounds(synthetic_folder):
    data = build_datasets(synthetic_folder, seed=1)
    s = data.summary
    assert not set(s["train_scenes"]) & set(s["val_scenes"])
    assert len(s["val_scenes"]) == 1 and len(s["train_scenes"]) == 5
    assert s["skipped_files"] == ["cov.npy"]
    assert {p.scene for p in data.train} == set(s["train_scenes"])
    for p in data.train:
        assert 0 <= float(p.x.min()) and float(p.x.max()) <= 1 and p.valid.all()
    # per-band rule = core.preprocessing.percentile_bounds on that band
    name = data.train[0].scene
    entry = {"value_domain": "amplitude"} if name == "scene0.npy" else {}
    raw = read_planes(synthetic_folder / name, entry)[0]
    assert data.train[0].clip_db == pytest.approx(percentile_bounds(raw.db, raw.valid))
    lo, hi = data.params.clip_db
    assert lo < hi and data.params.to_dict()["clip_db"] == [lo, hi]
    assert build_datasets(synthetic_folder, seed=1).summary == s
    assert len(build_datasets(synthetic_folder, seed=1, data_fraction=0.4).summary["train_scenes"]) == 2


def test_sampler_shapes_augmentation_and_invalid_rejection():
    from trainer.data import Plane

    x = torch.rand(64, 64) * 0.9 + 0.1
    valid = torch.zeros(64, 64, dtype=torch.bool)
    valid[:, :48] = True
    x[~valid] = 0.0  # as build_datasets stores invalid pixels
    sampler = PatchSampler([Plane("a", "VV", x, valid, (0.0, 1.0))], 32, min_valid=0.9, seed=0)
    sampler.set_epoch(1)
    batch = sampler.sample(64)
    assert batch.shape == (64, 1, 32, 32)
    sampler.set_epoch(1)
    assert torch.equal(sampler.sample(64), batch)  # seeded per epoch: resume draws the same patches
    invalid_share = (batch == 0).float().mean(dim=(1, 2, 3))
    assert float(invalid_share.max()) <= 0.1  # mostly-invalid patches were redrawn
    # augmentation: rotations/flips move the invalid columns to rows in some patches
    zero_rows = ((batch[:, 0] == 0).all(dim=2)).any(dim=1)
    assert bool(zero_rows.any())
    tiles = validation_tiles([Plane("a", "VV", x, valid, (0.0, 1.0))], 32)
    assert tiles[0][0].shape == (4, 1, 32, 32) and tiles[0][1].dtype == torch.bool


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(TrainingDataError, match="missing.tif: no such file"):
        build_datasets(tmp_path / "missing.tif")
    bad = _npy(tmp_path, "four_d.npy", np.ones((2, 2, 32, 32), np.float32))
    with pytest.raises(InputRasterError, match="four_d.npy: expected a 2-D image"):
        read_planes(bad)
    zeros = _npy(tmp_path, "zeros.npy", np.zeros((32, 32), np.float32))
    with pytest.raises(InputRasterError, match="zeros.npy: all pixels are invalid"):
        read_planes(zeros, {"value_domain": "intensity"})
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff")
    with pytest.raises(InputRasterError, match="junk.tif: cannot read raster"):
        read_planes(junk)


def test_a_folder_trains_on_what_it_can_use_and_names_each_file_it_skips(synthetic_folder, caplog, tmp_path):
    """One unreadable, all-nodata or too small file in a user's folder stopped the whole run (and trainer.pack)
    with its error; now each is one warning line and the run says how many files it uses."""
    from trainer.data import read_pack
    from trainer.pack import main as pack_main

    (synthetic_folder / "junk.tif").write_bytes(b"not a tiff")
    _npy(synthetic_folder, "zeros.npy", np.zeros((2, 32, 32), np.float32))
    _npy(synthetic_folder, "tiny.npy", np.ones((8, 8), np.float32))
    with caplog.at_level(logging.INFO, logger="trainer.data"):
        data = build_datasets(synthetic_folder, seed=1)
    s = data.summary
    assert s["skipped_files"] == ["cov.npy", "junk.tif", "tiny.npy", "zeros.npy"]
    assert len(s["train_scenes"]) + len(s["val_scenes"]) == 6
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3, warned  # one line per file, not one per empty band as well
    for name, why in (("junk.tif", "cannot read raster"), ("zeros.npy", "all pixels are invalid"),
                      ("tiny.npy", "smaller than 16x16")):
        assert any(f"skipping {synthetic_folder / name}: " in w and why in w for w in warned), (name, warned)
    assert "6 of 10 file(s) used; skipped: cov.npy, junk.tif, tiny.npy, zeros.npy" in caplog.text
    with pytest.raises(TrainingDataError, match="junk.tif: cannot read raster"):  # given alone: its error
        build_datasets(synthetic_folder / "junk.tif")
    assert pack_main(["--data", str(synthetic_folder), "--out", str(tmp_path / "p.npz")]) == 0
    assert {p.scene for p in read_pack(tmp_path / "p.npz")} == set(s["train_scenes"]) | set(s["val_scenes"])


@needs_data
def test_real_geotiff_bands_from_manifest():
    planes = read_planes(SAR / "s1_iw_grd_berlin_512.tif", {"value_domain": "intensity", "polarization": "VV/VH"})
    assert [p.band for p in planes] == ["VV", "VH"]
    assert planes[0].db.shape == (512, 512) and planes[0].valid.all()
    assert 20 < float(np.median(planes[0].db)) < 70  # uncalibrated DN^2 in dB
    entries = dict((p.name, e) for p, e in discover(SAR / "MANIFEST.json"))
    assert entries["s1_iw_grd_sen1floods11_ghana_53713_vv_vh_db.tif"]["value_domain"] == "sigma0_db"


@needs_data
def test_a_scaled_product_trains_on_its_physical_values(tmp_path):
    """The codec codes a band with a GDAL scale and offset as stored * scale + offset; training read the stored
    numbers, so an int16 sigma0 product in hundredths of a dB became dB planes 100 times too wide."""
    from codec_fixtures import GHANA_DB, INT16_DB_NODATA_BLOCK, int16_db_product

    entry = {"value_domain": "sigma0_db"}
    scaled = read_planes(int16_db_product(SAR / GHANA_DB, tmp_path / "int16.tif"), entry)
    plain = read_planes(SAR / GHANA_DB, entry)
    assert [p.band for p in scaled] == [p.band for p in plain]
    for s, p in zip(scaled, plain):
        assert not s.valid[INT16_DB_NODATA_BLOCK].any()  # the stored nodata, -32768, is no -327.68 dB
        both = s.valid & p.valid
        assert both.sum() > 0.9 * p.valid.sum()
        np.testing.assert_allclose(s.db[both], p.db[both], atol=0.006)  # hundredths of a dB


def test_a_band_of_gdal_scale_0_is_skipped_with_a_line_naming_it(synthetic_folder, caplog):
    """The trainer rebuilt raster_io's scaling by hand and took a scale of 0, which the codec refuses: every pixel
    of such a band is its offset alone, and a flat plane was trained on. The file is skipped with one line in a
    folder, as other unusable files are, and given alone it is the error."""
    from codec_fixtures import write_geotiff
    from osgeo import gdal

    from sar_compress_plugin.core.raster_io import scaling_of

    path = write_geotiff(synthetic_folder / "zero_scale.tif", np.full((2, 32, 32), 7, np.int16))
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.GetRasterBand(2).SetScale(0.0)
    ds.GetRasterBand(2).SetOffset(5.0)
    ds = None
    with caplog.at_level(logging.INFO, logger="trainer.data"):
        data = build_datasets(synthetic_folder, seed=1)
    assert "zero_scale.tif" in data.summary["skipped_files"]
    assert f"skipping {path}: band 2 has GDAL scale 0" in caplog.text
    with pytest.raises(TrainingDataError, match="band 2 has GDAL scale 0"):
        read_planes(path)
    # the one rule every reader takes scale and offset by: GDAL's identity and a non-finite value are none
    assert scaling_of(1.0, 0.0) is None and scaling_of(float("nan"), float("inf")) is None
    assert scaling_of(0.01, float("nan")) == (0.01, 0.0) and scaling_of(0.0, 5.0) == (0.0, 5.0)


def test_the_codec_and_the_trainer_refuse_bands_of_gdal_scale_0_in_the_same_words(tmp_path, tiny_bundle):
    """Each had its own check of scale 0, under one wording: the codec named the first such band alone, the
    trainer all of them. Both now ask raster_io.zero_scale_error, which names every one."""
    from codec_fixtures import write_geotiff
    from osgeo import gdal

    from sar_compress_plugin.core.codec import CompressOptions, compress

    path = write_geotiff(tmp_path / "zero_scale.tif", np.full((3, 32, 32), 7, np.int16))
    ds = gdal.Open(str(path), gdal.GA_Update)
    for band in (1, 3):
        ds.GetRasterBand(band).SetScale(0.0)
    ds = None
    with pytest.raises(InputRasterError) as codec_refusal:
        compress(path, tmp_path / "z.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu"))
    with pytest.raises(TrainingDataError) as trainer_refusal:
        read_planes(path)
    assert str(codec_refusal.value) == str(trainer_refusal.value) == (
        f"{path}: bands 1, 3 have GDAL scale 0, so every pixel would mean its offset alone; fix the band's scale "
        "first")
    assert not (tmp_path / "z.sarc").exists()
