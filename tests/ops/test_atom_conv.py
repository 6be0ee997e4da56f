"""atom_conv and the Fourier–Bessel bases: gradcheck, the naive oracle, equivariance, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from restorekit.errors import UsageError
from restorekit.ops import _atom_cpu
from restorekit.ops.atom_conv import BACKEND_ENV, atom_conv, atom_conv_naive, atom_conv_reference
from restorekit.ops.fourier_bessel import fourier_bessel_bases, scale_bases

SHAPES = [(1, 3, 2, 3, 7, 9), (2, 5, 3, 5, 6, 5), (1, 4, 1, 3, 1, 8), (2, 2, 4, 7, 9, 4)]  # (B, C, M, K, H, W)


def make(batch, channels, atoms, size, height, width, dtype=torch.float64, strided=False):
    g = torch.Generator().manual_seed(height * 100 + width * 10 + size)
    x = torch.randn(batch, channels, height, width * 2 if strided else width, generator=g, dtype=dtype)
    x = x[..., ::2] if strided else x
    return x, torch.randn(batch, atoms, size * size, height, width, generator=g, dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_reference_gradcheck(shape):
    x, atoms = (t.requires_grad_() for t in make(*shape))
    assert torch.autograd.gradcheck(atom_conv_reference, (x, atoms), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_the_naive_unfold_with_gradients(shape, strided):
    x, atoms = make(*shape, strided=strided)
    results = []
    for function in (atom_conv_reference, atom_conv_naive):
        leaves = [t.detach().clone().requires_grad_() for t in (x, atoms)]
        out = function(*leaves)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape))
        results.append([out.detach(), *(t.grad for t in leaves)])
    for got, want in zip(*results, strict=True):
        assert torch.allclose(got, want, atol=1e-12)


def test_responses_are_channel_major_and_a_centre_tap_copies_the_input():
    x, _ = make(1, 3, 2, 3, 5, 6)
    atoms = torch.zeros(1, 2, 9, 5, 6, dtype=torch.float64)
    atoms[:, 0, 4] = 1.0  # atom 0: the identity; atom 1: twice the left neighbour
    atoms[:, 1, 3] = 2.0
    out = atom_conv(x, atoms)
    assert torch.equal(out[:, 0::2], x)
    assert torch.equal(out[:, 1::2, :, 1:], 2 * x[..., :-1])
    assert torch.equal(out[:, 1::2, :, 0], torch.zeros_like(x[..., 0]))


def test_translation_equivariance():
    """Shifting the input and the atoms together shifts the output (away from the zero-padded border)."""
    x, atoms = make(1, 3, 2, 5, 16, 16)
    out = atom_conv(x, atoms)
    shifted = atom_conv(torch.roll(x, (3, 2), (2, 3)), torch.roll(atoms, (3, 2), (3, 4)))
    assert torch.allclose(torch.roll(out, (3, 2), (2, 3))[..., 5:-2, 4:-2], shifted[..., 5:-2, 4:-2], atol=1e-12)


@pytest.mark.parametrize(
    ("x", "atoms", "match"),
    [
        (torch.randn(1, 3, 5, 5), torch.randn(1, 2, 9, 5, 4), "atoms"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 2, 4, 5, 5), "odd K"),
        (torch.randn(1, 3, 5, 5), torch.randn(1, 2, 9, 5, 5, dtype=torch.float64), "dtypes"),
        (torch.randn(3, 5, 5), torch.randn(1, 2, 9, 5, 5), "x"),
    ],
)
def test_bad_inputs_are_usage_errors(x, atoms, match):
    with pytest.raises(UsageError, match=match):
        atom_conv(x, atoms)


def test_fourier_bessel_bases_are_the_release_table():
    """3×3: 8 bases; the first is radial (DC-like), the next two are x/y derivatives; scaled to mean norm 1."""
    bases = scale_bases(1)
    assert bases.shape == (8, 3, 3)
    assert np.allclose(bases[0], bases[0].T) and np.allclose(bases[0], bases[0][::-1, ::-1])
    assert np.allclose(bases[1], -bases[1][::-1]) and np.allclose(bases[2], bases[1].T)
    assert np.square(bases).sum(axis=(1, 2)).mean() == pytest.approx(1.0)
    assert bases[0][1, 1] == pytest.approx(0.665, abs=1e-3) and bases[0][0, 1] == pytest.approx(0.302, abs=1e-3)
    assert scale_bases(2).shape == (24, 5, 5)


def test_multi_scale_bases_are_padded_scale_by_scale():
    bases = fourier_bessel_bases(5, 6)
    assert bases.shape == (12, 5, 5)
    assert torch.equal(bases[:6, 0], torch.zeros(6, 5)) and torch.equal(bases[:6, :, 4], torch.zeros(6, 5))
    assert np.allclose(bases[:6, 1:4, 1:4].numpy(), scale_bases(1)[:6])
    with pytest.raises(ValueError):
        fourier_bessel_bases(4, 6)


# ------------------------------------------------------------------------------ the compiled CPU kernel ("cpu")

CPU_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}

# (B, C, M, K, H, W), layout, dtype: odd sizes, K = 3, 5 and a K = 7 window wider than the image, one row.
CPU_CASES = [
    ((1, 5, 3, 3, 7, 9), "contiguous", torch.float64),
    ((2, 5, 3, 5, 7, 9), "channels_last", torch.float64),
    ((1, 3, 2, 7, 4, 5), "strided", torch.float64),
    ((1, 5, 3, 3, 7, 9), "contiguous", torch.float32),
    ((1, 5, 3, 5, 7, 9), "channels_last", torch.float32),
    ((2, 17, 2, 3, 5, 6), "strided", torch.float32),
    ((1, 4, 1, 3, 1, 8), "contiguous", torch.float32),
    ((1, 5, 3, 3, 7, 9), "contiguous", torch.bfloat16),
    ((1, 5, 2, 5, 7, 6), "channels_last", torch.bfloat16),
    ((1, 5, 2, 3, 7, 6), "channels_last", torch.float16),
]


@pytest.fixture
def cpu_kernel():
    """Skip where the C++ kernel cannot be built (no compiler)."""
    if not _atom_cpu.available():
        pytest.skip("the CPU atom_conv kernel could not be built (no C++ compiler)")


def cpu_inputs(batch, channels, atoms, size, height, width, layout, dtype, atom_layout="contiguous"):
    """``x`` in ``layout`` (contiguous, channels_last or every other column) and atoms, both in ``dtype``."""
    g = torch.Generator().manual_seed(height * 100 + width * 10 + channels + size)
    x = torch.randn(batch, channels, height, width * 2, generator=g, dtype=torch.float64).to(dtype)
    x = x[..., ::2] if layout == "strided" else x[..., :width].contiguous()
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if atom_layout == "contiguous":
        maps = torch.randn(batch, atoms, size * size, height, width, generator=g, dtype=torch.float64)
    else:  # pixel-major storage, and every other atom of twice as many
        maps = torch.randn(batch, height, width, size * size, 2 * atoms, generator=g, dtype=torch.float64)
        maps = maps.permute(0, 4, 3, 1, 2)[:, ::2]
    return x, maps.to(dtype)


def cpu_outputs_and_grads(function, x, atoms, grad):
    inputs = [t.detach().clone().requires_grad_() for t in (x, atoms)]
    out = function(*inputs)
    out.backward(grad.to(out.dtype))
    return [out.detach(), *(t.grad for t in inputs)]


def assert_cpu_parity(x, atoms):
    """Output and both gradients of ``backend="cpu"`` against the reference in fp64 on the same (rounded) values."""
    dtype = x.dtype
    shape = (x.shape[0], x.shape[1] * atoms.shape[1], *x.shape[2:])
    grad = torch.linspace(-1, 1, math.prod(shape), dtype=torch.float64).reshape(shape).to(dtype).double()
    expected = cpu_outputs_and_grads(atom_conv_reference, x.double(), atoms.double(), grad)
    results = cpu_outputs_and_grads(lambda *t: atom_conv(*t, backend="cpu"), x, atoms, grad)
    for name, got, want in zip(("out", "grad x", "grad atoms"), results, expected, strict=True):
        assert got.dtype == dtype and got.shape == want.shape, name
        error = (got.double() - want).abs().max().item()
        assert error <= CPU_TOLERANCE[dtype] * max(want.abs().max().item(), 1.0), f"{name}: max error {error:.3g}"


@pytest.mark.parametrize(("shape", "layout", "dtype"), CPU_CASES)
def test_cpu_kernel_matches_reference(cpu_kernel, shape, layout, dtype):
    assert_cpu_parity(*cpu_inputs(*shape, layout, dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_kernel_takes_non_contiguous_atoms(cpu_kernel, dtype):
    x, atoms = cpu_inputs(2, 5, 3, 3, 7, 9, "strided", dtype, atom_layout="pixel_major")
    assert not atoms.is_contiguous() and not x.is_contiguous()
    assert_cpu_parity(x, atoms)


def test_cpu_kernel_split_over_threads_matches_reference(cpu_kernel, monkeypatch):
    """Rows split into uneven ranges, one per thread (3 threads over 2·11 rows)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    x, atoms = cpu_inputs(2, 16, 4, 3, 11, 64, "contiguous", torch.float64)
    assert_cpu_parity(x, atoms)


