"""Build, load and run the C++ CPU kernels under ``kernels/`` (no PyTorch headers; loaded with :mod:`ctypes`).

Each kernel source (e.g. ``kernels/malleable_conv_cpu.cpp``) is compiled once per source, compiler, flags and
PyTorch's CPU capability into ``$RESTOREKIT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/restorekit`` or
``~/.cache/restorekit``), a few seconds, announced by one line on stderr. Without a working compiler the op
that asked falls back to its reference. Calls split their rows into one contiguous range per
``torch.get_num_threads()`` Python threads; ``ctypes`` releases the GIL during each call. A kernel built with
OpenMP (``build(name, openmp=True)``) may instead split them over PyTorch's own OpenMP threads, where its OpenMP
runtime is PyTorch's (:func:`openmp_shared`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import torch

from restorekit._cache import cache_root

_MIN_WORK_PER_THREAD = 1 << 16  # output values; below this a thread costs more than it saves
_POOL: ThreadPoolExecutor | None = None


def source(name: str) -> str:
    """The C++ source ``kernels/<name>.cpp`` (installed with ``restorekit_kernels``)."""
    return resources.files("restorekit_kernels").joinpath(f"{name}.cpp").read_text()


def load_row_kernels(name: str, op: str, prefix: str, kinds: tuple[str, ...]) -> ctypes.CDLL | None:
    """Build and load ``kernels/<name>.cpp`` whose entry points ``<prefix>_<kind>_{f32,f64}(shape, a, b, out,
    begin, end)`` take an ``int64_t`` shape array, three data pointers and a row range; ``None`` (with a
    warning naming ``op``) when it cannot be built."""
    try:
        library = ctypes.CDLL(str(build(name)))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"{op}: the CPU kernel could not be built ({exc}); using the reference", RuntimeWarning, 3)
        return None
    pointer, int64 = ctypes.c_void_p, ctypes.c_int64
    for suffix in ("f32", "f64"):
        for kind in kinds:
            function = getattr(library, f"{prefix}_{kind}_{suffix}")
            function.argtypes = [pointer, pointer, pointer, pointer, int64, int64]
            function.restype = ctypes.c_int
    return library


def int64s(*values: int) -> ctypes.Array:
    """``values`` as a C ``int64_t[]``."""
    return (ctypes.c_int64 * len(values))(*values)


def parallel(
    function: Callable[..., int], fixed: tuple, items: int, work_per_item: int, what: str, inside: bool = False
) -> None:
    """Call ``function(*fixed, begin, end)`` over ``[0, items)`` split into one contiguous range per thread.

    Args:
        inside: The function splits its rows over PyTorch's OpenMP threads itself (see :func:`openmp_shared`):
            one call on this thread covers them all.

    Raises:
        MemoryError: A call returned non-zero (its buffers could not be allocated); ``what`` names the op.
    """
    threads = max(1, min(torch.get_num_threads(), items, items * work_per_item // _MIN_WORK_PER_THREAD))
    if inside:
        threads = 1
    bounds = [(items * i // threads, items * (i + 1) // threads) for i in range(threads)]
    if threads == 1:
        codes = [function(*fixed, 0, items)]
    else:
        codes = list(_pool().map(lambda span: function(*fixed, *span), bounds))
    if any(codes):
        raise MemoryError(f"{what}: the CPU kernel could not allocate its buffers")


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="restorekit_cpu")
    return _POOL


def _forget_pool() -> None:
    """A forked child inherits the pool object but not its threads."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def openmp_shared() -> bool:
    """Whether a kernel built with ``-fopenmp`` runs on PyTorch's own OpenMP threads.

    PyTorch's OpenMP threads spin for a while after each parallel region (a oneDNN convolution, an ATen
    element-wise op), so Python threads started right after one compete with them for the cores (a fused
    bottleneck filter took 1.6× its time after a convolution on 2 cores). A kernel that splits its rows with
    OpenMP hands them to those threads instead — if its ``libgomp.so.1`` is PyTorch's: true when PyTorch runs
    on OpenMP and the process (Linux) maps exactly one OpenMP runtime after the kernel is loaded, so call this
    after loading it.
    """
    if not torch.backends.openmp.is_available():
        return False
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return len(openmp_runtimes(maps)) == 1


def openmp_runtimes(maps: str) -> set[str]:
    """The OpenMP runtime libraries (GNU, Intel, LLVM) in the text of a Linux ``/proc/<pid>/maps``.

    Example:
        >>> openmp_runtimes("7f0-7f1 r-xp 00000000 08:01 42   /venv/torch/lib/libgomp.so.1")
        {'/venv/torch/lib/libgomp.so.1'}
    """
    fields = (line.split(maxsplit=5) for line in maps.splitlines())
    paths = {parts[5].strip() for parts in fields if len(parts) == 6 and parts[5].startswith("/")}
    names = ("libgomp", "libiomp", "libomp")
    return {os.path.realpath(path) for path in paths if os.path.basename(path).startswith(names)}


def _isa_flags() -> list[str]:
    """Vector ISA flags for what PyTorch detected on this CPU (so a cached build never meets a CPU without it)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        flags = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mprefer-vector-width=512"]
        bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return [*flags, "-mavx512bf16"] if bf16 else flags
    if capability == "AVX2":
        return ["-mavx2", "-mfma"]
    return []


def _cache_dir() -> Path:
    return cache_root() / "kernels"


def build(name: str, openmp: bool = False) -> Path:
    """Compile ``kernels/<name>.cpp`` into the cache (once per source, compiler, flags, CPU capability); its path.

    Args:
        openmp: Build with ``-fopenmp`` (for kernels that split their rows themselves, see :func:`openmp_shared`);
            where the compiler refuses it, the kernel is built without.
    """
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise OSError("no C++ compiler found (install g++ or set $CXX)")
    if openmp:
        try:
            return _build(name, compiler, ["-fopenmp"], remember_failure=True)
        except OSError:
            pass
    return _build(name, compiler, [])


def _build(name: str, compiler: str, extra: list[str], remember_failure: bool = False) -> Path:
    """The cached build with ``extra`` flags; with ``remember_failure``, a failed build is not tried again."""
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", *_isa_flags(), *extra]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    text = source(name)
    digest = hashlib.sha256("\0".join([text, compiler, version, *flags]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{name}-{digest}.so"
    failed = target.with_suffix(".failed")
    if target.exists():
        return target
    if remember_failure and failed.exists():
        raise OSError(f"{compiler} failed before (see {failed})")
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"restorekit: compiling the CPU kernel {name}, once (cached in {target.parent})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        written, library = Path(tmp) / f"{name}.cpp", Path(tmp) / "library.so"
        written.write_text(text)
        done = subprocess.run([compiler, *flags, str(written), "-o", str(library)], capture_output=True, text=True)
        if done.returncode:
            if remember_failure:
                failed.write_text(done.stderr)
            raise OSError(f"{compiler} failed: {done.stderr.strip()[-2000:]}")
        os.replace(library, target)  # atomic: concurrent builders race harmlessly
    return target
