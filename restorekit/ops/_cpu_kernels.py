"""Build, load and run the C++ CPU kernels under ``kernels/`` (no PyTorch headers; loaded with :mod:`ctypes`).

Each kernel source (e.g. ``kernels/malleable_conv_cpu.cpp``) is compiled once per source, compiler, flags and
PyTorch's CPU capability into ``$RESTOREKIT_CACHE_DIR`` (default ``$XDG_CACHE_HOME/restorekit`` or
``~/.cache/restorekit``), a few seconds, announced by one line on stderr. Without a working compiler the op
that asked falls back to its reference. Calls split their rows into one contiguous range per
``torch.get_num_threads()`` Python threads; ``ctypes`` releases the GIL during each call.
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


def parallel(function: Callable[..., int], fixed: tuple, items: int, work_per_item: int, what: str) -> None:
    """Call ``function(*fixed, begin, end)`` over ``[0, items)`` split into one contiguous range per thread.

    Raises:
        MemoryError: A call returned non-zero (its buffers could not be allocated); ``what`` names the op.
    """
    threads = max(1, min(torch.get_num_threads(), items, items * work_per_item // _MIN_WORK_PER_THREAD))
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


def _isa_flags() -> list[str]:
    """Vector ISA flags for what PyTorch detected on this CPU (so a cached build never meets a CPU without it)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mprefer-vector-width=512"]
    if capability == "AVX2":
        return ["-mavx2", "-mfma"]
    return []


def _cache_dir() -> Path:
    root = os.environ.get("RESTOREKIT_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restorekit")
    return Path(root) / "kernels"


def build(name: str) -> Path:
    """Compile ``kernels/<name>.cpp`` into the cache (once per source, compiler, flags, CPU capability); its path."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise OSError("no C++ compiler found (install g++ or set $CXX)")
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", *_isa_flags()]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    text = source(name)
    digest = hashlib.sha256("\0".join([text, compiler, version, *flags]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{name}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"restorekit: compiling the CPU kernel {name}, once (cached in {target.parent})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        written, library = Path(tmp) / f"{name}.cpp", Path(tmp) / "library.so"
        written.write_text(text)
        done = subprocess.run([compiler, *flags, str(written), "-o", str(library)], capture_output=True, text=True)
        if done.returncode:
            raise OSError(f"{compiler} failed: {done.stderr.strip()[-2000:]}")
        os.replace(library, target)  # atomic: concurrent builders race harmlessly
    return target
