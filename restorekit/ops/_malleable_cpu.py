"""Fast CPU malleable convolution: a small C++ kernel compiled on first use and run on a pool of threads.

Maths. Bilinear slicing with half-pixel centres is separable. Per image row ``y`` a table gives the upper grid
row ``y0(y)`` and the weight ``ly(y)`` of row ``y0 + 1`` (0 in the last grid row, whose neighbour is itself);
per column, ``x0(x)`` and ``lx(x)`` (:func:`_sampling_table`, exact integer arithmetic). Along an image row the
pixels come in runs sharing the cell column ``j = x0``; for each of the ``P = K² + 1`` planes (the K² taps,
then the bias) of such a cell, seen from row ``y``,

    A_t = k_t[y0, j] + ly·(k_t[y0 + 1, j] − k_t[y0, j]),    D_t = A_t(j + 1) − A_t(j)   (0 in the last column),

so the kernel at a pixel of the run is ``k̂_t = A_t + lx·D_t`` and

    out(p) = k̂_bias(p) + Σ_t k̂_t(p)·x(p + t)   (zero padding).

A block of up to 8 pixels of a run shares one computation of each ``A_t, D_t`` (four grid loads), and along
each tap row ``8 + K − 1`` loads of ``x`` serve the ``8·K`` products; per pixel that is one multiply-add to
interpolate and one to filter per tap (``2K² + 2`` against ``K²`` for a plain depthwise convolution), vectorised
over the channels (16 fp32 lanes with AVX-512, 8 with AVX2, whose 16 registers would spill a block's 512-bit
accumulators), reading ``x`` once and writing ``out`` once. The full-resolution kernel map never exists, not even
one row of it. A 1×1 grid (one kernel for the image: a depthwise convolution) has a row loop of its own, without
interpolation and, its rows held in zero-padded buffers, without edge tests.

Inference extras (forward only, no autograd): per-channel PReLU slopes applied to each row of ``x`` as it is
loaded and to the output before it is stored, so an inverted bottleneck's ``PReLU → filter → PReLU`` is one pass
(:func:`malleable_conv_prelu_cpu`); a 1×1 convolution computing each row of x as it is loaded and one projecting
each output row before it is stored (plus x), so a whole bottleneck is one pass (:func:`bottleneck_cpu`, see
``ops.bottleneck``); the expansion, PReLU and average pooling a kernel predictor reads (:func:`expand_pool_cpu`);
bilinear upsampling concatenated to a feature map with the same sampling tables (:func:`upsample_cat_cpu`, see
``ops.upsample``); and a standalone row-parallel PReLU (:func:`prelu_cpu`).

Backward, with ``g = ∂L/∂out``:

* ``∂L/∂x(q) = Σ_t k̂_t(q − t)·g(q − t)``: ``x(q)`` feeds output ``p = q − t`` through tap ``t`` of the kernel
  sliced at ``p`` — the source pixel's cell and weights, not ``q``'s. Sweeping the source pixels ``p`` of the
  K source rows in blocks of one run, the K taps of a tap row share ``p``'s cell; tap ``(i, j)`` lands on
  column ``p + j − K//2``, held in a sliding window of accumulators. It costs what the forward costs.
* ``∂L/∂k_t[cy, cx] = Σ_p φ_cy(y)·φ_cx(x)·g(p)·x(p + t)`` (``g(p)`` alone for the bias plane), the adjoint of
  the slicing: over a run, ``g·x`` summed in registers with weights ``1 − lx`` (cell ``j``) and ``lx``
  (cell ``j + 1``), then added into grid rows ``y0`` and ``y0 + 1`` with weights ``1 − ly`` and ``ly``.

Reduction choice (grid gradient): no atomics and no per-thread copies of the grid. Image rows are grouped by
``y0``; group ``gy`` writes only grid rows ``gy`` and ``gy + 1``, so all even groups run in parallel, then all
odd groups (two phases). Every cell is accumulated by one thread in a fixed order, in fp32 (fp64 for fp64), so
the result is deterministic, and the extra memory is the fp32 grid itself.

Layout and dtypes. The kernels and bias, with any strides and dtype (e.g. channel slices of one predictor
output), are read a grid row at a time: each thread packs the grid rows its image rows need into
``(w, P, C)`` buffers of the accumulation type, kept in a small least-recently-used set (2 rows forward, 2K
backward), so the forward pass allocates no grid at all; the grid gradient is accumulated in one
``(B, h, w, P, C)`` buffer (``P/s²`` of the image's size for a grid ``s`` times coarser: 0.16 at ``s = 8``,
``K = 3``) and unpacked into the kernel and bias gradients. The compute loops see channel-contiguous
``(W, C)`` rows: a channels_last fp32 (fp64) tensor is used in place; any other layout or dtype (NCHW,
strided, bf16, fp16) goes through a converted row buffer per thread, so the extra memory is
``O(threads·K·W·C)`` forward (the conversion of a channels_last bf16 row is vectorised). Image rows are split
into one contiguous range per ``torch.get_num_threads()`` threads: the forward and PReLU passes hand them to
PyTorch's own OpenMP threads where the kernel's OpenMP runtime is PyTorch's (built with ``-fopenmp``,
:func:`restorekit.ops._cpu_kernels.openmp_shared`), which a oneDNN call leaves spinning; the backward passes,
and any build without that, use Python threads (``ctypes`` releases the GIL during each call).

Build. The C++ source, ``kernels/malleable_conv_cpu.cpp``, is compiled once and cached by
:mod:`restorekit.ops._cpu_kernels`. Without a working compiler :func:`available` is false and
``ops.malleable_conv`` falls back to the reference.

Why this formulation (2 cores, C = 32, 1 thread CPU time unless noted): the reference tap loop is 80× a
channels_last depthwise convolution at 256² and 60× at 512²; ``torch.compile`` of the upsample-and-multiply
formulation took 16 s of CPU to compile and then ran at 17× the depthwise convolution (512², 2 threads:
inductor gathers the four neighbours per tap and does not vectorise them); this kernel runs at 1.3–1.4×.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
import warnings
from collections.abc import Callable

import torch

from restorekit.ops._cpu_kernels import build, int64s, openmp_shared, parallel

_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
DTYPES = tuple(_DTYPE_CODES)


def available() -> bool:
    """Whether the CPU kernel is built (or can be built now) and loaded."""
    return _library() is not None


def malleable_conv_cpu(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Malleable convolution with the compiled CPU kernel (validated inputs; see ``ops.malleable_conv``).

    Args:
        x: Feature map, ``(B, C, H, W)``, any strides, fp32/fp64/bf16/fp16.
        kernels: Low-resolution kernels, ``(B, C·K², h, w)``, same dtype.
        bias: Low-resolution biases, ``(B, C, h, w)``, same dtype.
        kernel_size: K ∈ {1, 3}.

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype and memory format; differentiable in all three tensors.
    """
    return _MalleableConvCPU.apply(x, kernels, bias, kernel_size)


