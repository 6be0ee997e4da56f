"""The one backend picker of the ops: the ``reference``, the compiled ``cpu`` kernel or the ``triton`` kernel.

Every op declares what it offers (:class:`Backends`) and calls :func:`pick_backend` once, after validating its
inputs. The rules are the same for every op:

* ``auto`` reads the op's environment variable where it has one (``RESTOREKIT_<OP>_BACKEND``; an argument other
  than ``auto`` beats it), then takes the fast kernel for the tensors' device if it can run them — Triton for CUDA
  tensors, the compiled kernel for CPU tensors — and the reference otherwise. ``auto`` never fails.
* A named backend (argument or variable) runs, or raises :class:`~restorekit.errors.BackendError` saying what it
  needs; it never falls back to another backend.
* What a kernel needs: ``cpu`` CPU tensors of a dtype it reads, no gradient to compute unless it has a backward,
  and a C++ compiler (it is built on first use); ``triton`` Triton installed, CUDA tensors (or
  ``TRITON_INTERPRET=1``, which runs it on the CPU for the parity tests) and a dtype it reads.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from restorekit._checks import check_choice, fail
from restorekit.errors import BackendError


class Kernel(Protocol):
    """A kernel module: the dtypes it reads and whether it can run here."""

    DTYPES: tuple[torch.dtype, ...]  # and optionally REQUIRES: what available() needs, if not a C++ compiler

    def available(self) -> bool: ...


class LazyModule:
    """A kernel module imported on its first attribute access. Importing Triton costs about 0.1 s, a twentieth of a
    CPU run's start-up (``python -X importtime``), and only CUDA tensors (or ``TRITON_INTERPRET=1``) use it.

    Example:
        >>> LazyModule("math").sqrt(4.0)
        2.0
    """

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


@dataclass(frozen=True)
class Backends:
    """What an op offers besides its reference.

    Attributes:
        op: The op's name, for messages.
        cpu: The compiled CPU kernel's module, or ``None``.
        triton: The Triton kernel's module, or ``None``.
        cpu_backward: Whether the CPU kernel computes gradients (without, it cannot run where one is needed).
        env: The environment variable that overrides ``auto``, or ``None``.
    """

    op: str
    cpu: Kernel | None = None
    triton: Kernel | None = None
    cpu_backward: bool = True
    env: str | None = None

    @property
    def choices(self) -> tuple[str, ...]:
        """The backends an op's ``backend`` argument takes."""
        kernels = (("cpu", self.cpu), ("triton", self.triton))
        return ("auto", "reference", *(name for name, kernel in kernels if kernel is not None))


def pick_backend(backends: Backends, backend: str, x: torch.Tensor, *tensors: torch.Tensor | None) -> str:
    """The backend that runs an op on ``x`` (and ``tensors``, the other inputs that may need a gradient).

    Args:
        backends: What the op offers.
        backend: ``auto`` or one of :attr:`Backends.choices`.
        x: The op's main input ``(B, C, H, W)``: its device and dtype decide.
        tensors: The op's other tensor inputs (``None`` entries allowed).

    Returns:
        ``reference``, ``cpu`` or ``triton``.

    Raises:
        UsageError: ``backend`` (or the op's environment variable) is not a valid choice.
        BackendError: A named backend cannot run here or on these tensors.

    Example:
        >>> pick_backend(Backends("op"), "auto", torch.zeros(1, 1, 2, 2))
        'reference'
    """
    check_choice(backend, backends.choices, f"{backends.op} backend")
    source = ""
    if backend == "auto" and backends.env is not None:
        backend = os.environ.get(backends.env, "auto")
        check_choice(backend, backends.choices, f"${backends.env}")
        source = f" (${backends.env})"
    if backend != "auto":
        unmet = _unmet(backends, backend, x, tensors)
        if unmet is not None:
            fail(f"{backends.op} backend {backend!r}{source}", *unmet, error=BackendError)
        return backend
    fast = "triton" if x.is_cuda else "cpu" if x.device.type == "cpu" else None
    if fast in backends.choices and _unmet(backends, fast, x, tensors) is None:
        return fast
    return "reference"


def _unmet(
    backends: Backends, backend: str, x: torch.Tensor, tensors: tuple[torch.Tensor | None, ...]
) -> tuple[str, Any] | None:
    """What ``backend`` needs that it lacks here, as ``(expected, got)``; ``None`` when it can run."""
    if backend == "cpu":
        kernel = backends.cpu
        needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *tensors))
        if x.device.type != "cpu":
            return "CPU tensors", str(x.device)
        if x.dtype not in kernel.DTYPES:
            return f"a dtype in {kernel.DTYPES}", x.dtype
        if needs_grad and not backends.cpu_backward:
            return "no gradient to compute (the kernel has no backward)", "requires_grad"
        if not kernel.available():
            return getattr(kernel, "REQUIRES", "a C++ compiler (g++ or clang++, or $CXX)"), "none found"
    elif backend == "triton":
        kernel = backends.triton
        if not kernel.available():
            return "Triton installed (pip install 'restorekit[kernels]')", "no triton"
        if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            return "CUDA tensors (or TRITON_INTERPRET=1)", str(x.device)
        if x.dtype not in kernel.DTYPES:
            return f"a dtype in {kernel.DTYPES}", x.dtype
    return None
