"""atom_conv and the Fourier–Bessel bases: gradcheck, the naive oracle, equivariance, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import UsageError
from restorekit.ops.atom_conv import atom_conv, atom_conv_naive, atom_conv_reference
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
