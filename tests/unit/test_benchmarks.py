"""Benchmarks: the JPEG-2000 wrapper, the BD-rate and matched-bpp statistics, and an end-to-end RD run."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import jpeg2000  # noqa: E402
from codec_fixtures import build_tiny_bundle  # noqa: E402
import rate_distortion as rd  # noqa: E402


def _speckle(h=128, w=128, seed=0) -> np.ndarray:
    """Linear intensity: a smooth scene times exponential (1-look) speckle, plus a few bright targets."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    scene = 1000.0 * (1.5 + np.sin(xx / 9.0) * np.cos(yy / 13.0))
    img = scene * rng.exponential(1.0, (h, w))
    img[h // 8, w // 8] = img[h // 2, w // 3] = 1e7
    return img.astype(np.float32)


# --- JPEG-2000 wrapper --------------------------------------------------------------------------------------

def test_jpeg2000_writes_real_files_and_bpp_comes_from_their_size(tmp_path):
    img = _speckle()
    rows = [jpeg2000.run_band(img, "intensity", t, tmp_path, "s", keep=True) for t in (0.25, 1.0, 2.0)]
    for t, r in zip((0.25, 1.0, 2.0), rows):
        f = tmp_path / f"s_{t:g}bpp.jp2"
        assert f.is_file() and f.read_bytes()[4:8] == b"jP  "  # a JP2 signature box
        assert r["file_bytes"] == f.stat().st_size
        assert r["bpp"] == pytest.approx(8.0 * f.stat().st_size / img.size)
        assert r["codec"] == "jpeg2000" and r["pixels"] == img.size
    bpps = [r["bpp"] for r in rows]
    errs = [r["db_rmse"] for r in rows]
    assert bpps == sorted(bpps) and bpps[-1] > 3 * bpps[0]  # the rate control does something
    assert errs == sorted(errs, reverse=True)  # more bits, less error
    # the bright targets lie outside the clip range; JPEG-2000 brings them back clipped (not coded)
    assert rows[-1]["out_of_range_pixels"] >= 2
    assert rows[-1]["db_rmse_out_of_range"] > rows[-1]["db_rmse_in_range"]


def test_jpeg2000_codes_with_the_measured_best_number_of_resolutions(tmp_path):
    """GDAL would give a 512-px image 3 resolutions, 0.1-0.25 dB worse at 0.1 bpp on the held-out scenes than
    the 4 the baseline uses (benchmarks/jpeg2000_settings.py)."""
    u16 = np.random.default_rng(0).integers(0, 65535, (512, 512)).astype(np.uint16)
    jpeg2000.encode(u16, tmp_path / "r.jp2", 5.0)
    data = (tmp_path / "r.jp2").read_bytes()
    cod = data.index(b"\xff\x52")  # the COD marker: Lcod, Scod, SGcod (4 bytes), then the wavelet levels
    assert data[cod + 9] == jpeg2000.RESOLUTIONS - 1
    assert jpeg2000.RESOLUTIONS == 4 and "4 resolutions" in jpeg2000.NOTE


def test_rebaseline_measures_jpeg2000_again_and_keeps_the_learned_rows(tmp_path, sar_data):
    """A report written with an earlier JPEG-2000 setting (here: the committed headline's Frankfurt rows, the
    JPEG-2000 ones made stale): its learned rows stay as measured, its JPEG-2000 rows are measured again with the
    current setting, and the record keeps what the report said before."""
    headline = json.loads((BENCH / "results" / "rd_heldout_grd" / "rd_points.json").read_text())
    rows = [r for r in headline["results"] if r["scene"].startswith("frankfurt")]
    learned = [r for r in rows if r["codec"] == "learned"]
    stale = [{**r, "file_bytes": 1, "db_rmse": 9.0} for r in rows if r["codec"] == "jpeg2000" and
             r["target_bpp"] in (0.1, 0.5, 1.0)]
    doc = {**headline, "results": learned + stale, "bd_rate": {"all": {"bd_rate_percent": -50.0}}, "date": None,
           "settings": {**headline["settings"], "scenes": [rows[0]["scene"]], "jpeg2000_target_bpp": [0.1, 0.5, 1.0],
                        "subsets": ["all"], "scene_bands": 2, "jpeg2000": "an older setting"}}
    doc.pop("rebaselined", None)
    (tmp_path / "rd_points.json").write_text(json.dumps(doc))
    assert rd.main(["--rebaseline", str(tmp_path), "--data", str(sar_data)]) == 0
    new = json.loads((tmp_path / "rd_points.json").read_text())
    assert [r for r in new["results"] if r["codec"] == "learned"] == learned
    jp2 = [r for r in new["results"] if r["codec"] == "jpeg2000"]
    assert len(jp2) == 2 * 3 and all(r["file_bytes"] > 1000 and r["db_rmse"] < 3 for r in jp2)
    assert new["settings"]["jpeg2000"] == jpeg2000.NOTE
    assert new["rebaselined"][0]["previous"] == {"date": None, "jpeg2000": "an older setting",
                                                 "bd_rate_percent": -50.0}
    assert -30 < new["bd_rate"]["all"]["bd_rate_percent"] < 0  # measured again: the stale rows were 9 dB off
    assert (tmp_path / "rd_summary.md").is_file() and (tmp_path / "rd_plot.png").stat().st_size > 0


def test_rebaseline_refuses_a_scene_missing_from_the_data_before_rewriting_any_report(tmp_path, sar_data, capsys):
    """Several folders in one call: one whose scene the data folder lacks must fail the call before the others
    are rewritten, or some reports would carry the new baseline and some the old."""
    headline = json.loads((BENCH / "results" / "rd_heldout_grd" / "rd_points.json").read_text())
    for name, scene in (("a", "frankfurt_512"), ("b", "atlantis_512")):
        rows = [{**r, "scene": scene} for r in headline["results"] if r["scene"] == "frankfurt_512"]
        (tmp_path / name).mkdir()
        (tmp_path / name / "rd_points.json").write_text(json.dumps(
            {**headline, "results": rows, "settings": {**headline["settings"], "scenes": [scene]}}))
    before = (tmp_path / "a" / "rd_points.json").read_text()
    assert rd.main(["--rebaseline", str(tmp_path / "a"), str(tmp_path / "b"), "--data", str(sar_data)]) == 2
    assert "scene atlantis_512 is not in" in capsys.readouterr().err
    assert (tmp_path / "a" / "rd_points.json").read_text() == before
    assert not (tmp_path / "a" / "rd_summary.md").exists()


def test_jpeg2000_preprocessing_is_the_codecs_and_inverts(tmp_path):
    from sar_compress_plugin.core.preprocessing import percentile_bounds, to_db

    img = _speckle(64, 64, seed=1)
    u16, clip, valid = jpeg2000.to_uint16(img, "intensity")
    db, v = to_db(img, "intensity")
    assert clip == pytest.approx(percentile_bounds(db, v, (0.5, 99.5)))
    assert u16.dtype == np.uint16 and u16.min() == 0 and u16.max() == 65535 and valid.all()
    back = 10 * np.log10(jpeg2000.from_uint16(u16, clip, "intensity"))
    inside = (db >= clip[0]) & (db <= clip[1])
    assert np.abs(back - db)[inside].max() < (clip[1] - clip[0]) / 65535  # only the uint16 rounding is lost
    assert jpeg2000.quality_for_bpp(1.0) == pytest.approx(6.25)


def test_jpeg2000_nodata_pixels_are_carried(tmp_path):
    img = _speckle(64, 64, seed=2)
    img[:8] = 0.0  # invalid in a linear domain
    r = jpeg2000.run_band(img, "intensity", 1.0, tmp_path)
    assert r["validity_mask_identical"] and r["valid_pixels"] == img.size - 8 * 64


# --- BD-rate and matched-bpp statistics ---------------------------------------------------------------------

def _curve():
    d = np.array([2.8, 1.6, 1.05, 0.62, 0.30])
    r = 0.03 * np.exp(2.5 * (3.0 - d)) ** 0.8  # any smooth monotonic rate-distortion curve
    return r, d


def test_bd_rate_of_a_curve_with_rate_scaled_by_0_8_is_minus_20_percent():
    r, d = _curve()
    res = rd.bd_rate(r, d, 0.8 * r, d)
    assert res["bd_rate_percent"] == pytest.approx(-20.0, abs=1e-6)
    assert res["fit_degree"] == 3 and res["overlap"] == pytest.approx([d.min(), d.max()])
    assert rd.bd_rate(r, d, 1.25 * r, d)["bd_rate_percent"] == pytest.approx(25.0, abs=1e-6)
    assert rd.bd_rate(r, d, r, d)["bd_rate_percent"] == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_integrates_only_over_the_overlap():
    r, d = _curve()
    # the test curve covers only the low-distortion half; the answer must not change
    res = rd.bd_rate(r, d, 0.5 * r[2:], d[2:])
    assert res["overlap"] == pytest.approx([d[2:].min(), d[2:].max()])
    assert res["bd_rate_percent"] == pytest.approx(-50.0, abs=1e-6)
    assert res["fit_degree"] == 2 and "degree-2" in res["note"]


def test_bd_rate_without_overlap_says_so():
    r, d = _curve()
    res = rd.bd_rate(r, d, r[:2], d[:2] + 5.0)
    assert res["bd_rate_percent"] is None and "no overlap" in res["note"]
    assert rd.bd_rate(r, d, r[:1], d[:1])["bd_rate_percent"] is None


def test_wilcoxon_at_matched_bpp_interpolates_each_scene_bands_jpeg2000_curve():
    rows = []
    rng = np.random.default_rng(0)
    for s in range(8):
        for bpp, err in ((0.25, 1.4), (0.5, 1.0), (1.0, 0.6), (2.0, 0.3)):
            rows.append({"scene": f"s{s}", "band": "VV", "codec": "jpeg2000", "setting": f"t{bpp}", "bpp": bpp,
                         "db_rmse": err + 0.01 * s})
        # learned: exactly at JPEG-2000's 0.5 bpp point, always 0.1 dB better; and one point off the curve
        rows.append({"scene": f"s{s}", "band": "VV", "codec": "learned", "setting": "quality=1", "bpp": 0.5,
                     "db_rmse": 0.9 + 0.01 * s + 0.001 * rng.random()})
        rows.append({"scene": f"s{s}", "band": "VV", "codec": "learned", "setting": "quality=8", "bpp": 0.05,
                     "db_rmse": 3.0})
    out = {w["setting"]: w for w in rd.wilcoxon_matched(rows)}
    w = out["quality=1"]
    assert w["n_pairs"] == 8 and w["learned_better"] == 8
    assert w["median_difference"] == pytest.approx(-0.1, abs=2e-3)
    assert w["p_value"] < 0.01
    assert out["quality=8"]["n_pairs"] == 0 and out["quality=8"]["outside_jpeg2000_bpp_range"] == 8
    pairs = rd.matched_bpp_pairs(rows)["quality=1"]["pairs"]
    assert pairs[0][2] == pytest.approx(1.0)  # interpolated exactly at a JPEG-2000 point


def test_lower_envelope_keeps_only_points_no_cheaper_point_beats():
    pts = [{"setting": n, "bpp": b, "db_rmse": d} for n, b, d in
           (("a", 0.3, 2.0), ("b", 0.2, 2.5), ("c", 0.4, 2.1), ("d", 0.5, 1.8), ("e", 0.1, float("nan")))]
    assert [p["setting"] for p in rd.lower_envelope(pts)] == ["b", "a", "d"]


# --- end to end -----------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_rate_distortion_end_to_end_on_one_scene(tiny_bundle, sar_data, tmp_path, capsys):
    out = tmp_path / "results"
    rc = rd.main(["--model", str(tiny_bundle), "--data", str(sar_data), "--scenes", "berlin", "--qualities", "0",
                  "2", "--jp2-bpp", "0.1", "0.5", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "rd_points.json").read_text())
    assert {"name", "description", "device", "versions", "date", "model", "results"} <= set(doc)
    assert doc["model"]["name"] == "tiny" and len(doc["model"]["decoder_sha256"]) == 64
    assert doc["device"]["providers_used"] == ["CPUExecutionProvider"]
    res = doc["results"]
    assert len(res) == 2 * (2 + 3)  # VV and VH, 2 learned points and 3 JPEG-2000 points each
    for r in res:
        assert r["bpp"] == pytest.approx(8.0 * r["file_bytes"] / r["pixels"], rel=1e-5)  # 6 significant digits
        for k in ("psnr", "ssim", "db_rmse", "db_rmse_in_range", "db_rmse_out_of_range", "enl_ratio", "epi"):
            assert k in r
    learned = [r for r in res if r["codec"] == "learned"]
    assert {r["setting"] for r in learned} == {"quality=0", "quality=2"}
    by_q = {(r["band"], r["quality"]): r for r in learned}
    assert all(by_q[(b, 2.0)]["bpp"] > by_q[(b, 0.0)]["bpp"] for b in ("VV", "VH"))  # quality buys bits
    assert all(r["codec_clip_db"] == pytest.approx(r["clip_db"], abs=1e-3) for r in learned)
    assert {r["rounding"] for r in learned} == {"rate_distortion"}  # the codec's default, read from each file
    assert {a["subset"] for a in doc["aggregates"]} == {"all", "VV", "VH"}
    assert set(doc["bd_rate"]) == {"all", "VV", "VH"}
    md = (out / "rd_summary.md").read_text()
    assert "BD-rate" in md and "| learned | quality=2 |" in md and "| jpeg2000 |" in md
    assert (out / "rd_plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "BD-rate" in capsys.readouterr().out


def test_rounding_ab_codes_each_point_both_ways_and_compares_the_curves(tiny_bundle, sar_data, tmp_path):
    out = tmp_path / "results"
    rc = rd.main(["--model", str(tiny_bundle), "--data", str(sar_data), "--scenes", "berlin", "--qualities", "0",
                  "2", "--jp2-bpp", "0.1", "2", "--device", "cpu", "--rounding", "nearest", "rate_distortion",
                  "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "rd_points.json").read_text())
    learned = [r for r in doc["results"] if r["codec"] == "learned"]
    assert {(r["model"], r["rounding"]) for r in learned} == {("tiny nearest", "nearest"),
                                                               ("tiny rate_distortion", "rate_distortion")}
    by = {(r["band"], r["quality"], r["rounding"]): r for r in learned}
    # fewer latent bytes at every point (the header says which rounding, so the file may not shrink on a chip)
    assert all(by[(b, q, "rate_distortion")]["bytes_latent"] < by[(b, q, "nearest")]["bytes_latent"]
               for b in ("VV", "VH") for q in (0.0, 2.0))
    assert doc["settings"]["rounding"] == ["nearest", "rate_distortion"]
    assert set(doc["model_comparison"]) == {"tiny nearest", "tiny rate_distortion"}
    assert doc["model_comparison"]["tiny nearest"]["vs_first_model"]["all"]["bd_rate_percent"] == pytest.approx(0.0)


@pytest.mark.slow
def test_several_bundles_are_points_of_one_learned_curve(tiny_bundle, sar_data, tmp_path):
    other = build_tiny_bundle(tmp_path / "other", name="tiny-b", seed=1)
    out = tmp_path / "results"
    rc = rd.main(["--model", str(tiny_bundle), str(other), "--data", str(sar_data), "--scenes", "berlin",
                  "--qualities", "1", "--jp2-bpp", "0.1", "1", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "rd_points.json").read_text())
    assert [m["name"] for m in doc["models"]] == ["tiny", "tiny-b"]
    learned = [r for r in doc["results"] if r["codec"] == "learned"]
    assert {r["setting"] for r in learned} == {"tiny quality=1", "tiny-b quality=1"}
    assert {r["model"] for r in learned} == {"tiny", "tiny-b"}
    envelope = doc["bd_rate"]["all"]["test_settings"]
    agg = {a["setting"]: a for a in doc["aggregates"] if a["subset"] == "all" and a["codec"] == "learned"}
    assert envelope == [p["setting"] for p in rd.lower_envelope(list(agg.values()))] and envelope
    assert "Learned curve for the BD-rate" in (out / "rd_summary.md").read_text()


def test_rate_distortion_writes_nothing_without_out(tiny_bundle, sar_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = rd.main(["--model", str(tiny_bundle), "--data", str(sar_data), "--scenes", "berlin", "--qualities", "1.5",
                  "--jp2-bpp", "0.5", "1", "--device", "cpu"])
    assert rc == 0 and list(tmp_path.iterdir()) == []


def test_a_report_cut_short_leaves_the_earlier_one_whole(tmp_path, disk_full_mid_write):
    """rd_points.json and rd_summary.md were written in place: a full disk or a Ctrl-C mid-write left half a
    report where the last run's had been (compare_variants.sh's comparison then failed on it)."""
    rd.write_report(tmp_path, "rd_points.json", "rd_summary.md", {"bd_rate": {"all": 1.0}}, "# before\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    disk_full_mid_write()
    with pytest.raises(OSError):
        rd.write_report(tmp_path, "rd_points.json", "rd_summary.md", {"bd_rate": {"all": 2.0}}, "# after\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_shared_grd_scenes_are_the_eight_intensity_scenes(sar_data):
    scenes = rd.grd_scenes(sar_data)
    assert len(scenes) == 8 and all(s["domain"] == "intensity" and s["bands"] == ["VV", "VH"] for s in scenes)
    assert [s["name"] for s in rd.grd_scenes(sar_data, ["panama"])] == ["panama_700"]


@pytest.mark.slow
def test_throughput_runs_each_measurement_in_a_subprocess(tiny_bundle, sar_data, tmp_path):
    import throughput

    rc = throughput.main(["--model", str(tiny_bundle), "--source", str(sar_data / "s1_iw_grd_berlin_512.tif"),
                          "--size", "0", "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "throughput.json").read_text())
    got = {r["what"]: r for r in doc["results"]}
    assert set(got) == set(throughput.MEASUREMENTS)
    assert got["latents_hyperprior"]["symbols"] > 0 and got["latents_hyperprior"]["latent_bytes"] > 0
    assert got["codec_compress"]["provider"] == "CPUExecutionProvider"
    assert got["codec_reconstruct"]["provider"] == "CPUExecutionProvider"
    for k in ("codec_compress", "codec_reconstruct", "jp2_encode", "jp2_decode", "onnx_encode", "onnx_decode"):
        assert got[k]["mp_s"] > 0 and got[k]["peak_rss_mb"] > 0 and got[k]["projected_s"] > 0
    assert doc["settings"]["raster"]["width"] == 512


def test_codec_memory_runs_each_phase_in_its_own_process(tiny_bundle, sar_data, tmp_path, capsys):
    import codec_memory

    work = tmp_path / "w"
    assert codec_memory.main(["--bundle", str(tiny_bundle), "--size", "256", "--device", "cpu",
                              "--workdir", str(work), "--source", str(sar_data / "s1_iw_grd_berlin_512.tif")]) == 0
    res = json.loads(capsys.readouterr().out)
    for phase in ("compress", "window", "reconstruct"):
        assert res[f"peak_rss_{phase}_mb"] > 0
    assert res["file_bytes"] == res["whole_file_bytes"] == (work / "big.sarc").stat().st_size
    assert 0 < res["window_1000_bytes_read"] <= res["whole_file_bytes"]
    assert not (work / "big_rec.tif").exists()
    # --reuse keeps the raster: no build step the second time
    assert codec_memory.main(["--bundle", str(tiny_bundle), "--size", "256", "--device", "cpu", "--workdir",
                              str(work), "--reuse", "--phases", "window"]) == 0
    assert "build_s" not in json.loads(capsys.readouterr().out)


def test_outlier_margin_picks_the_margin_the_quality_slope_prefers_and_fits_k():
    import outlier_margin as om

    lambdas = [0.001, 0.01, 0.1]
    margins = [1.0, 4.0, om.NO_OUTLIERS]
    # base curve (margin 1): bpp 0.2/0.6/1.0, dB RMSE 2.0/1.0/0.5 -> slopes 7.5, 4.69, 1.875 dB^2 per bpp
    pts = {(0.0, 1.0): (0.2, 2.0), (1.0, 1.0): (0.6, 1.0), (2.0, 1.0): (1.0, 0.5),
           # quality 0: dropping the outliers saves 0.05 bpp for +0.01 dB -> none coded is best
           (0.0, 4.0): (0.18, 2.005), (0.0, om.NO_OUTLIERS): (0.15, 2.01),
           # quality 1: 4 dB is best; quality 2: every saving costs more error than the slope pays for
           (1.0, 4.0): (0.55, 1.01), (1.0, om.NO_OUTLIERS): (0.54, 1.1),
           (2.0, 4.0): (0.99, 0.55), (2.0, om.NO_OUTLIERS): (0.98, 0.6)}
    points = {k: {"bpp": b, "db_rmse": d} for k, (b, d) in pts.items()}
    best = om.best_margins(points, [0.0, 1.0, 2.0], margins, lambdas)
    assert [b["best_margin_db"] for b in best] == [om.NO_OUTLIERS, 4.0, 1.0]
    assert best[1]["slope_db2_per_bpp"] == pytest.approx((4.0 - 0.25) / 0.8)
    # only the interior best (4 dB at lambda 0.01) is a measurement: K = 4 * sqrt(255^2 * 0.01)
    assert om.fit_scale(best, margins) == pytest.approx(4.0 * 25.5)


def test_outlier_margin_pools_bits_and_squared_error_over_scene_bands():
    import outlier_margin as om

    rows = [{"quality": 0.0, "margin_db": 2.0, "bytes": 100, "pixels": 800, "valid": 800, "sse_db2": 800.0,
             "outlier_pixels": 8},
            {"quality": 0.0, "margin_db": 2.0, "bytes": 300, "pixels": 1600, "valid": 1200, "sse_db2": 4800.0,
             "outlier_pixels": 0}]
    p = om.aggregate(rows)[(0.0, 2.0)]
    assert p["bpp"] == pytest.approx(8 * 400 / 2400)
    assert p["db_rmse"] == pytest.approx(np.sqrt(5600.0 / 2000))
    assert p["outlier_fraction"] == pytest.approx(8 / 2000)


# --- branch experiments at equal steps ------------------------------------------------------------------------


def test_outlier_margin_stopped_at_its_scene_band_limit_ends_without_a_traceback(tmp_path):
    """--max-scene-bands left the scene generator open past its temporary folder, and Python's clean-up at exit
    printed a FileNotFoundError traceback under a run that had succeeded."""
    import subprocess  # noqa: PLC0415

    bundle = build_tiny_bundle(tmp_path / "tiny")
    proc = subprocess.run([sys.executable, str(BENCH / "outlier_margin.py"), "--model", str(bundle), "--margins", "4",
                           "--max-scene-bands", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 scene-bands" in proc.stderr and "Traceback" not in proc.stderr and "Exception" not in proc.stderr


def test_latent_refinement_of_a_barely_trained_model_writes_its_results(sar_data, tmp_path, capsys):
    """A barely trained checkpoint's curves share no range of error: bd_rate gives None, and the print of it
    raised a TypeError before anything was written."""
    import latent_refinement  # noqa: PLC0415

    checkpoint, _, data, *_ = _cross_pol_run(sar_data, tmp_path)
    out = tmp_path / "out"
    assert latent_refinement.main([checkpoint, "--data", data, "--steps", "1", "--tiles", "1", "--out", str(out)]) == 0
    result = json.loads((out / "latent_refinement.json").read_text())
    printed = capsys.readouterr().out
    for steps, curve in result["curves"].items():
        assert f"{steps} steps: BD-rate against plain rounding {rd.bd_text(curve['bd_rate_percent'])}" in printed

def _fake_run(folder: Path, steps: list[int], psnr_shift: float, init_step: int | None) -> Path:
    """A run folder as sar-train writes it: config.json, history.jsonl, and the init line of train.log."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"init": "x.pth" if init_step is not None else None,
                                                    "batch_size": 4}))
    if init_step is not None:
        (folder / "train.log").write_text(f"2026 INFO trainer.train: initialised from x.pth (step {init_step} of "
                                          f"that run), channel context of 4 slices added\n")
    levels = [{"bpp": b, "psnr": 20 + 10 * b + psnr_shift} for b in (0.1, 0.5, 1.0, 2.0)]
    (folder / "history.jsonl").write_text("".join(json.dumps({"step": s, "val_loss": 2.0 - psnr_shift,
                                                              "val_levels": levels}) + "\n" for s in steps))
    return folder


def test_training_runs_puts_a_branch_of_a_branch_on_the_reference_axis(tmp_path, capsys):
    """The reference itself branched at 35,000; the experiment branched at its step 1,500: the experiment's
    step 500 is compared with the reference's step 2,000 (both 37,000 steps in all), and a better curve gives a
    negative BD-rate."""
    import training_runs  # noqa: PLC0415

    ref = _fake_run(tmp_path / "ref", [1500, 2000, 2500], 0.0, init_step=35000)
    exp = _fake_run(tmp_path / "exp", [500, 1000, 5000], 0.2, init_step=1500)
    for run in (ref, exp):  # each run records only its own patches, 4 a step
        history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        (run / "history.jsonl").write_text("".join(json.dumps({**h, "patches_seen": 4 * h["step"]}) + "\n"
                                                   for h in history))
    assert training_runs.main([str(ref), str(exp), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "experiments.json").read_text())["rows"]
    assert [(r["step"], r["steps_since_branch"]) for r in rows] == [(37000, 500), (37500, 1000)]
    # 500 own steps of 4 patches, on the reference's 1,500 steps since its own branch and its 35,000 before
    assert [r["patches_seen"] for r in rows] == [(500 + 1500 + 35000) * 4, (1000 + 1500 + 35000) * 4]
    assert all(r["bd_rate_vs_reference_percent"] < 0 for r in rows)
    assert (tmp_path / "out" / "experiments.png").stat().st_size > 10_000  # the plot of those rows


def test_training_runs_figure_names_each_experiments_own_last_steps_and_patches(tmp_path, drawn_text):
    """Two experiments that stopped at different steps, one training 8 patches a step: each line's legend says
    how far its own weights had trained, not the last point of whichever run came last."""
    import training_runs  # noqa: PLC0415

    ref = _fake_run(tmp_path / "ref", [500, 1000, 1500, 2000], 0.0, init_step=None)
    short = _fake_run(tmp_path / "short", [500, 1000], 0.1, init_step=0)
    long = _fake_run(tmp_path / "long", [500, 1000, 1500, 2000], -0.1, init_step=0)
    history = [json.loads(line) for line in (long / "history.jsonl").read_text().splitlines()]
    (long / "history.jsonl").write_text("".join(json.dumps({**h, "patches_seen": 8 * h["step"]}) + "\n"
                                                for h in history))
    assert training_runs.main([str(ref), str(short), str(long), "--out", str(tmp_path / "out")]) == 0
    text = drawn_text[-1]
    assert "short: channel context of 4 slices added\n(last: 1,000 steps, 4,000 patches)" in text
    assert "long: channel context of 4 slices added\n(last: 2,000 steps, 16,000 patches)" in text


def test_training_runs_compares_a_resumed_copy_on_its_references_own_steps(tmp_path):
    """A reference resumed later (its config.json no longer names --init, the log keeps the init line) and an
    experiment resumed from a copy of its checkpoint (no init line: it continues the reference's step count,
    e.g. the same run in bf16): compared step for step; patches come from the records (a DDP resume trains 8
    per step)."""
    import training_runs  # noqa: PLC0415

    ref = _fake_run(tmp_path / "ref", [1000, 1500, 2000], 0.0, init_step=35000)
    (ref / "config.json").write_text(json.dumps({"init": None, "batch_size": 4}))
    exp = _fake_run(tmp_path / "exp", [1500, 2000], -0.1, init_step=None)
    history = [json.loads(line) for line in (exp / "history.jsonl").read_text().splitlines()]
    (exp / "history.jsonl").write_text("".join(json.dumps({**h, "patches_seen": 6000 + 8 * (h["step"] - 1500)}) + "\n"
                                               for h in history))
    assert training_runs.main([str(ref), str(exp), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "experiments.json").read_text())["rows"]
    assert [(r["step"], r["patches_seen"]) for r in rows] == [(36500, 146000), (37000, 150000)]
    assert all(r["bd_rate_vs_reference_percent"] > 0 for r in rows)


def test_training_runs_counts_a_branchs_patches_from_what_the_reference_had_seen(tmp_path):
    """A branch of a DDP run (8 patches a step): at its step s it has seen its own 8 s patches plus what the
    reference had recorded at the branch step, so both columns count on the same axis."""
    import training_runs  # noqa: PLC0415

    def with_patches(folder, first, per_step):
        history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
        (folder / "history.jsonl").write_text("".join(
            json.dumps({**h, "patches_seen": first + per_step * (h["step"] - history[0]["step"])}) + "\n"
            for h in history))

    ref = _fake_run(tmp_path / "ref", [37000, 37500, 38000], 0.0, init_step=None)
    with_patches(ref, 246000, 8)
    exp = _fake_run(tmp_path / "exp", [500, 1000], 0.1, init_step=37000)
    with_patches(exp, 4000, 8)
    assert training_runs.main([str(ref), str(exp), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "experiments.json").read_text())["rows"]
    assert [(r["step"], r["patches_seen"]) for r in rows] == [(37500, 250000), (38000, 254000)]


def _training_runs_reported(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """Three fake runs and the folder where training_runs.py has reported the first two: a rerun with the third
    must replace that report whole or leave it."""
    import training_runs  # noqa: PLC0415

    ref = _fake_run(tmp_path / "ref", [500, 1000, 1500], 0.0, init_step=None)
    exp = _fake_run(tmp_path / "exp", [500, 1000], 0.1, init_step=0)
    other = _fake_run(tmp_path / "other", [500, 1000, 1500], -0.1, init_step=0)
    out = tmp_path / "out"
    assert training_runs.main([str(ref), str(exp), "--out", str(out)]) == 0
    return ref, exp, other, out


def test_training_runs_cut_short_leaves_the_earlier_report_whole(tmp_path, disk_full_mid_write):
    """experiments.json, .md and .png were written in place, one after the other: a full disk or a Ctrl-C
    mid-write left a cut-off table that looked whole. All three now go through publish_files."""
    import training_runs  # noqa: PLC0415

    ref, exp, other, out = _training_runs_reported(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["experiments.json", "experiments.md", "experiments.png"]
    disk_full_mid_write()
    with pytest.raises(OSError, match="No space left"):
        training_runs.main([str(ref), str(exp), str(other), "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no half file, no partial one


def test_training_runs_figure_that_fails_leaves_the_earlier_tables(tmp_path, monkeypatch):
    """The figure was written after the tables: one that failed left the new tables beside the last run's
    figure. Now none of the three is replaced unless all are written."""
    import training_runs  # noqa: PLC0415

    ref, exp, other, out = _training_runs_reported(tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(self, data):
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        training_runs.main([str(ref), str(exp), str(other), "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_train_throughput_measures_float32_beside_the_mixed_precision_it_compares(tmp_path):
    import torch
    import train_throughput
    out = tmp_path / "tt.json"
    assert train_throughput.main(["--device", "cpu", "--variants", "baseline", "--batch-size", "1",
                                  "--patch-size", "64", "--warmup", "1", "--steps", "1", "--amp",
                                  "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert [r["precision"] for r in doc["results"]] == ["float32", "bfloat16" if bf16 else "float32"]
    assert doc["amp"] is True and all(r["patches_per_s"] > 0 and r["variant"] == "baseline" for r in doc["results"])


def test_rd_pooled_interpolates_jpeg2000_in_log_bpp_and_says_outside_its_range():
    import rd_pooled  # noqa: PLC0415

    def row(codec, setting, bpp, err, subset="all"):
        return {"codec": codec, "setting": setting, "subset": subset, "bpp": bpp, "db_rmse": err}

    aggregates = [row("jpeg2000", "a", 0.25, 2.0), row("jpeg2000", "b", 1.0, 1.0),
                  row("learned", "quality=1", 0.5, 1.4), row("learned", "quality=5", 2.0, 0.5)]
    gaps = rd_pooled.pooled_gaps(aggregates)["all"]
    assert gaps[0]["gap_db"] == pytest.approx(1.4 - 1.5)  # 0.5 bpp is halfway between 0.25 and 1.0 in log bpp
    assert gaps[1]["gap_db"] is None


def test_rd_pooled_bd_rate_over_the_upper_part_of_the_range():
    """A learned curve that needs 20% fewer bits above 0.4 bpp and as many below: -20% from 0.4 bpp on."""
    import rd_pooled  # noqa: PLC0415

    rates = np.array([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])
    err = 3.0 - np.log2(rates / 0.1) * 0.4  # any monotonic curve
    rows = [{"codec": "jpeg2000", "setting": str(r), "subset": "all", "bpp": r, "db_rmse": e}
            for r, e in zip(rates, err)]
    rows += [{"codec": "learned", "setting": f"q{i}", "subset": "all", "bpp": r * (0.8 if r >= 0.4 else 1.0),
              "db_rmse": e} for i, (r, e) in enumerate(zip(rates, err))]
    assert rd_pooled.bd_rate_from(rows, 0.3)["all"] == pytest.approx(-20.0, abs=1e-6)
    assert rd_pooled.bd_rate_from(rows, 0.0)["all"] > -20.0
    assert rd_pooled.bd_rate_from(rows, 2.0) == {"all": None}  # one JPEG-2000 point left: no curve


def test_rd_trend_orders_runs_by_steps_from_the_record_or_the_folder_name(tmp_path, capsys, drawn_text):
    import rd_trend  # noqa: PLC0415

    def run(folder: str, bd: float, training: dict | None) -> Path:
        d = tmp_path / folder
        d.mkdir()
        model = {"name": folder, **({"training": training} if training else {})}
        (d / "rd_points.json").write_text(json.dumps({"model": model, "bd_rate": {
            "all": {"bd_rate_percent": bd}, "VV": {"bd_rate_percent": bd + 1}, "VH": {"bd_rate_percent": None}}}))
        return d

    late = run("v6", -10.0, {"steps_total": 67500, "patches_seen_total": 344000})
    early = run("step2500", 110.0, None)  # exported before the totals were recorded
    out = tmp_path / "trend"
    assert rd_trend.main([str(late), str(early), "--out", str(out)]) == 0
    points = json.loads((out / "rd_trend.json").read_text())["points"]
    assert [p["steps"] for p in points] == [2500, 67500]
    assert points[1]["patches"] == 344000 and points[1]["bd_rate_percent"]["VH"] is None
    assert (out / "rd_trend.png").stat().st_size > 10_000
    assert "last: v6, 67,500 steps, 344,000 patches" in drawn_text[-1]  # says what training it shows
    assert "n/a" in capsys.readouterr().out
    nameless = run("v7", -11.0, None)
    assert rd_trend.main([str(nameless)]) == 2  # no steps anywhere: one clear error
    assert points[1]["rounding"] == "nearest"  # written before the setting existed
    ab = run("step93000", -11.8, None)  # coded both ways: the trend keeps to nearest rounding
    doc = json.loads((ab / "rd_points.json").read_text())
    doc["settings"] = {"rounding": ["nearest", "rate_distortion"]}
    doc["model_comparison"] = {f"m {r}": {"vs_jpeg2000": {"all": {"bd_rate_percent": v}}}
                               for r, v in (("nearest", -11.1), ("rate_distortion", -11.8))}
    (ab / "rd_points.json").write_text(json.dumps(doc))
    point = rd_trend.trend_point(ab)
    assert point["rounding"] == "nearest" and point["bd_rate_percent"] == {"all": -11.1}


def test_model_comparison_gives_each_model_its_own_curve_and_an_ab_against_the_first():
    """Two models in one rate_distortion run: each is measured on its own points (not the envelope of both), and
    a model that needs 10% fewer bits for every dB RMSE is -10% against the first."""
    dist = [2.2, 1.6, 1.1, 0.8, 0.6, 0.5]
    rates = [0.12, 0.29, 0.58, 0.95, 1.35, 1.77]

    def point(codec, model, bpp, d, sub="all"):
        return {"codec": codec, "model": model, "setting": f"{model} q", "subset": sub, "bpp": bpp, "db_rmse": d}

    aggs = ([point("jpeg2000", None, 1.1 * r, d) for r, d in zip(rates, dist)]
            + [point("learned", "old", r, d) for r, d in zip(rates, dist)]
            + [point("learned", "new", 0.9 * r, d) for r, d in zip(rates, dist)])
    c = rd.model_comparison(aggs, ["all"], ["old", "new"])
    assert c["old"]["vs_first_model"]["all"]["bd_rate_percent"] == pytest.approx(0.0, abs=1e-9)
    assert c["new"]["vs_first_model"]["all"]["bd_rate_percent"] == pytest.approx(-10.0, abs=1e-6)
    assert c["old"]["vs_jpeg2000"]["all"]["bd_rate_percent"] == pytest.approx(100 * (1 / 1.1 - 1), abs=1e-6)
    assert c["new"]["vs_jpeg2000"]["all"]["bd_rate_percent"] == pytest.approx(100 * (0.9 / 1.1 - 1), abs=1e-6)


def test_speckle_share_splits_a_band_into_its_local_mean_and_its_normalised_speckle():
    """structure x speckle / median gives the band back; the speckle part has no trend left; nodata stays
    nodata in every part, and no valid pixel's local mean reads the nodata (normalised box)."""
    import speckle_share  # noqa: PLC0415

    rng = np.random.default_rng(0)
    ramp = np.linspace(0.01, 1.0, 64)[None, :] * np.ones((64, 1))  # a 20 dB trend across the band
    intensity = ramp * rng.gamma(4.4, 1 / 4.4, (64, 64))
    valid = np.ones((64, 64), bool)
    valid[:8, :8] = False
    intensity[~valid] = 1e9  # would dominate any local mean that read it
    parts = speckle_share.split_band(intensity, valid, 7)
    assert set(parts) == set(speckle_share.PARTS)
    for v in parts.values():
        assert np.isnan(v[~valid]).all() and np.isfinite(v[valid]).all()
    median = np.median(intensity[valid])
    np.testing.assert_allclose(parts["structure"][valid] * parts["speckle"][valid] / median, intensity[valid],
                               rtol=1e-5)
    assert parts["structure"][valid].max() < 2.0
    speckle_db = 10 * np.log10(parts["speckle"][:, 8:])
    left, right = speckle_db[:, :20].mean(), speckle_db[:, -20:].mean()
    assert abs(left - right) < 0.5  # the original's columns differ by about 17 dB here


def test_speckle_bound_entropy_matches_the_known_limits():
    """One look: ln of an exponential is a Gumbel variable, entropy 1 + Euler's gamma nats (then scaled to dB);
    many looks: the dB speckle tends to a Gaussian of variance (10 / ln 10)^2 trigamma(L)."""
    import math

    from scipy.special import polygamma
    import speckle_bound  # noqa: PLC0415

    to_db_nats = math.log(10 / math.log(10))
    assert speckle_bound.speckle_db_entropy_bits(1.0) == pytest.approx((1 + 0.5772156649 + to_db_nats) / math.log(2))
    sigma = 10 / math.log(10) * math.sqrt(polygamma(1, 400.0))
    gaussian = 0.5 * math.log2(2 * math.pi * math.e * sigma**2)
    assert speckle_bound.speckle_db_entropy_bits(400.0) == pytest.approx(gaussian, abs=2e-3)
    # the bound: 0 where D reaches the Gaussian's spread, one bit less per halving of D
    h = speckle_bound.speckle_db_entropy_bits(400.0)
    assert speckle_bound.shannon_lower_bound(h, [sigma, sigma / 2, sigma / 4]) == pytest.approx([0, 1, 2], abs=2e-3)


def test_speckle_bounds_bracket_the_rate_distortion_function():
    """The Gaussian of the same spread needs at least as many bits as the speckle's lower bound, at every D."""
    import math

    from scipy.special import polygamma
    import speckle_bound  # noqa: PLC0415

    looks = 4.4
    std = 10 / math.log(10) * math.sqrt(polygamma(1, looks))
    d = np.linspace(0.3, 2.0, 20)
    lo = speckle_bound.shannon_lower_bound(speckle_bound.speckle_db_entropy_bits(looks), d)
    hi = speckle_bound.gaussian_upper_bound(std, d)
    assert (hi >= lo).all() and (hi - lo).max() < 0.1


def test_epi_ceiling_is_what_the_gaussian_test_channel_gives_through_the_projects_epi():
    """The R(D)-achieving channel for a white Gaussian at rate R: x_hat = (1 - D) x + w, var w = D (1 - D),
    D = 2^(-2R); its EPI measured with core.metrics.epi is the closed form sqrt(1 - D)."""
    import math

    import speckle_bound  # noqa: PLC0415
    from sar_compress_plugin.core.metrics import epi  # noqa: PLC0415

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 512))
    for rate in (0.25, 1.0, 2.0):
        d = 2.0 ** (-2 * rate)
        x_hat = (1 - d) * x + rng.normal(scale=math.sqrt(d * (1 - d)), size=x.shape)
        assert epi(x, x_hat) == pytest.approx(float(speckle_bound.mse_optimal_epi(rate)), abs=3e-3)
    assert float(speckle_bound.mse_optimal_epi(1.0)) == pytest.approx(math.sqrt(0.75))


def test_model_caption_gives_the_steps_and_patches_a_bundles_weights_saw_in_all():
    from figures import model_caption  # noqa: PLC0415

    record = {"name": "trunk",
              "training": {"steps": 79000, "steps_total": 115500, "patches_seen_total": 728000}}
    assert model_caption(record) == "trunk (115,500 steps, 728,000 patches)"  # the totals, not the last run's
    # exported before the totals were recorded: only the last run's own steps, and said so
    assert model_caption({"name": "old", "training": {"steps": 2500}}) == \
        "old (2,500 steps of its last run, patches not recorded)"
    assert model_caption({"name": "bare"}) == "bare (training not recorded)"


def _model(name: str, steps_total: int, patches_total: int) -> dict:
    return {"name": name, "training": {"steps": 1000, "steps_total": steps_total,
                                        "patches_seen_total": patches_total}}


def _rd_points(codec: str, shift: float, **extra) -> list[dict]:
    return [{"codec": codec, "subset": "all", "setting": f"{codec} {b}", "bpp": b, "db_rmse": 2.0 - b + shift,
             "psnr": 20 + 5 * b - shift, **extra} for b in (0.1, 0.5, 1.0, 2.0)]


def test_rd_plot_names_every_models_steps_and_patches(drawn_text):
    """rd_plot.png: read on its own, it says how far each compared model had trained (from its manifest)."""
    models = [_model("trunk-41000", 77500, 424000), _model("residual-4000", 81500, 440000)]
    points = _rd_points("jpeg2000", 0.0) + _rd_points("learned", -0.2)
    doc = {"models": models, "model": models[0], "results": points, "aggregates": points,
           "bd_rate": {"all": {"bd_rate_percent": -10.6}}, "settings": {"scene_bands": 12}}
    rd.plot(doc)
    assert ("learned: trunk-41000 (77,500 steps, 424,000 patches); "
            "residual-4000 (81,500 steps, 440,000 patches)") in drawn_text[-1]


def test_replot_redraws_each_figure_from_its_points_and_refuses_a_folder_without_them(tmp_path, drawn_text, capsys):
    models = [_model("step144491", 144491, 861964)]
    points = _rd_points("jpeg2000", 0.0) + _rd_points("learned", -0.2)
    doc = {"models": models, "model": models[0], "results": points, "aggregates": points,
           "bd_rate": {"all": {"bd_rate_percent": -13.1}}, "settings": {"scene_bands": 12}}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "rd_points.json").write_text(json.dumps(doc))
    assert rd.main(["--replot", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "b/rd_points.json" in capsys.readouterr().err and not (tmp_path / "a" / "rd_plot.png").exists()
    assert rd.main(["--replot", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "rd_plot.png").stat().st_size > 0
    assert "learned: step144491 (144,491 steps, 861,964 patches)" in drawn_text[-1]
    (tmp_path / "c").mkdir()  # a report archived as results_files.py reads it
    (tmp_path / "c" / "rd_points.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    assert rd.main(["--replot", str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "rd_plot.png").stat().st_size > 0


def test_residual_layer_plot_names_the_models_steps_and_patches(drawn_text):
    import residual_layer  # noqa: PLC0415

    points = _rd_points("jpeg2000", 0.0) + _rd_points("learned", -0.2) + _rd_points("layered", -0.4)
    doc = {"model": _model("sar-baseline-ctx4-cpu-v8", 115500, 728000), "aggregates": points,
           "envelope": rd.lower_envelope(points), "settings": {"scene_bands": 12}}
    residual_layer.plot(doc)
    caption = "sar-baseline-ctx4-cpu-v8 (115,500 steps, 728,000 patches), 12 held-out scene-bands"
    assert caption in drawn_text[-1]


def test_result_figures_are_palette_pngs_of_the_same_picture(tmp_path):
    """benchmarks/figures.py: what every tracked plot is saved as (the GPU call carries the whole checkout)."""
    import io  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from figures import palette_png  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [2, 0, 1], "o-", label="a")
    ax.legend()
    rgba = io.BytesIO()
    fig.savefig(rgba, format="png", dpi=100)
    palette_png(fig, dpi=100)(tmp_path / "plot.png")
    plt.close(fig)
    saved, original = Image.open(tmp_path / "plot.png"), Image.open(io.BytesIO(rgba.getvalue()))
    assert saved.mode == "P" and saved.size == original.size
    assert (tmp_path / "plot.png").stat().st_size < len(rgba.getvalue())
    a = np.asarray(saved.convert("RGB"), dtype=np.int16)
    b = np.asarray(original.convert("RGB"), dtype=np.int16)
    assert np.abs(a - b).mean() < 2.0  # the same picture


def test_reports_keep_six_significant_digits_and_one_point_per_line():
    doc = {"name": "x", "settings": {"rate": 0.1234567891}, "bad": float("nan"),
           "results": [{"bpp": 1.23456789e-3, "db": -2.0}, {"bpp": float("inf"), "db": 123456.789}]}
    text = rd.compact_json(doc)
    back = json.loads(text)
    assert back["settings"]["rate"] == 0.123457 and back["bad"] is None
    assert back["results"] == [{"bpp": 0.00123457, "db": -2.0}, {"bpp": None, "db": 123457.0}]
    # a diff of a rerun shows which point moved
    assert [ln for ln in text.splitlines() if '"bpp"' in ln] == [' {"bpp":0.00123457,"db":-2.0},',
                                                               ' {"bpp":null,"db":123457.0}']


def test_int8_decoder_quantises_g_s_and_measures_it_through_the_codec(tiny_bundle, tmp_path):
    """The int8 decoder really is int8 (quantise/dequantise pairs around every convolution), it changes the
    reconstruction (the same bits, another decoder), and both reconstructions are measured against the
    original."""
    import int8_decoder
    import onnx

    rc = int8_decoder.main(["--model", str(tiny_bundle), "--qualities", "0", "--repeats", "1",
                            "--held-out", "frankfurt", "--out", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "int8_decoder.json").read_text())
    assert {r["band"] for r in doc["rows"]} == {"VV", "VH"} and doc["calibration_tiles"] > 0
    for r in doc["rows"]:
        assert 0 < r["db_rmse_float32"] != r["db_rmse_int8"] > 0
    assert doc["decoder_mp_s_one_thread"]["float32"] > 0 and doc["decoder_mp_s_one_thread"]["int8"] > 0
    inputs = int8_decoder.calibration_inputs(tiny_bundle, [0.0], tmp_path)
    model = onnx.load(int8_decoder.quantise(tiny_bundle / "decoder.onnx", inputs[:2], tmp_path / "q.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= ops.count("Conv") > 0


def test_archived_reports_read_as_the_plain_ones(tmp_path, capsys):
    """A trend point archived with gzip (results_files.py) gives the same trend and pooled figures as written."""
    import rd_pooled  # noqa: PLC0415
    import rd_trend  # noqa: PLC0415

    plain = BENCH / "results" / "rd_heldout_grd" / "rd_points.json"
    archived = tmp_path / "step5" / "rd_points.json.gz"
    archived.parent.mkdir()
    archived.write_bytes(gzip.compress(plain.read_bytes()))
    assert rd_trend.trend_point(archived.parent) == {**rd_trend.trend_point(plain), "run": str(archived)}
    assert rd_pooled.main([str(plain)]) == 0
    expected = capsys.readouterr().out
    assert rd_pooled.main([str(archived.parent)]) == 0 and capsys.readouterr().out == expected
    archived.write_bytes(archived.read_bytes()[:100])  # cut short: one line, no traceback
    assert rd_pooled.main([str(archived)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {archived}: not a rate_distortion.py result")


def test_cross_pol_context_codes_as_the_model_does_until_it_has_learned_and_pairs_vv_with_vh():
    """The probe's own slice-by-slice coding must be the model's, or its BD-rates would measure the copy; a
    context that has learned nothing (its last layer starts at zero) leaves every symbol and bit unchanged."""
    import torch

    import cross_pol_context as xpol
    from trainer.data import Plane
    from trainer.registry import create_model

    torch.manual_seed(0)
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, context_slices=4).eval()
    x = torch.rand(1, 1, 64, 64)
    level = torch.tensor([1.0])
    with torch.no_grad():
        gain, inverse = model.gains(level)
        want = model.code(x, level)
        got = xpol.code(model, model.g_a(x) * gain)
        silent = xpol.code(model, model.g_a(x) * gain, xpol.CrossPolContext(16, 8), want["y_hat"] * inverse, gain)
    assert torch.equal(got["y_hat"], want["y_hat"]) and torch.equal(silent["y_hat"], want["y_hat"])
    bits = float(-torch.log2(want["likelihoods"]).sum())
    assert float(got["y_bits"]) == pytest.approx(bits, rel=1e-6) == float(silent["y_bits"])

    plane = lambda scene, band, shape: Plane(scene, band, torch.zeros(shape), torch.ones(shape, dtype=torch.bool),  # noqa: E731
                                             (0.0, 10.0))
    pairs = xpol.pairs_of([plane("a", "VH", (100, 130)), plane("a", "VV", (100, 130)), plane("b", "HH", (64, 64)),
                           plane("c", "VV", (64, 64)), plane("d", "Sigma0_VV", (64, 64)),
                           plane("d", "Sigma0_VH", (64, 64))])
    assert [(p[0], tuple(p[1].shape)) for p in pairs] == [("a", (64, 128)), ("d", (64, 64))]


def _cross_pol_run(sar_data: Path, tmp_path: Path) -> list[str]:
    """cross_pol_context.py's arguments for one step of a tiny untrained model on two dual-polarisation scenes:
    one to train the probe on, one to evaluate it."""
    from trainer.checkpoint import make_checkpoint, save_warm_start
    from trainer.registry import create_model

    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8)
    checkpoint = tmp_path / "tiny.pth"
    save_warm_start(make_checkpoint(model, epoch=1, step=1, best_val_loss=9.0, history=[], preprocessing_params={},
                                    config={}, data_summary={}), checkpoint)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("s1_iw_grd_berlin_512.tif", "s1_iw_grd_brazil_512.tif"):
        (data / name).symlink_to(sar_data / name)
    return [str(checkpoint), "--data", str(data), "--steps", "1", "--batch", "1"]


def test_cross_pol_context_cut_short_leaves_the_earlier_report_whole(sar_data, tmp_path, disk_full_mid_write,
                                                                     capsys):
    """cross_pol_context.json and .md were written in place, one after the other: a full disk or a Ctrl-C
    mid-write left half a report. Both now go to temporary names, renamed once whole."""
    import cross_pol_context as xpol

    out = tmp_path / "out"
    run = [*_cross_pol_run(sar_data, tmp_path), "--out", str(out)]

    assert xpol.main(run) == 0
    doc = json.loads((out / "cross_pol_context.json").read_text())
    assert doc["name"] == "cross_pol_context" and doc["settings"]["threads"] == 1
    assert "s, 1 thread); evaluated" in (out / "cross_pol_context.md").read_text()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    disk_full_mid_write()
    with pytest.raises(OSError, match="No space left"):
        xpol.main(run)
    assert "on the validation pairs:" in capsys.readouterr().out  # cut at the writing, after the whole run
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no half file, no temporary one


def test_cross_pol_context_writes_files_only_when_given_out(sar_data, tmp_path, monkeypatch, capsys):
    """Its --out defaulted to the committed results folder, relative to where it ran: a trial run replaced the
    committed report (benchmarks/README.md: files only with --out DIR). Without --out it prints the table."""
    import cross_pol_context as xpol

    run = _cross_pol_run(sar_data, tmp_path)
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    before = sorted(tmp_path.rglob("*"))
    assert xpol.main(run) == 0
    assert sorted(tmp_path.rglob("*")) == before
    assert "| level | VV bpp |" in capsys.readouterr().out


def test_cross_pol_context_says_when_a_bd_rate_has_no_overlap():
    """bd_rate gives null where the curves' errors do not overlap (an untrained model's often do not): the
    markdown crashed on it after the whole run, with the JSON written and the table not."""
    import cross_pol_context as xpol

    none = {"bd_rate_percent": None}
    row = {"level": 0, **{f"{k}_{m}": 1.0 for k in ("vv", "vh", "vh_ctx") for m in ("bpp", "db_rmse")}}
    doc = {"date": "2026-01-01", "checkpoint": "tiny.pth", "model_training": "1 steps", "seconds_training": 1.0,
           "settings": {"steps": 1, "batch": 1, "threads": 4}, "train_scenes": ["a"], "val_scenes": ["b"],
           "results": {"levels": [row], "bd_vh": none, "bd_pair": {"bd_rate_percent": -1.5}},
           "training_pairs": {"bd_vh": none}}
    text = xpol.markdown(doc)
    assert "VH alone: **n/a (no overlap)**" in text and "unchanged): **-1.50%**" in text
    assert "learned from, VH: n/a (no overlap)." in text
    assert "(1 s, 4 threads); evaluated" in text  # it said "one thread" whatever --threads was
    doc["settings"]["threads"] = 1
    assert "(1 s, 1 thread); evaluated" in xpol.markdown(doc)
