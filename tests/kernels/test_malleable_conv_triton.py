"""Triton malleable_conv kernels: forward and backward parity with the reference.

On CPU the kernels run under the Triton interpreter, which Triton chooses when ``triton`` and every
``@triton.jit`` function (its own ``tl.cdiv``, ``tl.sum`` … included) are first imported, so the interpreted
tests need ``TRITON_INTERPRET=1`` before anything imports Triton: ``test_under_interpreter`` reruns this file in
a fresh process with it set. The interpreter is slow, hence small shapes (one 16×16 tile) and a trimmed grid.
The CUDA test runs in the ordinary, compiled process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import restorekit_kernels.malleable_conv as triton_kernels
import torch

from restorekit.ops import malleable_conv, malleable_conv_reference

pytest.importorskip("triton")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
interpreted_only = pytest.mark.skipif(not INTERPRETING, reason="runs in test_under_interpreter's process")

# Largest error allowed, relative to the largest magnitude of the float64 reference result.
TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def make_inputs(batch, channels, height, width, rows, cols, kernel_size, layout, dtype, device="cpu"):
    generator = torch.Generator().manual_seed(height * 1000 + width * 10 + channels)
    x = torch.randn(batch, channels, height, width * 2, generator=generator, dtype=torch.float64)
    kernels = torch.randn(batch, channels * kernel_size**2, rows, cols, generator=generator, dtype=torch.float64)
    bias = torch.randn(batch, channels, rows, cols, generator=generator, dtype=torch.float64)
    x, kernels, bias = (t.to(device=device, dtype=dtype) for t in (x, kernels, bias))
    x = x[..., ::2] if layout == "strided" else x[..., :width].contiguous()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, kernels, bias


def outputs_and_grads(function, x, kernels, bias):
    inputs = [t.detach().clone().requires_grad_() for t in (x, kernels, bias)]
    out = function(*inputs)
    grad = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape).to(out)
    out.backward(grad)
    return [out.detach(), *(t.grad for t in inputs)]


def assert_parity(function, shape, layout, dtype, device="cpu"):
    x, kernels, bias = make_inputs(*shape, layout, dtype, device)
    expected = outputs_and_grads(malleable_conv_reference, x.double(), kernels.double(), bias.double())
    results = outputs_and_grads(function, x, kernels, bias)
    assert results[0].is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    for name, got, want in zip(("out", "grad x", "grad kernels", "grad bias"), results, expected, strict=True):
        assert got.dtype == dtype, name
        error = (got.double() - want).abs().max().item()
        assert error <= TOLERANCE[dtype] * max(want.abs().max().item(), 1.0), f"{name}: max error {error:.3g}"


# (B, C, H, W, h, w, K), layout, dtype: odd sizes off the grid, non-integer ratios, C ∈ {3, 5, 16}, both K and B.
CASES = [
    ((1, 3, 7, 9, 2, 3, 3), "contiguous", torch.float32),
    ((2, 5, 13, 11, 3, 2, 3), "channels_last", torch.float32),
    ((1, 16, 11, 13, 3, 4, 1), "strided", torch.float32),
    ((2, 3, 9, 7, 9, 7, 1), "contiguous", torch.float32),
    ((1, 5, 13, 11, 3, 2, 3), "channels_last", torch.float16),
    ((1, 5, 13, 11, 3, 2, 3), "contiguous", torch.bfloat16),
    ((1, 5, 9, 10, 2, 3, 3), "contiguous", torch.float64),
]


@pytest.mark.skipif(INTERPRETING, reason="this is the interpreted process")
def test_under_interpreter():
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-m", "not gpu"]
    command += ["-k", "interpreted"]
    environment = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(command, cwd=Path(__file__).parents[2], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"{len(CASES) + 1} passed" in done.stdout, done.stdout[-2000:]


@interpreted_only
@pytest.mark.parametrize(("shape", "layout", "dtype"), CASES)
def test_interpreted_kernel_matches_reference(shape, layout, dtype):
    assert_parity(lambda *t: triton_kernels.malleable_conv_triton(*t, shape[-1]), shape, layout, dtype)


@interpreted_only
def test_interpreted_grid_gradient_is_deterministic():
    x, kernels, bias = make_inputs(1, 5, 13, 11, 3, 2, 3, "contiguous", torch.float32)
    first = outputs_and_grads(lambda *t: triton_kernels.malleable_conv_triton(*t, 3), x, kernels, bias)
    second = outputs_and_grads(lambda *t: triton_kernels.malleable_conv_triton(*t, 3), x, kernels, bias)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETING, reason="needs a CUDA device, compiled")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [(2, 16, 67, 45, 9, 6, 3), (1, 32, 128, 96, 16, 12, 3), (2, 5, 33, 31, 5, 4, 1)])
def test_cuda_kernel_matches_reference(shape, layout, dtype):
    assert_parity(lambda *t: malleable_conv(*t, backend="triton"), shape, layout, dtype, device="cuda")
