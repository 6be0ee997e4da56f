"""prelu: the one-pass CPU kernel against F.prelu (dtypes, layouts, channel remainders), dispatch, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.errors import UsageError
from restorekit.ops import _malleable_cpu, prelu, prelu_reference

needs_cpu_kernel = pytest.mark.skipif(not _malleable_cpu.available(), reason="no C++ compiler for the CPU kernel")

# Channel counts: a remainder only, full vector chunks, chunks plus a remainder (16 lanes with AVX-512, 8 with AVX2).
CHANNELS = [3, 16, 37]


def make_input(channels, layout, dtype):
    x = torch.randn(2, channels, 7, 11 * 2, generator=torch.Generator().manual_seed(channels)).to(dtype)
    if layout == "strided":
        return x[..., ::2]
    x = x[..., :11].contiguous()
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("channels", CHANNELS)
def test_cpu_matches_f_prelu(channels, layout, dtype):
    x = make_input(channels, layout, dtype)
    slope = torch.linspace(-0.5, 1.5, channels)
    with torch.inference_mode():
        out = prelu(x, slope, backend="cpu")
    expected = F.prelu(x.double(), slope.double())
    assert out.dtype == dtype and out.shape == x.shape
    if dtype in (torch.float32, torch.float64):  # the same arithmetic in the same precision: bit for bit
        assert torch.equal(out, F.prelu(x, slope.to(dtype)))
    else:  # one rounding to the storage type (fp16 products below its subnormals become 0)
        torch.testing.assert_close(out.double(), expected, rtol=2**-7, atol=1e-7)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("channels", CHANNELS)
@pytest.mark.parametrize("pool", [2, 4, 8])
def test_cpu_pooled_matches_avg_pool_of_f_prelu(pool, channels, layout, dtype):
    x = make_input(channels, layout, dtype)  # 7×11: clipped edge cells on both axes for every pool size
    slope = torch.linspace(-0.5, 1.5, channels)
    with torch.inference_mode():
        out = prelu(x, slope, backend="cpu", pool=pool)
        reference = prelu(x, slope, backend="reference", pool=pool)
    expected = F.avg_pool2d(F.prelu(x.double(), slope.double()), pool, ceil_mode=True)
    assert out.dtype == dtype and out.shape == expected.shape == reference.shape
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 2**-7}[dtype]
    torch.testing.assert_close(out.double(), expected, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(reference.double(), expected, rtol=2 * tolerance, atol=2 * tolerance)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@needs_cpu_kernel
def test_cpu_keeps_memory_format():
    x = make_input(16, "channels_last", torch.bfloat16)
    assert prelu(x, torch.full((16,), 0.1), backend="cpu").is_contiguous(memory_format=torch.channels_last)
    assert prelu(x.contiguous(), torch.full((16,), 0.1), backend="cpu").is_contiguous()


def test_auto_uses_the_reference_where_a_gradient_is_needed(monkeypatch):
    calls = []
    monkeypatch.setattr(_malleable_cpu, "prelu_cpu", lambda x, slope: calls.append(x) or F.prelu(x, slope))
    x, slope = torch.randn(1, 3, 4, 4, requires_grad=True), torch.full((3,), 0.25, requires_grad=True)
    prelu(x, slope).sum().backward()
    assert not calls and x.grad is not None and slope.grad is not None
    with torch.no_grad():
        prelu(x, slope)
    assert len(calls) == int(_malleable_cpu.available())


def test_reference_is_f_prelu_in_the_input_dtype():
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    assert torch.equal(
        prelu_reference(x, torch.full((4,), 0.25)), F.prelu(x, torch.full((4,), 0.25, dtype=torch.float64))
    )


@pytest.mark.parametrize("slope", [torch.zeros(3), torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), 0.1])
def test_bad_slope_raises(slope):
    with pytest.raises(UsageError, match="prelu slope"):
        prelu(torch.zeros(1, 4, 2, 2), slope)


def test_bad_pool_raises():
    with pytest.raises(UsageError, match="pool"):
        prelu(torch.ones(1, 2, 4, 4), torch.ones(2), pool=0)


def test_bad_input_and_backend_raise():
    with pytest.raises(UsageError, match="prelu x"):
        prelu(torch.zeros(4, 2, 2), torch.zeros(4))
    with pytest.raises(UsageError, match="prelu backend"):
        prelu(torch.zeros(1, 4, 2, 2), torch.zeros(4), backend="triton")
    x = torch.zeros(1, 4, 2, 2, requires_grad=True)
    with pytest.raises(UsageError, match="no gradient"):
        prelu(x, torch.zeros(4), backend="cpu")
