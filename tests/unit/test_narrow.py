"""A cheaper decoder from a trained one (trainer/narrow.py, `sar-train --decoder-channels N --decoder-only`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sar_compress_plugin.core.errors import ModelMismatchError
from trainer.checkpoint import make_checkpoint, save_checkpoint
from trainer.cli import main
from trainer.narrow import narrow_decoder
from trainer.registry import available_models, create_model

CONFIG = {"channels": 8, "latent_channels": 8, "hyper_channels": 6, "lambdas": [0.001, 0.01]}
SCENE = Path(__file__).resolve().parents[3] / "shared" / "data" / "sar" / "s1_iw_grd_berlin_512.tif"
needs_data = pytest.mark.skipif(not SCENE.exists(), reason="shared SAR data not present")


@torch.no_grad()
def _silence(model, channels: list[int]) -> None:
    """Cut `channels` at 1/2 resolution out of g_s's output: nothing reads them, and the inverse GDN of the
    others does not see them (without this they still shift the others' normalisation)."""
    gdn, out = model.g_s[-2], model.g_s[-1]
    others = [c for c in range(out.weight.shape[0]) if c not in channels]
    out.weight[channels] = 0
    rows = torch.tensor(others)[:, None]
    gdn.gamma_root.index_put_((rows, torch.tensor(channels)[None, :]), torch.zeros(()))


@pytest.mark.parametrize("variant", available_models())
def test_narrowing_keeps_the_strongest_channels_and_their_function(variant):
    """With the channels it drops silenced, the narrow decoder is the wide one: the kept channels keep their
    weights in the layer into 1/2 resolution, its inverse GDN and the output layer, everything else is
    untouched (so the likelihoods are identical)."""
    torch.manual_seed(0)
    wide = create_model(variant, **CONFIG).eval()
    _silence(wide, [1, 4, 6])
    narrow = create_model(variant, **{**CONFIG, "decoder_channels": 5}).eval()
    kept = narrow_decoder(narrow, wide.state_dict(), None)
    assert kept == [0, 2, 3, 5, 7]
    x, level = torch.rand(2, 1, 64, 64), torch.tensor([0.0, 0.6])
    with torch.no_grad():
        a, b = wide(x, level), narrow(x, level)
    assert torch.equal(a["likelihoods"]["y"], b["likelihoods"]["y"])
    assert torch.equal(a["likelihoods"]["z"], b["likelihoods"]["z"])
    torch.testing.assert_close(a["x_hat"], b["x_hat"], rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in narrow.g_s.parameters()) < sum(p.numel() for p in wide.g_s.parameters())


def test_only_a_narrower_decoder_of_the_same_model_narrows():
    wide = create_model("baseline", **CONFIG)
    with pytest.raises(ModelMismatchError, match="cannot narrow"):
        narrow_decoder(create_model("baseline", **CONFIG), wide.state_dict(), None)
    with pytest.raises(ModelMismatchError, match="not this baseline model"):
        narrow_decoder(create_model("baseline", **{**CONFIG, "latent_channels": 12, "decoder_channels": 4}),
                       wide.state_dict(), None)


@needs_data
def test_decoder_only_run_trains_the_decoder_alone_and_resumes_so(tmp_path):
    """`sar-train --init WIDE --decoder-channels N --decoder-only`: the log names the kept channels; after
    training, every weight that decides the symbols (g_a, gains, h_a, h_s, prior, context) is the init model's,
    bit for bit, so its bundle's files decode with the new decoder; g_s and the inverse gains moved. A resume
    goes on decoder-only with the narrow shape without being told."""
    torch.manual_seed(0)
    wide = create_model("baseline", **{**CONFIG, "context_slices": 2})
    save_checkpoint(make_checkpoint(wide, epoch=1, step=10, best_val_loss=1.0, history=[], preprocessing_params={},
                                    config={}, data_summary={}), tmp_path / "wide.pth")
    run = tmp_path / "run"
    args = ["--variant", "baseline", "--data", str(SCENE), "--out", str(run), "--device", "cpu", "--patch-size",
            "64", "--batch-size", "2", "--channels", "8", "--latent-channels", "8", "--hyper-channels", "6",
            "--lambdas", "0.001", "0.01", "--context-slices", "2", "--no-progress", "--steps-per-epoch", "2",
            "--lr", "0.01"]
    assert main([*args, "--max-steps", "2", "--init", str(tmp_path / "wide.pth"), "--decoder-channels", "5",
                 "--decoder-only"]) == 0
    assert "decoder narrowed to 5 channels" in (run / "train.log").read_text()
    assert main([*args, "--max-steps", "4", "--resume"]) == 0
    last = torch.load(run / "last.pth", weights_only=True)
    assert last["step"] == 4 and last["config"]["decoder_only"] is True
    assert last["model_config"]["decoder_channels"] == 5
    before, after = wide.state_dict(), last["model_state_dict"]
    decoder = [k for k in after if k.startswith("g_s.") or k == "log_inverse_gain"]
    assert all(torch.equal(after[k], before[k]) for k in after if k not in decoder)
    assert not torch.equal(after["log_inverse_gain"], before["log_inverse_gain"])
    assert not torch.equal(after["g_s.0.weight"], before["g_s.0.weight"])
    assert all(after[k].shape == before[k].shape for k in after if not k.startswith("g_s.4.")
               and not k.startswith(("g_s.5.", "g_s.6.")))


def test_a_decoder_as_wide_as_the_transforms_starts_from_the_init_model_as_it_is(tmp_path):
    """--decoder-channels N equal to --channels builds the same network as none (e.g. the full-width arm of a
    --decoder-only comparison), but was recorded as another model shape, so its --init was refused ("cannot
    narrow a decoder of N channels at 1/2 resolution to N")."""
    from trainer.config import TrainConfig
    from trainer.train import _init_weights

    wide = create_model("baseline", **CONFIG)
    save_checkpoint(make_checkpoint(wide, epoch=1, step=10, best_val_loss=1.0, history=[], preprocessing_params={},
                                    config={}, data_summary={}), tmp_path / "wide.pth")
    model = create_model("baseline", **{**CONFIG, "decoder_channels": 8})
    _init_weights(model, TrainConfig(init=str(tmp_path / "wide.pth")), torch.device("cpu"))
    assert all(torch.equal(v, wide.state_dict()[k]) for k, v in model.state_dict().items())


@needs_data
def test_decoder_only_is_refused_where_no_trained_model_is_given_or_its_optimiser_does_not_fit(tmp_path, capsys):
    """Without --init (and nothing to resume) --decoder-only trained a decoder behind a random, frozen encoder;
    resuming a run that trained every weight with --decoder-only, or a decoder-only run with a config file
    saying `decoder_only: false` (another run's config.yaml), ended in a ValueError traceback from the
    optimiser's state. They are one line now."""
    args = ["--variant", "baseline", "--data", str(SCENE), "--device", "cpu", "--patch-size", "64", "--batch-size",
            "2", "--channels", "8", "--latent-channels", "8", "--hyper-channels", "6", "--lambdas", "0.001", "0.01",
            "--no-progress", "--steps-per-epoch", "2", "--max-steps", "1"]
    assert main([*args, "--out", str(tmp_path / "fresh"), "--decoder-only"]) == 2
    assert capsys.readouterr().err.startswith("error: --decoder-only trains the decoder of a trained model")
    assert not (tmp_path / "fresh" / "last.pth").exists()

    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "full"), "--resume", "--max-steps", "2", "--decoder-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--init" in err and "Traceback" not in err and len(err.splitlines()) == 1

    branch = tmp_path / "branch"
    assert main([*args, "--out", str(branch), "--init", str(tmp_path / "full" / "last.pth"), "--decoder-only"]) == 0
    capsys.readouterr()
    (tmp_path / "all.yaml").write_text("decoder_only: false\n")
    assert main([*args, "--out", str(branch), "--resume", "--max-steps", "2", "--config",
                 str(tmp_path / "all.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "trained only the decoder" in err and len(err.splitlines()) == 1
