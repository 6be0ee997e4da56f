"""Fast CPU TVConv: the C++ kernel ``kernels/tv_conv_cpu.cpp``, forward and backward.

Layout. The kernel sees channel-contiguous pixels: ``x`` as channels_last ``(B, H, W, C)`` (used in place when it
already is, in fp32/fp64), the weight map as ``(B_w, H_out, W_out, K², C)`` (one copy, the weight's own size),
and writes the output as ``(B, H_out, W_out, C)``, returned as the channels_last view of ``(B, C, H_out,
W_out)``. Per output pixel the forward adds its K² taps straight into the output, so the extra memory is the
weight copy, never ``C·K²·H·W`` beyond it. The backward reads the output gradient channels_last (a copy only
when it is not), gathers ``∂x`` from the taps of the outputs that read each pixel (with stride 2 only the
taps whose offset lands on the output grid; no write conflicts, deterministic), and computes ``∂weight`` per
weight pixel, summing over the images that share it (``B_w = 1``) inside the call that owns the pixel: no
reduction buffer of size ``B·C·K²·H_out·W_out``. Every inner loop is an element-wise multiply-add over
channels, vectorised by the compiler without ``-ffast-math``.

fp32 and fp64 run natively; bf16 and fp16 are converted to fp32 and back.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import torch

from restorekit.ops._cpu_kernels import int64s, load_row_kernels, parallel

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def available() -> bool:
    """Whether the CPU kernel is built (or can be built now) and loaded."""
    return _library() is not None


def tv_conv_cpu(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """TVConv with the compiled CPU kernel (validated inputs; see ``ops.tv_conv``).

    Args:
        x: ``(B, C, H, W)``, any strides.
        weight: ``(B_w, C, K², H_out, W_out)``, B_w 1 or B, same dtype, any strides.
        stride: 1 or 2.

    Returns:
        ``(B, C, H_out, W_out)`` in ``x``'s dtype, channels_last; differentiable in ``x`` and ``weight``.
    """
    return _TVConvCPU.apply(x, weight, stride)


class _TVConvCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride):
        dtype = x.dtype
        work = torch.float64 if dtype == torch.float64 else torch.float32
        pixels = _channels_last(x.permute(0, 2, 3, 1), work)  # (B, H, W, C): free for channels_last fp32
        taps = _channels_last(weight.permute(0, 3, 4, 2, 1), work)  # (B_w, H_out, W_out, K², C)
        shape = _shape(x.shape, weight.shape, stride)
        out = pixels.new_empty(x.shape[0], *weight.shape[-2:], x.shape[1])
        _run("forward", shape, pixels, taps, out, x.shape[0] * out.shape[1])
        ctx.save_for_backward(pixels, taps)
        ctx.shape, ctx.dtype = shape, dtype
        return out.permute(0, 3, 1, 2).to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        pixels, taps = ctx.saved_tensors
        batch, height, _, _, _, _, out_h = ctx.shape[:7]
        weights = ctx.shape[8]
        grad = _channels_last(grad_out.permute(0, 2, 3, 1), pixels.dtype)  # (B, H_out, W_out, C)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = _run("grad_x", ctx.shape, taps, grad, torch.empty_like(pixels), batch * height)
            grad_x = grad_x.permute(0, 3, 1, 2).to(ctx.dtype)
        if ctx.needs_input_grad[1]:
            grad_weight = _run("grad_weight", ctx.shape, pixels, grad, torch.empty_like(taps), weights * out_h)
            grad_weight = grad_weight.permute(0, 4, 3, 1, 2).to(ctx.dtype)
        return grad_x, grad_weight, None


def _channels_last(view: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``view`` (a permutation putting channels last) contiguous in ``dtype``, in one pass; itself when it is."""
    if view.dtype == dtype:
        return view.contiguous()
    return torch.empty(view.shape, dtype=dtype, device=view.device).copy_(view)


def _shape(x_shape: torch.Size, weight_shape: torch.Size, stride: int) -> tuple[int, ...]:
    """The kernel's ``{B, H, W, C, K, S, H_out, W_out, B_w}``."""
    batch, channels, height, width = x_shape
    weights, _, taps, out_h, out_w = weight_shape
    return batch, height, width, channels, round(taps**0.5), stride, out_h, out_w, weights


def _run(kind: str, shape: tuple[int, ...], first: torch.Tensor, second: torch.Tensor, out: torch.Tensor, rows: int):
    """Call ``tv_<kind>`` over ``rows`` output rows, writing ``out`` (returned)."""
    batch, _, _, channels, kernel, _, _, out_w, weights = shape
    per_row = out_w * channels * kernel * kernel * (batch // max(weights, 1) if kind == "grad_weight" else 1)
    fixed = (int64s(*shape), first.data_ptr(), second.data_ptr(), out.data_ptr())
    parallel(_function(kind, first.dtype), fixed, rows, per_row, "tv_conv")
    return out


def _function(kind: str, dtype: torch.dtype) -> Callable[..., int]:
    return getattr(_library(), f"tv_{kind}_{_SUFFIX[dtype]}")


@functools.cache
def _library() -> ctypes.CDLL | None:
    return load_row_kernels("tv_conv_cpu", "tv_conv", "tv", ("forward", "grad_x", "grad_weight"))
