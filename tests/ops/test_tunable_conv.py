"""tunable_conv and tunable_prelu: gradcheck of the reference, the grouped fast path against it, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.errors import UsageError
from restorekit.ops.tunable_conv import mix_experts, tunable_conv, tunable_conv_reference, tunable_prelu

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}

# (B, C_in, C_out, H, W, K, stride, padding, dilation, groups, p): regular, depthwise, pointwise, strided,
# dilated, grouped, odd sizes, one sample, three experts.
CASES = [
    (3, 4, 6, 9, 11, 3, 1, 1, 1, 1, 2),
    (2, 6, 6, 13, 7, 3, 1, 1, 1, 6, 2),
    (2, 5, 7, 8, 9, 1, 1, 0, 1, 1, 2),
    (2, 4, 4, 12, 10, 3, 2, 1, 1, 1, 2),
    (2, 4, 8, 11, 11, 3, 1, 2, 2, 2, 3),
    (1, 3, 5, 7, 5, 5, 2, 2, 1, 1, 2),
]


def make(case, dtype=torch.float64, strided=False):
    batch, c_in, c_out, height, width, k, _, _, _, groups, p = case
    g = torch.Generator().manual_seed(height * 100 + width)
    x = torch.randn(batch, c_in, height, width * 2 if strided else width, generator=g, dtype=dtype)
    x = x[..., ::2] if strided else x
    weight = torch.randn(p, c_out, c_in // groups, k, k, generator=g, dtype=dtype)
    bias = torch.randn(p, c_out, generator=g, dtype=dtype)
    alpha = torch.randn(batch, p, generator=g, dtype=dtype)
    return x, weight, bias, alpha


def conv_args(case):
    return dict(zip(("stride", "padding", "dilation", "groups"), case[6:10], strict=True))


@pytest.mark.parametrize("case", CASES[:3] + CASES[4:5])
def test_reference_gradcheck(case):
    x, weight, bias, alpha = (t.requires_grad_() for t in make(case))
    assert torch.autograd.gradcheck(
        lambda *t: tunable_conv_reference(*t, **conv_args(case)), (x, weight, bias, alpha), eps=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_grouped_path_matches_reference_with_gradients(case, strided, dtype):
    inputs = make(case, dtype, strided)
    results = []
    for function in (tunable_conv, tunable_conv_reference):
        leaves = [t.detach().clone().requires_grad_() for t in inputs]
        out = function(*leaves, **conv_args(case))
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype).view(out.shape))
        results.append([out.detach(), *(t.grad for t in leaves)])
    for name, got, want in zip(("out", "x", "weight", "bias", "alpha"), *results, strict=True):
        scale = max(want.abs().max().item(), 1.0)
        assert (got - want).abs().max().item() <= TOLERANCE[dtype] * scale, name


def test_one_alpha_for_the_batch_is_one_plain_convolution_of_the_mixed_kernel():
    x, weight, bias, _ = make(CASES[0])
    alpha = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    expected = F.conv2d(x, 0.3 * weight[0] + 0.7 * weight[1], 0.3 * bias[0] + 0.7 * bias[1], padding=1)
    assert torch.allclose(tunable_conv(x, weight, bias, alpha, padding=1), expected, atol=1e-12)
    per_sample = tunable_conv(x, weight, bias, alpha.expand(x.shape[0], -1), padding=1)
    assert torch.allclose(per_sample, expected, atol=1e-12)


def test_each_sample_gets_its_own_mixture():
    x, weight, _, _ = make(CASES[0])
    alpha = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    out = tunable_conv(x, weight, None, alpha, padding=1)
    for b in range(3):
        mixed = alpha[b, 0] * weight[0] + alpha[b, 1] * weight[1]
        assert torch.allclose(out[b : b + 1], F.conv2d(x[b : b + 1], mixed, padding=1), atol=1e-12)


def test_prelu_mixes_slopes_per_sample_and_matches_prelu_when_shared():
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    slopes = torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.1, 0.0]], dtype=torch.float64)
    alpha = torch.tensor([[0.25, 0.75], [1.0, 0.0]], dtype=torch.float64)
    out = tunable_prelu(x, slopes, alpha)
    for b in range(2):
        assert torch.allclose(out[b : b + 1], F.prelu(x[b : b + 1], alpha[b] @ slopes), atol=1e-12)
    shared = tunable_prelu(x, slopes, alpha[:1])
    assert torch.allclose(shared, F.prelu(x, alpha[0] @ slopes), atol=1e-12)
    x.requires_grad_()
    slopes.requires_grad_()
    alpha.requires_grad_()
    assert torch.autograd.gradcheck(tunable_prelu, (x, slopes, alpha), eps=1e-6, atol=1e-7)


def test_mix_experts_keeps_the_trailing_shape():
    experts = torch.randn(2, 4, 3, 3, 3)
    assert mix_experts(experts, torch.rand(5, 2)).shape == (5, 4, 3, 3, 3)


@pytest.mark.parametrize(
    ("x", "weight", "bias", "alpha", "match"),
    [
        (torch.randn(2, 4, 8, 8), torch.randn(2, 6, 3, 3, 3), None, torch.rand(2, 2), "weight"),
        (torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 3, 3), None, torch.rand(3, 2), "alpha"),
        (torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 3, 3), None, torch.rand(2, 3), "alpha"),
        (torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 3, 3), torch.randn(3, 6), torch.rand(2, 2), "bias"),
        (torch.randn(4, 8, 8), torch.randn(2, 6, 4, 3, 3), None, torch.rand(2, 2), "x"),
    ],
)
def test_bad_shapes_are_usage_errors(x, weight, bias, alpha, match):
    with pytest.raises(UsageError, match=match):
        tunable_conv(x, weight, bias, alpha, padding=1)
