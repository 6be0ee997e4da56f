"""Process-wide CPU settings that the command line applies before any work: the allocator and fast precision.

Allocator. glibc serves every allocation above 32 MiB with a fresh ``mmap`` and returns it on ``free``, so
each full-resolution activation of a network (a 512² × 80-channel map is 84 MB, ~20,000 pages of 4 KiB)
costs a page fault per page on first touch, every layer, every image. Keeping freed memory in the heap
instead (``M_MMAP_MAX = 0``, ``M_TRIM_THRESHOLD`` unbounded) lets the next layer reuse warm pages.

Measured on the 2-core EPYC machine of docs/benchmarks.md (``restorekit bench latency --peers none --size
512 --dtype fp32,bf16``, with and without ``RESTOREKIT_ALLOCATOR=system``): MalleNet-S on a 512² colour
image 620 → 362 ms in fp32, 401 → 248 ms in bf16. A 128² × 8 training step went from 1.5 to 0.8 s
(``restorekit train weights/recipes/mallenet_s.awgn_color.stage2.yaml`` with and without it; step times
in its ``log.jsonl``). The price: the resident set keeps its high-water mark until the process exits,
which suits a command-line run. PyTorch's own CPU tuning guide recommends a caching allocator (jemalloc,
tcmalloc) for the same reason; this needs no extra library.
``RESTOREKIT_ALLOCATOR=system`` leaves the allocator alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import functools
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from restorekit._cache import cache_root, read_json, write_json

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top kept at most


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, or ``None`` where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse (see the module docstring); once per process.

    Returns:
        Whether the setting took effect (false off glibc, or with ``RESTOREKIT_ALLOCATOR=system``).
    """
    if os.environ.get("RESTOREKIT_ALLOCATOR", "").lower() == "system":
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:  # not glibc (macOS, Windows, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16 kernels are fast.

    Without it oneDNN emulates bf16 and is slower than fp32, so ``dtype="auto"`` stays in fp32.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


PRECISION_CACHE = "precision.json"
BF16_MARGIN = 0.95  # bf16 must be at least 5% faster to be picked: it costs a little PSNR, fp32 costs nothing
_ISA_FLAGS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
_ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def cpu_identity() -> str:
    """What decides which precision is faster here: the CPU model, its AVX2/AVX-512/bf16/AMX flags, any ISA cap
    set in the environment and torch's version. Not the thread count: every process on a machine (a local run,
    its Ray actors, runs with other ``--threads``) must read the same answer, so that they write the same
    output."""
    name, flags = _cpu_model()
    caps = [f"{key}={os.environ[key]}" for key in _ISA_CAPS if os.environ.get(key)]
    parts = [name, ",".join(sorted(flags & _ISA_FLAGS)), *caps, f"torch {torch.__version__}"]
    return " | ".join(parts)


@functools.cache
def _cpu_model() -> tuple[str, frozenset[str]]:
    """The CPU's model name and its flags, read once per process (``dtype`` auto asks on every image)."""
    name, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = frozenset(value.split())
    except OSError:
        name = platform.processor() or platform.machine()
    return name, flags


def measured_precision(
    model_key: str, run: Callable[[str], object], candidates: Sequence[str] = ("fp32", "bf16")
) -> str:
    """The faster of ``candidates`` for a model on this CPU, timed once and remembered.

    Each candidate runs once to warm up (kernel builds, oneDNN primitives), then twice timed; the fastest wins,
    bf16 only when at least 5% faster than fp32 (:data:`BF16_MARGIN`). The answer is cached in
    ``$RESTOREKIT_CACHE_DIR/precision.json`` under :func:`cpu_identity` and ``model_key``, with the timings.

    Args:
        model_key: What identifies the model's cost (e.g. its name and weights digest).
        run: Runs the model on a fixed input in the precision given (``"fp32"`` or ``"bf16"``).
        candidates: Precisions to choose from.
    """
    path = cache_root() / PRECISION_CACHE
    key = f"{cpu_identity()} | {model_key}"
    known = _known(path, key, candidates)  # the usual case, read without taking the lock
    if known:
        return known
    with _locked(path.with_suffix(".lock")):  # processes starting together measure once; the first answer stands
        known = _known(path, key, candidates)
        if known:
            return known
        seconds = {}
        for dtype in candidates:
            run(dtype)
            timed = []
            for _ in range(2):
                start = time.perf_counter()
                run(dtype)
                timed.append(time.perf_counter() - start)
            seconds[dtype] = min(timed)
        best = min(candidates, key=lambda dtype: seconds[dtype] * (BF16_MARGIN if dtype == "fp32" else 1.0))
        cache = read_json(path)
        cache[key] = {"dtype": best, "ms": {dtype: round(value * 1000, 2) for dtype, value in seconds.items()}}
        write_json(path, cache)
    return best


def _known(path: Path, key: str, candidates: Sequence[str]) -> str | None:
    """The precision cached under ``key``, if it is one of ``candidates``."""
    known = read_json(path).get(key)
    return known["dtype"] if isinstance(known, dict) and known.get("dtype") in candidates else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` while the block runs; none where the cache folder cannot hold one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115  (closed below)
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def release_freed_memory() -> bool:
    """Give the memory this process has freed and kept (:func:`keep_freed_memory`) back to the system now
    (glibc ``malloc_trim``); whether it could.

    After an image ran out of memory, the heap holds its freed buffers: reusable by ``malloc``, but counted
    against an address-space limit (``ulimit -v``), where they would leave nothing for the next image's other
    allocations (oneDNN's kernels, mapped files).
    """
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:  # not glibc
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


def free_heap_bytes() -> int:
    """Bytes this process has freed and kept in its heap for reuse (glibc ``mallinfo2``); 0 where unknown.

    The tiler counts them as available: with :func:`keep_freed_memory` they leave the system's
    ``MemAvailable`` but any later allocation can take them.
    """
    mallinfo2 = getattr(_libc(), "mallinfo2", None)
    if mallinfo2 is None:  # not glibc, or glibc older than 2.33
        return 0
    mallinfo2.argtypes, mallinfo2.restype = [], _MallInfo2
    return int(mallinfo2().fordblks)
