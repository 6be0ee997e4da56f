"""Atom convolution: per-pixel dynamic filter atoms applied to each pixel's neighbourhood (ACDA's first layer).

Maths (Wang et al., "Adaptive Convolutions with Per-pixel Dynamic Filter Atom", ICCV 2021, the two-layer
implementation). At every pixel ``p`` the network predicts M atoms ``d_m(p)``, each a K×K filter; all C
channels share them. The atom layer responds

    r_{c,m}(p) = Σ_t d_{m,t}(p) · x_c(p + t)        (t over the K×K taps, zero padding outside the image),

and the layer's output is a 1×1 convolution of the C·M responses (the coefficients): the per-pixel filter
``W(p) = Σ_m a_{·,·,m} d_m(p)`` is never formed, and nothing of size C·K²·H·W is ever built. The responses
are laid out channel-major, ``r[:, c·M + m]``, as the release's ``reshape(N, C·M, H, W)``.

Backends: ``reference`` (a loop over the K² taps; its extra memory is the output's, ``O(C·M·H·W)``),
``cpu`` (a compiled C++ kernel, forward and backward, ``restorekit/ops/_atom_cpu.py``: the CPU path),
``triton`` (fused forward and backward, ``restorekit_kernels.atom_conv``) and the naive unfold formulation
(``O(C·K²·H·W)``), kept as a second oracle for the tests and as a benchmark baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape
from restorekit.ops import _atom_cpu
from restorekit.ops._backend import Backends, LazyModule, pick_backend

triton_atom = LazyModule("restorekit_kernels.atom_conv")  # Triton: imported when a kernel is first asked for

BACKEND_ENV = "RESTOREKIT_ATOM_BACKEND"
BACKENDS = Backends("atom_conv", cpu=_atom_cpu, triton=triton_atom, env=BACKEND_ENV)


def atom_conv(x: torch.Tensor, atoms: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Apply per-pixel atoms, shared by the channels, to every channel's neighbourhoods.

    Args:
        x: Feature map, ``(B, C, H, W)``.
        atoms: Per-pixel atoms, ``(B, M, K², H, W)`` with odd K; tap ``t`` is row-major in the K×K window.
        backend: ``auto`` (Triton on CUDA when importable, the compiled kernel on the CPU when a compiler is
            present, else the reference), ``reference``, ``cpu`` or ``triton``; ``RESTOREKIT_ATOM_BACKEND``
            overrides ``auto``.

    Returns:
        Responses ``(B, C·M, H, W)``, channel ``c·M + m`` for channel c and atom m; ``x``'s dtype.

    Example:
        >>> x = torch.randn(1, 4, 9, 7)
        >>> atom_conv(x, torch.randn(1, 2, 9, 9, 7)).shape
        torch.Size([1, 8, 9, 7])
    """
    _validate(x, atoms)
    backend = pick_backend(BACKENDS, backend, x, atoms)
    if backend == "cpu":
        return _atom_cpu.atom_conv_cpu(x, atoms)
    if backend == "triton":
        return triton_atom.atom_conv_triton(x, atoms)
    return atom_conv_reference(x, atoms)


def atom_conv_reference(x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Pure-PyTorch atom convolution: a loop over the K² taps accumulating ``(B, C, M, H, W)``.

    Example:
        >>> x = torch.randn(1, 3, 5, 5)
        >>> centre = torch.zeros(1, 1, 9, 5, 5); centre[:, :, 4] = 1
        >>> atom_conv_reference(x, centre).allclose(x)
        True
    """
    batch, channels, height, width = x.shape
    atom_count, taps = atoms.shape[1:3]
    size = math.isqrt(taps)
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    out = x.new_zeros(batch, channels, atom_count, height, width)
    for tap in range(taps):
        i, j = divmod(tap, size)
        out = out + padded[:, :, None, i : i + height, j : j + width] * atoms[:, None, :, tap]
    return out.view(batch, channels * atom_count, height, width)


def atom_conv_naive(x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """The release's formulation: unfold every K×K neighbourhood (``O(C·K²·H·W)`` memory), then one einsum."""
    batch, channels, height, width = x.shape
    size = math.isqrt(atoms.shape[2])
    patches = F.unfold(x, size, padding=size // 2).view(batch, channels, size * size, height, width)
    return torch.einsum("bmthw,bcthw->bcmhw", atoms, patches).reshape(batch, -1, height, width)


def _validate(x: torch.Tensor, atoms: torch.Tensor) -> None:
    sizes = check_shape(x, "B C H W", "atom_conv x")
    check(
        atoms.dim() == 5 and atoms.shape[0] == sizes["B"] and atoms.shape[-2:] == x.shape[-2:],
        "atom_conv atoms",
        f"(B, M, K², H, W) = ({sizes['B']}, M, K², {sizes['H']}, {sizes['W']})",
        tuple(atoms.shape),
    )
    size = math.isqrt(atoms.shape[2])
    check(size * size == atoms.shape[2] and size % 2 == 1, "atom_conv atoms", "K² taps with odd K", atoms.shape[2])
    check(x.dtype == atoms.dtype, "atom_conv dtypes", "x and atoms alike", (x.dtype, atoms.dtype))
