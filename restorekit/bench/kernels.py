"""Malleable convolution backends against a plain depthwise convolution of the same shape.

For every size × channel count, side by side in one run (forward only, under ``torch.no_grad``, batch 1,
``x`` in channels_last, a kernel grid ``grid_stride`` times coarser than the image, rounded up):

* ``depthwise_conv2d`` (backend ``torch``): ``F.conv2d(x, w, padding=K // 2, groups=C)``, the cost a malleable
  convolution is measured against (``ratio_vs_depthwise`` = its ``ms_median`` over this one's);
* ``naive`` (``torch``): ``ops.malleable_conv_naive``, which materialises the ``(B, C·K², H, W)`` kernel map;
* ``malleable_conv`` with each requested backend: ``reference`` (the pure-PyTorch tap loop), ``cpu`` (the
  compiled CPU kernel), ``triton`` (the fused GPU kernels).

Timing: one untimed warm-up each, then timed runs taken round-robin over the implementations of a shape (so
that other load on a shared machine weighs on all of them alike) until each has ``repeats`` runs or has spent
:data:`TIME_BUDGET_S` (at least two); ``ms_median`` and ``ms_p95`` (linear interpolation) of the wall time,
synchronised on CUDA.

Bytes model for ``gbps``: the op's compulsory traffic, the same for every implementation of a shape — read
``x`` and write the output (``2·B·C·H·W`` elements) plus read the grid (``B·C·(K² + 1)·h·w``; the depthwise
weight ``C·K²`` for ``depthwise_conv2d``), times the element size, over ``ms_median``. Implementations that
move more (the naive kernel map, the reference's per-tap maps) show it as a lower figure.

Peak extra memory (``peak_extra_mb``): what one call holds at its peak beyond its inputs and its own output
(``output_mb``). On CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call,
minus the output. On CPU, where PyTorch has no allocator statistics and the compiled kernel allocates its row
buffers with ``malloc`` (invisible to the torch profiler), one call runs in a fresh spawned process: the
resident set's high-water mark during the call (reset through ``/proc/self/clear_refs`` on Linux) minus the
resident set just before it (inputs made, the implementation warmed up on a tiny input), minus the output. A
fresh process cannot reuse memory freed by earlier runs unseen; the figure is page-granular (about ±1 MB).
Elsewhere than Linux the process's ``ru_maxrss`` stands in for the reset high-water mark. (Spawning means a
script that calls :func:`run` needs the usual ``if __name__ == "__main__":`` guard.)

``naive`` needs ``(2·K² + 2)·B·C·H·W`` elements; above :data:`NAIVE_MEMORY_FRACTION` of the available memory
its row is skipped, with the reason in ``note`` and no figures. A backend that cannot run here (no compiler,
no Triton or no CUDA) gives a row with a ``note`` too.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import restorekit_kernels.malleable_conv as triton_malleable
import torch
import torch.nn.functional as F

from restorekit._checks import check, check_choice
from restorekit.ops import _malleable_cpu
from restorekit.ops.malleable_conv import malleable_conv, malleable_conv_naive

ROW_KEYS = (
    "op", "backend", "size", "megapixels", "channels", "kernel_size", "device", "dtype", "ms_median", "ms_p95",
    "gbps", "peak_extra_mb", "output_mb", "ratio_vs_depthwise", "note",
)  # fmt: skip
IMPLEMENTATIONS = ("naive", "reference", "cpu", "triton")
TIME_BUDGET_S = 30.0
NAIVE_MEMORY_FRACTION = 0.5
MB = 1e6


@dataclass(frozen=True)
class Case:
    """One benchmark shape: ``x`` is ``(1, channels, height, width)``, the grid ``grid_stride`` times coarser."""

    height: int
    width: int
    channels: int
    kernel_size: int
    device: str
    dtype: torch.dtype
    grid_stride: int

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.height / self.grid_stride), math.ceil(self.width / self.grid_stride)

    @property
    def output_bytes(self) -> int:
        return self.channels * self.height * self.width * self.dtype.itemsize

    def inputs(self, height: int | None = None, width: int | None = None) -> tuple[torch.Tensor, ...]:
        """``x`` (channels_last), kernels, bias and the depthwise weight; optionally at another image size."""
        height, width = height or self.height, width or self.width
        rows, cols = math.ceil(height / self.grid_stride), math.ceil(width / self.grid_stride)
        taps, channels = self.kernel_size**2, self.channels
        options = {"dtype": self.dtype, "device": self.device}
        x = torch.empty(1, channels, height, width, memory_format=torch.channels_last, **options).normal_()
        kernels = torch.empty(1, channels * taps, rows, cols, **options).normal_(std=0.3)
        bias = torch.empty(1, channels, rows, cols, **options).normal_(std=0.1)
        weight = torch.empty(channels, 1, self.kernel_size, self.kernel_size, **options).normal_(std=0.3)
        return x, kernels, bias, weight


def run(
    sizes: list[tuple[int, int]],
    channels: list[int],
    kernel_size: int = 3,
    backends: list[str] | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 10,
    grid_stride: int = 8,
) -> list[dict]:
    """Time the malleable convolution implementations and a depthwise convolution of the same shape.

    Args:
        sizes: Image sizes ``(height, width)``.
        channels: Channel counts C.
        kernel_size: K ∈ {1, 3}.
        backends: Among ``naive``, ``reference``, ``cpu``, ``triton``; ``None`` for the naive version, the
            reference and every fast backend for ``device``. The depthwise convolution always runs.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: Element type of every tensor.
        repeats: Timed runs at most (see :data:`TIME_BUDGET_S`).
        grid_stride: How many times coarser than the image the kernel grid is.

    Returns:
        One row per (size, channels, implementation), keys :data:`ROW_KEYS`, depthwise first.

    Example:
        >>> rows = run([(32, 32)], [4], backends=["reference"], repeats=2)
        >>> [(row["op"], row["backend"]) for row in rows]
        [('depthwise_conv2d', 'torch'), ('malleable_conv', 'reference')]
    """
    check_choice(kernel_size, (1, 3), "bench kernels kernel_size")
    check(repeats >= 1 and grid_stride >= 1, "bench kernels", "repeats ≥ 1 and grid_stride ≥ 1", (repeats, grid_stride))
    chosen = _default_backends(device) if backends is None else list(backends)
    for backend in chosen:
        check_choice(backend, IMPLEMENTATIONS, "bench kernels backend")
    rows = []
    for height, width in sizes:
        for count in channels:
            case = Case(height, width, count, kernel_size, device, dtype, grid_stride)
            names = ["depthwise", *chosen]
            notes = {name: _unavailable(case, name) for name in chosen}
            times = _time(case, [name for name in names if not notes.get(name)], repeats)
            for name in names:
                if name in times:
                    result = {"times": times[name], "peak_extra": _peak_extra(case, name), "note": None}
                else:
                    result = {"note": notes[name]}
                rows.append(_row(case, name, result, times["depthwise"]))
    return rows


def _default_backends(device: str) -> list[str]:
    fast = ["cpu"] if device == "cpu" else ["triton"] if device.startswith("cuda") else []
    return ["naive", "reference", *fast]


def _unavailable(case: Case, name: str) -> str | None:
    """Why ``name`` cannot run for ``case`` here, or ``None``."""
    if name == "cpu" and (case.device != "cpu" or not _malleable_cpu.available()):
        return "unavailable: needs CPU tensors and a C++ compiler"
    if name == "triton" and not (case.device.startswith("cuda") and triton_malleable.available()):
        return "unavailable: needs Triton and a CUDA device"
    if name == "naive":
        needed = (2 * case.kernel_size**2 + 2) * case.output_bytes
        budget = NAIVE_MEMORY_FRACTION * _available_memory(case.device)
        if needed > budget:
            return f"skipped: needs {needed / 1e9:.1f} GB > budget {budget / 1e9:.1f} GB"
    return None


def _implementation(name: str) -> Callable[..., torch.Tensor]:
    """``fn(x, kernels, bias, weight)`` for an implementation name (``depthwise`` or one of IMPLEMENTATIONS)."""
    if name == "depthwise":
        return lambda x, kernels, bias, weight: F.conv2d(x, weight, padding=weight.shape[-1] // 2, groups=x.shape[1])
    if name == "naive":
        return lambda x, kernels, bias, weight: malleable_conv_naive(x, kernels, bias)
    return lambda x, kernels, bias, weight: malleable_conv(x, kernels, bias, backend=name)


@torch.no_grad()
def _time(case: Case, names: list[str], repeats: int) -> dict[str, list[float]]:
    """Wall times in ms per implementation, taken round-robin over ``names`` on one set of inputs.

    Round-robin, so that other load on a shared machine weighs on every implementation alike: one warm-up
    each, then rounds until each has ``repeats`` runs or has spent :data:`TIME_BUDGET_S` (at least two runs).
    """
    synchronize = torch.cuda.synchronize if case.device.startswith("cuda") else lambda: None
    inputs = case.inputs()
    functions = {name: _implementation(name) for name in names}
    for function in functions.values():
        function(*inputs)
    synchronize()
    times: dict[str, list[float]] = {name: [] for name in names}

    def wanted(runs: list[float]) -> bool:
        return len(runs) < 2 or (len(runs) < repeats and sum(runs) < 1e3 * TIME_BUDGET_S)

    while pending := [name for name in names if wanted(times[name])]:
        for name in pending:
            start = time.perf_counter()
            functions[name](*inputs)
            synchronize()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _peak_extra(case: Case, name: str) -> float:
    if case.device.startswith("cuda"):
        return _peak_extra_cuda(case, name)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peak_extra_cpu, case, name).result()


def _peak_extra_cuda(case: Case, name: str) -> float:
    inputs = case.inputs()
    function = _implementation(name)
    with torch.no_grad():
        torch.cuda.synchronize(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        before = torch.cuda.memory_allocated(case.device)
        out = function(*inputs)
        torch.cuda.synchronize(case.device)
        peak = torch.cuda.max_memory_allocated(case.device)
    return peak - before - out.numel() * out.element_size()


def _peak_extra_cpu(case: Case, name: str) -> float:
    """In a fresh process: resident-set high-water during one call, less the resident set before and the output."""
    function = _implementation(name)
    with torch.no_grad():
        function(*case.inputs(min(case.height, 16), min(case.width, 16)))  # load and warm up, off the record
        inputs = case.inputs()
        before = _resident_bytes()
        _reset_peak_resident()
        out = function(*inputs)
        peak = _peak_resident_bytes()
    return peak - before - out.numel() * out.element_size()


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (Linux), else ``None``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _resident_bytes() -> int:
    return _status_bytes("VmRSS") or _maxrss_bytes()


def _reset_peak_resident() -> None:
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")  # resets VmHWM to the current resident set


def _peak_resident_bytes() -> int:
    return _status_bytes("VmHWM") or _maxrss_bytes()


def _maxrss_bytes() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def _available_memory(device: str) -> float:
    if device.startswith("cuda"):
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024.0
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _row(case: Case, name: str, result: dict[str, Any], baseline: list[float]) -> dict[str, Any]:
    op = {"depthwise": "depthwise_conv2d", "naive": "naive"}.get(name, "malleable_conv")
    backend = "torch" if name in ("depthwise", "naive") else name
    rows, cols = case.grid
    element = case.dtype.itemsize
    if name == "depthwise":
        moved = (2 * case.channels * case.height * case.width + case.channels * case.kernel_size**2) * element
    else:
        moved = case.output_bytes * 2 + case.channels * (case.kernel_size**2 + 1) * rows * cols * element
    row = dict.fromkeys(ROW_KEYS)
    row.update(
        op=op,
        backend=backend,
        size=f"{case.height}x{case.width}",
        megapixels=round(case.height * case.width / 1e6, 3),
        channels=case.channels,
        kernel_size=case.kernel_size,
        device=case.device,
        dtype=str(case.dtype).removeprefix("torch."),
        output_mb=round(case.output_bytes / MB, 2),
        note=result["note"],
    )
    if "times" in result:
        median = statistics.median(result["times"])
        row.update(
            ms_median=round(median, 3),
            ms_p95=round(_percentile(result["times"], 95), 3),
            gbps=round(moved / (median / 1e3) / 1e9, 2),
            peak_extra_mb=round(result["peak_extra"] / MB, 2),
            ratio_vs_depthwise=round(median / statistics.median(baseline), 2),
        )
    return row


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
