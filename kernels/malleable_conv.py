"""Triton malleable convolution: a fused forward, grad x and grid gradient, wrapped in an autograd Function.

Maths. A low-resolution grid of depthwise kernels ``k[t]`` (``K²`` taps ``t``) and biases, ``(h, w)`` cells, is
sliced to the ``(H, W)`` image bilinearly with half-pixel centres (``align_corners=False``) and replicated
borders. Along one axis, image index ``i`` samples the grid at ``(i + ½)·h/H − ½`` clamped at 0; written as the
exact fraction ``n / 2H`` with ``n = (2i + 1)·h − H``, its upper cell is ``⌊n / 2H⌋`` (at most ``h − 1``) and
the weight of the next cell is the remainder over ``2H`` (0 in the last cell, whose neighbour is itself) —
integer arithmetic, so every kernel here and the CPU backend place every pixel in the same cell. With
``φ`` the product of the row and column weights of the four neighbouring cells ``q``:

    k̂_t(p) = Σ_q φ_q(p)·k_t[q],    out(p) = b̂(p) + Σ_t k̂_t(p)·x(p + t)    (zero padding).

Forward (``_forward_kernel``): one program per tile of ``BLOCK_H × BLOCK_W`` pixels and ``BLOCK_C`` channels
loads, for each tap, the four neighbouring cells' values, blends them in registers and multiplies by the
shifted input tile; nothing of size ``K²·H·W`` is ever written. Accumulation in fp32 (fp64 for fp64).

Grad x (``_grad_x_kernel``): ``x(q)`` feeds ``out(p)`` for ``p = q − t`` through tap ``t`` of the kernel
sliced at ``p`` — the source pixel, whose cells and weights differ from ``q``'s — so

    ∂L/∂x(q) = Σ_t k̂_t(q − t)·g(q − t),

a gather with the taps flipped, each tap's kernel interpolated at its own source pixel.

Grid gradient (``_grad_grid_kernel``): ``∂L/∂k_t[q] = Σ_p φ_q(p)·g(p)·x(p + t)`` (``g(p)`` for the bias), a
reduction over every pixel that touches cell ``q``. Reduction choice: neither per-pixel atomics (four atomic
adds per pixel, tap and channel, contended and run-to-run nondeterministic) nor a two-pass buffer of per-tile
partial sums (as large as ``0.6×`` the input at ``s = 8``). Pixels are grouped by their upper cell
``(gy, gx)``: all pixels of a group share the same four cells, so one program reduces its group in registers
and adds four partial sums into cells ``{gy, gy + 1} × {gx, gx + 1}`` with plain loads and stores. Groups of
equal parity ``(gy mod 2, gx mod 2)`` write disjoint 2×2 blocks of cells, so four launches (one per parity)
need no atomics, read every pixel once, and give the same bits on every run.

Launchers check only kernel limits, then allocate, then launch; tile shapes are autotuned per shape
(``key=`` on the shape arguments), with a single large-tile configuration under ``TRITON_INTERPRET=1``.
Importing this module never requires Triton: :func:`available` says whether it is there.
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU backend and the reference need no Triton
    triton = None

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def available() -> bool:
    """Whether Triton is importable (the kernels still need a CUDA device, or ``TRITON_INTERPRET=1``)."""
    return triton is not None


def malleable_conv_triton(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Malleable convolution with the Triton kernels (inputs validated by ``ops.malleable_conv``).

    Args:
        x: Feature map, ``(B, C, H, W)``, any strides (NCHW, channels_last, views), fp32/fp16/bf16/fp64.
        kernels: Low-resolution kernels, ``(B, C·K², h, w)``, same dtype and device.
        bias: Low-resolution biases, ``(B, C, h, w)``, same dtype and device.
        kernel_size: K ∈ {1, 3}.

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype and memory format; differentiable in all three tensors.
    """
    return _MalleableConvTriton.apply(x, kernels, bias, kernel_size)


