"""Malleable convolution: depthwise K×K filters that vary smoothly over the image.

Maths (MalleConv paper, Eq. 1–2). A low-resolution grid of depthwise kernels ``k[q]`` and biases ``b[q]``
(one per cell ``q`` of an ``h × w`` grid) is sliced to full resolution by bilinear interpolation with
half-pixel centres (``align_corners=False``) and replicated borders:

    k̂(p) = Σ_q φ_q(p) k[q],    b̂(p) = Σ_q φ_q(p) b[q],
    y_c(p) = Σ_t k̂_{c,t}(p) · x_c(p + t) + b̂_c(p),

where ``φ_q`` are the bilinear weights (at most four non-zero per pixel) and ``t`` runs over the K×K taps
(zero padding outside the image). The full-resolution kernel map is never built for the whole image. A 1×1 grid is
one kernel for the whole image: a plain depthwise convolution.

Activations. An inverted bottleneck wraps this filter in two PReLUs (``prelu(x)_c = x_c`` where ``x_c > 0``, else
``a_c·x_c``); given their slopes, the op computes ``prelu(filter(prelu(x, a_in)), a_out)``. Without autograd the
CPU kernel applies them inside its one pass (the activated maps never exist); otherwise they run as
:func:`torch.nn.functional.prelu` around the filter.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape
from restorekit.ops import _malleable_cpu
from restorekit.ops._backend import Backends, LazyModule, pick_backend
from restorekit.ops.prelu import prelu_reference

triton_malleable = LazyModule("restorekit_kernels.malleable_conv")  # Triton: imported when a kernel is first asked for

BACKEND_ENV = "RESTOREKIT_MALLEABLE_BACKEND"
BACKENDS = Backends("malleable_conv", cpu=_malleable_cpu, triton=triton_malleable, env=BACKEND_ENV)


def malleable_conv(
    x: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor,
    backend: str = "auto",
    slope_in: torch.Tensor | None = None,
    slope_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply spatially varying depthwise filters sliced from a low-resolution grid.

    Args:
        x: Feature map, ``(B, C, H, W)``.
        kernels: Low-resolution depthwise kernels, ``(B, C·K², h, w)`` with K ∈ {1, 3}; channel ``c·K² + t``
            holds tap ``t`` (row-major) of channel ``c``.
        bias: Low-resolution biases, ``(B, C, h, w)``.
        backend: ``auto`` (Triton on CUDA when importable, else the CPU path), ``reference``, ``cpu`` or
            ``triton``; the environment variable ``RESTOREKIT_MALLEABLE_BACKEND`` overrides ``auto``.
        slope_in: PReLU slopes ``(C,)`` applied to ``x`` first, or ``None``.
        slope_out: PReLU slopes ``(C,)`` applied to the result, or ``None``.

    Returns:
        ``(B, C, H, W)``, same dtype as ``x``.

    Example:
        >>> x = torch.randn(1, 4, 16, 16)
        >>> malleable_conv(x, torch.randn(1, 36, 2, 2), torch.zeros(1, 4, 2, 2)).shape
        torch.Size([1, 4, 16, 16])
        >>> out = malleable_conv(x, torch.ones(1, 4, 1, 1), torch.zeros(1, 4, 1, 1), slope_out=torch.zeros(4))
        >>> bool(out.equal(x.relu()))
        True
    """
    kernel_size = _validate(x, kernels, bias, slope_in, slope_out)
    chosen = pick_backend(BACKENDS, backend, x, kernels, bias)
    slopes = [s for s in (slope_in, slope_out) if s is not None]
    if chosen == "cpu" and slopes and not _needs_grad(x, kernels, bias, *slopes):
        return _malleable_cpu.malleable_conv_prelu_cpu(x, kernels, bias, kernel_size, slope_in, slope_out)
    x = _prelu(x, slope_in)
    return _prelu(_IMPLEMENTATIONS[chosen](x, kernels, bias, kernel_size), slope_out)


