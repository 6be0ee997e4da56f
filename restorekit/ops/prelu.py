"""PReLU with per-channel slopes: ``y_c = x_c`` where ``x_c > 0``, else ``a_c·x_c``.

Why an op of its own: on a channels_last bf16 map, what MalleNet's bottlenecks produce in CPU inference at
``dtype="auto"``, ATen's PReLU takes about 8× as long as a copy of the map (512²×80 on the 2-core EPYC of
docs/benchmarks.md: 16 ms against 2 ms; this kernel 6 ms), and the PReLUs took a third of MalleNet-S's time
(torch.profiler). The CPU kernel (in the malleable convolution's library, :mod:`restorekit.ops._malleable_cpu`)
converts, activates and writes one image row at a time, vectorised over the channels. It has no backward: with
a gradient to compute, the reference runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape
from restorekit.ops import _malleable_cpu
from restorekit.ops._backend import Backends, pick_backend

BACKENDS = Backends("prelu", cpu=_malleable_cpu, cpu_backward=False)


def prelu(x: torch.Tensor, slope: torch.Tensor, backend: str = "auto", pool: int = 1) -> torch.Tensor:
    """Per-channel PReLU of a feature map, optionally average-pooled.

    Args:
        x: Feature map, ``(B, C, H, W)``.
        slope: Slopes for the negative part, ``(C,)`` (any float dtype; the arithmetic runs in ``x``'s
            accumulation type).
        backend: ``auto`` (the CPU kernel for CPU tensors when no gradient is needed and a compiler is present,
            else the reference), ``reference`` or ``cpu``.
        pool: ``k`` > 1 average-pools the activated map over k×k cells as ``F.avg_pool2d(…, k, ceil_mode=True)``
            does (edge cells clipped to the map and averaged over what they cover); the CPU kernel does it in the
            same pass, never writing the activated map (what a MalleConv's kernel predictor reads).

    Returns:
        ``(B, C, ⌈H/pool⌉, ⌈W/pool⌉)`` in ``x``'s dtype and memory format.

    Example:
        >>> x = torch.tensor([-2.0, 3.0]).view(1, 2, 1, 1)
        >>> prelu(x, torch.tensor([0.5, 0.5])).flatten().tolist()
        [-1.0, 3.0]
    """
    sizes = check_shape(x, "B C H W", "prelu x")
    check(
        isinstance(slope, torch.Tensor) and tuple(slope.shape) == (sizes["C"],) and slope.is_floating_point(),
        "prelu slope",
        f"a float tensor of shape ({sizes['C']},)",
        tuple(slope.shape) if isinstance(slope, torch.Tensor) else type(slope).__name__,
    )
    check(isinstance(pool, int) and pool >= 1, "prelu pool", "an integer >= 1", pool)
    if pick_backend(BACKENDS, backend, x, slope) == "cpu":
        return _malleable_cpu.prelu_cpu(x, slope) if pool == 1 else _malleable_cpu.prelu_pool_cpu(x, slope, pool)
    out = prelu_reference(x, slope)
    return out if pool == 1 else F.avg_pool2d(out, pool, ceil_mode=True)


def prelu_reference(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """:func:`torch.nn.functional.prelu` with the slopes in ``x``'s dtype. Shapes as in :func:`prelu`.

    Example:
        >>> prelu_reference(torch.tensor([-2.0]).view(1, 1, 1, 1), torch.tensor([0.25])).item()
        -0.5
    """
    return F.prelu(x, slope.to(x.dtype))
