"""upsample_concat: the one-pass CPU kernel against F.interpolate + torch.cat (dtypes, layouts, odd and equal
sizes), dispatch, validation."""

from __future__ import annotations

import pytest
import torch

from restorekit.errors import UsageError
from restorekit.ops import _malleable_cpu
from restorekit.ops.upsample import upsample_concat, upsample_concat_reference

needs_cpu_kernel = pytest.mark.skipif(not _malleable_cpu.available(), reason="no C++ compiler for the CPU kernel")

# (features' channels, coarse channels, H, W, h, w): MalleNet's 2× (16 lanes), odd channels (half vectors and
# scalars) and sizes that are not multiples (uneven cell runs), a coarse map of one column, the same size (a copy).
SHAPES = [(16, 16, 32, 32, 16, 16), (5, 13, 21, 30, 11, 15), (3, 7, 9, 8, 3, 1), (4, 24, 8, 8, 8, 8)]


def make(shape, dtype, layout):
    channels, coarse_channels, height, width, rows, cols = shape
    g = torch.Generator().manual_seed(sum(shape))
    features = torch.randn(2, channels, height, width, generator=g).to(dtype)
    coarse = torch.randn(2, coarse_channels, rows, cols, generator=g).to(dtype)
    if layout == "channels_last":
        return tuple(t.contiguous(memory_format=torch.channels_last) for t in (features, coarse))
    if layout == "strided":  # columns contiguous: neither layout
        return tuple(t.transpose(2, 3).contiguous().transpose(2, 3) for t in (features, coarse))
    return features, coarse


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_matches_interpolate_and_cat(shape, layout, dtype):
    features, coarse = make(shape, dtype, layout)
    with torch.inference_mode():
        out = upsample_concat(features, coarse, backend="cpu")
    want = upsample_concat_reference(features.double(), coarse.double())
    assert out.dtype == dtype and out.shape == want.shape
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    assert torch.equal(out[:, : shape[0]], features)  # the features' channels are copied
    # fp32/fp64: the interpolation's own rounding; bf16 and fp16: one rounding of the result to the storage type
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 2**-10, torch.bfloat16: 2**-7}[dtype]
    torch.testing.assert_close(out.double(), want, rtol=tolerance, atol=tolerance)


def test_with_a_gradient_to_compute_the_reference_runs():
    features, coarse = make(SHAPES[1], torch.float32, "contiguous")
    coarse.requires_grad_()
    upsample_concat(features, coarse).sum().backward()
    assert coarse.grad is not None and coarse.grad.shape == coarse.shape
    with pytest.raises(UsageError, match="no gradient"):
        upsample_concat(features, coarse, backend="cpu")


def test_validation_names_the_argument():
    features, coarse = make(SHAPES[1], torch.float32, "contiguous")
    with pytest.raises(UsageError, match="upsample_concat coarse"):
        upsample_concat(features, coarse[:1])
    with pytest.raises(UsageError, match="upsample_concat dtypes"):
        upsample_concat(features, coarse.double())
    with pytest.raises(UsageError, match="backend"):
        upsample_concat(features, coarse, backend="triton")