def malleable_conv_reference(
    x: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor,
    slope_in: torch.Tensor | None = None,
    slope_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pure-PyTorch malleable convolution: a loop over the K² taps, one full-resolution map at a time.

    Extra memory without autograd is O(B·C·H·W) (one sliced tap map and the accumulator), never
    O(K²·B·C·H·W). Shapes as in :func:`malleable_conv`.

    Example:
        >>> x = torch.randn(1, 2, 8, 8)
        >>> malleable_conv_reference(x, torch.ones(1, 2, 1, 1), torch.zeros(1, 2, 1, 1)).allclose(x)
        True
    """
    height, width = x.shape[-2:]
    x = _prelu(x, slope_in)
    kernel_size = _kernel_size(x, kernels)
    pad = kernel_size // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    taps = kernels.unflatten(1, (x.shape[1], kernel_size * kernel_size))
    out = slice_grid(bias, height, width)
    for tap in range(kernel_size * kernel_size):
        i, j = divmod(tap, kernel_size)
        out = out + slice_grid(taps[:, :, tap], height, width) * padded[:, :, i : i + height, j : j + width]
    return _prelu(out, slope_out)


def _prelu(x: torch.Tensor, slope: torch.Tensor | None) -> torch.Tensor:
    return x if slope is None else prelu_reference(x, slope)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def malleable_conv_naive(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Upsample-then-multiply: materialize the full ``(B, C·K², H, W)`` kernel map, then apply it.

    The textbook formulation, O(K²·B·C·H·W) memory, slicing with ``F.interpolate``: an independent second
    oracle for tests and a benchmark baseline.
    """
    batch, channels, height, width = x.shape
    kernel_size = _kernel_size(x, kernels)
    full = _interpolate(kernels, height, width).view(batch, channels, kernel_size**2, height, width)
    patches = F.unfold(x, kernel_size, padding=kernel_size // 2).view(batch, channels, -1, height, width)
    return (full * patches).sum(2) + _interpolate(bias, height, width)


def _interpolate(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)


def slice_grid(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly slice a low-resolution grid ``(B, N, h, w)`` to ``(B, N, height, width)``.

    Half-pixel centres (``align_corners=False``) and replicated borders, as in the MalleConv paper and
    ``F.interpolate(mode="bilinear")``. When a gradient is needed it is computed as ``A_H · grid · A_Wᵀ``
    with 1-D interpolation matrices: the same numbers to rounding, and its backward is two matrix products
    instead of PyTorch's slow ``upsample_bilinear2d_backward`` on CPU (a 2.4× faster MalleNet-S training
    step on 64² patches). The matrices are dense, O(height·w·width) work, so inference (no gradient, any
    size) uses ``F.interpolate``.
    """
    if grid.shape[-2:] == (height, width):
        return grid
    if not (torch.is_grad_enabled() and grid.requires_grad):
        return _interpolate(grid, height, width)
    rows = interpolation_matrix(height, grid.shape[-2], grid.dtype, grid.device)
    cols = interpolation_matrix(width, grid.shape[-1], grid.dtype, grid.device)
    return rows @ grid @ cols.T


@functools.lru_cache(maxsize=64)
def interpolation_matrix(size_out: int, size_in: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``(size_out, size_in)`` matrix of 1-D linear interpolation with half-pixel centres, clamped ends.

    Row ``i`` samples the input at ``(i + 0.5) · size_in / size_out − 0.5`` (clamped at 0), with weights
    on the two neighbouring cells (the last cell is replicated past the end).
    """
    position = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out) - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    frac = position - low
    rows = torch.arange(size_out)
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.to(dtype=dtype, device=device)


def _kernel_size(x: torch.Tensor, kernels: torch.Tensor) -> int:
    return math.isqrt(kernels.shape[1] // x.shape[1])


def _validate(
    x: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor,
    slope_in: torch.Tensor | None = None,
    slope_out: torch.Tensor | None = None,
) -> int:
    sizes = check_shape(x, "B C H W", "malleable_conv x")
    for name, slope in (("slope_in", slope_in), ("slope_out", slope_out)):
        if slope is not None:
            check(
                isinstance(slope, torch.Tensor) and tuple(slope.shape) == (sizes["C"],) and slope.is_floating_point(),
                f"malleable_conv {name}",
                f"a float tensor of shape ({sizes['C']},)",
                tuple(slope.shape) if isinstance(slope, torch.Tensor) else type(slope).__name__,
            )
    grid = check_shape(bias, "B C h w", "malleable_conv bias")
    check(grid["B"] == sizes["B"] and grid["C"] == sizes["C"], "malleable_conv bias", "(B, C, h, w)", tuple(bias.shape))
    check(
        kernels.dim() == 4 and kernels.shape[0] == sizes["B"] and kernels.shape[-2:] == bias.shape[-2:],
        "malleable_conv kernels",
        f"(B, C·K², h, w) = ({sizes['B']}, C·K², {grid['h']}, {grid['w']})",
        tuple(kernels.shape),
    )
    taps = kernels.shape[1] / sizes["C"]
    check(
        taps in (1, 9), "malleable_conv kernels", f"C·K² channels with K in {{1, 3}} (C={sizes['C']})", kernels.shape[1]
    )
    check(
        x.dtype == kernels.dtype == bias.dtype,
        "malleable_conv dtypes",
        "x, kernels and bias alike",
        (x.dtype, kernels.dtype, bias.dtype),
    )
    return math.isqrt(int(taps))


def _reference(x, kernels, bias, kernel_size):
    return malleable_conv_reference(x, kernels, bias)


_IMPLEMENTATIONS = {
    "reference": _reference,
    "cpu": _malleable_cpu.malleable_conv_cpu,
    "triton": lambda *args: triton_malleable.malleable_conv_triton(*args),
}
