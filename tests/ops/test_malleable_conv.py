"""malleable_conv: the reference (gradcheck, naive oracle, identity), validation, dispatch, the CPU backend and
the PReLU slopes fused into its pass."""

from __future__ import annotations

import importlib

import pytest
import torch

from restorekit.errors import BackendError, UsageError
from restorekit.ops import _malleable_cpu, malleable_conv, malleable_conv_naive, malleable_conv_reference
from restorekit.ops._backend import pick_backend

malleable_conv_module = importlib.import_module("restorekit.ops.malleable_conv")  # the package re-exports the function

# Largest error allowed, relative to the largest magnitude of the float64 reference result.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 4e-3}

# (B, C, H, W, h, w, K): odd sizes that are not multiples of the grid, non-integer ratios, a grid as large as
# and larger than the image, C with a full 16-channel chunk plus a remainder, a one-row image.
SHAPES = [
    (1, 3, 13, 11, 3, 2, 3),
    (2, 5, 17, 23, 4, 5, 3),
    (2, 16, 19, 21, 3, 3, 1),
    (1, 16, 24, 32, 3, 4, 3),
    (1, 20, 9, 35, 2, 5, 3),
    (2, 5, 9, 7, 9, 7, 3),
    (1, 3, 5, 6, 7, 9, 1),
    (1, 5, 1, 9, 1, 2, 3),
]

needs_cpu_kernel = pytest.mark.skipif(not _malleable_cpu.available(), reason="no C++ compiler for the CPU kernel")


def make_inputs(batch, channels, height, width, rows, cols, kernel_size, dtype=torch.float64, layout="contiguous"):
    generator = torch.Generator().manual_seed(height * 1000 + width * 10 + channels)
    x = torch.randn(batch, channels, height, width * 2, generator=generator, dtype=torch.float64)
    kernels = torch.randn(batch, channels * kernel_size**2, rows, cols, generator=generator, dtype=torch.float64)
    bias = torch.randn(batch, channels, rows, cols, generator=generator, dtype=torch.float64)
    x, kernels, bias = (t.to(dtype) for t in (x, kernels, bias))
    x = x[..., ::2] if layout == "strided" else x[..., :width].contiguous()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, kernels, bias


def outputs_and_grads(function, x, kernels, bias):
    inputs = [t.detach().clone().requires_grad_() for t in (x, kernels, bias)]
    out = function(*inputs)
    grad = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape).to(out.dtype)
    out.backward(grad)
    return [out.detach(), *(t.grad for t in inputs)]


def assert_matches(results, expected, dtype):
    for name, got, want in zip(("out", "grad x", "grad kernels", "grad bias"), results, expected, strict=True):
        assert got.dtype == dtype, name
        error = (got.double() - want).abs().max().item()
        assert error <= TOLERANCE[dtype] * max(want.abs().max().item(), 1.0), f"{name}: max error {error:.3g}"


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_reference_gradcheck(kernel_size):
    x, kernels, bias = make_inputs(1, 2, 5, 6, 2, 3, kernel_size)
    inputs = [t.requires_grad_() for t in (x, kernels, bias)]
    assert torch.autograd.gradcheck(malleable_conv_reference, inputs)


@pytest.mark.parametrize("shape", SHAPES[:4])
def test_reference_matches_naive(shape):
    x, kernels, bias = make_inputs(*shape)
    torch.testing.assert_close(malleable_conv_reference(x, kernels, bias), malleable_conv_naive(x, kernels, bias))


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu_kernel)])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_identity_kernels_give_x(backend, kernel_size):
    x, _, _ = make_inputs(2, 5, 11, 9, 3, 2, kernel_size, dtype=torch.float32)
    kernels = torch.zeros(2, 5, kernel_size**2, 3, 2)
    kernels[:, :, kernel_size**2 // 2] = 1
    out = malleable_conv(x, kernels.flatten(1, 2), torch.zeros(2, 5, 3, 2), backend=backend)
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize(
    ("x_shape", "kernels_shape", "bias_shape"),
    [
        ((1, 4, 8, 8), (1, 36, 2, 2), (1, 4, 2)),  # bias not 4-D
        ((4, 8, 8), (1, 36, 2, 2), (1, 4, 2, 2)),  # x not 4-D
        ((1, 4, 8, 8), (1, 36, 2, 2), (2, 4, 2, 2)),  # batch mismatch
        ((1, 4, 8, 8), (1, 36, 2, 2), (1, 3, 2, 2)),  # channel mismatch
        ((1, 4, 8, 8), (1, 36, 2, 3), (1, 4, 2, 2)),  # grid mismatch
        ((1, 4, 8, 8), (1, 16, 2, 2), (1, 4, 2, 2)),  # K = 2
        ((1, 4, 8, 8), (1, 30, 2, 2), (1, 4, 2, 2)),  # not C·K²
    ],
)
def test_bad_shapes_raise(x_shape, kernels_shape, bias_shape):
    with pytest.raises(UsageError, match="malleable_conv"):
        malleable_conv(torch.zeros(x_shape), torch.zeros(kernels_shape), torch.zeros(bias_shape))


def test_dtype_mismatch_raises():
    with pytest.raises(UsageError, match="dtypes"):
        malleable_conv(torch.zeros(1, 2, 4, 4), torch.zeros(1, 18, 2, 2, dtype=torch.float64), torch.zeros(1, 2, 2, 2))


def test_unknown_backend_raises(monkeypatch):
    args = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    with pytest.raises(UsageError, match="valid: auto, reference, cpu, triton"):
        malleable_conv(*args, backend="cuda")
    monkeypatch.setenv(malleable_conv_module.BACKEND_ENV, "fast")
    with pytest.raises(UsageError, match="RESTOREKIT_MALLEABLE_BACKEND"):
        malleable_conv(*args)


def test_triton_backend_on_cpu_tensors_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    args = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)
    with pytest.raises(UsageError, match="triton"):
        malleable_conv(*args, backend="triton")


