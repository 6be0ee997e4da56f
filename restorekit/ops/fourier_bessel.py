"""Fourier–Bessel bases for ACDA's dynamic filter atoms (DCFNet, Qiu et al. 2018; ACDA, Wang et al. 2021).

On a disc of radius R = L + ½ around a (2L + 1)² patch, the Dirichlet eigenfunctions of the Laplacian are

    ψ_{k,q}(r, θ) = J_k(j_{k,q}·r) / |J_{k+1}(j_{k,q})| · {1 (k = 0); √2·cos kθ, √2·sin kθ (k > 0)},

with ``r`` the distance in units of R, J_k the Bessel function of the first kind and j_{k,q} its q-th zero.
Sorted by j_{k,q} they run from smooth to oscillating, so truncating keeps the low frequencies: a filter built
from the first b bases of each scale is smooth and has few parameters.

This follows the authors' ``fb.py`` (a translation of DCFNet's ``calculate_FB_bases.m``) step by step: the
grid is sampled on (2L + 3)² points and cropped to (2L + 1)², angular frequencies k ≤ 15, zeros up to
π·R·1.5 (π·R·2 for 3×3), at most (2L + 1)² − 1 bases, and all bases of a scale scaled by one constant
so that their mean squared norm is 1. The release loads the Bessel zeros from a ``.npy`` table; here they
come from ``scipy.special.jn_zeros``, which reproduces it. No data file.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

MAX_ANGULAR_FREQUENCY = 15
ZEROS_PER_ORDER = 30  # far more than any patch up to 15×15 keeps


@functools.lru_cache(maxsize=16)
def scale_bases(half: int) -> np.ndarray:
    """All kept Fourier–Bessel bases of a ``(2·half + 1)²`` patch, lowest frequency first, ``(n, K, K)`` float64.

    Example:
        >>> scale_bases(1).shape
        (8, 3, 3)
    """
    from scipy import special  # here, not at import: scipy.special takes longer to import than a small photo to denoise

    size, outer, radius = 2 * half + 1, half + 1, half + 0.5
    factor = 2.0 if half < 2 else 1.5
    ys, xs = np.meshgrid(np.arange(-outer, outer + 1) / radius, np.arange(-outer, outer + 1) / radius, indexing="ij")
    rho, theta = np.hypot(ys, xs), np.arctan2(xs, ys)
    zeros = [
        (z, k)
        for k in range(MAX_ANGULAR_FREQUENCY + 1)
        for z in special.jn_zeros(k, ZEROS_PER_ORDER)
        if z <= np.pi * radius * factor
    ]
    bases = []
    for zero, k in sorted(zeros, key=lambda item: item[0]):
        radial = special.jv(k, rho * zero) / abs(special.jv(k + 1, zero))
        radial[rho >= 1] = 0
        if k == 0:
            bases.append(radial)
        else:
            bases += [radial * np.cos(k * theta) * np.sqrt(2), radial * np.sin(k * theta) * np.sqrt(2)]
    bases = np.stack(bases[: size * size - 1])[:, 1:-1, 1:-1]
    return bases / np.sqrt(np.square(bases).sum(axis=(1, 2)).mean())


def fourier_bessel_bases(kernel_size: int, per_scale: int) -> torch.Tensor:
    """Multi-scale bases: the first ``per_scale`` of each scale 3×3, 5×5, … ``kernel_size``², zero-padded.

    Args:
        kernel_size: Odd K ≥ 3, the largest scale.
        per_scale: Bases kept per scale, b (at most 8, what a 3×3 patch has).

    Returns:
        ``(L, K, K)`` float32 with ``L = b·(K // 2)``, scale by scale (as the release's ``bases_list``).

    Example:
        >>> fourier_bessel_bases(5, 6).shape
        torch.Size([12, 5, 5])
    """
    if kernel_size < 3 or kernel_size % 2 == 0 or not 1 <= per_scale <= 8:
        raise ValueError(
            f"fourier_bessel_bases: expected odd kernel_size ≥ 3 and 1 ≤ per_scale ≤ 8, got {kernel_size}, {per_scale}"
        )
    blocks = []
    for half in range(1, kernel_size // 2 + 1):
        pad = kernel_size // 2 - half
        blocks.append(np.pad(scale_bases(half)[:per_scale], ((0, 0), (pad, pad), (pad, pad))))
    return torch.from_numpy(np.concatenate(blocks)).float()
