"""Triton TVConv: fused forward, grad x and grad weight, wrapped in an autograd Function.

Maths (see ``restorekit.ops.tv_conv``): with per-position depthwise kernels ``w[b_w, c, t, p]``, stride ``S``,
``R = K // 2`` and the tap ``t = i·K + j`` at offset ``(i − R, j − R)`` (zero padding),

    out[b, c, p] = Σ_t w[b_w, c, t, p] · x[b, c, S·p + t − R],       b_w = 0 (shared, B_w = 1) or b.

Forward (``_forward_kernel``): one program per block of ``BLOCK_P`` output pixels and ``BLOCK_C`` channels of
one image; the K² shifted input tiles times the weight planes are accumulated in registers: nothing of size
C·K²·H·W exists. A shared weight map is read with a batch stride of 0.

Grad x (``_grad_x_kernel``): ``x[b, c, q]`` feeds ``out[b, c, p]`` through tap ``t`` when ``S·p = q − t + R``,
so ``∂L/∂x[b, c, q] = Σ_t g[b, c, p] · w[b_w, c, t, p]`` over the taps for which ``(q − t + R) / S`` is an
exact division landing in the output (with stride 2, a quarter of the taps on average): a gather; no atomics.

Grad weight (``_grad_weight_kernel``): ``∂L/∂w[b_w, c, t, p] = Σ_b g[b, c, p] · x[b, c, S·p + t − R]`` over
the images that share the map (all B when ``B_w = 1``, else image ``b_w`` alone). One program per block of
weight pixels, channels and one tap loops over those images in registers: no atomics, no ``(B, …)`` partial
gradient, the same bits on every run.

Accumulation in fp32 (fp64 for fp64). Launchers check only kernel limits, then allocate, then launch.
Importing this module never requires Triton: :func:`available` says whether it is there.
"""

from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the reference needs no Triton
    triton = None

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def available() -> bool:
    """Whether Triton is importable (the kernels still need a CUDA device, or ``TRITON_INTERPRET=1``)."""
    return triton is not None


def tv_conv_triton(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """TVConv with the Triton kernels (inputs validated by ``ops.tv_conv``).

    Args:
        x: ``(B, C, H, W)``, any strides, fp32/fp16/bf16/fp64.
        weight: ``(B_w, C, K², H_out, W_out)``, B_w 1 or B, any strides, same dtype and device.
        stride: 1 or 2.

    Returns:
        ``(B, C, H_out, W_out)`` contiguous, differentiable in ``x`` and ``weight``.
    """
    return _TVConvTriton.apply(x, weight, stride)


class _TVConvTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride):
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return _forward(x, weight, stride)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = _grad_x(grad_out, x, weight, ctx.stride) if ctx.needs_input_grad[0] else None
        grad_weight = _grad_weight(grad_out, x, weight, ctx.stride) if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight, None


def _check(x: torch.Tensor, weight: torch.Tensor, stride: int) -> None:
    """Kernel limits only: the public op has validated shapes and dtypes."""
    if triton is None:
        raise RuntimeError("tv_conv triton backend: expected Triton to be importable, got ImportError")
    if x.dtype not in DTYPES:
        raise ValueError(f"tv_conv triton kernel: expected a dtype in {DTYPES}, got {x.dtype}")
    if stride not in (1, 2):
        raise ValueError(f"tv_conv triton kernel: expected stride 1 or 2, got {stride}")
    if x.device != weight.device:
        raise ValueError(f"tv_conv triton kernel: expected one device, got {x.device}, {weight.device}")
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError(f"tv_conv triton kernel: expected CUDA tensors (or TRITON_INTERPRET=1), got {x.device}")


def _blocks(channels: int, pixels: int) -> tuple[int, int]:
    block_c = min(triton.next_power_of_2(channels), 16)
    block_p = min(triton.next_power_of_2(pixels), 4096 if os.environ.get("TRITON_INTERPRET") == "1" else 128)
    return block_c, block_p