class _MalleableConvCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernels, bias, kernel_size):
        ctx.save_for_backward(x, kernels, bias)
        ctx.kernel_size = kernel_size
        out = torch.empty_like(x)
        _filter("forward", x, kernels, bias, kernel_size, x, out, (None, None))
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, kernels, bias = ctx.saved_tensors
        kernel_size = ctx.kernel_size
        need_x, need_kernels, need_bias = ctx.needs_input_grad[:3]
        grad_x = grad_kernels = grad_bias = None
        if need_x:
            grad_x = torch.empty_like(x)
            _filter("grad_x", x, kernels, bias, kernel_size, grad_out, grad_x)
        if need_kernels or need_bias:
            grad_kernels, grad_bias = _grad_grid(x, kernels, bias, kernel_size, grad_out)
        return grad_x, grad_kernels, grad_bias, None


def malleable_conv_prelu_cpu(
    x: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor,
    kernel_size: int,
    slope_in: torch.Tensor | None,
    slope_out: torch.Tensor | None,
) -> torch.Tensor:
    """``prelu(malleable_conv(prelu(x, slope_in)), slope_out)`` in one pass, without autograd (inference).

    Args:
        x, kernels, bias, kernel_size: As for :func:`malleable_conv_cpu`.
        slope_in: PReLU slopes ``(C,)`` applied to x, or ``None``.
        slope_out: PReLU slopes ``(C,)`` applied to the output, or ``None``.
    """
    out = torch.empty_like(x)
    slopes = tuple(_slopes(slope, x.dtype) for slope in (slope_in, slope_out))
    _filter("forward", x, kernels, bias, kernel_size, x, out, slopes)
    return out


