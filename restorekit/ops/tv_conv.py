"""Translation-variant convolution: a depthwise convolution whose K×K kernel changes from pixel to pixel (TVConv).

Maths (Chen et al., "TVConv: Efficient Translation Variant Convolution for Layout-aware Visual Processing",
CVPR 2022). The layer generates, from learned affinity maps, one depthwise kernel per channel and output
position; this op applies them. With ``x_pad`` the input zero-padded by ``K//2`` and stride ``s``,

    out[b, c, y, x] = Σ_{i,j} w[b, c, i·K + j, y, x] · x_pad[b, c, y·s + i, x·s + j],

``H_out = ceil(H / s)``, ``W_out = ceil(W / s)``. The weight map is usually shared by the batch (``B_w = 1``:
TVConv's weights depend on the position only); its gradient then sums over the batch. A weight map constant
over the positions makes it ``F.conv2d(x, w, stride=s, padding=K//2, groups=C)``.

Backends: ``reference`` (a loop over the K² taps; its extra memory is the output's, ``O(B·C·H_out·W_out)``),
``cpu`` (a compiled C++ kernel, forward and backward, ``restorekit/ops/_tv_cpu.py``: the CPU path),
``triton`` (fused forward and backward, ``restorekit_kernels.tv_conv``) and the authors' unfold formulation
(``O(B·C·K²·H_out·W_out)``), kept as a second oracle for the tests and as a benchmark baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_choice, check_shape
from restorekit.ops import _tv_cpu
from restorekit.ops._backend import Backends, LazyModule, pick_backend

triton_tv = LazyModule("restorekit_kernels.tv_conv")  # Triton: imported when a kernel is first asked for

BACKEND_ENV = "RESTOREKIT_TV_BACKEND"
BACKENDS = Backends("tv_conv", cpu=_tv_cpu, triton=triton_tv, env=BACKEND_ENV)
STRIDES = (1, 2)


def tv_conv(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, backend: str = "auto") -> torch.Tensor:
    """Apply a per-position depthwise K×K kernel to every channel.

    Args:
        x: Feature map, ``(B, C, H, W)``.
        weight: Per-position kernels, ``(B_w, C, K², H_out, W_out)`` with ``B_w`` 1 (shared by the batch) or B,
            odd K, tap ``i·K + j`` row-major in the K×K window, ``H_out = ceil(H / stride)`` (W likewise).
        stride: 1 or 2.
        backend: ``auto`` (Triton on CUDA when importable, the compiled kernel on the CPU when a compiler is
            present, else the reference), ``reference``, ``cpu`` or ``triton``; ``RESTOREKIT_TV_BACKEND``
            overrides ``auto``.

    Returns:
        ``(B, C, H_out, W_out)`` in ``x``'s dtype, differentiable in ``x`` and ``weight``.

    Example:
        >>> x = torch.randn(2, 4, 9, 7)
        >>> tv_conv(x, torch.randn(1, 4, 9, 5, 4), stride=2).shape
        torch.Size([2, 4, 5, 4])
    """
    _validate(x, weight, stride)
    backend = pick_backend(BACKENDS, backend, x, weight)
    if backend == "cpu":
        return _tv_cpu.tv_conv_cpu(x, weight, stride)
    if backend == "triton":
        return triton_tv.tv_conv_triton(x, weight, stride)
    return tv_conv_reference(x, weight, stride)


def tv_conv_reference(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Pure-PyTorch TVConv: a loop over the K² taps, each a strided slice of the padded input times a weight plane.

    Example:
        >>> x = torch.randn(1, 3, 5, 6)
        >>> centre = torch.zeros(1, 3, 9, 3, 3); centre[:, :, 4] = 1
        >>> torch.equal(tv_conv_reference(x, centre, stride=2), x[..., ::2, ::2])
        True
    """
    taps, out_h, out_w = weight.shape[2:]
    size = math.isqrt(taps)
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad))
    rows, cols = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1  # span of the output's sampling points
    out = x.new_zeros(x.shape[0], x.shape[1], out_h, out_w)
    for tap in range(taps):
        i, j = divmod(tap, size)
        out = out + padded[:, :, i : i + rows : stride, j : j + cols : stride] * weight[:, :, tap]
    return out


def tv_conv_naive(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """The authors' formulation: unfold every K×K neighbourhood (``O(C·K²·H_out·W_out)`` memory), multiply, sum."""
    taps, out_h, out_w = weight.shape[2:]
    size = math.isqrt(taps)
    patches = F.unfold(x, size, padding=size // 2, stride=stride)
    return (weight * patches.view(x.shape[0], x.shape[1], taps, out_h, out_w)).sum(dim=2)


def output_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """``(ceil(H / stride), ceil(W / stride))``, the output (and weight map) size for an ``H × W`` input."""
    return -(-height // stride), -(-width // stride)


def _validate(x: torch.Tensor, weight: torch.Tensor, stride: int) -> None:
    sizes = check_shape(x, "B C H W", "tv_conv x")
    check_choice(stride, STRIDES, "tv_conv stride")
    out_h, out_w = output_size(sizes["H"], sizes["W"], stride)
    batch, channels = sizes["B"], sizes["C"]
    shared = "1" if batch == 1 else f"1 or {batch}"
    check(
        weight.dim() == 5
        and weight.shape[0] in (1, batch)
        and weight.shape[1] == channels
        and weight.shape[-2:] == (out_h, out_w),
        "tv_conv weight",
        f"(B_w, C, K², H_out, W_out) = ({shared}, {channels}, K², {out_h}, {out_w}) for stride {stride}",
        tuple(weight.shape),
    )
    size = math.isqrt(weight.shape[2])
    check(size * size == weight.shape[2] and size % 2 == 1, "tv_conv weight", "K² taps with odd K", weight.shape[2])
    check(x.dtype == weight.dtype, "tv_conv dtypes", "x and weight alike", (x.dtype, weight.dtype))
    check(x.device == weight.device, "tv_conv devices", "x and weight on one device", (x.device, weight.device))
