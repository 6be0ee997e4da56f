"""tv_conv: gradcheck, the naive oracle, depthwise equivalence, equivariance, validation, the compiled CPU kernel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from restorekit.errors import UsageError
from restorekit.ops import _tv_cpu
from restorekit.ops.tv_conv import BACKEND_ENV, output_size, tv_conv, tv_conv_naive, tv_conv_reference

# (B, B_w, C, K, H, W, stride): odd sizes, a shared and a per-image weight map, K = 3, 5 and a K = 7 window
# wider than the image, one row, stride 1 and 2.
SHAPES = [
    (1, 1, 3, 3, 7, 9, 1),
    (2, 1, 5, 3, 7, 9, 2),
    (2, 2, 5, 5, 6, 5, 2),
    (2, 2, 3, 5, 7, 9, 1),
    (1, 1, 2, 7, 4, 5, 2),
    (2, 1, 4, 3, 1, 8, 2),
]


def make(batch, weights, channels, size, height, width, stride, dtype=torch.float64, layout="contiguous"):
    """``x`` in ``layout`` (contiguous, channels_last or every other column) and a weight map, in ``dtype``."""
    g = torch.Generator().manual_seed(height * 100 + width * 10 + channels + size + stride)
    x = torch.randn(batch, channels, height, width * 2, generator=g, dtype=torch.float64).to(dtype)
    x = x[..., ::2] if layout == "strided" else x[..., :width].contiguous()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    out_h, out_w = output_size(height, width, stride)
    weight = torch.randn(weights, channels, size * size, out_h, out_w, generator=g, dtype=torch.float64)
    return x, weight.to(dtype)


def pixel_major(weight: torch.Tensor) -> torch.Tensor:
    """The same values stored ``(B_w, H_out, W_out, K², 2·C)`` and viewed every other channel: non-contiguous."""
    weights, channels, taps, out_h, out_w = weight.shape
    storage = torch.zeros(weights, out_h, out_w, taps, 2 * channels, dtype=weight.dtype)
    storage[..., ::2] = weight.permute(0, 3, 4, 2, 1)
    return storage.permute(0, 4, 3, 1, 2)[:, ::2]


def outputs_and_grads(function, x, weight, stride, grad=None):
    leaves = [t.detach().requires_grad_() for t in (x, weight)]  # same strides: no clone
    out = function(*leaves, stride)
    if grad is None:
        grad = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
    out.backward(grad.to(out.dtype))
    return [out.detach(), *(t.grad for t in leaves)]


@pytest.mark.parametrize("shape", SHAPES[:3] + SHAPES[4:5])
def test_reference_gradcheck(shape):
    x, weight = (t.requires_grad_() for t in make(*shape))
    stride = shape[-1]
    assert torch.autograd.gradcheck(lambda *t: tv_conv_reference(*t, stride), (x, weight), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_the_naive_unfold_with_gradients(shape, layout):
    x, weight = make(*shape, layout=layout)
    expected = outputs_and_grads(tv_conv_naive, x, weight, shape[-1])
    for got, want in zip(outputs_and_grads(tv_conv_reference, x, weight, shape[-1]), expected, strict=True):
        assert got.shape == want.shape and torch.allclose(got, want, atol=1e-12)


def test_a_shared_map_gets_the_gradient_summed_over_the_batch():
    x, weight = make(2, 1, 3, 3, 7, 9, 2)
    shared = outputs_and_grads(tv_conv_reference, x, weight, 2)
    expanded = outputs_and_grads(tv_conv_reference, x, weight.expand(2, -1, -1, -1, -1).contiguous(), 2)
    assert torch.equal(shared[0], expanded[0])
    assert torch.allclose(shared[2], expanded[2].sum(0, keepdim=True), atol=1e-12)


def fast_backends() -> list[str]:
    return ["reference", "naive"] + (["cpu"] if _tv_cpu.available() else [])


def run_backend(backend: str):
    if backend == "naive":
        return tv_conv_naive
    return lambda x, weight, stride: tv_conv(x, weight, stride, backend=backend)


@pytest.mark.parametrize("backend", fast_backends())
@pytest.mark.parametrize(("size", "stride"), [(3, 1), (3, 2), (5, 2)])
def test_a_constant_map_is_a_depthwise_convolution(backend, size, stride):
    """With the same kernel at every position, TVConv is ``F.conv2d(groups=C)`` with padding K//2 (output and grads)."""
    x, _ = make(2, 1, 5, size, 7, 9, stride)
    kernel = torch.randn(5, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out_h, out_w = output_size(7, 9, stride)
    weight = kernel.reshape(1, 5, size * size, 1, 1).expand(1, 5, size * size, out_h, out_w)
    got = outputs_and_grads(run_backend(backend), x, weight, stride)
    expected = outputs_and_grads(
        lambda a, k, s: F.conv2d(a, k, stride=s, padding=size // 2, groups=5), x, kernel, stride
    )
    assert torch.allclose(got[0], expected[0], atol=1e-12) and torch.allclose(got[1], expected[1], atol=1e-12)
    assert torch.allclose(got[2].sum((3, 4)).view(kernel.shape), expected[2], atol=1e-10)


@pytest.mark.parametrize("stride", [1, 2])
def test_translation_equivariance(stride):
    """Shifting x by stride·d and the map by d shifts the output by d (away from the zero-padded border)."""
    x, weight = make(1, 1, 3, 5, 16, 16, stride)
    shift = (3, 2)
    out = tv_conv(x, weight, stride)
    moved = tv_conv(torch.roll(x, (3 * stride, 2 * stride), (2, 3)), torch.roll(weight, shift, (3, 4)), stride)
    # Outputs whose 5×5 window lies inside the image, before and after the shift.
    first, last = -(-2 // stride), (16 - 3) // stride + 1
    rows, cols = slice(3 + first, last), slice(2 + first, last)
    assert last - (3 + first) >= 2
    assert torch.allclose(torch.roll(out, shift, (2, 3))[..., rows, cols], moved[..., rows, cols], atol=1e-12)


@pytest.mark.parametrize("backend", fast_backends())
def test_a_centre_tap_copies_or_subsamples_the_input(backend):
    x, _ = make(1, 1, 3, 3, 5, 6, 1)
    for stride in (1, 2):
        weight = torch.zeros(1, 3, 9, *output_size(5, 6, stride), dtype=torch.float64)
        weight[:, :, 4] = 1.0
        assert torch.equal(run_backend(backend)(x, weight, stride), x[..., ::stride, ::stride])
    weight = torch.zeros(1, 3, 9, 5, 6, dtype=torch.float64)
    weight[:, :, 3] = 2.0  # twice the left neighbour
    out = run_backend(backend)(x, weight, 1)
    assert torch.equal(out[..., 1:], 2 * x[..., :-1]) and torch.equal(out[..., 0], torch.zeros_like(x[..., 0]))


def test_the_authors_cached_stride_2_path_reads_the_wrong_rows():
    """``TVConv_test`` views the padded input with ``as_strided`` strides ``(C·h·w, h·w, w, 1, w, s)``: the output
    row stride is ``w``, one padded row, where stride 2 needs ``2·w``. With it fixed the view is this op."""
    x, weight = make(1, 1, 3, 3, 8, 10, 2)
    padded = F.pad(x, (1, 1, 1, 1))
    channels, rows, cols = padded.shape[1:]
    view_shape = (1, channels, 3, 3, 4, 5)

    def cached(row_stride: int) -> torch.Tensor:
        strides = (channels * rows * cols, rows * cols, cols, 1, row_stride, 2)
        patches = torch.as_strided(padded, view_shape, strides)
        return (weight.view(1, channels, 3, 3, 4, 5) * patches).sum(dim=(2, 3))

    assert torch.allclose(cached(2 * cols), tv_conv_reference(x, weight, 2), atol=1e-12)
    assert not torch.allclose(cached(cols), tv_conv_reference(x, weight, 2), atol=1e-3)


@pytest.mark.parametrize(
    ("x", "weight", "stride", "match"),
    [
        (torch.randn(3, 5, 5), torch.randn(1, 3, 9, 5, 5), 1, "tv_conv x"),
        (torch.randn(1, 3, 5, 5), torch.randn(3, 9, 5, 5), 1, "tv_conv weight"),
        (torch.randn(2, 3, 5, 5), torch.randn(3, 3, 9, 5, 5), 1, "1 or 2"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 4, 9, 5, 5), 1, "tv_conv weight"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 9, 5, 5), 2, r"3, 3\) for stride 2"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 4, 5, 5), 1, "odd K"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 8, 5, 5), 1, "odd K"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 9, 5, 5), 3, "tv_conv stride.*valid: 1, 2"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 9, 5, 5, dtype=torch.float64), 1, "dtypes"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 3, 9, 5, 5, device="meta"), 1, "devices"),
    ],
)
def test_bad_inputs_are_usage_errors(x, weight, stride, match):
    with pytest.raises(UsageError, match=match):
        tv_conv(x, weight, stride)