def prelu_cpu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """PReLU with per-channel slopes ``(C,)`` of ``x (B, C, H, W)``, in x's dtype and memory format (no autograd)."""
    batch, channels, height, width = x.shape
    out = torch.empty_like(x)
    slope = _slopes(slope, x.dtype)
    fixed = (int64s(batch, channels, height, width, 1, 1, 1), *_view(x), *_view(out), slope.data_ptr())
    function = _function("prelu", _accumulation_dtype(x.dtype))
    parallel(function, fixed, batch * height, width * channels, "prelu", inside=_threads_inside())
    return out


def prelu_pool_cpu(x: torch.Tensor, slope: torch.Tensor, pool: int) -> torch.Tensor:
    """``avg_pool2d(prelu(x, slope), pool, ceil_mode=True)`` of ``x (B, C, H, W)`` in one pass, without writing the
    activated map: ``(B, C, ⌈H/pool⌉, ⌈W/pool⌉)`` in x's dtype and memory format (no autograd)."""
    batch, channels, height, width = x.shape
    rows, cols = -(-height // pool), -(-width // pool)
    out = torch.empty(batch, channels, rows, cols, dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    slope = _slopes(slope, x.dtype)
    fixed = (int64s(batch, channels, height, width, rows, cols, pool), *_view(x), *_view(out), slope.data_ptr())
    function = _function("prelu_pool", _accumulation_dtype(x.dtype))
    parallel(function, fixed, batch * rows, pool * width * channels, "prelu_pool", inside=_threads_inside())
    return out


def bottleneck_cpu(
    x: torch.Tensor,
    expand: tuple[torch.Tensor, torch.Tensor | None],
    grid: torch.Tensor,
    kernel_size: int,
    project: tuple[torch.Tensor, torch.Tensor | None],
    slope_in: torch.Tensor | None,
    slope_out: torch.Tensor | None,
    head: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """``x + project(prelu(filter(prelu(expand(x), slope_in)), slope_out))`` in one pass, without autograd.

    Args:
        x: Feature map ``(B, Ci, H, W)``, any strides, fp32/fp64/bf16/fp16.
        expand: The 1×1 convolution ``Ci → C``: weight ``(C, Ci, 1, 1)`` and bias ``(C,)`` or ``None``.
        grid: The filter's grid as planes, ``(B, (K²+1)·C, h, w)`` in x's dtype (plane t of channel c at channel
            ``t·C + c``: the K² taps, then the bias; see ``ops.inverted_bottleneck``), channels_last or any strides
            whose channels are contiguous.
        kernel_size: K ∈ {1, 3}.
        project: The 1×1 convolution ``C → Ci``: weight ``(Ci, C, 1, 1)`` and bias ``(Ci,)`` or ``None``.
        slope_in, slope_out: PReLU slopes ``(C,)`` or ``None``.
        head: A 1×1 convolution ``F → (K²+1)·C`` (weight, bias) whose outputs are the planes: then ``grid`` is
            the features ``(B, F, h, w)`` it reads, and the kernel computes each grid row as it needs it.

    Returns:
        ``(B, Ci, H, W)`` in x's dtype and memory format. The expanded and filtered maps exist only as a few
        rows per thread, in the accumulation type (so with bf16 x they are not rounded to bf16 between steps).
    """
    batch, in_channels, height, width = x.shape
    hidden = expand[0].shape[0]
    rows, cols = grid.shape[-2:]
    dtype = _accumulation_dtype(x.dtype)
    y0, ly, _ = _sampling_table(height, rows, dtype)
    x0, lx, _ = _sampling_table(width, cols, dtype)
    if grid.stride(1) != 1 and head is None:
        grid = grid.contiguous(memory_format=torch.channels_last)
    head_weight, head_bias, head_pairs = _pointwise(*head, x.dtype) if head is not None else (None, None, None)
    expand_weight, expand_bias, expand_pairs = _pointwise(*expand, x.dtype)
    project_weight, project_bias, project_pairs = _pointwise(*project, x.dtype)
    slopes = tuple(_slopes(slope, x.dtype) for slope in (slope_in, slope_out))
    out = torch.empty_like(x)
    fixed = (int64s(batch, hidden, height, width, rows, cols, kernel_size), *_view(x), *_view(grid), *_view(out))
    fixed += (y0.data_ptr(), ly.data_ptr(), x0.data_ptr(), lx.data_ptr())
    fixed += tuple(None if slope is None else slope.data_ptr() for slope in slopes)
    fixed += (expand_weight.data_ptr(), expand_bias.data_ptr(), _pointer(expand_pairs))
    fixed += (project_weight.data_ptr(), project_bias.data_ptr(), _pointer(project_pairs), in_channels)
    fixed += (_pointer(head_weight), _pointer(head_bias), _pointer(head_pairs), grid.shape[1])
    function = _function("bottleneck", dtype)
    parallel(function, fixed, batch * height, width * hidden, "inverted_bottleneck", inside=_threads_inside())
    return out


def expand_pool_cpu(
    x: torch.Tensor, expand: tuple[torch.Tensor, torch.Tensor | None], slope: torch.Tensor, pool: int
) -> torch.Tensor:
    """``avg_pool2d(prelu(expand(x), slope), pool, ceil_mode=True)`` in one pass (no autograd): the expanded map is
    never written. ``x (B, Ci, H, W)``, expand as for :func:`bottleneck_cpu` → ``(B, C, ⌈H/pool⌉, ⌈W/pool⌉)`` in
    x's dtype and memory format."""
    batch, in_channels, height, width = x.shape
    hidden = expand[0].shape[0]
    rows, cols = -(-height // pool), -(-width // pool)
    dtype = _accumulation_dtype(x.dtype)
    weight, bias, pairs = _pointwise(*expand, x.dtype)
    out = torch.empty(batch, hidden, rows, cols, dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    slope = _slopes(slope, x.dtype)
    fixed = (int64s(batch, hidden, height, width, rows, cols, pool), *_view(x), *_view(out), slope.data_ptr())
    fixed += (weight.data_ptr(), bias.data_ptr(), _pointer(pairs), in_channels)
    function = _function("expand_pool", dtype)
    parallel(function, fixed, batch * rows, pool * width * hidden, "expand_pool", inside=_threads_inside())
    return out


def upsample_cat_cpu(features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """``cat([features, interpolate(coarse, features' size, bilinear, align_corners=False)])`` in one row pass (no
    autograd): ``features (B, Cf, H, W)``, ``coarse (B, C, h, w)`` of one dtype → ``(B, Cf + C, H, W)`` in that dtype
    and features' memory format. The interpolation uses the grid slicing's sampling tables (the same maths)."""
    batch, f_channels, height, width = features.shape
    channels, rows, cols = coarse.shape[1:]
    dtype = _accumulation_dtype(features.dtype)
    y0, ly, _ = _sampling_table(height, rows, dtype)
    x0, lx, _ = _sampling_table(width, cols, dtype)
    out = torch.empty(
        batch, f_channels + channels, height, width, dtype=features.dtype, memory_format=_memory_format(features)
    )
    fixed = (int64s(batch, channels, height, width, rows, cols, 1), f_channels, *_view(features), *_view(coarse))
    fixed += (*_view(out), y0.data_ptr(), ly.data_ptr(), x0.data_ptr(), lx.data_ptr())
    function = _function("upsample_cat", dtype)
    parallel(function, fixed, batch * height, width * out.shape[1], "upsample_cat", inside=_threads_inside())
    return out


def _pointwise(
    weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A 1×1 convolution's weight ``(out, in, 1, 1)`` as the kernel reads it, for a feature map of ``dtype``: ``(in,
    out)`` contiguous and the bias (zeros for none) in the accumulation type, and for bf16 maps, where the build has
    bf16 dot products and the shape suits them (``in`` even, ``out`` a multiple of 16), the weight rounded to bf16 as
    ``(in/2, out, 2)`` (else ``None``): the same rounding as a bf16 convolution under autocast."""
    accumulation = _accumulation_dtype(dtype)
    matrix = weight.detach().flatten(1).t()
    transposed = matrix.to(accumulation).contiguous()
    bias = transposed.new_zeros(matrix.shape[1]) if bias is None else bias.detach().to(accumulation).contiguous()
    inputs, outputs = matrix.shape
    pairs = None
    if dtype == torch.bfloat16 and _bf16_dot() and inputs % 2 == 0 and outputs % 16 == 0:
        pairs = matrix.to(torch.bfloat16).reshape(inputs // 2, 2, outputs).transpose(1, 2).contiguous()
    return transposed, bias, pairs


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


@functools.cache
def _bf16_dot() -> bool:
    """Whether the kernel was built with bf16 dot products (AVX512-BF16, see ``ops._cpu_kernels``)."""
    library = _library()
    return library is not None and bool(library.mc_has_bf16_dot())


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _slopes(slope: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if slope is None else slope.detach().to(_accumulation_dtype(dtype)).contiguous()


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _shape(x: torch.Tensor, bias: torch.Tensor, kernel_size: int) -> ctypes.Array:
    return int64s(*x.shape, *bias.shape[-2:], kernel_size)


@functools.lru_cache(maxsize=64)
def _sampling_table(size: int, grid_size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis: each pixel's upper cell and next-cell weight, and where each cell's pixels start.

    Pixel ``i`` samples the grid at ``(i + ½)·grid_size/size − ½`` clamped at 0 (``align_corners=False``), the
    exact fraction ``n / 2·size`` with ``n = (2i + 1)·grid_size − size``: integer arithmetic, as in the Triton
    kernels. Past the last centre the neighbour is the last cell itself, so its weight is 0.

    Returns:
        ``first`` (int32, ``(size,)``), ``weight`` (``dtype``, ``(size,)``) and ``starts`` (int32,
        ``(grid_size + 1,)``): the pixels whose upper cell is ``c`` are ``starts[c]`` … ``starts[c + 1] − 1``.
    """
    numerator = ((2 * torch.arange(size) + 1) * grid_size - size).clamp(min=0)
    first = (numerator // (2 * size)).clamp(max=grid_size - 1)
    weight = (numerator - first * 2 * size).to(torch.float64) / (2 * size)
    weight = torch.where(first < grid_size - 1, weight, 0.0).to(dtype)
    starts = torch.searchsorted(first, torch.arange(grid_size + 1))
    return first.to(torch.int32), weight, starts.to(torch.int32)


def _filter(
    kind: str,
    x: torch.Tensor,
    kernels: torch.Tensor,
    bias: torch.Tensor,
    kernel_size: int,
    source: torch.Tensor,
    target: torch.Tensor,
    slopes: tuple[torch.Tensor | None, torch.Tensor | None] = (),
) -> None:
    """Row-parallel ``forward`` (source x → target out) or ``grad_x`` (source ∂L/∂out → target ∂L/∂x).

    ``forward`` takes ``slopes``: the PReLU slopes applied to x before the filter and to its output, each a
    contiguous ``(C,)`` tensor of the accumulation type or ``None``.
    """
    batch, channels, height, width = x.shape
    rows, cols = bias.shape[-2:]
    dtype = _accumulation_dtype(x.dtype)
    y0, ly, _ = _sampling_table(height, rows, dtype)
    x0, lx, _ = _sampling_table(width, cols, dtype)
    fixed = (_shape(x, bias, kernel_size), *_view(source), *_view(kernels), *_view(bias), *_view(target))
    fixed += (y0.data_ptr(), ly.data_ptr(), x0.data_ptr(), lx.data_ptr())
    fixed += tuple(None if slope is None else slope.data_ptr() for slope in slopes)
    inside = kind == "forward" and _threads_inside()
    parallel(_function(kind, dtype), fixed, batch * height, width * channels, "malleable_conv", inside=inside)


def _grad_grid(
    x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor, kernel_size: int, grad_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the kernels ``(B, C·K², h, w)`` and bias ``(B, C, h, w)``, in two deterministic phases."""
    batch, channels, height, width = x.shape
    rows, cols = bias.shape[-2:]
    dtype = _accumulation_dtype(x.dtype)
    grid = torch.zeros(batch, rows, cols, kernel_size**2 + 1, channels, dtype=dtype)
    _, ly, starts = _sampling_table(height, rows, dtype)
    x0, lx, _ = _sampling_table(width, cols, dtype)
    shape = _shape(x, bias, kernel_size)
    for phase in (0, 1):
        fixed = (shape, *_view(grad_out), *_view(x), grid.data_ptr())
        fixed += (starts.data_ptr(), ly.data_ptr(), x0.data_ptr(), lx.data_ptr(), phase)
        groups = (rows - phase + 1) // 2
        work = height * width * channels // rows
        parallel(_function("grad_grid", dtype), fixed, batch * groups, work, "malleable_conv")
    grad_kernels, grad_bias = torch.empty_like(kernels), torch.empty_like(bias)
    fixed = (shape, *_view(grad_kernels), *_view(grad_bias), grid.data_ptr())
    work = cols * channels * (kernel_size**2 + 1)
    parallel(_function("unpack_grid", dtype), fixed, batch * rows, work, "malleable_conv")
    return grad_kernels, grad_bias


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _function(kind: str, dtype: torch.dtype) -> Callable[..., int]:
    return getattr(_library(), f"mc_{kind}_{_SUFFIX[dtype]}")


def _view(tensor: torch.Tensor) -> tuple[int, int, ctypes.Array]:
    return tensor.data_ptr(), _DTYPE_CODES[tensor.dtype], int64s(*tensor.stride())


@functools.cache
def _threads_inside() -> bool:
    """Whether the forward and PReLU entry points split their rows over PyTorch's OpenMP threads themselves
    (the kernel was built with OpenMP, and its runtime is PyTorch's); decided, and set in the kernel, once."""
    library = _library()
    return library is not None and bool(library.mc_set_threads_inside(int(openmp_shared())))


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL(str(build("malleable_conv_cpu", openmp=True)))
    except (OSError, subprocess.SubprocessError) as exc:
        message = f"malleable_conv: the CPU kernel could not be built ({exc}); using the reference"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return None
    pointer, integer, int64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    view = [pointer, integer, pointer]
    tables = [pointer] * 4
    for suffix in _SUFFIX.values():
        for kind, slopes in (("forward", [pointer, pointer]), ("grad_x", [])):
            function = getattr(library, f"mc_{kind}_{suffix}")
            function.argtypes = [pointer, *view, *view, *view, *view, *tables, *slopes, int64, int64]
            function.restype = integer
        for kind in ("prelu", "prelu_pool"):
            function = getattr(library, f"mc_{kind}_{suffix}")
            function.argtypes = [pointer, *view, *view, pointer, int64, int64]
            function.restype = integer
        function = getattr(library, f"mc_bottleneck_{suffix}")
        pointwise = [pointer] * 3  # weight, bias, bf16 pairs
        function.argtypes = [pointer, *view, *view, *view, *tables, pointer, pointer, *pointwise, *pointwise, int64]
        function.argtypes += [*pointwise, int64, int64, int64]
        function.restype = integer
        function = getattr(library, f"mc_expand_pool_{suffix}")
        function.argtypes = [pointer, *view, *view, *[pointer] * 4, int64, int64, int64]
        function.restype = integer
        function = getattr(library, f"mc_upsample_cat_{suffix}")
        function.argtypes = [pointer, int64, *view, *view, *view, *tables, int64, int64]
        function.restype = integer
        function = getattr(library, f"mc_grad_grid_{suffix}")
        function.argtypes = [pointer, *view, *view, pointer, *tables, integer, int64, int64]
        function.restype = integer
        function = getattr(library, f"mc_unpack_grid_{suffix}")
        function.argtypes = [pointer, *view, *view, pointer, int64, int64]
        function.restype = integer
    library.mc_has_bf16_dot.argtypes, library.mc_has_bf16_dot.restype = [], integer
    library.mc_set_threads_inside.argtypes, library.mc_set_threads_inside.restype = [integer], integer
    return library
