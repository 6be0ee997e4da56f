"""Malleable, atom and translation-variant convolution backends against a plain depthwise convolution.

``ops`` picks the convolutions measured (``malleable``, ``atom``, ``tv``; by default ``malleable`` and ``atom``,
``tv`` when asked for). For every size × channel count, side by side in one run (forward only, under
``torch.no_grad``, batch 1, ``x`` ``(1, C, H, W)`` in channels_last):

* ``depthwise_conv2d`` (backend ``torch``): ``F.conv2d(x, w, padding=K // 2, groups=C)``, the cost every
  convolution is measured against (``ratio_vs_depthwise`` = a row's ``ms_median`` over this one's); one row
  per shape, shared by the ops;
* malleable (``op`` ``naive`` and ``malleable_conv``), with a kernel grid ``grid_stride`` times coarser than
  the image, rounded up: ``naive`` (``torch``), ``ops.malleable_conv_naive``, which materialises the
  ``(B, C·K², H, W)`` kernel map; ``malleable_conv`` with each requested backend: ``reference`` (the
  pure-PyTorch tap loop), ``cpu`` (the compiled CPU kernel), ``triton`` (the fused GPU kernels);
* atom (``op`` ``atom_conv_naive`` and ``atom_conv``), with per-pixel atoms ``(1, M, K², H, W)`` (M =
  ``atoms``) and responses ``(1, C·M, H, W)``: ``atom_conv_naive`` (``torch``), ``ops.atom_conv_naive``
  (unfold + einsum, ``O(C·K²·H·W)``); ``atom_conv`` with each requested backend: ``reference`` (the tap loop),
  ``cpu`` (the compiled CPU kernel), ``triton`` (the fused GPU kernel);
* TVConv (``op`` ``tv_conv_naive`` and ``tv_conv``), stride 1, with one per-position weight map ``(1, C, K², H,
  W)`` (what a TVConv layer generates): ``tv_conv_naive`` (``torch``), ``ops.tv_conv_naive`` (the authors'
  unfold + multiply + sum, ``O(C·K²·H·W)``); ``tv_conv`` with each requested backend: ``reference`` (the tap
  loop), ``cpu`` (the compiled CPU kernel), ``triton`` (the fused GPU kernel). Its baseline is the same
  depthwise row: one kernel for every position instead of one per position.

Timing: one untimed warm-up each, then timed runs taken round-robin over the implementations of a shape (so
that other load on a shared machine weighs on all of them alike) until each has ``repeats`` runs or has spent
:data:`TIME_BUDGET_S` (at least two); ``ms_median`` and ``ms_p95`` (linear interpolation) of the wall time,
synchronised on CUDA.

Bytes model for ``gbps``: the op's compulsory traffic, the same for every implementation of a shape, times
the element size, over ``ms_median``. Malleable: read ``x`` and write the output (``2·B·C·H·W`` elements) plus
read the grid (``B·C·(K² + 1)·h·w``; the depthwise weight ``C·K²`` for ``depthwise_conv2d``). Atom: read ``x``
(``B·C·H·W``), read the atoms (``B·M·K²·H·W``) and write the responses (``B·C·M·H·W``). TVConv: read ``x``
(``B·C·H·W``), read the weight map once (``C·K²·H_out·W_out``, shared by the batch) and write the output
(``B·C·H_out·W_out``); ``H_out = H`` at stride 1. Implementations that move more (the naive kernel map or
unfolded patches, the reference's per-tap maps) show it as a lower figure.

Peak extra memory (``peak_extra_mb``): what one call holds at its peak beyond its inputs and its own output
(``output_mb``). On CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call,
minus the output. On CPU, where PyTorch has no allocator statistics and the compiled kernel allocates its row
buffers with ``malloc`` (invisible to the torch profiler), one call runs in a fresh spawned process: the
resident set's high-water mark during the call (reset through ``/proc/self/clear_refs`` on Linux) minus the
resident set just before it (inputs made, the implementation warmed up on a tiny input), minus the output. A
fresh process cannot reuse memory freed by earlier runs unseen; the figure is page-granular (about ±1 MB).
Elsewhere than Linux the process's ``ru_maxrss`` stands in for the reset high-water mark. (Spawning means a
script that calls :func:`run` needs the usual ``if __name__ == "__main__":`` guard.)

``naive`` needs ``(2·K² + 2)·B·C·H·W`` elements, ``atom_conv_naive`` ``((K² + M + 1)·C + M·K²)·B·H·W`` (its
inputs, the unfolded patches and the output; measured, einsum copies neither operand), ``tv_conv_naive``
``(3·K² + 2)·C·H·W`` (x, the weight map, the unfolded patches, their product with the map, the output); above
:data:`NAIVE_MEMORY_FRACTION` of the available memory their row is skipped, with the reason in ``note`` and
no figures. A backend that cannot run here (no compiler, no Triton or no CUDA) gives a row with a ``note`` too.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_choice
from restorekit.ops.atom_conv import BACKENDS as ATOM_BACKENDS
from restorekit.ops.atom_conv import atom_conv, atom_conv_naive
from restorekit.ops.malleable_conv import BACKENDS as MALLEABLE_BACKENDS
from restorekit.ops.malleable_conv import malleable_conv, malleable_conv_naive
from restorekit.ops.tv_conv import BACKENDS as TV_BACKENDS
from restorekit.ops.tv_conv import tv_conv, tv_conv_naive

ROW_KEYS = (
    "op", "backend", "size", "megapixels", "channels", "kernel_size", "device", "dtype", "ms_median", "ms_p95",
    "gbps", "peak_extra_mb", "output_mb", "ratio_vs_depthwise", "note",
)  # fmt: skip
OPS = ("malleable", "atom", "tv")
DEFAULT_OPS = ("malleable", "atom")
IMPLEMENTATIONS = ("naive", "reference", "cpu", "triton")
TIME_BUDGET_S = 30.0
NAIVE_MEMORY_FRACTION = 0.5
MB = 1e6

Key = tuple[str, str]  # (op, implementation): ("depthwise", "depthwise") or (one of OPS, one of IMPLEMENTATIONS)
DEPTHWISE: Key = ("depthwise", "depthwise")


@dataclass(frozen=True)
class Case:
    """One benchmark shape: ``x`` is ``(1, channels, height, width)``, the grid ``grid_stride`` times coarser.

    ``ops`` says which inputs to make: the malleable kernel grid and bias, the ``atom_count`` per-pixel atoms,
    the TVConv weight map.
    """

    height: int
    width: int
    channels: int
    kernel_size: int
    device: str
    dtype: torch.dtype
    grid_stride: int
    atom_count: int = 4
    ops: tuple[str, ...] = ("malleable",)

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.height / self.grid_stride), math.ceil(self.width / self.grid_stride)

    @property
    def output_bytes(self) -> int:
        """The depthwise (and malleable) output, ``C·H·W`` elements."""
        return self.channels * self.height * self.width * self.dtype.itemsize

    @property
    def atom_output_bytes(self) -> int:
        """The atom responses, ``C·M·H·W`` elements."""
        return self.output_bytes * self.atom_count

    def inputs(self, height: int | None = None, width: int | None = None) -> dict[str, torch.Tensor]:
        """``x`` (channels_last), the depthwise weight and each op's inputs; optionally at another image size."""
        height, width = height or self.height, width or self.width
        taps, channels = self.kernel_size**2, self.channels
        options = {"dtype": self.dtype, "device": self.device}
        x = torch.empty(1, channels, height, width, memory_format=torch.channels_last, **options).normal_()
        inputs = {"x": x}
        if "malleable" in self.ops:
            rows, cols = math.ceil(height / self.grid_stride), math.ceil(width / self.grid_stride)
            inputs["kernels"] = torch.empty(1, channels * taps, rows, cols, **options).normal_(std=0.3)
            inputs["bias"] = torch.empty(1, channels, rows, cols, **options).normal_(std=0.1)
        inputs["weight"] = torch.empty(channels, 1, self.kernel_size, self.kernel_size, **options).normal_(std=0.3)
        if "atom" in self.ops:
            inputs["atoms"] = torch.empty(1, self.atom_count, taps, height, width, **options).normal_(std=0.3)
        if "tv" in self.ops:
            inputs["tv_weight"] = torch.empty(1, channels, taps, height, width, **options).normal_(std=0.3)
        return inputs


