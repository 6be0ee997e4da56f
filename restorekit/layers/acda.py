"""ACDA layers: a per-pixel atom generator over Fourier–Bessel bases, and the two-layer ACDA convolution."""

from __future__ import annotations

import torch
from torch import nn

from restorekit.layers.blocks import ChannelNorm
from restorekit.layers.tv_conv import TVConv
from restorekit.ops.atom_conv import atom_conv
from restorekit.ops.fourier_bessel import fourier_bessel_bases


class AtomGenerator(nn.Module):
    """Predicts, at every pixel, M atoms as combinations of L fixed Fourier–Bessel bases.

    conv3×3 → norm → tanh → conv3×3 → norm → tanh (the release's ``bases_net``) gives M·L coefficients per
    pixel; the atoms are their products with the bases.

    Shape:
        ``(B, C, H, W) → atoms (B, M, K², H, W)``
    """

    def __init__(self, channels: int, width: int, atoms: int, kernel_size: int, bases_per_scale: int):
        super().__init__()
        bases = fourier_bessel_bases(kernel_size, bases_per_scale)
        self.register_buffer("bases", bases.flatten(1), persistent=False)  # (L, K²), rebuilt, never loaded
        self.atoms = atoms
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            ChannelNorm(width),
            nn.Tanh(),
            nn.Conv2d(width, atoms * len(bases), 3, padding=1),
            ChannelNorm(atoms * len(bases)),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        coefficients = self.body(x).view(batch, self.atoms, len(self.bases), height, width)
        return torch.einsum("bmlhw,lt->bmthw", coefficients, self.bases.to(coefficients.dtype))


class ACDAConv(nn.Module):
    """Adaptive convolution with per-pixel dynamic filter atoms (Wang et al., ICCV 2021), two-layer form.

    Atoms from :class:`AtomGenerator` filter every channel's neighbourhood (``ops.atom_conv``), then a 1×1
    convolution of the C·M responses with learned coefficients gives the output; the per-pixel
    C_out × C_in × K × K filters are never formed.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        kernel_size: K, the largest basis scale (odd, ≥ 3).
        atoms: M, atoms per pixel.
        bases_per_scale: b, Fourier–Bessel bases kept per scale (L = b·(K // 2) in all).
        generator_width: Hidden channels of the atom generator.

    Shape:
        ``(B, C_in, H, W) → (B, C_out, H, W)``
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        atoms: int = 6,
        bases_per_scale: int = 6,
        generator_width: int = 16,
    ):
        super().__init__()
        self.generator = AtomGenerator(in_channels, generator_width, atoms, kernel_size, bases_per_scale)
        self.coefficients = nn.Conv2d(in_channels * atoms, out_channels, 1)
        nn.init.kaiming_normal_(self.coefficients.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.coefficients.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.coefficients(atom_conv(x, self.generator(x)))


MIXERS = ("acda", "static")


class DynamicBottleneck(nn.Module):
    """x + expand(PReLU(mixer(PReLU(reduce(x))))): 1×1 to C/2, the spatial mixer at C/2, 1×1 back to C.

    The mixer is an ACDA layer, or a plain K×K convolution for the ablation. Halving the channels around it
    halves the per-pixel atom responses (C/2·M), the bulk of an ACDA layer's memory traffic.

    With ``layout`` a TVConv (:class:`~restorekit.layers.tv_conv.TVConv`, 3×3 depthwise) adds a term that depends
    on the position in the frame before the mixer, ``h + tv(h)``; its generator's last convolution starts at
    zero, so the block starts as the one without it.

    Shape:
        ``x (B, C, H, W)``, ``coords (B_c, 2, H, W)`` (frame coordinates; only with ``layout``) → ``(B, C, H, W)``
    """

    def __init__(
        self,
        channels: int,
        mixer: str,
        kernel_size: int,
        atoms: int,
        bases_per_scale: int,
        width: int,
        layout: bool = False,
    ):
        super().__init__()
        inner = channels // 2
        self.reduce = nn.Conv2d(channels, inner, 1)
        self.act1 = nn.PReLU(inner, init=0.1)
        self.tv = TVConv(inner) if layout else None
        if self.tv is not None:
            nn.init.zeros_(self.tv.generator[-1].weight)
        if mixer == "acda":
            self.mixer = ACDAConv(inner, inner, kernel_size, atoms, bases_per_scale, width)
        else:
            self.mixer = nn.Conv2d(inner, inner, kernel_size, padding=kernel_size // 2)
        self.act2 = nn.PReLU(inner, init=0.1)
        self.expand = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.expand.weight)  # each block starts as the identity: a stable start from scratch
        nn.init.zeros_(self.expand.bias)

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        inner = self.act1(self.reduce(x))
        if self.tv is not None:
            inner = inner + self.tv(inner, coords)
        return x + self.expand(self.act2(self.mixer(inner)))
