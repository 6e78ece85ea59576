"""benchmarks/model_limits.py: the transform ceiling and the spatial-context probe measure what they claim."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import model_limits  # noqa: E402
from trainer.cli import main as train_main  # noqa: E402
from trainer.registry import create_model  # noqa: E402

SMALL = {"channels": 8, "latent_channels": 16, "hyper_channels": 8, "lambdas": [0.001, 0.01]}


def _model(log_gain: float, slices: int = 1):
    torch.manual_seed(0)
    model = create_model("baseline", **SMALL, context_slices=slices).eval()
    with torch.no_grad():
        model.log_gain.fill_(log_gain)
        model.log_inverse_gain.fill_(-log_gain)
    return model


def test_fine_quantisation_reaches_the_ceiling_and_coarse_does_not():
    x = torch.rand(2, 1, 64, 64)
    fine = model_limits.level_limits(_model(6.0), x)  # steps of e^-6 on the latent: quantisation is invisible
    coarse = model_limits.level_limits(_model(-3.0), x)
    for r in fine:
        assert abs(r["psnr"] - r["ceiling_psnr"]) < 0.05
    for r in coarse:  # steps of e^3: (nearly) every latent rounds to its mean, so the output moves off g_s(y)
        assert abs(r["psnr"] - r["ceiling_psnr"]) > 0.01
    # the ceiling does not depend on the quantiser: g_s(y * g * g') is the same function for both gains
    assert abs(fine[0]["ceiling_psnr"] - coarse[0]["ceiling_psnr"]) < 1e-3
    for r in fine + coarse:
        ch = r["channels_for_bits"]
        assert 1 <= ch["50%"] <= ch["90%"] <= ch["99%"] <= 16
    assert fine[0]["bpp"] > coarse[0]["bpp"]


def test_offset_keys_are_the_nearest_table_scale_and_the_clipped_symbol():
    table = torch.tensor(model_limits.scale_table())
    c = {"scales": torch.stack([table[0] * 0.5, table[5], table[5] * 1.01, table[-1] * 3]),
         "symbols": torch.tensor([-9.0, -1.0, 0.0, 7.0])}
    idx, q = model_limits._offset_keys(c)
    assert idx.tolist() == [0, 5, 5, len(table) - 1]
    assert q.tolist() == [0, 3, 4, 8]


def test_the_untrained_spatial_context_codes_exactly_the_models_bits():
    model = _model(0.0, slices=2)
    c = model.code(torch.rand(2, 1, 64, 64), torch.zeros(2))
    probe = model_limits.CheckerboardContext(2, 8)
    assert torch.allclose(probe.bits(c, noisy=False), -torch.log2(c["likelihoods"]).sum())


def test_model_limits_end_to_end_on_a_trained_checkpoint(sar_data, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("s1_iw_grd_berlin_512.tif", "s1_iw_grd_frankfurt_512.tif", "s1_iw_grd_ottawa_512.tif"):
        shutil.copy(sar_data / name, data / name)
    args = ["--variant", "baseline", "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cpu",
            "--patch-size", "256", "--batch-size", "2", "--channels", "8", "--latent-channels", "16",
            "--hyper-channels", "8", "--lambdas", "0.001", "0.01", "--no-progress", "--max-steps", "2",
            "--val-fraction", "0.34"]
    assert train_main(args) == 0
    ckpt = tmp_path / "run" / "last.pth"
    assert model_limits.main([str(ckpt), str(ckpt), "--data", str(data), "--spatial-steps", "2", "--offsets", "1",
                              "--out", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "model_limits.json").read_text())
    assert [m["steps_total"] for m in doc["models"]] == [2, 2]
    first, second = doc["models"]
    assert first["levels"] == second["levels"]  # the same checkpoint measures the same
    assert "spatial_probe" in first and "spatial_probe" not in second
    assert first["spatial_probe"]["curve"][-1]["step"] == 2
    for m in doc["models"]:  # the offsets change the decoder's input only: the same bits, a finite BD-rate
        off = m["offsets"]
        assert [p[0] for p in off["plain"]] == [p[0] for p in off["offsets"]]
        assert off["patches"] == 8  # (a BD-rate only where the two curves overlap: not so for 2 steps' model)
        # y - y_hat lies in [-0.5, 0.5], so must every mean of it
        assert all(abs(v) <= 0.5 for level in off["mean_offset_by_symbol"] for v in level)
    md = (tmp_path / "out" / "model_limits.md").read_text()
    assert md.count("| 1 |") == 2 and "ceiling" in md
    assert "bits of y saved per level" in capsys.readouterr().out


def test_deadzone_half_is_plain_rounding_and_a_wider_deadzone_spends_fewer_bits(sar_data):
    """On the committed warm start (a trained model: an untrained decoder ignores its latents) and a real tile."""
    from sar_compress_plugin.core.preprocessing import normalise, percentile_bounds, to_db  # noqa: PLC0415
    from sar_compress_plugin.core.raster_io import RasterReader  # noqa: PLC0415
    from trainer.checkpoint import load_model  # noqa: PLC0415

    model, _ = load_model(Path(__file__).resolve().parents[2] / "checkpoints" / "warm_start_baseline.pth")
    with RasterReader(sar_data / "s1_iw_grd_berlin_512.tif") as r:
        db, valid = to_db(r.read(0, 0, 0, 128, 128), "intensity")
    x = torch.from_numpy(normalise(db, *percentile_bounds(db, valid)))[None, None].float()
    plain = model.code(x, torch.zeros(1))
    half = model.code(x, torch.zeros(1), rounding=model_limits.deadzone(0.5))
    assert torch.equal(plain["symbols"], half["symbols"])  # no exact ties in real latents
    result = model_limits.deadzone_rd(model, x, [0.3])
    assert result["0.5"]["bd_rate_percent"] == pytest.approx(0.0, abs=1e-9)
    for (b_plain, e_plain), (b_dz, e_dz) in zip(result["0.5"]["points"], result["0.3"]["points"]):
        assert b_dz < b_plain and e_dz > e_plain  # fewer bits, more error, at every level
    assert result["0.3"]["bd_rate_percent"] is not None
