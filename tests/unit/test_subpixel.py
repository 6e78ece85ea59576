"""The decoder's export form: every transposed convolution as a convolution plus a pixel shuffle, the same
function of the same weights (export/subpixel.py)."""

import pytest
import torch
from torch import nn

from export.subpixel import SubPixelConv, with_subpixel_convolutions
from trainer.models.layers import deconv
from trainer.registry import available_models, create_model


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_subpixel_conv_equals_the_transposed_convolution(kernel):
    torch.manual_seed(kernel)
    layer = deconv(6, 5, kernel)
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        want, got = layer(x), SubPixelConv(layer)(x)
    assert got.shape == want.shape == (2, 5, 14, 18)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant", available_models())
def test_every_variants_decoder_is_rewritten_to_the_same_function(variant):
    torch.manual_seed(0)
    model = create_model(variant, channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.01, 0.1]).eval()
    g_s = with_subpixel_convolutions(model.g_s)
    kept = [m for m in g_s.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.out_channels for m in kept] == [1]  # only the one-channel output layer stays transposed
    assert any(isinstance(m, SubPixelConv) for m in g_s.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in model.g_s.modules()) > 1  # the trained model is untouched
    y = torch.randn(1, 16, 5, 6) * 3
    with torch.no_grad():
        assert torch.allclose(g_s(y), model.g_s(y), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(4, 4, 5, stride=1, padding=2),
                                   nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1),
                                   nn.ConvTranspose2d(4, 4, 5, stride=2, padding=2)])
def test_other_transposed_convolutions_are_refused(layer):
    with pytest.raises(ValueError, match="not a stride-2"):
        SubPixelConv(layer)
