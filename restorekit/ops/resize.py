"""MATLAB-compatible ``imresize``: bicubic (Keys, a = −0.5) or Lanczos-3, antialiased when downscaling.

Maths (MATLAB's ``imresize``, its ``contributions`` function). Along an axis of length ``n`` resized by
``s`` (the given scale, not ``out / n``; ``out = ceil(n·s)``), output sample ``i = 1 … out`` (1-based) sits
at input coordinate

    u_i = i / s + (1 − 1/s) / 2,

and takes the inputs ``k = floor(u_i − w/2) + 0 … ceil(w) + 1`` with weights ``h(u_i − k)``, normalised to sum
to 1. The kernel has width ``w`` (4 for cubic, 6 for Lanczos-3); when ``s < 1`` it is stretched,
``h(t) = s·kernel(s·t)`` and ``w / s``, so downscaling is low-pass filtered. Indices outside ``1 … n`` are
mirrored with the edge sample repeated (``0 → 1``, ``n + 1 → n``), period ``2n``. The two axes are
independent, so the resize is ``A_H · x · A_Wᵀ`` with one ``(out, n)`` matrix per axis, built in float64.

Unlike MATLAB on ``uint8`` images, nothing is rounded or clamped here: callers quantise and clamp.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import torch

from restorekit._checks import check, check_choice, fail

DTYPES = (torch.float32, torch.float64)


def _cubic(t):
    """Keys' cubic convolution kernel with a = −0.5 (MATLAB's ``cubic``), support [−2, 2]."""
    a = abs(t)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (-0.5 * a**3 + 2.5 * a**2 - 4 * a + 2) * ((a > 1) & (a <= 2))


def _lanczos3(t):
    """MATLAB's ``lanczos3``, its ``eps`` guard at 0 included, support (−3, 3)."""
    eps = np.finfo(np.float64).eps
    return (np.sin(np.pi * t) * np.sin(np.pi * t / 3) + eps) / (np.pi**2 * t**2 / 3 + eps) * (abs(t) < 3)


KERNELS: dict[str, tuple[Callable, float]] = {"cubic": (_cubic, 4.0), "lanczos3": (_lanczos3, 6.0)}


def imresize(
    x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None, kernel: str = "cubic"
) -> torch.Tensor:
    """Resize images as MATLAB's ``imresize`` does (antialiased when shrinking), without rounding or clamping.

    Args:
        x: Images, float32 or float64 on any device.
        scale: Factor for both axes; the output is ``ceil(H·scale) × ceil(W·scale)``. Give it or ``size``.
        size: Output ``(height, width)``; each axis then uses the scale ``out / in``, as MATLAB does.
        kernel: ``cubic`` (Keys, a = −0.5) or ``lanczos3``.

    Returns:
        The resized images, ``x``'s dtype and device.

    Shape:
        ``(B, C, H, W)`` or ``(C, H, W)`` → ``(…, H', W')``.

    Example:
        >>> x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
        >>> imresize(x, 2)[0, 0]  # MATLAB: imresize([1 2; 3 4], 2)
        tensor([0.7188, 1.0156, 1.6094, 1.9062])
        >>> imresize(torch.rand(2, 3, 17, 23), 1 / 3).shape, imresize(x, size=(3, 7)).shape
        (torch.Size([2, 3, 6, 8]), torch.Size([1, 3, 7]))
    """
    (out_h, out_w), (scale_h, scale_w) = _validate(x, scale, size, kernel)
    rows = _weights(x.shape[-2], out_h, scale_h, kernel).to(x.device, x.dtype)
    cols = _weights(x.shape[-1], out_w, scale_w, kernel).to(x.device, x.dtype)
    return rows @ x @ cols.mT