def test_an_unknown_backend_is_a_usage_error():
    x, weight = make(1, 1, 3, 3, 5, 5, 1)
    with pytest.raises(UsageError, match=r"tv_conv backend.*valid: auto, reference, cpu, triton"):
        tv_conv(x, weight, backend="fastest")


# ------------------------------------------------------------------------------ the compiled CPU kernel ("cpu")

CPU_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}

CPU_CASES = [
    (SHAPES[0], "contiguous", torch.float64),
    (SHAPES[1], "channels_last", torch.float64),
    (SHAPES[2], "strided", torch.float64),
    (SHAPES[4], "contiguous", torch.float64),
    (SHAPES[0], "contiguous", torch.float32),
    (SHAPES[1], "channels_last", torch.float32),
    ((2, 2, 17, 3, 5, 6, 2), "strided", torch.float32),
    (SHAPES[5], "contiguous", torch.float32),
    (SHAPES[3], "channels_last", torch.float32),
    (SHAPES[1], "contiguous", torch.bfloat16),
    (SHAPES[2], "channels_last", torch.bfloat16),
    (SHAPES[1], "channels_last", torch.float16),
]


@pytest.fixture
def cpu_kernel():
    """Skip where the C++ kernel cannot be built (no compiler)."""
    if not _tv_cpu.available():
        pytest.skip("the CPU tv_conv kernel could not be built (no C++ compiler)")