def test_cpu_kernel_gradcheck(cpu_kernel):
    x, atoms = (t.requires_grad_() for t in cpu_inputs(1, 3, 2, 3, 4, 5, "strided", torch.float64))
    assert torch.autograd.gradcheck(lambda *t: atom_conv(*t, backend="cpu"), (x, atoms), eps=1e-6, atol=1e-7)


def test_cpu_kernel_gradient_of_one_input_only(cpu_kernel):
    x, atoms = cpu_inputs(1, 5, 3, 3, 7, 9, "contiguous", torch.float64)
    for wanted in (0, 1):
        leaves = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, atoms))]
        reference = [t.clone().requires_grad_(i == wanted) for i, t in enumerate((x, atoms))]
        atom_conv(*leaves, backend="cpu").square().sum().backward()
        atom_conv_reference(*reference).square().sum().backward()
        assert leaves[1 - wanted].grad is None
        assert torch.allclose(leaves[wanted].grad, reference[wanted].grad, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cpu_kernel_output_is_channels_last(cpu_kernel, dtype):
    x, atoms = cpu_inputs(2, 5, 3, 3, 7, 9, "contiguous", dtype)
    out = atom_conv(x, atoms, backend="cpu")
    assert out.shape == (2, 15, 7, 9) and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_cpu_kernel_centre_tap_copies_the_input(cpu_kernel):
    x, _ = make(1, 3, 2, 3, 5, 6)
    atoms = torch.zeros(1, 2, 9, 5, 6, dtype=torch.float64)
    atoms[:, 0, 4] = 1.0  # atom 0: the identity; atom 1: twice the left neighbour
    atoms[:, 1, 3] = 2.0
    out = atom_conv(x, atoms, backend="cpu")
    assert torch.equal(out[:, 0::2], x)
    assert torch.equal(out[:, 1::2, :, 1:], 2 * x[..., :-1])
    assert torch.equal(out[:, 1::2, :, 0], torch.zeros_like(x[..., 0]))


@pytest.fixture
def cpu_calls(monkeypatch):
    """Counts the calls that reach the compiled kernel."""
    calls = []
    real = _atom_cpu.atom_conv_cpu

    def spy(x, atoms):
        calls.append(x.dtype)
        return real(x, atoms)

    monkeypatch.setattr(_atom_cpu, "atom_conv_cpu", spy)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_auto_picks_the_cpu_kernel_on_the_cpu(cpu_kernel, cpu_calls, dtype):
    x, atoms = cpu_inputs(1, 5, 3, 3, 7, 9, "contiguous", dtype)
    out = atom_conv(x, atoms)
    assert cpu_calls == [dtype] and out.is_contiguous(memory_format=torch.channels_last)
    atom_conv(x, atoms, backend="reference")
    assert cpu_calls == [dtype]


def test_auto_falls_back_to_the_reference_without_the_kernel(cpu_calls, monkeypatch):
    monkeypatch.setattr(_atom_cpu, "available", lambda: False)
    x, atoms = cpu_inputs(1, 5, 3, 3, 7, 9, "contiguous", torch.float64)
    assert torch.equal(atom_conv(x, atoms), atom_conv_reference(x, atoms)) and cpu_calls == []
    with pytest.raises(UsageError, match="compiler"):
        atom_conv(x, atoms, backend="cpu")


def test_environment_overrides_auto_only(cpu_kernel, cpu_calls, monkeypatch):
    x, atoms = cpu_inputs(1, 5, 3, 3, 7, 9, "contiguous", torch.float64)
    monkeypatch.setenv(BACKEND_ENV, "reference")
    out = atom_conv(x, atoms)
    assert cpu_calls == [] and torch.equal(out, atom_conv_reference(x, atoms))
    atom_conv(x, atoms, backend="cpu")  # an explicit backend wins over the environment
    assert cpu_calls == [torch.float64]
    monkeypatch.setenv(BACKEND_ENV, "cpu")
    atom_conv(x, atoms)
    assert len(cpu_calls) == 2 and torch.equal(atom_conv(x, atoms, backend="reference"), out)
    monkeypatch.setenv(BACKEND_ENV, "fastest")
    with pytest.raises(UsageError, match=BACKEND_ENV):
        atom_conv(x, atoms)


def test_cpu_backend_on_a_meta_tensor_is_a_usage_error(cpu_calls):
    x, atoms = torch.empty(1, 3, 5, 6, device="meta"), torch.empty(1, 2, 9, 5, 6, device="meta")
    with pytest.raises(UsageError, match="CPU tensors"):
        atom_conv(x, atoms, backend="cpu")
    assert cpu_calls == []


@pytest.mark.gpu
def test_cpu_backend_on_a_cuda_tensor_is_a_usage_error(cpu_calls):
    x, atoms = (t.cuda() for t in cpu_inputs(1, 5, 3, 3, 7, 9, "contiguous", torch.float32))
    with pytest.raises(UsageError, match="CPU tensors"):
        atom_conv(x, atoms, backend="cpu")
    assert cpu_calls == []


@pytest.mark.parametrize("shape", [(0, 3, 2, 3, 5, 5), (1, 3, 2, 3, 0, 5)])
def test_cpu_kernel_backward_of_an_empty_batch_or_image(cpu_kernel, shape):
    x, atoms = (t.requires_grad_() for t in cpu_inputs(*shape, "contiguous", torch.float64))
    out = atom_conv(x, atoms, backend="cpu")
    assert out.shape == (shape[0], shape[1] * shape[2], *shape[-2:])
    out.sum().backward()
    assert x.grad.shape == x.shape and atoms.grad.shape == atoms.shape
