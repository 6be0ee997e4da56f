"""An inverted bottleneck as one op, for inference: ``x + project(prelu(filter(prelu(expand(x)))))``.

``expand`` and ``project`` are 1×1 convolutions (``Ci → C → Ci``, C = 5·Ci in MalleNet), the filter a malleable
convolution (:func:`restorekit.ops.malleable_conv`; a depthwise convolution is its 1×1-grid case). Run step by
step, the bottleneck writes and reads its expanded map (C channels, full resolution) between every two steps,
and on a CPU those steps are bound by that memory traffic. The CPU kernel (in the malleable convolution's library,
:mod:`restorekit.ops._malleable_cpu`) runs the whole block one image row at a time: each thread expands the few
input rows its output row needs into a ring of rows in cache, filters them and projects the result, so the
expanded map exists only as those rows, in fp32. With bf16 x the 1×1 convolutions run on bf16 dot products where
the CPU has them (AVX512-BF16): their weights and inputs are rounded to bf16, as a bf16 convolution under autocast
rounds them, but the expanded map and the grid are not rounded between steps. :func:`expand_prelu_pool` is the
same trick for what a MalleConv's kernel predictor reads: the expanded, activated map average-pooled.

The filter's grid comes as planes, ``(B, (K²+1)·C, h, w)``: plane ``t`` of channel ``c`` at channel ``t·C + c``, the
K² taps (row-major) then the bias (:func:`planes`, :func:`kernels_and_bias`). Channels-last, that is how the kernel
reads a cell, so it is read as it is, not transposed cell by cell. Or the grid comes as a kernel predictor's
features and its head (a 1×1 convolution whose output rows are in plane order), and the kernel computes each grid
row when it needs it: at MalleNet's coarsest level the grid is as fine as the image and ten times as wide.

Neither has a backward: with a gradient to compute, or off the CPU, the reference runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape
from restorekit.ops import _malleable_cpu
from restorekit.ops._backend import Backends, pick_backend
from restorekit.ops.malleable_conv import _validate, malleable_conv_reference
from restorekit.ops.prelu import prelu_reference

BOTTLENECK_BACKENDS = Backends("inverted_bottleneck", cpu=_malleable_cpu, cpu_backward=False)
POOL_BACKENDS = Backends("expand_prelu_pool", cpu=_malleable_cpu, cpu_backward=False)
Pointwise = tuple[torch.Tensor, torch.Tensor | None]  # a 1×1 convolution: weight (out, in, 1, 1), bias (out,) or None


def inverted_bottleneck(
    x: torch.Tensor,
    expand: Pointwise,
    grid: torch.Tensor,
    project: Pointwise,
    slope_in: torch.Tensor | None = None,
    slope_out: torch.Tensor | None = None,
    head: Pointwise | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``x + project(prelu(malleable_conv(prelu(expand(x), slope_in), *kernels_and_bias(grid)), slope_out))``.

    Args:
        x: Feature map, ``(B, Ci, H, W)``.
        expand: 1×1 convolution ``Ci → C``: weight ``(C, Ci, 1, 1)``, bias ``(C,)`` or ``None``.
        grid: The filter's low-resolution kernels and biases as planes, ``(B, (K²+1)·C, h, w)``, K ∈ {1, 3},
            x's dtype (see the module's docstring).
        project: 1×1 convolution ``C → Ci``: weight ``(Ci, C, 1, 1)``, bias ``(Ci,)`` or ``None``.
        slope_in: PReLU slopes ``(C,)`` after the expansion, or ``None``.
        slope_out: PReLU slopes ``(C,)`` after the filter, or ``None``.
        head: A 1×1 convolution ``F → (K²+1)·C``, weight ``((K²+1)·C, F, 1, 1)`` and bias or ``None``, whose
            outputs are the planes (a kernel predictor's head, rows in plane order): then ``grid`` is the features
            ``(B, F, h, w)`` it reads, and the CPU kernel computes each grid row when it needs it, so the grid is
            never stored (it is as large as the image, ×(K²+1), where the grid is as fine as the image).
        backend: ``auto`` (the CPU kernel for CPU tensors when no gradient is needed and a compiler is present,
            else the reference), ``reference`` or ``cpu``.

    Returns:
        ``(B, Ci, H, W)`` in x's dtype and memory format.

    Example:
        >>> x = torch.randn(1, 2, 8, 8)
        >>> expand, project = (torch.randn(6, 2, 1, 1), None), (torch.zeros(2, 6, 1, 1), torch.ones(2))
        >>> out = inverted_bottleneck(x, expand, torch.randn(1, 60, 2, 2), project)
        >>> bool(out.allclose(x + 1))
        True
    """
    kernel_size = _validate_bottleneck(x, expand, grid, project, slope_in, slope_out, head)
    weights = (*expand, *project, slope_in, slope_out, *(head or ()))
    if pick_backend(BOTTLENECK_BACKENDS, backend, x, grid, *weights) == "cpu":
        return _malleable_cpu.bottleneck_cpu(x, expand, grid, kernel_size, project, slope_in, slope_out, head)
    return inverted_bottleneck_reference(x, expand, grid, project, slope_in, slope_out, head)


def inverted_bottleneck_reference(
    x: torch.Tensor,
    expand: Pointwise,
    grid: torch.Tensor,
    project: Pointwise,
    slope_in: torch.Tensor | None = None,
    slope_out: torch.Tensor | None = None,
    head: Pointwise | None = None,
) -> torch.Tensor:
    """The steps one by one in PyTorch (the 1×1 convolutions in x's dtype). Arguments as for
    :func:`inverted_bottleneck`."""
    if head is not None:
        grid = _pointwise(grid, head)
    hidden = _pointwise(x, expand)
    kernels, bias = kernels_and_bias(grid, hidden.shape[1])
    return x + _pointwise(malleable_conv_reference(hidden, kernels, bias, slope_in, slope_out), project)


