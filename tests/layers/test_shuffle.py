"""UnshuffleConv and ConvShuffle: the convolutions they hold, around a pixel-(un)shuffle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.layers.shuffle import ConvShuffle, UnshuffleConv


def test_the_layers_are_the_convolutions_they_hold_around_a_shuffle():
    torch.manual_seed(0)
    down, up = UnshuffleConv(12, 4, 3, padding=1), ConvShuffle(4, 12, 1)
    assert set(down.state_dict()) == set(up.state_dict()) == {"weight", "bias"}  # weights files: the convolutions'
    x = torch.randn(1, 3, 8, 6)
    with torch.no_grad():
        inner = F.conv2d(F.pixel_unshuffle(x, 2), down.weight, down.bias, padding=1)
        torch.testing.assert_close(down(x), inner, atol=1e-5, rtol=1e-5)
        expected = x + F.pixel_shuffle(F.conv2d(inner, up.weight, up.bias), 2)
        torch.testing.assert_close(up(inner, add=x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(up(inner), expected - x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "settings",
    [
        {"stride": 2},
        {"dilation": 2},
        {"groups": 2},
        {"padding": "same"},
        {"padding": (1, 0)},
        {"padding": 1, "padding_mode": "reflect"},
    ],
)
@pytest.mark.parametrize("layer", [UnshuffleConv, ConvShuffle])
def test_settings_the_shuffle_ops_do_not_take_are_refused(layer, settings):
    with pytest.raises(ValueError, match="square kernel, stride 1"):
        layer(8, 8, 3, **settings)