class _MalleableConvTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernels, bias, kernel_size):
        ctx.save_for_backward(x, kernels, bias)
        ctx.kernel_size = kernel_size
        return _forward(x, kernels, bias, kernel_size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, kernels, bias = ctx.saved_tensors
        need_x, need_kernels, need_bias = ctx.needs_input_grad[:3]
        grad_x = _grad_x(grad_out, x, kernels, ctx.kernel_size) if need_x else None
        grad_kernels = grad_bias = None
        if need_kernels or need_bias:
            grad_kernels, grad_bias = _grad_grid(grad_out, x, kernels, bias, ctx.kernel_size)
        return grad_x, grad_kernels, grad_bias, None


def _check(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> None:
    """Kernel limits only: the public op has validated shapes and dtypes."""
    if triton is None:
        raise RuntimeError("malleable_conv triton backend: expected Triton to be importable, got ImportError")
    if kernel_size not in (1, 3):
        raise ValueError(f"malleable_conv triton kernel: expected kernel_size 1 or 3, got {kernel_size}")
    if x.dtype not in DTYPES:
        raise ValueError(f"malleable_conv triton kernel: expected a dtype in {DTYPES}, got {x.dtype}")
    if not (x.device == kernels.device == bias.device):
        raise ValueError(f"malleable_conv triton kernel: expected one device, got {x.device}, {kernels.device}")
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        raise ValueError(f"malleable_conv triton kernel: expected CUDA tensors (or TRITON_INTERPRET=1), got {x.device}")


def _channel_block(channels: int) -> int:
    return min(triton.next_power_of_2(channels), 32)


def _accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _forward(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> torch.Tensor:
    _check(x, kernels, bias, kernel_size)
    batch, channels, height, width = x.shape
    rows, cols = bias.shape[-2:]
    out = torch.empty_like(x)
    block_c = _channel_block(channels)

    def grid(meta):
        tiles = triton.cdiv(height, meta["BLOCK_H"]) * triton.cdiv(width, meta["BLOCK_W"])
        return tiles, batch * triton.cdiv(channels, block_c)

    _forward_kernel[grid](
        x, kernels, bias, out, channels, height, width, rows, cols,
        *x.stride(), *kernels.stride(), *bias.stride(), *out.stride(),
        K=kernel_size, BLOCK_C=block_c, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return out


def _grad_x(grad_out: torch.Tensor, x: torch.Tensor, kernels: torch.Tensor, kernel_size: int) -> torch.Tensor:
    batch, channels, height, width = x.shape
    rows, cols = kernels.shape[-2:]
    grad_x = torch.empty_like(x)
    block_c = _channel_block(channels)

    def grid(meta):
        tiles = triton.cdiv(height, meta["BLOCK_H"]) * triton.cdiv(width, meta["BLOCK_W"])
        return tiles, batch * triton.cdiv(channels, block_c)

    _grad_x_kernel[grid](
        grad_out, kernels, grad_x, channels, height, width, rows, cols,
        *grad_out.stride(), *kernels.stride(), *grad_x.stride(),
        K=kernel_size, BLOCK_C=block_c, ACC=_accumulator(x.dtype),
    )  # fmt: skip
    return grad_x


def _grad_grid(
    grad_out: torch.Tensor, x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the kernels ``(B, C·K², h, w)`` and bias ``(B, C, h, w)``: four parity launches."""
    batch, channels, height, width = x.shape
    rows, cols = bias.shape[-2:]
    taps = kernel_size**2
    accumulate = torch.float64 if x.dtype == torch.float64 else torch.float32
    grad = torch.zeros(batch, channels, taps + 1, rows, cols, dtype=accumulate, device=x.device)
    block_c = _channel_block(channels)
    for parity_y in (0, 1):
        for parity_x in (0, 1):
            groups_y, groups_x = (rows - parity_y + 1) // 2, (cols - parity_x + 1) // 2
            if groups_y == 0 or groups_x == 0:
                continue
            _grad_grid_kernel[(groups_y * groups_x, batch * triton.cdiv(channels, block_c))](
                grad_out, x, grad, channels, height, width, rows, cols, parity_y, parity_x, groups_x,
                *grad_out.stride(), *x.stride(), *grad.stride(),
                K=kernel_size, BLOCK_C=block_c, ACC=_accumulator(x.dtype),
            )  # fmt: skip
    grad_kernels = grad[:, :, :taps].reshape(kernels.shape).to(kernels.dtype)
    return grad_kernels, grad[:, :, taps].to(bias.dtype)


def _configs(tiles: tuple[tuple[int, int, int], ...]) -> list:
    """Autotune candidates ``(BLOCK_H, BLOCK_W, num_warps)``; one large tile under the interpreter (slow)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return [triton.Config({"BLOCK_H": 16, "BLOCK_W": 16}, num_warps=1)]
    return [triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=warps) for bh, bw, warps in tiles]


_IMAGE_TILES = ((4, 32, 4), (8, 16, 4), (8, 32, 8), (16, 16, 8), (2, 64, 4), (1, 128, 4))
_GROUP_TILES = ((8, 8, 2), (8, 8, 4), (4, 16, 4), (16, 16, 8))

if triton is not None:

    @triton.jit
    def _source(index, size, grid_size, ACC: tl.constexpr):
        """Upper cell, next cell and next-cell weight of image index ``index`` (``size`` → ``grid_size``)."""
        numerator = tl.maximum((2 * index.to(tl.int64) + 1) * grid_size - size, 0)  # position · 2·size
        first = tl.minimum(numerator // (2 * size), grid_size - 1)
        weight = (numerator - first * 2 * size).to(ACC) / (2 * size)
        weight = tl.where(first < grid_size - 1, weight, 0.0)
        return first, tl.minimum(first + 1, grid_size - 1), weight

    @triton.jit
    def _group_start(group, size, grid_size):
        """First image index whose upper cell is ``group`` (``size`` when past the last cell)."""
        numerator = tl.maximum(2 * size * group + size - grid_size, 0)
        start = (numerator + 2 * grid_size - 1) // (2 * grid_size)
        return tl.where(group == 0, 0, tl.where(group >= grid_size, size, tl.minimum(start, size)))

    @triton.jit
    def _blend(ptr, row0, row1, col0, col1, w00, w01, w10, w11, mask, ACC: tl.constexpr):
        """Bilinear blend of four grid cells: pointers ``ptr`` ``[1, BC]`` plus cell offsets ``[P, 1]``."""
        value = w00 * tl.load(ptr + row0 + col0, mask=mask, other=0.0).to(ACC)
        value += w01 * tl.load(ptr + row0 + col1, mask=mask, other=0.0).to(ACC)
        value += w10 * tl.load(ptr + row1 + col0, mask=mask, other=0.0).to(ACC)
        value += w11 * tl.load(ptr + row1 + col1, mask=mask, other=0.0).to(ACC)
        return value

    @triton.autotune(configs=_configs(_IMAGE_TILES), key=["C", "H", "W", "h", "w", "K"])
    @triton.jit
    def _forward_kernel(
        x_ptr, k_ptr, b_ptr, out_ptr, C, H, W, h, w,
        sxb, sxc, sxh, sxw, skb, skc, skh, skw, sbb, sbc, sbh, sbw, sob, soc, soh, sow,
        K: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    ):  # fmt: skip
        """out(p) = b̂(p) + Σ_t k̂_t(p)·x(p + t) over one tile of pixels × channels."""
        pad: tl.constexpr = K // 2
        tiles_w = tl.cdiv(W, BLOCK_W)
        blocks_c = tl.cdiv(C, BLOCK_C)
        batch = (tl.program_id(1) // blocks_c).to(tl.int64)
        offs = tl.arange(0, BLOCK_H * BLOCK_W)
        py = (tl.program_id(0) // tiles_w) * BLOCK_H + offs // BLOCK_W
        px = (tl.program_id(0) % tiles_w) * BLOCK_W + offs % BLOCK_W
        c = (tl.program_id(1) % blocks_c) * BLOCK_C + tl.arange(0, BLOCK_C)
        inside = (py < H) & (px < W)
        mask = inside[:, None] & (c < C)[None, :]
        y0, y1, ly = _source(py, H, h, ACC)
        x0, x1, lx = _source(px, W, w, ACC)
        w00 = ((1 - ly) * (1 - lx))[:, None]
        w01 = ((1 - ly) * lx)[:, None]
        w10 = (ly * (1 - lx))[:, None]
        w11 = (ly * lx)[:, None]
        c64 = c.to(tl.int64)[None, :]
        acc = _blend(
            b_ptr + batch * sbb + c64 * sbc, (y0 * sbh)[:, None], (y1 * sbh)[:, None], (x0 * sbw)[:, None],
            (x1 * sbw)[:, None], w00, w01, w10, w11, mask, ACC,
        )  # fmt: skip
        k_rows0, k_rows1 = (y0 * skh)[:, None], (y1 * skh)[:, None]
        k_cols0, k_cols1 = (x0 * skw)[:, None], (x1 * skw)[:, None]
        x_base = x_ptr + batch * sxb + c64 * sxc
        for t in tl.static_range(K * K):
            kernel = _blend(
                k_ptr + batch * skb + (c64 * (K * K) + t) * skc, k_rows0, k_rows1, k_cols0, k_cols1,
                w00, w01, w10, w11, mask, ACC,
            )  # fmt: skip
            yy = py + (t // K - pad)
            xx = px + (t % K - pad)
            valid = inside & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            offset = (yy.to(tl.int64) * sxh + xx.to(tl.int64) * sxw)[:, None]
            value = tl.load(x_base + offset, mask=valid[:, None] & mask, other=0.0).to(ACC)
            acc += kernel * value
        offset = (py.to(tl.int64) * soh + px.to(tl.int64) * sow)[:, None]
        tl.store(out_ptr + batch * sob + c64 * soc + offset, acc.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.autotune(configs=_configs(_IMAGE_TILES), key=["C", "H", "W", "h", "w", "K"])
    @triton.jit
    def _grad_x_kernel(
        g_ptr, k_ptr, dx_ptr, C, H, W, h, w,
        sgb, sgc, sgh, sgw, skb, skc, skh, skw, sdb, sdc, sdh, sdw,
        K: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    ):  # fmt: skip
        """∂L/∂x(q) = Σ_t k̂_t(q − t)·g(q − t), each tap's kernel sliced at its source pixel q − t."""
        pad: tl.constexpr = K // 2
        tiles_w = tl.cdiv(W, BLOCK_W)
        blocks_c = tl.cdiv(C, BLOCK_C)
        batch = (tl.program_id(1) // blocks_c).to(tl.int64)
        offs = tl.arange(0, BLOCK_H * BLOCK_W)
        qy = (tl.program_id(0) // tiles_w) * BLOCK_H + offs // BLOCK_W
        qx = (tl.program_id(0) % tiles_w) * BLOCK_W + offs % BLOCK_W
        c = (tl.program_id(1) % blocks_c) * BLOCK_C + tl.arange(0, BLOCK_C)
        inside = (qy < H) & (qx < W)
        channels = (c < C)[None, :]
        c64 = c.to(tl.int64)[None, :]
        acc = tl.zeros([BLOCK_H * BLOCK_W, BLOCK_C], dtype=ACC)
        for i in tl.static_range(K):
            py = qy - (i - pad)
            y0, y1, ly = _source(py, H, h, ACC)
            for j in tl.static_range(K):
                px = qx - (j - pad)
                x0, x1, lx = _source(px, W, w, ACC)
                valid = inside & (py >= 0) & (py < H) & (px >= 0) & (px < W)
                mask = valid[:, None] & channels
                kernel = _blend(
                    k_ptr + batch * skb + (c64 * (K * K) + i * K + j) * skc, (y0 * skh)[:, None],
                    (y1 * skh)[:, None], (x0 * skw)[:, None], (x1 * skw)[:, None],
                    ((1 - ly) * (1 - lx))[:, None], ((1 - ly) * lx)[:, None], (ly * (1 - lx))[:, None],
                    (ly * lx)[:, None], mask, ACC,
                )  # fmt: skip
                offset = (py.to(tl.int64) * sgh + px.to(tl.int64) * sgw)[:, None]
                grad = tl.load(g_ptr + batch * sgb + c64 * sgc + offset, mask=mask, other=0.0).to(ACC)
                acc += kernel * grad
        offset = (qy.to(tl.int64) * sdh + qx.to(tl.int64) * sdw)[:, None]
        mask = inside[:, None] & channels
        tl.store(dx_ptr + batch * sdb + c64 * sdc + offset, acc.to(dx_ptr.dtype.element_ty), mask=mask)

    # Read-modify-write of d: the autotuner must restore it after each trial launch.
    @triton.autotune(configs=_configs(_GROUP_TILES), key=["C", "H", "W", "h", "w", "K"], restore_value=["d_ptr"])
    @triton.jit
    def _grad_grid_kernel(
        g_ptr, x_ptr, d_ptr, C, H, W, h, w, parity_y, parity_x, groups_x,
        sgb, sgc, sgh, sgw, sxb, sxc, sxh, sxw, sdb, sdc, sdt, sdh, sdw,
        K: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
    ):  # fmt: skip
        """Adds the four cell partial sums of one pixel group (upper cell (gy, gx)) into the grid gradient.

        Grid gradient ``d`` is ``(B, C, K² + 1, h, w)`` in ``ACC``; plane ``K²`` is the bias.
        """
        pad: tl.constexpr = K // 2
        blocks_c = tl.cdiv(C, BLOCK_C)
        batch = (tl.program_id(1) // blocks_c).to(tl.int64)
        gy = 2 * (tl.program_id(0) // groups_x) + parity_y
        gx = 2 * (tl.program_id(0) % groups_x) + parity_x
        row_start, row_stop = _group_start(gy, H, h), _group_start(gy + 1, H, h)
        col_start, col_stop = _group_start(gx, W, w), _group_start(gx + 1, W, w)
        c = (tl.program_id(1) % blocks_c) * BLOCK_C + tl.arange(0, BLOCK_C)
        channels = c < C
        c64 = c.to(tl.int64)[None, :]
        offs = tl.arange(0, BLOCK_H * BLOCK_W)
        cells = d_ptr + batch * sdb + c.to(tl.int64) * sdc + gy * sdh + gx * sdw
        right = c < tl.where(gx + 1 < w, C, 0)  # channels of cell gx + 1, none past the last column
        below = c < tl.where(gy + 1 < h, C, 0)
        corner = right & below
        for t in tl.static_range(K * K + 1):
            s00 = tl.zeros([BLOCK_H * BLOCK_W, BLOCK_C], dtype=ACC)
            s01 = tl.zeros([BLOCK_H * BLOCK_W, BLOCK_C], dtype=ACC)
            s10 = tl.zeros([BLOCK_H * BLOCK_W, BLOCK_C], dtype=ACC)
            s11 = tl.zeros([BLOCK_H * BLOCK_W, BLOCK_C], dtype=ACC)
            for row in range(row_start, row_stop, BLOCK_H):
                for col in range(col_start, col_stop, BLOCK_W):
                    py = row + offs // BLOCK_W
                    px = col + offs % BLOCK_W
                    inside = (py < row_stop) & (px < col_stop)
                    mask = inside[:, None] & channels[None, :]
                    _, _, ly = _source(py, H, h, ACC)
                    _, _, lx = _source(px, W, w, ACC)
                    offset = (py.to(tl.int64) * sgh + px.to(tl.int64) * sgw)[:, None]
                    term = tl.load(g_ptr + batch * sgb + c64 * sgc + offset, mask=mask, other=0.0).to(ACC)
                    if t < K * K:
                        yy = py + (t // K - pad)
                        xx = px + (t % K - pad)
                        valid = inside & (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
                        offset = (yy.to(tl.int64) * sxh + xx.to(tl.int64) * sxw)[:, None]
                        x_base = x_ptr + batch * sxb + c64 * sxc
                        term *= tl.load(x_base + offset, mask=valid[:, None] & mask, other=0.0).to(ACC)
                    ly = ly[:, None]
                    lx = lx[:, None]
                    s00 += (1 - ly) * (1 - lx) * term
                    s01 += (1 - ly) * lx * term
                    s10 += ly * (1 - lx) * term
                    s11 += ly * lx * term
            plane = cells + t * sdt
            tl.store(plane, tl.load(plane, mask=channels) + tl.sum(s00, axis=0), mask=channels)
            tl.store(plane + sdw, tl.load(plane + sdw, mask=right) + tl.sum(s01, axis=0), mask=right)
            tl.store(plane + sdh, tl.load(plane + sdh, mask=below) + tl.sum(s10, axis=0), mask=below)
            plane = plane + sdh + sdw
            tl.store(plane, tl.load(plane, mask=corner) + tl.sum(s11, axis=0), mask=corner)