def planes(kernels: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A malleable convolution's kernels ``(B, C·K², h, w)`` (channel ``c·K² + t``) and bias ``(B, C, h, w)`` as one
    grid of planes ``(B, (K²+1)·C, h, w)`` (channel ``t·C + c``)."""
    channels = bias.shape[1]
    taps = kernels.unflatten(1, (channels, kernels.shape[1] // channels)).transpose(1, 2).flatten(1, 2)
    return torch.cat([taps, bias], dim=1)


def kernels_and_bias(grid: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`planes` for C = ``channels``: kernels ``(B, C·K², h, w)`` and bias ``(B, C, h, w)``."""
    taps, bias = grid[:, :-channels], grid[:, -channels:]
    kernels = taps.unflatten(1, (taps.shape[1] // channels, channels)).transpose(1, 2).flatten(1, 2)
    return kernels, bias


def expand_prelu_pool(
    x: torch.Tensor, expand: Pointwise, slope: torch.Tensor, pool: int, backend: str = "auto"
) -> torch.Tensor:
    """``avg_pool2d(prelu(expand(x), slope), pool, ceil_mode=True)``: what a MalleConv's predictor reads.

    Args:
        x: Feature map, ``(B, Ci, H, W)``.
        expand: 1×1 convolution ``Ci → C``, as for :func:`inverted_bottleneck`.
        slope: PReLU slopes ``(C,)``.
        pool: Average-pooling window and stride ≥ 1 (edge windows clipped and averaged over what they cover).
        backend: As for :func:`inverted_bottleneck`.

    Returns:
        ``(B, C, ⌈H/pool⌉, ⌈W/pool⌉)`` in x's dtype and memory format.
    """
    sizes = check_shape(x, "B Ci H W", "expand_prelu_pool x")
    hidden = _check_pointwise(expand, sizes["Ci"], None, "expand_prelu_pool expand")
    _check_slope(slope, hidden, "expand_prelu_pool slope")
    check(isinstance(pool, int) and pool >= 1, "expand_prelu_pool pool", "an integer >= 1", pool)
    if pick_backend(POOL_BACKENDS, backend, x, *expand, slope) == "cpu":
        return _malleable_cpu.expand_pool_cpu(x, expand, slope, pool)
    return expand_prelu_pool_reference(x, expand, slope, pool)


def expand_prelu_pool_reference(x: torch.Tensor, expand: Pointwise, slope: torch.Tensor, pool: int) -> torch.Tensor:
    """The steps one by one in PyTorch. Arguments as for :func:`expand_prelu_pool`."""
    activated = prelu_reference(_pointwise(x, expand), slope)
    return activated if pool == 1 else F.avg_pool2d(activated, pool, ceil_mode=True)


def _pointwise(x: torch.Tensor, conv: Pointwise) -> torch.Tensor:
    weight, bias = conv
    return F.conv2d(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))


def _validate_bottleneck(x, expand, grid, project, slope_in, slope_out, head) -> int:
    sizes = check_shape(x, "B Ci H W", "inverted_bottleneck x")
    hidden = _check_pointwise(expand, sizes["Ci"], None, "inverted_bottleneck expand")
    _check_pointwise(project, hidden, sizes["Ci"], "inverted_bottleneck project")
    if head is not None:
        features = check_shape(grid, "B F h w", "inverted_bottleneck grid (features, with a head)")
        planes = _check_pointwise(head, features["F"], None, "inverted_bottleneck head")
        check(grid.dtype == x.dtype, "inverted_bottleneck dtypes", "x and the features alike", (x.dtype, grid.dtype))
        grid = torch.empty(features["B"], planes, features["h"], features["w"], dtype=grid.dtype, device="meta")
    cells = check_shape(grid, "B P h w", "inverted_bottleneck grid")
    per_channel = cells["P"] // hidden
    check(
        cells["B"] == sizes["B"] and cells["P"] % hidden == 0 and per_channel in (2, 10),
        "inverted_bottleneck grid",
        f"(B, (K²+1)·C, h, w) with B={sizes['B']}, C={hidden}, K in {{1, 3}}",
        tuple(grid.shape),
    )
    filtered = torch.empty(sizes["B"], hidden, sizes["H"], sizes["W"], dtype=x.dtype, device="meta")
    kernels, bias = kernels_and_bias(grid.to("meta"), hidden)
    return _validate(filtered, kernels, bias, slope_in, slope_out)


def _check_pointwise(conv: Pointwise, in_channels: int, out_channels: int | None, what: str) -> int:
    """Check a 1×1 convolution ``(weight, bias)`` from ``in_channels``; its output channels."""
    check(isinstance(conv, tuple) and len(conv) == 2, what, "a (weight, bias) pair", type(conv).__name__)
    weight, bias = conv
    shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
    out = weight.shape[0] if isinstance(weight, torch.Tensor) and weight.dim() == 4 else -1
    expected = (out_channels if out_channels is not None else out, in_channels, 1, 1)
    check(out > 0 and shape == expected and weight.is_floating_point(), what, f"a float weight {expected}", shape)
    if bias is not None:
        _check_slope(bias, out, f"{what} bias")
    return out


def _check_slope(tensor: torch.Tensor | None, channels: int, what: str) -> None:
    shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
    ok = isinstance(tensor, torch.Tensor) and shape == (channels,) and tensor.is_floating_point()
    check(ok, what, f"a float tensor of shape ({channels},)", shape)
