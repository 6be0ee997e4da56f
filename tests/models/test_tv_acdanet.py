"""tv_acdanet_s: ACDANet-S with TVConv layers; layout-aware, blind, and its twin's equal at the start."""

from __future__ import annotations

import torch
from torch import nn

from restorekit.layers.tv_conv import TVConv, frame_coordinates
from restorekit.models import create_model
from restorekit.models._registry import architecture
from restorekit.models.acdanet import ACDANet


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with its TVConv layers (which start as no-ops) and residual branches given random weights."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, TVConv):
                module.affinity.normal_(1.0, 0.5)
                module.generator[-1].weight.normal_(0, 0.3)
        for block in model.body:
            block.expand.weight.normal_(0, 0.1)
    return model.eval()


def test_tv_acdanet_s_is_layout_aware_blind_and_tileable():
    model = create_model("tv_acdanet_s", pretrained=False)
    req = model.requirements
    assert req.layout_aware and req.sigma_range is None and req.tiling == "supported"
    assert req.task == "denoise" and req.in_channels == req.out_channels == 3 and req.size_multiple == 4
    assert [block.tv is not None for block in model.body] == [True, False, True, False, True, False]
    assert model.hyperparameters["tv_blocks"] == 3
    assert "uncropped" in architecture("tv_acdanet_s").build.__doc__  # what `restorekit` says about it


def test_the_twin_has_no_tv_conv_and_keeps_its_weights_layout():
    twin = create_model("acdanet_s", pretrained=False)
    assert not twin.requirements.layout_aware
    assert not any("tv" in key for key in twin.state_dict())
    tv = create_model("tv_acdanet_s", pretrained=False)
    assert set(twin.state_dict()) < set(tv.state_dict())


def test_it_starts_as_its_twin_whatever_the_frame():
    model = create_model("tv_acdanet_s", pretrained=False)
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        a = model(x, frame=frame_coordinates(32, 40))
        b = model(x, frame=frame_coordinates(64, 80)[..., 32:, 40:])
    assert torch.equal(a, b)


def test_the_frame_moves_the_output_and_none_means_the_whole_frame():
    model = randomized(ACDANet(width=8, quarter_width=16, blocks=2, generator_width=4, tv_blocks=1))
    x = torch.rand(2, 3, 24, 36)
    with torch.no_grad():
        whole = model(x, frame=frame_coordinates(24, 36))
        implicit = model(x)
        corner = model(x, frame=frame_coordinates(48, 72)[..., 24:, 36:])
        per_image = model(x, frame=torch.cat([frame_coordinates(24, 36), frame_coordinates(48, 72)[..., 24:, 36:]]))
    assert torch.allclose(implicit, whole, atol=1e-6)
    assert not torch.allclose(corner, whole, atol=1e-3)
    assert torch.allclose(per_image[0], whole[0], atol=1e-6) and torch.allclose(per_image[1], corner[1], atol=1e-6)


def test_training_reaches_the_affinity_maps_through_the_model():
    model = randomized(ACDANet(width=8, quarter_width=16, blocks=2, generator_width=4, tv_blocks=2)).train()
    x = torch.rand(2, 3, 16, 16)
    model(x, frame=frame_coordinates(16, 16)).square().mean().backward()
    assert all(block.tv.affinity.grad.abs().sum() > 0 for block in model.body)
