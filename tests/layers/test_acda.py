"""ACDA layers: atom shapes, the two-layer form against explicit per-pixel filters, locality (tiling-safe)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit.layers.acda import ACDAConv, AtomGenerator, ChannelNorm


def test_generator_makes_m_atoms_over_the_bases_at_every_pixel():
    torch.manual_seed(0)
    generator = AtomGenerator(channels=5, width=8, atoms=3, kernel_size=5, bases_per_scale=4)
    atoms = generator(torch.randn(2, 5, 7, 9))
    assert atoms.shape == (2, 3, 25, 7, 9)
    # every atom lies in the span of the 8 bases (4 per scale, 2 scales)
    bases = generator.bases  # (8, 25)
    flat = atoms.permute(0, 1, 3, 4, 2).reshape(-1, 25)
    coefficients = torch.linalg.lstsq(bases.T, flat.T).solution
    assert torch.allclose(coefficients.T @ bases, flat, atol=1e-5)


def test_acda_conv_equals_explicit_per_pixel_filters():
    """out_o(p) = Σ_c Σ_t W_{o,c,t}(p)·x_c(p + t) + b_o with W(p) = Σ_m a_{o,c,m}·d_m(p), formed explicitly."""
    torch.manual_seed(1)
    layer = ACDAConv(3, 4, kernel_size=3, atoms=2, bases_per_scale=6, generator_width=8).double()
    x = torch.randn(1, 3, 6, 7, dtype=torch.float64)
    atoms = layer.generator(x)  # (1, 2, 9, 6, 7)
    a = layer.coefficients.weight.view(4, 3, 2)
    filters = torch.einsum("ocm,bmthw->bocthw", a, atoms)
    patches = F.unfold(x, 3, padding=1).view(1, 3, 9, 6, 7)
    expected = torch.einsum("bocthw,bcthw->bohw", filters, patches) + layer.coefficients.bias.view(1, 4, 1, 1)
    assert torch.allclose(layer(x), expected, atol=1e-10)


def test_outputs_depend_only_on_a_neighbourhood_so_tiles_agree():
    torch.manual_seed(2)
    layer = ACDAConv(4, 4, kernel_size=3, atoms=2, generator_width=8).eval()
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad():
        whole = layer(x)
        crop = layer(x[..., 8:24, 8:24])
    # receptive field: two 3×3 generator convolutions, then the 3×3 atoms: 3 pixels each side
    assert torch.allclose(whole[..., 11:21, 11:21], crop[..., 3:13, 3:13], atol=1e-5)


def test_channel_norm_normalises_each_pixel_over_channels():
    x = torch.randn(2, 6, 4, 5) * 3 + 1
    out = ChannelNorm(6)(x)
    assert torch.allclose(out.mean(1), torch.zeros(2, 4, 5), atol=1e-5)
    assert torch.allclose(out.var(1, unbiased=False), torch.ones(2, 4, 5), atol=1e-3)
