"""ACDANet: the declared receptive field covers what an output pixel can see."""

from __future__ import annotations

import pytest
import torch

from restorekit.models import acdanet
from restorekit.models._architectures import architecture, list_architectures


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


ACDANETS = [name for name in list_architectures() if architecture(name).family is acdanet.ACDANet]
VARIANTS = {
    "static 5×5": {"mixer": "static", "kernel_size": 5, "blocks": 4},
    "eighth level first": {"mixer": "static", "blocks": 3, "eighth_width": 16, "eighth_blocks": 2, "eighth_after": 0},
    "eighth level last": {"mixer": "static", "blocks": 3, "eighth_width": 16, "eighth_blocks": 2, "eighth_after": 3},
}


def randomised(model: acdanet.ACDANet) -> acdanet.ACDANet:
    """Random weights everywhere: zero-initialised layers would hide part of the reach."""
    torch.manual_seed(0)
    with torch.no_grad():
        for value in model.parameters():
            value.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("name", ACDANETS)
def test_the_receptive_field_covers_the_reach_of_every_output_pixel(name):
    assert {"acdanet_m_static", "acdanet_m3_static", "acdanet_m3s_static", "tv_acdanet_s"} <= set(ACDANETS)
    model = randomised(architecture(name).build())
    declared = model.requirements.receptive_field
    seen = reach(model, side=2 * declared + 32)
    assert seen <= declared
    assert seen > declared - 8  # tight: a loose field costs every tile its overlap


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_receptive_field_follows_the_kernel_and_the_eighth_level(variant):
    model = randomised(acdanet.ACDANet(3, width=8, quarter_width=16, **VARIANTS[variant]))
    declared = model.requirements.receptive_field
    assert declared - 8 < reach(model, side=2 * declared + 32) <= declared
