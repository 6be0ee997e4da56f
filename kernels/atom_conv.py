"""Triton atom convolution (ACDA): fused forward, grad x and grad atoms, wrapped in an autograd Function.

Maths (see ``restorekit.ops.atom_conv``): with per-pixel atoms ``d_{m,t}(p)`` shared by the channels and the
tap offsets ``t`` of a K×K window (zero padding),

    r_{c·M+m}(p) = Σ_t d_{m,t}(p) · x_c(p + t).

Forward (``_forward_kernel``): one program per block of ``BLOCK_P`` pixels and ``BLOCK_C`` channels of one
image; for each atom it accumulates the K² shifted input tiles times the atom's tap in registers and writes
the response: nothing of size C·K²·H·W exists.

Grad x (``_grad_x_kernel``): ``x_c(q)`` feeds ``r(p)`` for ``p = q − t``, so
``∂L/∂x_c(q) = Σ_t Σ_m d_{m,t}(q − t) · g_{c·M+m}(q − t)``, a gather over the flipped taps; no atomics.

Grad atoms (``_grad_atoms_kernel``): ``∂L/∂d_{m,t}(p) = Σ_c g_{c·M+m}(p) · x_c(p + t)``, a reduction over
channels at each pixel, done in registers by the program that owns the pixel block; no atomics, the same bits
on every run.

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


def atom_conv_triton(x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Atom convolution with the Triton kernels (inputs validated by ``ops.atom_conv``).

    Args:
        x: ``(B, C, H, W)``, any strides, fp32/fp16/bf16/fp64.
        atoms: ``(B, M, K², H, W)``, any strides, same dtype and device.

    Returns:
        ``(B, C·M, H, W)`` contiguous, differentiable in both inputs.
    """
    return _AtomConvTriton.apply(x, atoms)


class _AtomConvTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, atoms):
        ctx.save_for_backward(x, atoms)
        return _forward(x, atoms)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, atoms = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = _grad_x(grad_out, x, atoms) if ctx.needs_input_grad[0] else None
        grad_atoms = _grad_atoms(grad_out, x, atoms) if ctx.needs_input_grad[1] else None
        return grad_x, grad_atoms


def _check(x: torch.Tensor, atoms: torch.Tensor) -> None:
    """Kernel limits only: the public op has validated shapes and dtypes."""
    if triton is None:
        raise RuntimeError("atom_conv triton backend: expected Triton to be importable, got ImportError")
    if x.dtype not in DTYPES:
        raise ValueError(f"atom_conv triton kernel: expected a dtype in {DTYPES}, got {x.dtype}")
    if x.device != atoms.device:
        raise ValueError(f"atom_conv triton kernel: expected one device, got {x.device}, {atoms.device}")
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError(f"atom_conv triton kernel: expected CUDA tensors (or TRITON_INTERPRET=1), got {x.device}")


def _blocks(channels: int, pixels: int) -> tuple[int, int]:
    block_c = min(triton.next_power_of_2(channels), 16)
    block_p = min(triton.next_power_of_2(pixels), 4096 if os.environ.get("TRITON_INTERPRET") == "1" else 128)
    return block_c, block_p