def imresize_reference(
    x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None, kernel: str = "cubic"
) -> torch.Tensor:
    """Per-output-pixel loop over MATLAB's taps, in float64 NumPy: the oracle for :func:`imresize`.

    Example:
        >>> x = torch.rand(3, 5, 7, dtype=torch.float64)
        >>> torch.allclose(imresize_reference(x, 1 / 3), imresize(x, 1 / 3), atol=1e-12)
        True
    """
    (out_h, out_w), (scale_h, scale_w) = _validate(x, scale, size, kernel)
    pixels = x.detach().cpu().double().numpy()
    out = np.zeros((*x.shape[:-2], out_h, out_w))
    for i in range(out_h):
        rows, row_weights = _taps(i + 1, x.shape[-2], scale_h, kernel)
        for j in range(out_w):
            cols, col_weights = _taps(j + 1, x.shape[-1], scale_w, kernel)
            patch = pixels[..., rows[:, None], cols[None, :]]
            out[..., i, j] = (patch * np.outer(row_weights, col_weights)).sum(axis=(-2, -1))
    return torch.from_numpy(out).to(x.device, x.dtype)


def _taps(i: int, length: int, scale: float, kernel: str) -> tuple[np.ndarray, np.ndarray]:
    """Input indices (0-based, mirrored) and normalised weights of 1-based output sample ``i``, one at a time."""
    function, width = KERNELS[kernel]
    if scale < 1:
        width = width / scale
    centre = i / scale + 0.5 * (1 - 1 / scale)
    first = math.floor(centre - width / 2)
    indices, weights = [], []
    for k in range(first, first + math.ceil(width) + 2):
        t = centre - k
        weights.append(scale * function(np.float64(scale * t)) if scale < 1 else function(np.float64(t)))
        m = (k - 1) % (2 * length)  # 1-based k → 0-based, mirrored about both edges with the edge repeated
        indices.append(m if m < length else 2 * length - 1 - m)
    weights = np.array(weights)
    return np.array(indices), weights / weights.sum()


def _weights(length: int, out_length: int, scale: float, kernel: str) -> torch.Tensor:
    """The ``(out_length, length)`` float64 matrix of MATLAB's ``contributions`` (mirrored taps summed)."""
    function, width = KERNELS[kernel]
    if scale < 1:
        width = width / scale
    centre = np.arange(1, out_length + 1) / scale + 0.5 * (1 - 1 / scale)
    taps = np.floor(centre - width / 2)[:, None] + np.arange(math.ceil(width) + 2)
    t = centre[:, None] - taps
    weights = scale * function(scale * t) if scale < 1 else function(t)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirrored = np.concatenate([np.arange(length), np.arange(length)[::-1]])
    indices = mirrored[(taps.astype(np.int64) - 1) % (2 * length)]
    matrix = np.zeros((out_length, length))
    np.add.at(matrix, (np.arange(out_length)[:, None], indices), weights)
    return torch.from_numpy(matrix)


def _validate(x, scale, size, kernel) -> tuple[tuple[int, int], tuple[float, float]]:
    """Check the arguments; return the output size and the scale of each axis."""
    check(isinstance(x, torch.Tensor), "imresize x", "a torch.Tensor", type(x).__name__)
    check(x.dim() in (3, 4), "imresize x", "a (B, C, H, W) or (C, H, W) tensor", tuple(x.shape))
    check(x.dtype in DTYPES, "imresize x dtype", f"one of {DTYPES}", x.dtype)
    check(x.shape[-1] > 0 and x.shape[-2] > 0, "imresize x", "a non-empty image", tuple(x.shape))
    check_choice(kernel, tuple(KERNELS), "imresize kernel")
    check((scale is None) != (size is None), "imresize", "exactly one of scale and size", (scale, size))
    height, width = x.shape[-2:]
    if scale is not None:
        valid = isinstance(scale, numbers.Real) and not isinstance(scale, bool) and 0 < scale < math.inf
        check(valid, "imresize scale", "a finite number > 0", scale)
        scale = float(scale)
        return (math.ceil(height * scale), math.ceil(width * scale)), (scale, scale)
    if not (isinstance(size, tuple | list) and len(size) == 2):
        fail("imresize size", "(height, width)", size)
    valid = all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0 for n in size)
    check(valid, "imresize size", "two positive integers", size)
    out_h, out_w = int(size[0]), int(size[1])
    return (out_h, out_w), (out_h / height, out_w / width)
