"""ACDANet: the declared receptive field covers what an output pixel can see."""

from __future__ import annotations

import pytest
import torch

from restorekit.models import acdanet


def reach(model: acdanet.ACDANet, side: int) -> int:
    """The farthest input pixel (each side, Chebyshev) with a gradient on an output pixel, over every phase of the
    size multiple (a pixel's place in its unshuffled 2×2, 4×4 and 8×8 blocks changes what it sees)."""
    farthest = 0
    for phase in range(model.requirements.size_multiple):
        x = torch.rand(1, model.requirements.in_channels, side, side, requires_grad=True)
        centre = side // 2 + phase
        model(x)[0, :, centre, centre].sum().backward()
        seen = (x.grad[0].abs().sum(0) > 0).nonzero()
        farthest = max(farthest, (seen - centre).abs().max().item())
    return farthest


@pytest.mark.parametrize(
    "name", ["acdanet_s", "acdanet_s_static", "acdanet_m_static", "acdanet_m3_static", "acdanet_m3s_static"]
)
def test_the_receptive_field_covers_the_reach_of_every_output_pixel(name):
    torch.manual_seed(0)
    model = getattr(acdanet, name)()
    with torch.no_grad():  # random weights everywhere: zero-initialised layers would hide part of the reach
        for value in model.parameters():
            value.normal_(0, 0.3)
    declared = model.requirements.receptive_field
    seen = reach(model, side=2 * declared + 32)
    assert seen <= declared
    assert seen > declared - 8  # tight: a loose field costs every tile its overlap
