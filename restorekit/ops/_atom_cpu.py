"""Fast CPU atom convolution: the C++ kernel ``kernels/atom_conv_cpu.cpp``, forward and backward.

Layout. The kernel sees channel-contiguous pixels: ``x`` as channels_last ``(B, H, W, C)`` (used in place when
it already is), the atoms as ``(B, H, W, K², M)`` (one copy, M·K² values per pixel), and writes the responses
as ``(B, H, W, C, M)``, returned as the channels_last view of ``(B, C·M, H, W)``: the layout the following
1×1 coefficient convolution reads fastest. Per pixel the forward accumulates the C·M responses of its K²
taps in a buffer of C·M values, so the extra memory is the atom copy, not ``C·K²·H·W`` (a 12 MP image runs
untiled). The backward gathers ``∂x`` from the K² neighbours that read each pixel (no write conflicts,
deterministic) and computes ``∂atoms`` per pixel as K²·M dot products over the channels; both read the
output gradient transposed to ``(B, H, W, M, C)`` (one copy) so that every inner loop runs over channels.

Why: the reference tap loop builds K² temporaries of the output's size each way; this kernel reads each input
once per tap and writes each output once (12–34× the reference's forward speed in ``restorekit bench kernels
--op atom``). fp32 and fp64 run natively; bf16 and fp16 are converted to fp32 and back.
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


def atom_conv_cpu(x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Atom convolution with the compiled CPU kernel (validated inputs; see ``ops.atom_conv``).

    Args:
        x: ``(B, C, H, W)``, any strides.
        atoms: ``(B, M, K², H, W)``, same dtype, any strides.

    Returns:
        ``(B, C·M, H, W)`` in ``x``'s dtype, channels_last; differentiable in both inputs.
    """
    return _AtomConvCPU.apply(x, atoms)


class _AtomConvCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, atoms):
        dtype = x.dtype
        work = torch.float64 if dtype == torch.float64 else torch.float32
        pixels = x.to(work).permute(0, 2, 3, 1).contiguous()  # (B, H, W, C): free for channels_last fp32
        taps = atoms.to(work).permute(0, 3, 4, 2, 1).contiguous()  # (B, H, W, K², M)
        out = _run("forward", pixels, taps, atoms.shape)
        ctx.save_for_backward(pixels, taps)
        ctx.shape, ctx.dtype = atoms.shape, dtype
        batch, height, width, channels, count = out.shape
        return out.view(batch, height, width, channels * count).permute(0, 3, 1, 2).to(dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        pixels, taps = ctx.saved_tensors
        batch, count, _, height, width = ctx.shape
        grad = grad_out.to(pixels.dtype).view(batch, pixels.shape[-1], count, height, width)
        grad = grad.permute(0, 3, 4, 2, 1).contiguous()  # (B, H, W, M, C)
        grad_x = grad_atoms = None
        if ctx.needs_input_grad[0]:
            grad_x = _run("grad_x", taps, grad, ctx.shape, like=pixels).permute(0, 3, 1, 2).to(ctx.dtype)
        if ctx.needs_input_grad[1]:
            grad_atoms = _run("grad_atoms", pixels, grad, ctx.shape, like=taps).permute(0, 4, 3, 1, 2)
            grad_atoms = grad_atoms.to(ctx.dtype)
        return grad_x, grad_atoms


def _run(kind: str, first: torch.Tensor, second: torch.Tensor, atom_shape: torch.Size, like=None) -> torch.Tensor:
    """Call ``ac_<kind>`` over the image rows; the output is ``(B, H, W, C, M)`` or shaped as ``like``."""
    batch, count, taps, height, width = atom_shape
    channels = (first if kind != "grad_x" else like).shape[-1]
    out = first.new_empty(batch, height, width, channels, count) if like is None else torch.empty_like(like)
    kernel = round(taps**0.5)
    shape = int64s(batch, height, width, channels, count, kernel)
    fixed = (shape, first.data_ptr(), second.data_ptr(), out.data_ptr())
    parallel(_function(kind, first.dtype), fixed, batch * height, width * channels * count * taps, "atom_conv")
    return out


def _function(kind: str, dtype: torch.dtype) -> Callable[..., int]:
    return getattr(_library(), f"ac_{kind}_{_SUFFIX[dtype]}")


@functools.cache
def _library() -> ctypes.CDLL | None:
    return load_row_kernels("atom_conv_cpu", "atom_conv", "ac", ("forward", "grad_x", "grad_atoms"))