def run(
    sizes: list[tuple[int, int]],
    channels: list[int],
    kernel_size: int = 3,
    backends: list[str] | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 10,
    grid_stride: int = 8,
    ops: list[str] | None = None,
    atoms: int = 4,
) -> list[dict]:
    """Time the malleable, atom and TVConv implementations and a depthwise convolution of the same shape.

    Args:
        sizes: Image sizes ``(height, width)``.
        channels: Channel counts C.
        kernel_size: K: 1 or 3 with the malleable convolution, any odd K without it.
        backends: Among ``naive``, ``reference``, ``cpu``, ``triton``, for every op; ``None`` for the naive
            version, the reference and every fast backend for ``device``. The depthwise convolution always runs.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: Element type of every tensor.
        repeats: Timed runs at most (see :data:`TIME_BUDGET_S`).
        grid_stride: How many times coarser than the image the malleable kernel grid is.
        ops: Among :data:`OPS`; ``None`` for :data:`DEFAULT_OPS`.
        atoms: M, the atom convolution's atoms per pixel.

    Returns:
        One row per (size, channels, implementation), keys :data:`ROW_KEYS`: per shape the depthwise
        convolution first, then the malleable implementations, then the atom ones, then the TVConv ones.

    Example:
        >>> rows = run([(32, 32)], [4], backends=["reference"], repeats=2)
        >>> [(row["op"], row["backend"]) for row in rows]
        [('depthwise_conv2d', 'torch'), ('malleable_conv', 'reference'), ('atom_conv', 'reference')]
    """
    for op in ops or ():
        check_choice(op, OPS, "bench kernels op")
    check(ops is None or bool(ops), "bench kernels ops", f"at least one of {OPS}", ops)
    chosen_ops = [op for op in OPS if op in (DEFAULT_OPS if ops is None else ops)]  # rows in OPS order
    if "malleable" in chosen_ops:
        check_choice(kernel_size, (1, 3), "bench kernels kernel_size")
    else:
        check(kernel_size >= 1 and kernel_size % 2 == 1, "bench kernels kernel_size", "an odd K ≥ 1", kernel_size)
    check(repeats >= 1 and grid_stride >= 1, "bench kernels", "repeats ≥ 1 and grid_stride ≥ 1", (repeats, grid_stride))
    check(atoms >= 1, "bench kernels atoms", "M ≥ 1", atoms)
    chosen = _default_backends(device) if backends is None else list(backends)
    for backend in chosen:
        check_choice(backend, IMPLEMENTATIONS, "bench kernels backend")
    rows = []
    for height, width in sizes:
        for count in channels:
            case = Case(height, width, count, kernel_size, device, dtype, grid_stride, atoms, tuple(chosen_ops))
            keys = [DEPTHWISE, *((op, name) for op in chosen_ops for name in chosen)]
            notes = {key: _unavailable(case, key) for key in keys}
            times = _time(case, [key for key in keys if not notes[key]], repeats)
            for key in keys:
                if key in times:
                    result = {"times": times[key], "peak_extra": _peak_extra(case, key), "note": None}
                else:
                    result = {"note": notes[key]}
                rows.append(_row(case, key, result, times[DEPTHWISE]))
    return rows