def assert_cpu_parity(x, weight, stride):
    """Output and both gradients of ``backend="cpu"`` against the reference in fp64 on the same (rounded) values."""
    dtype = x.dtype
    shape = (x.shape[0], x.shape[1], *weight.shape[-2:])
    grad = torch.linspace(-1, 1, math.prod(shape), dtype=torch.float64).reshape(shape).to(dtype).double()
    expected = outputs_and_grads(tv_conv_reference, x.double(), weight.double(), stride, grad)
    results = outputs_and_grads(run_backend("cpu"), x, weight, stride, grad)
    for name, got, want in zip(("out", "grad x", "grad weight"), results, expected, strict=True):
        assert got.dtype == dtype and got.shape == want.shape, name
        error = (got.double() - want).abs().max().item()
        assert error <= CPU_TOLERANCE[dtype] * max(want.abs().max().item(), 1.0), f"{name}: max error {error:.3g}"


@pytest.mark.parametrize(("shape", "layout", "dtype"), CPU_CASES)
def test_cpu_kernel_matches_reference(cpu_kernel, shape, layout, dtype):
    x, weight = make(*shape, dtype=dtype, layout=layout)
    assert_cpu_parity(x, weight, shape[-1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[2]])
def test_cpu_kernel_takes_non_contiguous_weights(cpu_kernel, shape, dtype):
    x, weight = make(*shape, dtype=dtype, layout="strided")
    weight = pixel_major(weight)
    assert not weight.is_contiguous() and not x.is_contiguous()
    assert_cpu_parity(x, weight, shape[-1])


def test_cpu_kernel_takes_a_broadcast_weight(cpu_kernel):
    """A shared map expanded to the batch (batch stride 0) runs as per-image maps; autograd sums their gradients."""
    x, weight = make(2, 1, 5, 3, 7, 9, 2)
    expected = outputs_and_grads(tv_conv_reference, x, weight, 2)
    got = outputs_and_grads(lambda a, w, s: tv_conv(a, w.expand(2, -1, -1, -1, -1), s, backend="cpu"), x, weight, 2)
    for result, want in zip(got, expected, strict=True):
        assert torch.allclose(result, want, atol=1e-10)


