"""inverted_bottleneck and expand_prelu_pool: the one-pass CPU kernel against the step-by-step reference (dtypes,
layouts, odd channel counts and sizes, every grid kind), the bf16 dot-product weights, dispatch, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.errors import UsageError
from restorekit.ops import _malleable_cpu
from restorekit.ops.bottleneck import (
    expand_prelu_pool,
    expand_prelu_pool_reference,
    inverted_bottleneck,
    inverted_bottleneck_reference,
    kernels_and_bias,
    planes,
)
from restorekit.ops.malleable_conv import malleable_conv_reference

needs_cpu_kernel = pytest.mark.skipif(not _malleable_cpu.available(), reason="no C++ compiler for the CPU kernel")

# (in channels, hidden channels, grid rows, grid cols, K): odd channel counts (a remainder only, and vector chunks
# plus a remainder); MalleNet's shape (16 → 80, a multiple of 16 lanes: the bf16 dot-product path where the CPU has
# it); ACDANet's depthwise bottleneck; a depthwise 1×1 grid; a grid coarser than the image, as fine as it (13×17
# below), and K = 1.
CASES = {
    "odd": (5, 13, 3, 4, 3),
    "remainder": (6, 37, 2, 3, 3),
    "mallenet": (16, 80, 3, 3, 3),
    "acdanet": (24, 48, 1, 1, 3),  # 24 = a full vector and a half one with AVX-512
    "depthwise": (16, 80, 1, 1, 3),
    "full_grid": (4, 20, 13, 17, 3),
    "k1": (7, 21, 2, 2, 1),
}
HEIGHT, WIDTH = 13, 17  # rows and columns not multiples of any vector or pixel block


def make_case(name: str, batch: int = 2, seed: int = 0):
    in_channels, hidden, rows, cols, k = CASES[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, HEIGHT, WIDTH, generator=g)
    expand = (torch.randn(hidden, in_channels, 1, 1, generator=g) * 0.4, torch.randn(hidden, generator=g) * 0.3)
    project = (torch.randn(in_channels, hidden, 1, 1, generator=g) * 0.3, torch.randn(in_channels, generator=g))
    grid = torch.randn(batch, (k * k + 1) * hidden, rows, cols, generator=g) * 0.5
    slopes = (torch.linspace(-0.5, 1.5, hidden), torch.linspace(1.2, -0.3, hidden))
    return x, expand, grid, project, slopes


def layout(t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if kind == "strided":  # a view every other column of a wider map: no dimension contiguous but the channels'
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype).contiguous(memory_format=torch.channels_last)
        wide[..., ::2] = t
        return wide[..., ::2]
    return t.contiguous()


def exact(x, expand, grid, project, slopes):
    """The reference in fp64 from the inputs as given (x and grid already rounded to their dtype)."""
    double = [(w.double(), b.double()) for w, b in (expand, project)]
    return inverted_bottleneck_reference(x.double(), double[0], grid.double(), double[1], *(s.double() for s in slopes))


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("memory", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("name", list(CASES))
def test_cpu_matches_the_step_by_step_reference(name, memory, dtype):
    x, expand, grid, project, slopes = make_case(name)
    x, grid = layout(x.to(dtype), memory), layout(grid.to(dtype), memory)
    with torch.inference_mode():
        out = inverted_bottleneck(x, expand, grid, project, *slopes, backend="cpu")
    want = exact(x, expand, grid, project, slopes)
    assert out.dtype == dtype and out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == (memory != "contiguous")
    scale = want.abs().max().item()
    # fp32/fp64 accumulate in their own type; bf16 and fp16 round x, the grid and the output (and, on the bf16
    # dot-product path, the weights and the filtered map, as a bf16 convolution does)
    tolerance = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 4e-3, torch.bfloat16: 2e-2}[dtype]
    assert (out.double() - want).abs().max().item() <= tolerance * max(scale, 1.0)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("memory", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("name", ["odd", "mallenet", "full_grid", "k1"])
def test_cpu_computes_the_grid_from_features_and_a_head(name, memory, dtype):
    """With a head the grid is features → 1×1 convolution, computed by the kernel a row at a time."""
    x, expand, grid, project, slopes = make_case(name)
    g = torch.Generator().manual_seed(1)
    features = torch.randn(x.shape[0], 6, *grid.shape[-2:], generator=g)
    head = (torch.randn(grid.shape[1], 6, 1, 1, generator=g) * 0.3, torch.randn(grid.shape[1], generator=g) * 0.3)
    x, features = layout(x.to(dtype), memory), layout(features.to(dtype), memory)
    with torch.inference_mode():
        out = inverted_bottleneck(x, expand, features, project, *slopes, head=head, backend="cpu")
    planes = F.conv2d(features.double(), head[0].double(), head[1].double())
    want = exact(x, expand, planes, project, slopes)
    double = [(w.double(), b.double()) for w, b in (expand, project, head)]
    slopes = [slope.double() for slope in slopes]
    reference = inverted_bottleneck_reference(x.double(), double[0], features.double(), double[1], *slopes, double[2])
    torch.testing.assert_close(reference, want)
    assert out.dtype == dtype and out.shape == x.shape
    tolerance = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2}[dtype]
    assert (out.double() - want).abs().max().item() <= tolerance * max(want.abs().max().item(), 1.0)


@needs_cpu_kernel
def test_cpu_reads_the_batch_of_a_broadcast_grid():
    """A depthwise filter's grid is one (1, P·C, 1, 1) kernel expanded over the batch (stride 0)."""
    x, expand, grid, project, slopes = make_case("depthwise", batch=3)
    shared = grid[:1].expand(3, -1, -1, -1)
    with torch.inference_mode():
        out = inverted_bottleneck(x, expand, shared, project, *slopes, backend="cpu")
    want = exact(x, expand, shared, project, slopes)
    assert (out.double() - want).abs().max().item() <= 2e-6 * max(want.abs().max().item(), 1.0)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pool", [1, 2, 4, 8])
