"""Triton atom_conv kernels: forward and backward parity with the reference (interpreter on CPU, CUDA on GPU).

As for the malleable kernels, the interpreted tests run in a fresh process with ``TRITON_INTERPRET=1`` set
before Triton is imported (``test_under_interpreter``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from restorekit.ops.atom_conv import atom_conv, atom_conv_reference

pytest.importorskip("triton")

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
interpreted_only = pytest.mark.skipif(not INTERPRETING, reason="runs in test_under_interpreter's process")

TOLERANCE = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-2, torch.float16: 4e-3}

# (B, C, M, K, H, W), layout, dtype: odd sizes, a one-row image, C over one channel block, K = 3 and 5.
CASES = [
    ((1, 3, 2, 3, 7, 9), "contiguous", torch.float32),
    ((2, 5, 3, 5, 6, 5), "channels_last", torch.float32),
    ((1, 17, 2, 3, 5, 6), "strided", torch.float32),
    ((1, 4, 1, 3, 1, 8), "contiguous", torch.float32),
    ((1, 5, 2, 3, 7, 6), "channels_last", torch.float16),
    ((1, 5, 2, 3, 7, 6), "contiguous", torch.bfloat16),
    ((2, 3, 2, 5, 6, 7), "contiguous", torch.float64),
]


def make_inputs(batch, channels, atoms, size, height, width, layout, dtype, device="cpu"):
    g = torch.Generator().manual_seed(height * 100 + width * 10 + channels)
    x = torch.randn(batch, channels, height, width * 2, generator=g, dtype=torch.float64)
    atom_maps = torch.randn(batch, atoms, size * size, height, width, generator=g, dtype=torch.float64)
    x, atom_maps = (t.to(device=device, dtype=dtype) for t in (x, atom_maps))
    x = x[..., ::2] if layout == "strided" else x[..., :width].contiguous()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, atom_maps


def outputs_and_grads(function, x, atoms):
    inputs = [t.detach().clone().requires_grad_() for t in (x, atoms)]
    out = function(*inputs)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape).to(out))
    return [out.detach(), *(t.grad for t in inputs)]


def assert_parity(shape, layout, dtype, device="cpu"):
    x, atoms = make_inputs(*shape, layout, dtype, device)
    expected = outputs_and_grads(atom_conv_reference, x.double(), atoms.double())
    results = outputs_and_grads(lambda *t: atom_conv(*t, backend="triton"), x, atoms)
    for name, got, want in zip(("out", "grad x", "grad atoms"), results, expected, strict=True):
        assert got.dtype == dtype, name
        error = (got.double() - want).abs().max().item()
        assert error <= TOLERANCE[dtype] * max(want.abs().max().item(), 1.0), f"{name}: max error {error:.3g}"


@pytest.mark.skipif(INTERPRETING, reason="this is the interpreted process")
def test_under_interpreter():
    command = [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-m", "not gpu"]
    command += ["-k", "interpreted"]
    environment = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(command, cwd=Path(__file__).parents[2], env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"{len(CASES)} passed" in done.stdout, done.stdout[-2000:]


@interpreted_only
@pytest.mark.parametrize(("shape", "layout", "dtype"), CASES)
def test_interpreted_kernel_matches_reference(shape, layout, dtype):
    assert_parity(shape, layout, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETING, reason="needs a CUDA device, compiled")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [(2, 64, 6, 5, 67, 45), (1, 32, 4, 3, 128, 96)])
def test_cuda_kernel_matches_reference(shape, layout, dtype):
    assert_parity(shape, layout, dtype, device="cuda")