def test_auto_dispatch_on_cpu(monkeypatch):
    x, backends = torch.zeros(1, 2, 4, 4), malleable_conv_module.BACKENDS
    monkeypatch.delenv(malleable_conv_module.BACKEND_ENV, raising=False)
    expected = "cpu" if _malleable_cpu.available() else "reference"
    assert pick_backend(backends, "auto", x) == expected
    monkeypatch.setenv(malleable_conv_module.BACKEND_ENV, "reference")
    assert pick_backend(backends, "auto", x) == "reference"
    if expected == "cpu":
        assert pick_backend(backends, "cpu", x) == "cpu"  # an argument beats the variable
    monkeypatch.setattr(_malleable_cpu, "available", lambda: False)  # no compiler: a forced 'cpu' says so
    with pytest.raises(BackendError, match="malleable_conv backend 'cpu': expected a C\\+\\+ compiler"):
        pick_backend(backends, "cpu", x)
    with pytest.raises(BackendError, match="compiler"):
        malleable_conv(x, torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), backend="cpu")


@needs_cpu_kernel
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_matches_reference(shape, layout):
    x, kernels, bias = make_inputs(*shape, layout=layout)
    expected = outputs_and_grads(malleable_conv_reference, x, kernels, bias)
    results = outputs_and_grads(lambda *t: malleable_conv(*t, backend="cpu"), x, kernels, bias)
    assert_matches(results, expected, torch.float64)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2], SHAPES[4]])
def test_cpu_matches_reference_low_precision(shape, layout, dtype):
    x, kernels, bias = make_inputs(*shape, dtype=dtype, layout=layout)
    expected = outputs_and_grads(malleable_conv_reference, x.double(), kernels.double(), bias.double())
    results = outputs_and_grads(lambda *t: malleable_conv(*t, backend="cpu"), x, kernels, bias)
    assert_matches(results, expected, dtype)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_reads_channel_slices_of_a_channels_last_predictor_output(shape, dtype):
    # What a kernel predictor's head gives: one channels_last map, split into kernels and bias (channel stride 1,
    # pixel stride C·(K² + 1)), the layout whose grid rows the kernel transposes cell by cell.
    x, kernels, bias = make_inputs(*shape, dtype=dtype, layout="channels_last")
    head = torch.cat([kernels, bias], dim=1).contiguous(memory_format=torch.channels_last)
    sliced = head.split([kernels.shape[1], bias.shape[1]], dim=1)
    assert sliced[0].stride(1) == sliced[1].stride(1) == 1
    expected = outputs_and_grads(malleable_conv_reference, x.double(), kernels.double(), bias.double())
    results = outputs_and_grads(lambda *t: malleable_conv(*t, backend="cpu"), x, *sliced)
    assert_matches(results, expected, dtype)


@needs_cpu_kernel
def test_cpu_gradcheck():
    x, kernels, bias = make_inputs(1, 3, 7, 6, 3, 2, 3, layout="channels_last")
    inputs = [t.requires_grad_() for t in (x, kernels, bias)]
    assert torch.autograd.gradcheck(lambda *t: malleable_conv(*t, backend="cpu"), inputs)