@pytest.mark.parametrize("name", ["odd", "mallenet"])
def test_expand_prelu_pool_matches_the_reference(name, pool, dtype):
    x, expand, _, _, (slope, _) = make_case(name)
    x = layout(x.to(dtype), "channels_last")
    with torch.inference_mode():
        out = expand_prelu_pool(x, expand, slope, pool, backend="cpu")
    double = (expand[0].double(), expand[1].double())
    want = expand_prelu_pool_reference(x.double(), double, slope.double(), pool)  # 13×17: clipped edge cells
    assert out.dtype == dtype and out.shape == want.shape == (2, expand[0].shape[0], -(-13 // pool), -(-17 // pool))
    tolerance = 1e-6 if dtype == torch.float32 else 2e-2
    assert (out.double() - want).abs().max().item() <= tolerance * max(want.abs().max().item(), 1.0)


def test_the_reference_is_the_malleable_convolution_between_two_pointwise_convolutions():
    x, expand, grid, project, slopes = make_case("odd")
    kernels, bias = kernels_and_bias(grid, expand[0].shape[0])
    hidden = F.conv2d(x, *expand)
    want = x + F.conv2d(malleable_conv_reference(hidden, kernels, bias, *slopes), *project)
    torch.testing.assert_close(inverted_bottleneck_reference(x, expand, grid, project, *slopes), want)


def test_planes_and_kernels_and_bias_are_inverse_and_put_tap_t_of_channel_c_at_t_times_c():
    kernels, bias = torch.randn(2, 4 * 9, 3, 5), torch.randn(2, 4, 3, 5)
    grid = planes(kernels, bias)
    assert grid.shape == (2, 40, 3, 5)
    torch.testing.assert_close(grid[:, 7 * 4 + 2], kernels[:, 2 * 9 + 7])  # tap 7 of channel 2
    torch.testing.assert_close(grid[:, 9 * 4 + 3], bias[:, 3])
    back = kernels_and_bias(grid, 4)
    assert torch.equal(back[0], kernels) and torch.equal(back[1], bias)


@needs_cpu_kernel
def test_bf16_weights_become_dot_product_pairs_only_where_the_build_and_shape_allow():
    weight = torch.randn(80, 16, 1, 1)
    matrix, bias, pairs = _malleable_cpu._pointwise(weight, None, torch.bfloat16)
    assert matrix.shape == (16, 80) and torch.equal(bias, torch.zeros(80))
    if _malleable_cpu._bf16_dot():
        assert pairs.shape == (8, 80, 2) and pairs.dtype == torch.bfloat16
        assert pairs[3, 10, 1] == weight[10, 7, 0, 0].bfloat16()  # inputs 2p and 2p + 1 side by side
    else:
        assert pairs is None
    assert _malleable_cpu._pointwise(weight, None, torch.float32)[2] is None  # fp32 maps keep fp32 weights
    assert _malleable_cpu._pointwise(torch.randn(72, 16, 1, 1), None, torch.bfloat16)[2] is None  # 72 % 16
    assert _malleable_cpu._pointwise(torch.randn(80, 15, 1, 1), None, torch.bfloat16)[2] is None  # odd inputs


def test_with_a_gradient_to_compute_the_reference_runs_and_is_differentiable():
    x, expand, grid, project, slopes = make_case("odd")
    weight = expand[0].clone().requires_grad_()
    out = inverted_bottleneck(x, (weight, expand[1]), grid, project, *slopes)
    out.sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    with pytest.raises(UsageError, match="no gradient"):
        inverted_bottleneck(x, (weight, expand[1]), grid, project, *slopes, backend="cpu")


def test_validation_names_the_argument():
    x, expand, grid, project, slopes = make_case("odd")
    with pytest.raises(UsageError, match="inverted_bottleneck expand"):
        inverted_bottleneck(x, (expand[0][:, :3], None), grid, project)
    with pytest.raises(UsageError, match="inverted_bottleneck project"):
        inverted_bottleneck(x, expand, grid, (project[0][:, :4], None))
    with pytest.raises(UsageError, match="inverted_bottleneck grid"):
        inverted_bottleneck(x, expand, grid[:, :-1], project)
    with pytest.raises(UsageError, match="inverted_bottleneck head"):
        inverted_bottleneck(x, expand, grid, project, head=(torch.randn(130, 3, 1, 1), None))  # features have 130
    with pytest.raises(UsageError, match="slope_in"):
        inverted_bottleneck(x, expand, grid, project, slopes[0][:3])
    with pytest.raises(UsageError, match="dtypes"):
        inverted_bottleneck(x, expand, grid.double(), project)
    with pytest.raises(UsageError, match="expand_prelu_pool pool"):
        expand_prelu_pool(x, expand, slopes[0], 0)
    with pytest.raises(UsageError, match="backend"):
        inverted_bottleneck(x, expand, grid, project, backend="triton")
