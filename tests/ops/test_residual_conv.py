"""residual_conv: the oneDNN sum post-op against the reference, and its checks."""

from __future__ import annotations

import pytest
import torch

from restorekit.errors import BackendError, UsageError
from restorekit.ops.residual_conv import BACKENDS, residual_conv, residual_conv_reference

needs_onednn = pytest.mark.skipif(not BACKENDS.cpu.available(), reason="PyTorch without oneDNN")
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


def inputs(dtype, shape=(2, 6, 7, 9), inner=5, layout=torch.channels_last, bias=True):
    torch.manual_seed(0)
    b, c, h, w = shape
    x = torch.randn(b, c, h, w).to(dtype=dtype, memory_format=layout)
    inner_map = torch.randn(b, inner, h, w).to(dtype=dtype, memory_format=layout)
    return inner_map, x, torch.randn(c, inner, 1, 1), torch.randn(c) if bias else None


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("bias", [True, False])
def test_the_onednn_sum_matches_the_reference(dtype, layout, bias):
    h, x, weight, b = inputs(dtype, layout=layout, bias=bias)
    out = residual_conv(h, x, weight, b, backend="cpu")
    expected = residual_conv_reference(h.float(), x.float(), weight, b)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out.float(), expected, atol=TOLERANCE[dtype] * 10, rtol=TOLERANCE[dtype])
    assert out.is_contiguous(memory_format=layout)


@needs_onednn
def test_non_contiguous_inputs_and_odd_shapes_run():
    h, x, weight, b = inputs(torch.float32, shape=(1, 3, 5, 11), inner=4, layout=torch.contiguous_format)
    h_view, x_view = h.transpose(2, 3), x.transpose(2, 3)  # strided views
    out = residual_conv(h_view, x_view, weight, b, backend="cpu")
    torch.testing.assert_close(out, residual_conv_reference(h_view, x_view, weight, b), atol=1e-5, rtol=1e-5)


def test_auto_takes_the_reference_for_gradients():
    h, x, weight, b = inputs(torch.float32)
    h.requires_grad_(True)
    out = residual_conv(h, x, weight, b)
    out.sum().backward()
    assert h.grad is not None and h.grad.shape == h.shape
    with pytest.raises(BackendError, match="no gradient"):
        residual_conv(h, x, weight, b, backend="cpu")


def test_mismatched_inputs_are_refused():
    h, x, weight, b = inputs(torch.float32)
    with pytest.raises(UsageError, match="residual_conv x"):
        residual_conv(h, x[:, :, :3], weight, b)
    with pytest.raises(UsageError, match="residual_conv dtypes"):
        residual_conv(h, x.double(), weight, b)
    with pytest.raises(UsageError, match="residual_conv weight"):
        residual_conv(h, x, weight[:, :2], b)
