"""shuffle_conv: the strided and phase-major forms against the literal shuffle compositions, values and gradients."""

from __future__ import annotations

import pytest
import torch

from restorekit.errors import UsageError
from restorekit.ops.shuffle_conv import (
    conv_shuffle,
    conv_shuffle_reference,
    unshuffle_conv,
    unshuffle_conv_reference,
)

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 5e-2}
LAYOUTS = {
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "contiguous": lambda t: t.contiguous(),
    "strided": lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),  # a non-contiguous view (H and W swapped)
}


def close(actual, expected, dtype):
    torch.testing.assert_close(actual.double(), expected.double(), atol=TOLERANCE[dtype] * 10, rtol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kernel, padding", [(1, 0), (3, 1), (3, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_unshuffle_conv_matches_the_literal_composition(dtype, layout, kernel, padding, bias):
    torch.manual_seed(0)
    x = LAYOUTS[layout](torch.randn(2, 3, 10, 14)).to(dtype)
    weight, b = torch.randn(5, 12, kernel, kernel, dtype=dtype), torch.randn(5, dtype=dtype) if bias else None
    out = unshuffle_conv(x, weight, b, padding)
    assert out.dtype == dtype
    close(out, unshuffle_conv_reference(x.double(), weight.double(), None if b is None else b.double(), padding), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kernel, padding", [(1, 0), (3, 1)])
@pytest.mark.parametrize("with_add", [True, False])
def test_conv_shuffle_matches_the_literal_composition(dtype, layout, kernel, padding, with_add):
    torch.manual_seed(0)
    x = LAYOUTS[layout](torch.randn(2, 5, 7, 9)).to(dtype)
    weight, b = torch.randn(12, 5, kernel, kernel, dtype=dtype), torch.randn(12, dtype=dtype)
    add = LAYOUTS[layout](torch.randn(2, 3, 14, 18)).to(dtype) if with_add else None
    out = conv_shuffle(x, weight, b, padding, add)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    expected = conv_shuffle_reference(
        x.double(), weight.double(), b.double(), padding, None if add is None else add.double()
    )
    close(out, expected, dtype)


def test_every_gradient_matches_the_reference():
    torch.manual_seed(0)
    leaves = [
        torch.randn(1, 2, 6, 10, dtype=torch.float64),
        torch.randn(3, 8, 3, 3, dtype=torch.float64),
        torch.randn(3, dtype=torch.float64),
        torch.randn(8, 3, 1, 1, dtype=torch.float64),
        torch.randn(8, dtype=torch.float64),
        torch.randn(1, 2, 6, 10, dtype=torch.float64),
    ]

    def run(down, up, x, w_down, b_down, w_up, b_up, add):
        return up(down(x, w_down, b_down, 1), w_up, b_up, 0, add)

    grads = []
    for down, up in ((unshuffle_conv, conv_shuffle), (unshuffle_conv_reference, conv_shuffle_reference)):
        tensors = [t.clone().requires_grad_(True) for t in leaves]
        out = run(down, up, *tensors)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape))
        grads.append([t.grad for t in tensors])
    for fast, reference in zip(*grads, strict=True):
        torch.testing.assert_close(fast, reference, atol=1e-10, rtol=1e-10)
    torch.autograd.gradcheck(lambda *t: run(unshuffle_conv, conv_shuffle, *t), [t.requires_grad_() for t in leaves])


def test_conv_shuffle_without_bias_and_with_an_add_of_another_layout_and_dtype():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 6, 5).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 4, 3, 3)
    add = torch.randn(1, 2, 12, 10, dtype=torch.float64)  # NCHW, float64: the sum is float64, as the reference's
    out = conv_shuffle(x, weight, None, 1, add)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, conv_shuffle_reference(x, weight, None, 1, add), atol=1e-5, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, reference = conv_shuffle(x, weight, None, 1), conv_shuffle_reference(x, weight, None, 1)
    assert fast.dtype == reference.dtype == torch.bfloat16
    close(fast, reference, torch.bfloat16)


def test_bad_shapes_are_refused():
    with pytest.raises(UsageError, match="even height and width"):
        unshuffle_conv(torch.rand(1, 2, 5, 6), torch.rand(3, 8, 1, 1), None, 0)
    with pytest.raises(UsageError, match="unshuffle_conv weight"):
        unshuffle_conv(torch.rand(1, 2, 4, 6), torch.rand(3, 4, 1, 1), None, 0)
    with pytest.raises(UsageError, match="multiple of 4"):
        conv_shuffle(torch.rand(1, 2, 4, 6), torch.rand(6, 2, 1, 1), None, 0)
    with pytest.raises(UsageError, match="conv_shuffle add"):
        conv_shuffle(torch.rand(1, 2, 4, 6), torch.rand(8, 2, 1, 1), None, 0, torch.rand(1, 2, 8, 10))