def _accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _forward(x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    _check(x, atoms)
    batch, channels, height, width = x.shape
    count, taps = atoms.shape[1:3]
    out = torch.empty(batch, channels * count, height, width, dtype=x.dtype, device=x.device)
    block_c, block_p = _blocks(channels, height * width)
    grid = (batch * triton.cdiv(height * width, block_p), triton.cdiv(channels, block_c))
    _forward_kernel[grid](
        x, atoms, out, channels, height, width, *x.stride(), *atoms.stride(), *out.stride(),
        M=count, K=math.isqrt(taps), BLOCK_C=block_c, BLOCK_P=block_p, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return out


def _grad_x(grad_out: torch.Tensor, x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    count, taps = atoms.shape[1:3]
    grad_x = torch.empty(batch, channels, height, width, dtype=x.dtype, device=x.device)
    block_c, block_p = _blocks(channels, height * width)
    grid = (batch * triton.cdiv(height * width, block_p), triton.cdiv(channels, block_c))
    _grad_x_kernel[grid](
        grad_out, atoms, grad_x, channels, height, width, *grad_out.stride(), *atoms.stride(), *grad_x.stride(),
        M=count, K=math.isqrt(taps), BLOCK_C=block_c, BLOCK_P=block_p, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return grad_x


def _grad_atoms(grad_out: torch.Tensor, x: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    count, taps = atoms.shape[1:3]
    grad_atoms = torch.empty(batch, count, taps, height, width, dtype=atoms.dtype, device=x.device)
    block_c, block_p = _blocks(channels, height * width)
    grid = (batch * triton.cdiv(height * width, block_p), count * taps)
    _grad_atoms_kernel[grid](
        grad_out, x, grad_atoms, channels, height, width, *grad_out.stride(), *x.stride(), *grad_atoms.stride(),
        M=count, K=math.isqrt(taps), BLOCK_C=block_c, BLOCK_P=block_p, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return grad_atoms


if triton is not None:

    @triton.jit
    def _pixel_block(height, width, BLOCK_P: tl.constexpr):
        """The image ``b`` and the rows, columns and validity of this program's block of pixels."""
        blocks = tl.cdiv(height * width, BLOCK_P)
        pixels = (tl.program_id(0) % blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
        return tl.program_id(0) // blocks, pixels // width, pixels % width, pixels < height * width

    @triton.jit
    def _tap(row, col, inside, t, K: tl.constexpr, SIGN: tl.constexpr, height, width):
        """The pixel ``SIGN`` × tap ``t``'s offset away from (row, col), and whether it lies in the image."""
        r = row + SIGN * (t // K - K // 2)
        c = col + SIGN * (t % K - K // 2)
        return r, c, inside & (r >= 0) & (r < height) & (c >= 0) & (c < width)

    @triton.jit
    def _forward_kernel(
        x_ptr, atoms_ptr, out_ptr, channels, height, width,
        sxb, sxc, sxh, sxw, sab, sam, sat, sah, saw, sob, soc, soh, sow,
        M: tl.constexpr, K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        b, row, col, inside = _pixel_block(height, width, BLOCK_P)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        for m in tl.static_range(M):
            acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
            for t in tl.static_range(K * K):
                r2, c2, ok = _tap(row, col, inside, t, K, 1, height, width)
                atom = tl.load(atoms_ptr + b * sab + m * sam + t * sat + row * sah + col * saw, mask=inside, other=0.0)
                xs = tl.load(
                    x_ptr + b * sxb + c[:, None] * sxc + (r2 * sxh + c2 * sxw)[None, :],
                    mask=c_ok[:, None] & ok[None, :],
                    other=0.0,
                )
                acc += xs.to(ACC) * atom.to(ACC)[None, :]
            target = out_ptr + b * sob + (c[:, None] * M + m) * soc + (row * soh + col * sow)[None, :]
            tl.store(target, acc.to(out_ptr.dtype.element_ty), mask=c_ok[:, None] & inside[None, :])

    @triton.jit
    def _grad_x_kernel(
        g_ptr, atoms_ptr, gx_ptr, channels, height, width,
        sgb, sgc, sgh, sgw, sab, sam, sat, sah, saw, sxb, sxc, sxh, sxw,
        M: tl.constexpr, K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        b, row, col, inside = _pixel_block(height, width, BLOCK_P)
        c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=ACC)
        for t in tl.static_range(K * K):
            r1, c1, ok = _tap(row, col, inside, t, K, -1, height, width)  # the pixel p = q − t whose tap t reads q
            for m in tl.static_range(M):
                atom = tl.load(atoms_ptr + b * sab + m * sam + t * sat + r1 * sah + c1 * saw, mask=ok, other=0.0)
                g = tl.load(
                    g_ptr + b * sgb + (c[:, None] * M + m) * sgc + (r1 * sgh + c1 * sgw)[None, :],
                    mask=c_ok[:, None] & ok[None, :],
                    other=0.0,
                )
                acc += g.to(ACC) * atom.to(ACC)[None, :]
        target = gx_ptr + b * sxb + c[:, None] * sxc + (row * sxh + col * sxw)[None, :]
        tl.store(target, acc.to(gx_ptr.dtype.element_ty), mask=c_ok[:, None] & inside[None, :])

    @triton.jit
    def _grad_atoms_kernel(
        g_ptr, x_ptr, ga_ptr, channels, height, width,
        sgb, sgc, sgh, sgw, sxb, sxc, sxh, sxw, sab, sam, sat, sah, saw,
        M: tl.constexpr, K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        b, row, col, inside = _pixel_block(height, width, BLOCK_P)
        m = tl.program_id(1) // (K * K)
        t = tl.program_id(1) % (K * K)
        r2, c2, ok = _tap(row, col, inside, t, K, 1, height, width)
        acc = tl.zeros((BLOCK_P,), dtype=ACC)
        for start in range(0, channels, BLOCK_C):
            c = start + tl.arange(0, BLOCK_C)
            c_ok = c < channels
            g = tl.load(
                g_ptr + b * sgb + (c[:, None] * M + m) * sgc + (row * sgh + col * sgw)[None, :],
                mask=c_ok[:, None] & inside[None, :],
                other=0.0,
            )
            xs = tl.load(
                x_ptr + b * sxb + c[:, None] * sxc + (r2 * sxh + c2 * sxw)[None, :],
                mask=c_ok[:, None] & ok[None, :],
                other=0.0,
            )
            acc += tl.sum(g.to(ACC) * xs.to(ACC), axis=0)
        target = ga_ptr + b * sab + m * sam + t * sat + row * sah + col * saw
        tl.store(target, acc.to(ga_ptr.dtype.element_ty), mask=inside)