def _accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _weight_strides(weight: torch.Tensor) -> tuple[int, ...]:
    """The weight's strides, with the batch stride 0 for a map shared by the batch."""
    strides = weight.stride()
    return (0 if weight.shape[0] == 1 else strides[0], *strides[1:])


def _forward(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    _check(x, weight, stride)
    batch, channels, height, width = x.shape
    taps, out_h, out_w = weight.shape[2:]
    out = torch.empty(batch, channels, out_h, out_w, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    block_c, block_p = _blocks(channels, out_h * out_w)
    grid = (batch * triton.cdiv(out_h * out_w, block_p), triton.cdiv(channels, block_c))
    _forward_kernel[grid](
        x, weight, out, channels, height, width, out_h, out_w, *x.stride(), *_weight_strides(weight), *out.stride(),
        K=math.isqrt(taps), STRIDE=stride, BLOCK_C=block_c, BLOCK_P=block_p, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return out


def _grad_x(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    taps, out_h, out_w = weight.shape[2:]
    grad_x = torch.empty(batch, channels, height, width, dtype=x.dtype, device=x.device)
    if grad_x.numel() == 0:
        return grad_x
    block_c, block_p = _blocks(channels, height * width)
    grid = (batch * triton.cdiv(height * width, block_p), triton.cdiv(channels, block_c))
    _grad_x_kernel[grid](
        grad_out, weight, grad_x, channels, height, width, out_h, out_w,
        *grad_out.stride(), *_weight_strides(weight), *grad_x.stride(),
        K=math.isqrt(taps), STRIDE=stride, BLOCK_C=block_c, BLOCK_P=block_p, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return grad_x


def _grad_weight(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    weights, _, taps, out_h, out_w = weight.shape
    grad_weight = torch.empty(weight.shape, dtype=weight.dtype, device=x.device)
    if grad_weight.numel() == 0 or batch == 0:
        return grad_weight.zero_()
    block_c, block_p = _blocks(channels, out_h * out_w)
    grid = (weights * triton.cdiv(out_h * out_w, block_p), triton.cdiv(channels, block_c) * taps)
    _grad_weight_kernel[grid](
        grad_out, x, grad_weight, batch // weights, channels, height, width, out_h, out_w,
        *grad_out.stride(), *x.stride(), *grad_weight.stride(),
        K=math.isqrt(taps), STRIDE=stride, BLOCK_C=block_c, BLOCK_P=block_p, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return grad_weight


if triton is not None:

    @triton.jit
    def _pixel_block(height, width, BLOCK_P: tl.constexpr):
        """The image ``b`` and the rows, columns and validity of this program's block of pixels."""
        blocks = tl.cdiv(height * width, BLOCK_P)
        pixels = (tl.program_id(0) % blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
        return tl.program_id(0) // blocks, pixels // width, pixels % width, pixels < height * width

    @triton.jit
    def _read(row, col, inside, t, K: tl.constexpr, STRIDE: tl.constexpr, height, width):
        """The input pixel that tap ``t`` of output (row, col) reads, and whether it lies in the image."""
        r = row * STRIDE + t // K - K // 2
        c = col * STRIDE + t % K - K // 2
        return r, c, inside & (r >= 0) & (r < height) & (c >= 0) & (c < width)

    @triton.jit
    def _reader(row, col, inside, t, K: tl.constexpr, STRIDE: tl.constexpr, out_h, out_w):
        """The output pixel whose tap ``t`` reads input (row, col), and whether there is one."""
        nr = row + K // 2 - t // K
        nc = col + K // 2 - t % K
        r = nr // STRIDE
        c = nc // STRIDE
        ok = inside & (nr >= 0) & (nc >= 0) & (r < out_h) & (c < out_w)
        if STRIDE > 1:
            ok = ok & (nr % STRIDE == 0) & (nc % STRIDE == 0)
        return r, c, ok

    @triton.jit
    def _forward_kernel(
        x_ptr, w_ptr, out_ptr, channels, height, width, out_h, out_w,
        sxb, sxc, sxh, sxw, swb, swc, swt, swh, sww, sob, soc, soh, sow,
        K: tl.constexpr, STRIDE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        b, row, col, inside = _pixel_block(out_h, out_w, BLOCK_P)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
        for t in tl.static_range(K * K):
            r2, c2, ok = _read(row, col, inside, t, K, STRIDE, height, width)
            w = tl.load(
                w_ptr + b * swb + c[:, None] * swc + t * swt + (row * swh + col * sww)[None, :],
                mask=c_ok[:, None] & inside[None, :],
                other=0.0,
            )
            xs = tl.load(
                x_ptr + b * sxb + c[:, None] * sxc + (r2 * sxh + c2 * sxw)[None, :],
                mask=c_ok[:, None] & ok[None, :],
                other=0.0,
            )
            acc += xs.to(ACC) * w.to(ACC)
        target = out_ptr + b * sob + c[:, None] * soc + (row * soh + col * sow)[None, :]
        tl.store(target, acc.to(out_ptr.dtype.element_ty), mask=c_ok[:, None] & inside[None, :])

    @triton.jit
    def _grad_x_kernel(
        g_ptr, w_ptr, gx_ptr, channels, height, width, out_h, out_w,
        sgb, sgc, sgh, sgw, swb, swc, swt, swh, sww, sxb, sxc, sxh, sxw,
        K: tl.constexpr, STRIDE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        b, row, col, inside = _pixel_block(height, width, BLOCK_P)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
        for t in tl.static_range(K * K):
            r1, c1, ok = _reader(row, col, inside, t, K, STRIDE, out_h, out_w)
            mask = c_ok[:, None] & ok[None, :]
            w = tl.load(w_ptr + b * swb + c[:, None] * swc + t * swt + (r1 * swh + c1 * sww)[None, :], mask, 0.0)
            g = tl.load(g_ptr + b * sgb + c[:, None] * sgc + (r1 * sgh + c1 * sgw)[None, :], mask, 0.0)
            acc += g.to(ACC) * w.to(ACC)
        target = gx_ptr + b * sxb + c[:, None] * sxc + (row * sxh + col * sxw)[None, :]
        tl.store(target, acc.to(gx_ptr.dtype.element_ty), mask=c_ok[:, None] & inside[None, :])

    @triton.jit
    def _grad_weight_kernel(
        g_ptr, x_ptr, gw_ptr, images, channels, height, width, out_h, out_w,
        sgb, sgc, sgh, sgw, sxb, sxc, sxh, sxw, swb, swc, swt, swh, sww,
        K: tl.constexpr, STRIDE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        bw, row, col, inside = _pixel_block(out_h, out_w, BLOCK_P)
        t = tl.program_id(1) % (K * K)
        c = (tl.program_id(1) // (K * K)) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        r2, c2, ok = _read(row, col, inside, t, K, STRIDE, height, width)
        acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
        for k in range(images):  # the images sharing this weight map: all of them, or image bw alone
            b = bw * images + k
            g = tl.load(
                g_ptr + b * sgb + c[:, None] * sgc + (row * sgh + col * sgw)[None, :],
                mask=c_ok[:, None] & inside[None, :],
                other=0.0,
            )
            xs = tl.load(
                x_ptr + b * sxb + c[:, None] * sxc + (r2 * sxh + c2 * sxw)[None, :],
                mask=c_ok[:, None] & ok[None, :],
                other=0.0,
            )
            acc += g.to(ACC) * xs.to(ACC)
        target = gw_ptr + bw * swb + c[:, None] * swc + t * swt + (row * swh + col * sww)[None, :]
        tl.store(target, acc.to(gw_ptr.dtype.element_ty), mask=c_ok[:, None] & inside[None, :])