def _default_backends(device: str) -> list[str]:
    fast = ["cpu"] if device == "cpu" else ["triton"] if device.startswith("cuda") else []
    return ["naive", "reference", *fast]


def _unavailable(case: Case, key: Key) -> str | None:
    """Why implementation ``key`` cannot run for ``case`` here, or ``None``."""
    op, name = key
    backends = {"atom": ATOM_BACKENDS, "tv": TV_BACKENDS}.get(op, MALLEABLE_BACKENDS)
    if name == "cpu" and (case.device != "cpu" or not backends.cpu.available()):
        return "unavailable: needs CPU tensors and a C++ compiler"
    if name == "triton" and not (case.device.startswith("cuda") and backends.triton.available()):
        return "unavailable: needs Triton and a CUDA device"
    if name == "naive":
        if op == "atom":
            count, taps = case.atom_count, case.kernel_size**2
            pixel = (taps + count + 1) * case.channels + count * taps  # x, atoms, unfolded patches, output
            needed = pixel * case.height * case.width * case.dtype.itemsize
        elif op == "tv":
            needed = (3 * case.kernel_size**2 + 2) * case.output_bytes  # x, map, patches, product, output
        else:
            needed = (2 * case.kernel_size**2 + 2) * case.output_bytes
        budget = NAIVE_MEMORY_FRACTION * _available_memory(case.device)
        if needed > budget:
            return f"skipped: needs {needed / 1e9:.1f} GB > budget {budget / 1e9:.1f} GB"
    return None


