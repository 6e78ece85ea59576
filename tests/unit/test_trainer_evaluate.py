"""sar-eval: metric wiring checked on an exact reconstruction, and the CLI's JSON / markdown / PNG outputs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from codec_fixtures import half_masked_geotiff
from trainer.data import RawPlane
from trainer.evaluate import evaluate_planes, main
from trainer.cli import main as train_main
from trainer.reporting import plot_history

SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"


def _plane(seed=0):
    rng = np.random.default_rng(seed)
    intensity = rng.gamma(4.0, 1.0, (64, 64)) * np.where(np.arange(64) < 32, 1.0, 10.0)[None, :]
    db = (10 * np.log10(intensity)).astype(np.float32)
    return RawPlane("synthetic.npy", "VV", "intensity", db, np.ones_like(db, dtype=bool))


def test_identity_reconstruction_scores_perfect_in_range():
    res = evaluate_planes(lambda x: x.copy(), [_plane()])
    p = res["per_plane"][0]
    assert p["psnr"] > 150 and p["ssim"] == pytest.approx(1.0)  # float32 dB round trip: error ~1e-7
    assert p["db_rmse_in_range"] == pytest.approx(0.0, abs=1e-4)
    assert p["epi"] == pytest.approx(1.0, abs=0.005)  # EPI is on dB: the clipped 1% of pixels count
    assert 0 < p["out_of_range_fraction"] < 0.02  # 0.5-99.5 percentile clipping
    assert p["db_rmse_out_of_range"] > 0  # clipped pixels are reported separately
    assert p["enl_ratio"] == pytest.approx(1.0, abs=0.05)
    lo, hi = p["clip_db"]
    assert lo < hi


def test_smoothing_is_visible_in_enl_and_epi():
    res = evaluate_planes(lambda x: np.full_like(x, float(x.mean())) * 0.5 + x * 0.5, [_plane()])
    p = res["per_plane"][0]
    assert p["enl_ratio"] > 2.0  # halving the speckle contrast raises the ENL
    assert p["db_rmse"] > 0.5 and 10 < p["psnr"] < 40


def test_training_curve_names_the_steps_and_patches_of_its_last_epoch(tmp_path, drawn_text):
    """The figure says how many steps and patches its last record had reached (a DDP run: 8 patches a step),
    and the curves run over optimiser steps: a stop within an epoch, resumed, records that epoch twice."""
    history = [{"epoch": e, "step": 500 * e, "patches_seen": 4000 * e, "train_loss": 3.0 / e,
                "val_loss": 2.0 / e, "val_psnr": 20.0 + e, "val_ssim": 0.5} for e in (1, 2, 3)]
    plot_history(history, tmp_path / "training_curve.png", "baseline (runs/x)")
    assert "baseline (runs/x)\nafter epoch 3: 1,500 steps, 12,000 patches in all" in drawn_text[-1]
    assert (tmp_path / "training_curve.png").is_file()
    # an --init branch: its records count its own steps; the caption counts the weights' whole training
    plot_history(history, tmp_path / "training_curve.png", "baseline (runs/x)",
                 before={"steps_total": 36500, "patches_seen_total": 146000})
    assert "after epoch 3: 38,000 steps, 158,000 patches in all (36,500 of the steps before this run)" \
        in drawn_text[-1]
    stopped = [*history, {**history[-1], "epoch": 4, "step": 1700, "patches_seen": 13600, "partial": True}]
    plot_history(stopped, tmp_path / "training_curve.png", "baseline (runs/x)")
    assert "within epoch 4: 1,700 steps, 13,600 patches in all" in drawn_text[-1]
    assert "optimiser step (this run)" in drawn_text[-1]


@pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
def _refuse(token: str):
    raise ValueError(f"{token} is not standard JSON")


def test_results_are_standard_json_a_non_finite_figure_null():
    """An untrained model's ENL ratio is infinite on flat patches; Python wrote it as Infinity, which jq, JavaScript
    and pandas refuse."""
    from trainer.reporting import strict_json

    doc = {"enl_ratio": float("inf"), "loss": np.float32("nan"), "levels": [np.float64(1.5), -math.inf],
           "steps": np.int64(3), "ok": np.bool_(True), "name": "x"}
    assert json.loads(strict_json(doc), parse_constant=_refuse) == {
        "enl_ratio": None, "loss": None, "levels": [1.5, None], "steps": 3, "ok": True, "name": "x"}


def test_sar_eval_writes_json_markdown_and_panels(tmp_path, drawn_text):
    fast = ["--data", str(SCENE), "--device", "cpu", "--patch-size", "64", "--batch-size", "4", "--channels", "8",
            "--latent-channels", "16", "--hyper-channels", "8", "--lambdas", "0.001", "0.01", "--max-steps", "2",
            "--steps-per-epoch", "2", "--no-progress"]
    assert train_main(["--variant", "baseline", "--out", str(tmp_path / "b"), *fast]) == 0
    assert train_main(["--variant", "residual", "--out", str(tmp_path / "r"), *fast]) == 0
    out = tmp_path / "eval"
    assert main([str(tmp_path / "b" / "best.pth"), str(tmp_path / "r" / "best.pth"), "--out", str(out)]) == 0
    doc = json.loads((out / "results.json").read_text(), parse_constant=_refuse)  # standard JSON: no NaN
    assert doc["name"] == "sar-eval" and set(doc["results"]) == {"baseline", "residual"}
    r = doc["results"]["residual"]
    assert [lv["level"] for lv in r["levels"]] == [0, 1] and r["step"] == r["steps_total"] == 2 and r["patches_seen"] == 8
    for lv in r["levels"]:
        a = lv["aggregate"]
        assert a["planes"] == 2 and [p["band"] for p in lv["per_plane"]] == ["VV", "VH"]
        assert lv["per_plane"][0]["shape"] == [96, 512]  # the held-out bottom strip of the single scene
        for k in ("psnr", "ssim", "db_rmse", "enl_ratio", "epi", "bpp_estimated"):
            assert math.isfinite(a[k])
        assert 3 < a["psnr"] < 40 and a["db_rmse"] > 0 and a["bpp_estimated"] > 0
    md = (out / "results.md").read_text().splitlines()
    # every table says the steps and patches the model saw, as the figures do, and PSNR its unit
    assert md[0].startswith("| Model | Steps / patches (in all) | Level | bpp (estimated) | PSNR (dB) | SSIM "
                            "| dB RMSE | ENL ratio | EPI |")
    assert [line.split("|")[1].strip() for line in md[2:6]] == ["baseline", "baseline", "residual", "residual"]
    assert {line.split("|")[2].strip() for line in md[2:6]} == {"2 / 8"}
    assert sorted(p.name for p in out.glob("*.png")) == ["panel_baseline_1.png", "panel_residual_2.png"]
    # each panel says how far its checkpoint had trained (2 steps of 4 patches); sar-train's curves say it too
    assert "baseline: 2 steps, 8 patches in all\nlevel 1: " in drawn_text[-2]
    assert "residual: 2 steps, 8 patches in all\nlevel 1: " in drawn_text[-1]
    assert "after epoch 1: 2 steps, 8 patches in all" in drawn_text[0]
    assert main([str(tmp_path / "missing.pth"), "--out", str(out)]) == 2
    # a second evaluation into the same folder: only its own panels beside its results, none of the first's
    assert main([str(tmp_path / "r" / "best.pth"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["panel_residual_1.png"]


@pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
def test_sar_eval_through_the_codec_counts_file_bytes(tmp_path, tiny_bundle):
    out = tmp_path / "eval"
    rc = main(["--bundle", str(tiny_bundle), "--scenes", SCENE.name, "s1_slc_amp_marais1_500.npy",
               "--data", str(SCENE.parent), "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "codec_results.json").read_text())
    res = next(iter(doc["results"].values()))
    files = {f["scene"]: f for f in res["files"]}
    assert set(files) == {SCENE.name, "s1_slc_amp_marais1_500.npy"}  # .npy goes through a GeoTIFF
    berlin = files[SCENE.name]
    assert berlin["bpp_per_band"] == pytest.approx(8 * berlin["bytes"] / (512 * 512 * 2))
    bits = sum(8 * f["bytes"] for f in res["files"])
    band_px = 512 * 512 * 2 + 500 * 500
    assert res["aggregate"]["bpp_per_band"] == pytest.approx(bits / band_px)
    assert all(r["validity_mask_identical"] for f in res["files"] for r in f["per_band"])
    assert 0 < res["aggregate"]["db_rmse"] < 10
    assert res["quality"] == 1.0  # the bundle's default
    md = (out / "codec_results.md").read_text().splitlines()
    assert "| Steps / patches (in all) | Quality | bpp (file) | PSNR (dB) |" in md[0]
    assert md[2].split("|")[3].strip() == "? / ?"  # the tiny bundle records no training
    assert res["steps_total"] is None and res["patches_seen_total"] is None


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_a_results_file_cut_short_leaves_neither_it_nor_its_temporary(tmp_path, monkeypatch, failure):
    """sar-eval writes each results file under a temporary name and renames it: a Ctrl-C (or a full disk) between
    the two left the hidden cut-off copy in --out, and --out itself, which was then no longer empty."""
    import trainer.reporting as reporting

    def stopped(src, dst):
        raise failure()

    monkeypatch.setattr(reporting.os, "replace", stopped)
    with pytest.raises(failure):
        reporting.publish_files({tmp_path / "results.json": "{}", tmp_path / "results.md": "| a |"})
    assert list(tmp_path.iterdir()) == []


def test_results_files_are_renamed_only_once_every_one_is_written(tmp_path):
    """A figure that fails to draw leaves the earlier table and figure as they were, and no partial."""
    from trainer.reporting import publish_files

    publish_files({tmp_path / "runs.md": "before", tmp_path / "curves.png": lambda path: path.write_bytes(b"old")})

    def fails(path):
        path.write_bytes(b"half")
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        publish_files({tmp_path / "runs.md": "after", tmp_path / "curves.png": fails})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"runs.md": b"before", "curves.png": b"old"}


@pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")
@pytest.mark.parametrize("stop", ["drawing a panel", "writing the table"])
def test_an_evaluation_stopped_while_it_writes_leaves_the_earlier_one(tmp_path, monkeypatch, disk_full_mid_write,
                                                                      stop):
    """The earlier evaluation's panels were removed before the new ones were drawn: a Ctrl-C (or a failure) while
    they were drawn left its results.json without them, and sar-eval said "no output written". Then the panels
    were renamed into place before the tables were written: a full disk at results.json left the new panels, and
    none of the earlier ones, beside the earlier results.json."""
    import trainer.evaluate as evaluate

    fast = ["--data", str(SCENE), "--device", "cpu", "--patch-size", "64", "--batch-size", "4", "--channels", "8",
            "--latent-channels", "16", "--hyper-channels", "8", "--lambdas", "0.001", "0.01", "--max-steps", "1",
            "--steps-per-epoch", "1", "--no-progress"]
    assert train_main(["--variant", "baseline", "--out", str(tmp_path / "b"), *fast]) == 0
    out, ckpt = tmp_path / "eval", str(tmp_path / "b" / "best.pth")
    assert main([ckpt, "--out", str(out), "--max-planes", "1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "panel_baseline_1.png" in before
    if stop == "drawing a panel":
        real, calls = evaluate.save_panel, []

        def stopped_in_the_second(*args):
            real(*args)
            calls.append(args)
            if len(calls) == 2:
                raise KeyboardInterrupt

        monkeypatch.setattr(evaluate, "save_panel", stopped_in_the_second)
        assert main([ckpt, ckpt, "--out", str(out), "--max-planes", "1"]) == 130
    else:
        disk_full_mid_write()
        with pytest.raises(OSError, match="No space left"):
            main([ckpt, ckpt, "--out", str(out), "--max-planes", "1"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sar_eval_through_the_codec_measures_an_int16_db_product_in_its_db(tmp_path, tiny_bundle, sar_data):
    """The codec codes a band with a GDAL scale as its physical values, and its clip range is in their dB;
    sar-eval took the stored values (hundredths of a dB) for dB: every one at the noise floor against a clip
    range in dB, so an int16 sigma0 product scored as if kept perfectly (0.03 dB RMSE where its dB as float32
    gives 2.1). Its figures are those of the same dB as float32."""
    from codec_fixtures import GHANA_DB, int16_db_product, write_geotiff
    from osgeo import gdal

    from trainer.codec_eval import evaluate_file

    scaled = int16_db_product(sar_data / GHANA_DB, tmp_path / "int16.tif")
    stored = gdal.Open(str(scaled)).ReadAsArray()
    floats = write_geotiff(tmp_path / "float32.tif", np.where(stored == -32768, np.nan, stored * 0.01).astype(
        np.float32), nodata=float("nan"))
    got, want = (evaluate_file(src, "db", tiny_bundle, tmp_path, quality=1.0, tile_size=256)
                 for src in (scaled, floats))
    for g, w in zip(got["per_band"], want["per_band"]):
        assert g["valid_pixels"] == w["valid_pixels"] == 512 * 512 - 32 * 32  # the nodata block
        for key in ("db_rmse", "psnr", "ssim"):
            assert g[key] == pytest.approx(w[key], rel=0.02, abs=1e-3), key  # the int16 rounding
        assert g["db_rmse"] > 0.3


def test_sar_eval_through_the_codec_leaves_out_the_pixels_a_gdal_mask_hides(tmp_path, tiny_bundle):
    """Pixels under a GDAL mask come back bit for bit; sar-eval --bundle counted them, as the demo once did, so a
    half-masked scene scored far better than its valid pixels. Its figures are now those of the valid pixels."""
    from osgeo import gdal

    from sar_compress_plugin.core import metrics
    from sar_compress_plugin.core.codec import CompressOptions, compress, reconstruct
    from sar_compress_plugin.core.preprocessing import to_db

    h, w = 80, 96
    x = np.random.default_rng(0).gamma(4.0, 0.25, (2, h, w)).astype(np.float32)
    data = tmp_path / "data"
    data.mkdir()
    valid = half_masked_geotiff(data / "masked.tif", x)
    out = tmp_path / "eval"
    assert main(["--bundle", str(tiny_bundle), "--scenes", "masked.tif", "--data", str(data), "--out", str(out)]) == 0
    res = next(iter(json.loads((out / "codec_results.json").read_text())["results"].values()))
    rows = res["files"][0]["per_band"]
    rec_path = tmp_path / "rec.tif"  # the codec is deterministic: the reconstruction sar-eval measured
    compress(data / "masked.tif", tmp_path / "m.sarc", CompressOptions(model_dir=tiny_bundle, device="cpu"))
    reconstruct(tmp_path / "m.sarc", rec_path, model_dirs=[tiny_bundle], device="cpu")
    rec = gdal.Open(str(rec_path)).ReadAsArray()
    for b, row in enumerate(rows):
        ref_db, _ = to_db(x[b], "intensity")
        rec_db, _ = to_db(rec[b], "intensity")
        assert row["valid_pixels"] == valid.sum()
        assert row["db_rmse"] == pytest.approx(metrics.db_rmse(ref_db, rec_db, valid), rel=1e-6)
        assert row["validity_mask_identical"]
