"""Triton tv_conv kernels: forward and backward parity with the reference (interpreter on CPU, CUDA on GPU).

As for the other kernels, the interpreted tests run in a fresh process with ``TRITON_INTERPRET=1`` set before
Triton is imported (``test_under_interpreter``); the interpreter is slow, hence a few tiny cases.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from restorekit.ops.tv_conv import output_size, tv_conv, tv_conv_reference

pytest.importorskip("triton")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
interpreted_only = pytest.mark.skipif(not INTERPRETING, reason="runs in test_under_interpreter's process")

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 4e-3}

# (B, B_w, C, K, H, W, stride), x layout, weight layout, dtype: odd sizes, shared and per-image maps, stride 1
# and 2, K = 3 and 5, C over one channel block, a one-row image, non-contiguous x and weights.
CASES = [
    ((1, 1, 3, 3, 7, 9, 1), "contiguous", "contiguous", torch.float32),
    ((2, 1, 5, 3, 7, 9, 2), "channels_last", "pixel_major", torch.float32),
    ((2, 2, 5, 5, 6, 5, 2), "strided", "contiguous", torch.float64),
    ((2, 1, 17, 3, 1, 8, 2), "contiguous", "contiguous", torch.float32),
    ((1, 1, 5, 3, 7, 6, 2), "channels_last", "contiguous", torch.float16),
    ((2, 2, 5, 3, 7, 6, 1), "contiguous", "pixel_major", torch.bfloat16),
]


def make_inputs(batch, weights, channels, size, height, width, stride, layout, weight_layout, dtype, device="cpu"):
    g = torch.Generator().manual_seed(height * 100 + width * 10 + channels + stride)
    out_h, out_w = output_size(height, width, stride)
    x = torch.randn(batch, channels, height, width * 2, generator=g, dtype=torch.float64)
    weight = torch.randn(weights, out_h, out_w, size * size, 2 * channels, generator=g, dtype=torch.float64)
    x, weight = (t.to(device=device, dtype=dtype) for t in (x, weight))
    x = x[..., ::2] if layout == "strided" else x[..., :width].contiguous()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    weight = weight.permute(0, 4, 3, 1, 2)[:, ::2]  # pixel-major storage, every other channel
    return x, weight if weight_layout == "pixel_major" else weight.contiguous()


def outputs_and_grads(function, x, weight, stride):
    inputs = [t.detach().requires_grad_() for t in (x, weight)]
    out = function(*inputs, stride)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape).to(out))
    return [out.detach(), *(t.grad for t in inputs)]


def assert_parity(shape, layout, weight_layout, dtype, device="cpu"):
    x, weight = make_inputs(*shape, layout, weight_layout, dtype, device)
    stride = shape[-1]
    expected = outputs_and_grads(tv_conv_reference, x.double(), weight.double(), stride)
    results = outputs_and_grads(lambda *t: tv_conv(*t, backend="triton"), x, weight, stride)
    for name, got, want in zip(("out", "grad x", "grad weight"), results, expected, strict=True):
        assert got.dtype == dtype and got.shape == want.shape, name
        error = (got.double() - want).abs().max().item()
        # A shared map's gradient sums B images' products: scale the bound by B.
        scale = max(want.abs().max().item(), 1.0) * (math.sqrt(shape[0]) if name == "grad weight" else 1.0)
        assert error <= TOLERANCE[dtype] * scale, f"{name}: max error {error:.3g}"


@pytest.mark.skipif(INTERPRETING, reason="this is the interpreted process")
def test_under_interpreter():
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-m", "not gpu"]
    command += ["-k", "interpreted"]
    environment = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(command, cwd=Path(__file__).parents[2], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"{len(CASES)} passed" in done.stdout, done.stdout[-2000:]


@interpreted_only
@pytest.mark.parametrize(("shape", "layout", "weight_layout", "dtype"), CASES)
def test_interpreted_kernel_matches_reference(shape, layout, weight_layout, dtype):
    assert_parity(shape, layout, weight_layout, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETING, reason="needs a CUDA device, compiled")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("layout", "weight_layout"), [("contiguous", "contiguous"), ("channels_last", "pixel_major")])
@pytest.mark.parametrize("shape", [(4, 1, 64, 3, 67, 45, 1), (2, 2, 32, 5, 128, 97, 2), (8, 1, 48, 3, 57, 64, 2)])
def test_cuda_kernel_matches_reference(shape, layout, weight_layout, dtype):
    assert_parity(shape, layout, weight_layout, dtype, device="cuda")