@needs_cpu_kernel
def test_cpu_keeps_memory_format_and_is_deterministic():
    x, kernels, bias = make_inputs(2, 16, 40, 33, 5, 4, 3, dtype=torch.float32, layout="channels_last")
    first = outputs_and_grads(lambda *t: malleable_conv(*t, backend="cpu"), x, kernels, bias)
    second = outputs_and_grads(lambda *t: malleable_conv(*t, backend="cpu"), x, kernels, bias)
    assert first[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@needs_cpu_kernel
def test_cpu_only_requested_gradients_and_broadcast_grad():
    x, kernels, bias = make_inputs(1, 5, 9, 10, 2, 3, 3)
    kernels.requires_grad_()
    malleable_conv(x, kernels, bias, backend="cpu").sum().backward()  # grad_out has zero strides
    expected = torch.autograd.grad(malleable_conv_reference(x, kernels, bias).sum(), kernels)[0]
    torch.testing.assert_close(kernels.grad, expected)


def make_slopes(channels, dtype=torch.float64):
    """Negative-part slopes on both sides of 0 and 1 (a PReLU may learn any)."""
    return torch.linspace(-0.5, 1.5, channels, dtype=dtype)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [*SHAPES[:5], (2, 20, 9, 11, 1, 1, 3), (1, 17, 8, 6, 1, 1, 1)])
def test_cpu_slopes_inside_the_pass_match_the_reference(shape, layout, dtype):
    x, kernels, bias = make_inputs(*shape, dtype=dtype, layout=layout)
    slope_in, slope_out = make_slopes(shape[1]), make_slopes(shape[1]).flip(0)
    for slopes in ((slope_in, slope_out), (slope_in, None), (None, slope_out)):
        with torch.inference_mode():
            got = malleable_conv(x, kernels, bias, "cpu", *slopes)
        want = malleable_conv_reference(x.double(), kernels.double(), bias.double(), *slopes)
        assert got.dtype == dtype and got.shape == x.shape
        error = (got.double() - want).abs().max().item()
        assert error <= TOLERANCE[dtype] * max(want.abs().max().item(), 1.0), f"max error {error:.3g}"


@needs_cpu_kernel
def test_cpu_slopes_keep_memory_format():
    x, kernels, bias = make_inputs(1, 20, 12, 10, 2, 2, 3, dtype=torch.float32, layout="channels_last")
    out = malleable_conv(x, kernels, bias, "cpu", make_slopes(20, torch.float32), make_slopes(20, torch.float32))
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_a_one_cell_grid_is_a_depthwise_convolution(kernel_size):
    x, _, _ = make_inputs(2, 5, 9, 8, 1, 1, kernel_size, dtype=torch.float32, layout="channels_last")
    weight, bias = torch.randn(5, 1, kernel_size, kernel_size), torch.randn(5)
    grid = weight.reshape(1, -1, 1, 1).expand(2, -1, -1, -1), bias.reshape(1, 5, 1, 1).expand(2, -1, -1, -1)
    expected = torch.nn.functional.conv2d(x, weight, bias, padding=kernel_size // 2, groups=5)
    torch.testing.assert_close(malleable_conv(x, *grid), expected)


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=needs_cpu_kernel)])
def test_slopes_with_autograd_run_around_the_filter(backend):
    x, kernels, bias = make_inputs(1, 4, 7, 9, 2, 3, 3)
    slope_in, slope_out = make_slopes(4), make_slopes(4).flip(0)
    inputs = [t.requires_grad_() for t in (x, kernels, bias, slope_in, slope_out)]
    assert torch.autograd.gradcheck(lambda *t: malleable_conv(*t[:3], backend, *t[3:]), inputs)


@pytest.mark.parametrize("slope", [torch.zeros(4), torch.zeros(5, 1), torch.zeros(5, dtype=torch.long), 0.1])
def test_bad_slopes_raise(slope):
    x, kernels, bias = make_inputs(1, 5, 6, 6, 2, 2, 3, dtype=torch.float32)
    with pytest.raises(UsageError, match="slope_in"):
        malleable_conv(x, kernels, bias, slope_in=slope)


@needs_cpu_kernel
def test_cpu_forward_is_the_same_on_any_number_of_threads():
    x, kernels, bias = make_inputs(1, 16, 64, 128, 8, 16, 3, dtype=torch.float32, layout="channels_last")
    slopes = make_slopes(16, torch.float32), None
    threads = torch.get_num_threads()
    outs = []
    try:
        for count in (1, 2, 3):  # split over 1 to 3 threads (by OpenMP or by the caller), rows are independent
            torch.set_num_threads(count)
            with torch.inference_mode():
                outs.append((malleable_conv(x, kernels, bias, "cpu"), malleable_conv(x, kernels, bias, "cpu", *slopes)))
    finally:
        torch.set_num_threads(threads)
    for plain, activated in outs[1:]:
        assert torch.equal(plain, outs[0][0]) and torch.equal(activated, outs[0][1])
