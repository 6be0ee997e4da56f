"""The one place that builds validation error messages: "expected …, got …; valid: …"."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from restorekit.errors import RestoreKitError, UsageError


def fail(what: str, expected: str, got: Any, valid: Iterable[Any] | None = None, error=UsageError):
    """Raise ``error`` with the house message format."""
    message = f"{what}: expected {expected}, got {got!r}"
    if valid is not None:
        message += "; valid: " + ", ".join(str(v) for v in valid)
    raise error(message, parameter=what)


def check(condition: bool, what: str, expected: str, got: Any, error: type[RestoreKitError] = UsageError):
    """Raise ``error`` unless ``condition`` holds."""
    if not condition:
        fail(what, expected, got, error=error)


def check_choice(value: Any, choices: Sequence[Any], what: str, error: type[RestoreKitError] = UsageError):
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        fail(what, "one of the valid choices", value, valid=choices, error=error)


def check_shape(tensor: torch.Tensor, spec: str, what: str) -> dict[str, int]:
    """Check a tensor against a shape spec such as ``"B C H W"`` and return the named sizes.

    Names bind on first use and must agree afterwards; integers must match exactly.

    Example:
        >>> check_shape(torch.zeros(2, 3, 4, 5), "B C H W", "x")
        {'B': 2, 'C': 3, 'H': 4, 'W': 5}
    """
    names = spec.split()
    check(tensor.dim() == len(names), what, f"a {len(names)}-D tensor ({spec})", tuple(tensor.shape))
    sizes: dict[str, int] = {}
    for name, size in zip(names, tensor.shape, strict=True):
        if name.isdigit():
            check(size == int(name), what, f"shape ({spec})", tuple(tensor.shape))
        else:
            sizes.setdefault(name, size)
            check(sizes[name] == size, what, f"shape ({spec})", tuple(tensor.shape))
    return sizes
