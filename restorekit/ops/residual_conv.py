"""``x + conv1×1(h)``: a residual block's last step, with the sum inside the convolution's pass on the CPU.

Why an op of its own: the convolution writes its output and the addition reads it back with x, a full pass over
memory for nothing. On a 1024² tile the 9 additions of ACDANet-M-static took 30% of its bf16 time (torch.profiler,
one thread, the Sapphire Rapids machine of docs/benchmarks.md). oneDNN can add x to the convolution's accumulators
before it writes them (a ``sum`` post-op: PyTorch's ``mkldnn::_convolution_pointwise.binary``, what torch.compile's
CPU backend emits for the same pattern). The ``cpu`` backend is that call: CPU tensors, fp32 or bf16, no gradient
to compute, PyTorch built with oneDNN; otherwise the reference runs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape
from restorekit.ops._backend import Backends, pick_backend


class _OneDNN:
    """The ``cpu`` backend's kernel: oneDNN's convolution with a sum post-op, inside PyTorch."""

    DTYPES = (torch.float32, torch.bfloat16)
    REQUIRES = "PyTorch built with oneDNN (torch.backends.mkldnn)"

    @staticmethod
    @functools.cache
    def available() -> bool:  # asked on every call of the op (each block of each tile): looked up once
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


BACKENDS = Backends("residual_conv", cpu=_OneDNN(), cpu_backward=False)


def residual_conv(
    h: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, backend: str = "auto"
) -> torch.Tensor:
    """``x + F.conv2d(h, weight, bias)`` for a 1×1 convolution.

    Args:
        h: The block's inner map, ``(B, Ci, H, W)``.
        x: The block's input, ``(B, C, H, W)``, in ``h``'s dtype.
        weight: ``(C, Ci, 1, 1)``; bias ``(C,)`` or ``None`` (any float dtype: used in ``h``'s).
        backend: ``auto`` (the oneDNN call for CPU tensors when no gradient is needed, else the reference),
            ``reference`` or ``cpu``.

    Returns:
        ``(B, C, H, W)`` in ``h``'s dtype (channels_last where ``h`` is).

    Example:
        >>> h, x = torch.ones(1, 2, 1, 1), torch.zeros(1, 1, 1, 1)
        >>> residual_conv(h, x, torch.full((1, 2, 1, 1), 0.5), torch.tensor([1.0])).item()
        2.0
    """
    sizes = check_shape(h, "B Ci H W", "residual_conv h")
    check(
        x.dim() == 4 and (x.shape[0], *x.shape[2:]) == (sizes["B"], sizes["H"], sizes["W"]),
        "residual_conv x",
        f"shape ({sizes['B']}, C, {sizes['H']}, {sizes['W']})",
        tuple(x.shape),
    )
    check(x.dtype == h.dtype, "residual_conv dtypes", "h and x alike", (h.dtype, x.dtype))
    check(
        weight.dim() == 4 and tuple(weight.shape) == (x.shape[1], sizes["Ci"], 1, 1),
        "residual_conv weight",
        f"shape ({x.shape[1]}, {sizes['Ci']}, 1, 1)",
        tuple(weight.shape),
    )
    weight = weight.to(h.dtype)
    bias = None if bias is None else bias.to(h.dtype)
    if pick_backend(BACKENDS, backend, h, x, weight, bias) == "cpu":
        layout = torch.channels_last if h.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        h, x = h.contiguous(memory_format=layout), x.contiguous(memory_format=layout)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            h, x, weight, bias, [0, 0], [1, 1], [1, 1], 1, "add", None, None, [], None
        )
    return residual_conv_reference(h, x, weight, bias)


def residual_conv_reference(
    h: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``x + F.conv2d(h, weight, bias)`` in PyTorch, the weights in ``h``'s dtype. Shapes as in
    :func:`residual_conv`.

    Example:
        >>> residual_conv_reference(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1), None).item()
        2.0
    """
    return x + F.conv2d(h, weight.to(h.dtype), None if bias is None else bias.to(h.dtype))