def _implementation(key: Key) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """``fn(inputs)`` (the dict :meth:`Case.inputs` makes) for an implementation ``(op, name)``."""
    op, name = key
    if op == "depthwise":
        return lambda i: F.conv2d(i["x"], i["weight"], padding=i["weight"].shape[-1] // 2, groups=i["x"].shape[1])
    if op == "atom":
        if name == "naive":
            return lambda i: atom_conv_naive(i["x"], i["atoms"])
        return lambda i: atom_conv(i["x"], i["atoms"], backend=name)
    if op == "tv":
        if name == "naive":
            return lambda i: tv_conv_naive(i["x"], i["tv_weight"])
        return lambda i: tv_conv(i["x"], i["tv_weight"], backend=name)
    if name == "naive":
        return lambda i: malleable_conv_naive(i["x"], i["kernels"], i["bias"])
    return lambda i: malleable_conv(i["x"], i["kernels"], i["bias"], backend=name)


@torch.no_grad()
def _time(case: Case, keys: list[Key], repeats: int) -> dict[Key, list[float]]:
    """Wall times in ms per implementation, taken round-robin over ``keys`` on one set of inputs.

    Round-robin, so that other load on a shared machine weighs on every implementation alike: one warm-up
    each, then rounds until each has ``repeats`` runs or has spent :data:`TIME_BUDGET_S` (at least two runs).
    """
    synchronize = torch.cuda.synchronize if case.device.startswith("cuda") else lambda: None
    inputs = case.inputs()
    functions = {key: _implementation(key) for key in keys}
    for function in functions.values():
        function(inputs)
    synchronize()
    times: dict[Key, list[float]] = {key: [] for key in keys}

    def wanted(runs: list[float]) -> bool:
        return len(runs) < 2 or (len(runs) < repeats and sum(runs) < 1e3 * TIME_BUDGET_S)

    while pending := [key for key in keys if wanted(times[key])]:
        for key in pending:
            start = time.perf_counter()
            functions[key](inputs)
            synchronize()
            times[key].append((time.perf_counter() - start) * 1e3)
    return times


def _peak_extra(case: Case, key: Key) -> float:
    case = replace(case, ops=(key[0],))  # make only this implementation's inputs
    if case.device.startswith("cuda"):
        return _peak_extra_cuda(case, key)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_peak_extra_cpu, case, key).result()


def _peak_extra_cuda(case: Case, key: Key) -> float:
    inputs = case.inputs()
    function = _implementation(key)
    with torch.no_grad():
        torch.cuda.synchronize(case.device)
        torch.cuda.reset_peak_memory_stats(case.device)
        before = torch.cuda.memory_allocated(case.device)
        out = function(inputs)
        torch.cuda.synchronize(case.device)
        peak = torch.cuda.max_memory_allocated(case.device)
    return peak - before - out.numel() * out.element_size()


def _peak_extra_cpu(case: Case, key: Key) -> float:
    """In a fresh process: resident-set high-water during one call, less the resident set before and the output."""
    function = _implementation(key)
    with torch.no_grad():
        function(case.inputs(min(case.height, 16), min(case.width, 16)))  # load and warm up, off the record
        inputs = case.inputs()
        before = _resident_bytes()
        _reset_peak_resident()
        out = function(inputs)
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


def _row(case: Case, key: Key, result: dict[str, Any], baseline: list[float]) -> dict[str, Any]:
    op, name = key
    labels = {"depthwise": "depthwise_conv2d", "malleable": "malleable_conv", "atom": "atom_conv", "tv": "tv_conv"}
    naive = {("malleable", "naive"): "naive", ("atom", "naive"): "atom_conv_naive", ("tv", "naive"): "tv_conv_naive"}
    label = naive.get(key, labels[op])
    backend = "torch" if name in ("depthwise", "naive") else name
    rows, cols = case.grid
    element = case.dtype.itemsize
    output_bytes = case.atom_output_bytes if op == "atom" else case.output_bytes
    if op == "depthwise":
        moved = (2 * case.channels * case.height * case.width + case.channels * case.kernel_size**2) * element
    elif op == "atom":
        per_pixel = case.channels + case.atom_count * case.kernel_size**2 + case.channels * case.atom_count
        moved = per_pixel * case.height * case.width * element  # read x and the atoms, write the responses
    elif op == "tv":
        moved = (2 + case.kernel_size**2) * case.output_bytes  # read x, read the weight map once, write the output
    else:
        moved = case.output_bytes * 2 + case.channels * (case.kernel_size**2 + 1) * rows * cols * element
    row = dict.fromkeys(ROW_KEYS)
    row.update(
        op=label,
        backend=backend,
        size=f"{case.height}x{case.width}",
        megapixels=round(case.height * case.width / 1e6, 3),
        channels=case.channels,
        kernel_size=case.kernel_size,
        device=case.device,
        dtype=str(case.dtype).removeprefix("torch."),
        output_mb=round(output_bytes / MB, 2),
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