def test_cpu_kernel_split_over_threads_matches_reference(cpu_kernel, monkeypatch):
    """Rows split into uneven ranges, one per thread (3 threads over 2·6 output rows, 2·11 input rows)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    for weights in (1, 2):
        x, weight = make(2, weights, 16, 3, 11, 64, 2)
        assert_cpu_parity(x, weight, 2)


@pytest.mark.parametrize("stride", [1, 2])
def test_cpu_kernel_gradcheck(cpu_kernel, stride):
    x, weight = (t.requires_grad_() for t in make(2, 1, 3, 3, 5, 5, stride, layout="strided"))
    assert torch.autograd.gradcheck(lambda *t: tv_conv(*t, stride, backend="cpu"), (x, weight), eps=1e-6, atol=1e-7)


def test_cpu_kernel_gradient_of_one_input_only(cpu_kernel):
    x, weight = make(2, 1, 5, 3, 7, 9, 2)
    for wanted in (0, 1):
        leaves = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, weight))]
        reference = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, weight))]
        tv_conv(*leaves, 2, backend="cpu").square().sum().backward()
        tv_conv_reference(*reference, 2).square().sum().backward()
        assert leaves[1 - wanted].grad is None
        assert torch.allclose(leaves[wanted].grad, reference[wanted].grad, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cpu_kernel_output_is_channels_last(cpu_kernel, dtype):
    x, weight = make(2, 1, 5, 3, 7, 9, 2, dtype=dtype)
    out = tv_conv(x, weight, 2, backend="cpu")
    assert out.shape == (2, 5, 4, 5) and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.fixture
def cpu_calls(monkeypatch):
    """Counts the calls that reach the compiled kernel."""
    calls = []
    real = _tv_cpu.tv_conv_cpu

    def spy(x, weight, stride):
        calls.append(x.dtype)
        return real(x, weight, stride)

    monkeypatch.setattr(_tv_cpu, "tv_conv_cpu", spy)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_auto_picks_the_cpu_kernel_on_the_cpu(cpu_kernel, cpu_calls, dtype):
    x, weight = make(1, 1, 5, 3, 7, 9, 1, dtype=dtype)
    out = tv_conv(x, weight)
    assert cpu_calls == [dtype] and out.is_contiguous(memory_format=torch.channels_last)
    tv_conv(x, weight, backend="reference")
    assert cpu_calls == [dtype]


def test_auto_falls_back_to_the_reference_without_the_kernel(cpu_calls, monkeypatch):
    monkeypatch.setattr(_tv_cpu, "available", lambda: False)
    x, weight = make(1, 1, 5, 3, 7, 9, 2)
    assert torch.equal(tv_conv(x, weight, 2), tv_conv_reference(x, weight, 2)) and cpu_calls == []
    with pytest.raises(UsageError, match="compiler"):
        tv_conv(x, weight, 2, backend="cpu")


def test_environment_overrides_auto_only(cpu_kernel, cpu_calls, monkeypatch):
    x, weight = make(1, 1, 5, 3, 7, 9, 1)
    monkeypatch.setenv(BACKEND_ENV, "reference")
    out = tv_conv(x, weight)
    assert cpu_calls == [] and torch.equal(out, tv_conv_reference(x, weight))
    tv_conv(x, weight, backend="cpu")  # an explicit backend wins over the environment
    assert cpu_calls == [torch.float64]
    monkeypatch.setenv(BACKEND_ENV, "cpu")
    tv_conv(x, weight)
    assert len(cpu_calls) == 2
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(UsageError, match=BACKEND_ENV):
        tv_conv(x, weight)


def test_cpu_backend_on_a_meta_tensor_is_a_usage_error(cpu_calls):
    x, weight = torch.empty(1, 3, 5, 6, device="meta"), torch.empty(1, 3, 9, 5, 6, device="meta")
    with pytest.raises(UsageError, match="CPU tensors"):
        tv_conv(x, weight, backend="cpu")
    assert cpu_calls == []


@pytest.mark.gpu
def test_cpu_backend_on_a_cuda_tensor_is_a_usage_error(cpu_calls):
    x, weight = (t.cuda() for t in make(1, 1, 5, 3, 7, 9, 1, dtype=torch.float32))
    with pytest.raises(UsageError, match="CPU tensors"):
        tv_conv(x, weight, backend="cpu")
    assert cpu_calls == []


@pytest.mark.parametrize("shape", [(0, 1, 3, 3, 5, 5, 2), (2, 1, 3, 3, 0, 5, 1), (2, 2, 0, 3, 5, 5, 2)])
def test_cpu_kernel_backward_of_an_empty_batch_image_or_channel_set(cpu_kernel, shape):
    x, weight = (t.requires_grad_() for t in make(*shape))
    out = tv_conv(x, weight, shape[-1], backend="cpu")
    assert out.shape == (shape[0], shape[2], *weight.shape[-2:])
    out.sum().backward()
    assert x.grad.shape == x.shape and weight.grad.shape == weight.shape
    assert torch.equal(weight.grad, torch.zeros_like(weight))
