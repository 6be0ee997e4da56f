"""Inference twins: a fused inverted bottleneck computes the eager one; fuse() swaps blocks and shares parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from restorekit.layers import FusedInvertedBottleneck, InvertedBottleneck, MalleConv, fuse
from restorekit.layers.acda import DynamicBottleneck
from restorekit.layers.fused import FusedStaticBottleneck, fusable, pooling
from restorekit.models.acdanet import ACDANet


def randomized(block: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter drawn at random, PReLU slopes on both sides of 0 and 1, so no part of the block is idle."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in block.named_parameters():
            scale = 1.0 if name.endswith(("act1.weight", "act2.weight")) else 0.3
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return block.eval()


def bottlenecks() -> dict[str, InvertedBottleneck]:
    return {
        "depthwise": InvertedBottleneck(6),
        "malleconv": InvertedBottleneck(4, mixer=MalleConv(20, 8, kernel_size=3, stride=4)),
        "malleconv_k1": InvertedBottleneck(4, mixer=MalleConv(20, 8, kernel_size=1, stride=2)),
        "malleconv_s8": InvertedBottleneck(4, mixer=MalleConv(20, 8, kernel_size=3, stride=8)),
        "malleconv_s1": InvertedBottleneck(4, mixer=MalleConv(20, 8, kernel_size=3, stride=1)),  # no pooling
        "pointwise": InvertedBottleneck(5, mixer=nn.Conv2d(25, 25, 1, groups=25)),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kind", list(bottlenecks()))
def test_fused_bottleneck_computes_the_eager_one(kind, layout, dtype):
    block = randomized(bottlenecks()[kind]).to(memory_format=layout)
    assert fusable(block)
    fused = FusedInvertedBottleneck(block)
    x = torch.randn(2, block.expand.in_channels, 21, 30).to(memory_format=layout)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    with torch.inference_mode(), autocast:
        want, got = block(x), fused(x)
    assert got.dtype == want.dtype and got.shape == x.shape
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2  # bf16: the eager path rounds between the steps
    assert (got.float() - want.float()).abs().max().item() <= tolerance * max(want.abs().max().item(), 1.0)


def test_fused_bottleneck_is_differentiable_like_the_eager_one():
    block = randomized(bottlenecks()["depthwise"])
    x = torch.randn(1, 6, 9, 8, requires_grad=True)
    FusedInvertedBottleneck(block)(x).sum().backward()
    fused_grads = [x.grad.clone(), *(p.grad.clone() for p in block.parameters())]
    x.grad = None
    block.zero_grad()
    block(x).sum().backward()
    for got, want in zip(fused_grads, [x.grad, *(p.grad for p in block.parameters())], strict=True):
        torch.testing.assert_close(got, want)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.body = nn.Sequential(InvertedBottleneck(6), nn.Identity(), InvertedBottleneck(6))
        self.dilated = InvertedBottleneck(6, mixer=nn.Conv2d(30, 30, 3, padding=2, dilation=2, groups=30))
        self.name = "net"

    def forward(self, x):
        return self.dilated(self.body(self.stem(x)))


def test_fuse_swaps_fusable_blocks_and_leaves_the_model_untouched():
    net = randomized(Net())
    twin = fuse(net)
    assert twin is not net and twin.name == "net" and twin.stem is net.stem
    assert [type(m).__name__ for m in twin.body] == ["FusedInvertedBottleneck", "Identity", "FusedInvertedBottleneck"]
    assert [type(m).__name__ for m in net.body] == ["InvertedBottleneck", "Identity", "InvertedBottleneck"]
    assert twin.body[0].block is net.body[0] and twin.dilated is net.dilated  # a dilated mixer stays eager
    assert {id(p) for p in twin.parameters()} == {id(p) for p in net.parameters()}
    x = torch.randn(1, 3, 12, 10)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), net(x), rtol=1e-5, atol=1e-5)


def test_fuse_sees_weights_changed_in_place_and_keeps_hooks_apart():
    net = randomized(Net())
    twin = fuse(net)
    with torch.no_grad():
        net.body[2].act2.weight.fill_(0.5)
        net.body[2].project.bias.add_(1.0)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), net(x), rtol=1e-5, atol=1e-5)
    handle = twin.register_forward_hook(lambda *args: None)
    assert not net._forward_hooks
    handle.remove()


def test_fuse_returns_a_model_without_bottlenecks_itself():
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    assert fuse(net) is net


def test_pooling_is_what_the_one_pass_prelu_can_pool():
    assert pooling(nn.AvgPool2d(4, ceil_mode=True)) == 4
    assert pooling(MalleConv(20, 8, stride=8).predictor.body[0]) == 4
    assert pooling(nn.AvgPool2d(4)) == 0  # floor mode drops edge cells: not what prelu(pool=4) computes
    assert pooling(nn.AvgPool2d(3, stride=2, ceil_mode=True)) == 0
    assert pooling(nn.AvgPool2d(2, ceil_mode=True, padding=1)) == 0
    assert pooling(nn.AvgPool2d(2, ceil_mode=True, divisor_override=3)) == 0
    assert pooling(nn.Conv2d(2, 2, 1)) == 0


def static_bottleneck(channels: int = 8, kernel_size: int = 3) -> DynamicBottleneck:
    return randomized(DynamicBottleneck(channels, "static", kernel_size, 0, 0, 0))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_a_fused_static_bottleneck_computes_the_eager_one(layout, kernel_size):
    block = static_bottleneck(kernel_size=kernel_size).to(memory_format=layout)
    assert fusable(block)
    fused = fuse(block)
    assert isinstance(fused, FusedStaticBottleneck) and fused.block is block
    x = torch.randn(2, 8, 9, 13).to(memory_format=layout)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), block(x), atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # in autocast's precision, like the eager block's convs
            half, eager = fused(x), block(x)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), eager.float(), atol=0.1, rtol=0.05)


def test_static_bottlenecks_with_a_tvconv_or_an_acda_mixer_are_left_alone():
    assert not fusable(DynamicBottleneck(8, "static", 3, 0, 0, 0, layout=True))
    assert not fusable(DynamicBottleneck(8, "acda", 3, 2, 2, 4))
    net = ACDANet(3, width=4, quarter_width=8, blocks=2, mixer="static", eighth_width=8, eighth_blocks=1).eval()
    twin = fuse(net)
    kinds = {type(module).__name__ for module in twin.modules()}
    assert "FusedStaticBottleneck" in kinds and "DynamicBottleneck" in kinds  # the blocks inside their twins
    x = torch.rand(1, 3, 24, 32)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), net(x), atol=1e-5, rtol=1e-5)
