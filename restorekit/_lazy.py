"""Packages whose public names load on first use (so that importing them does not import PyTorch)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: each name of ``exports`` (name → the
    module that defines it) is imported on first use and kept in the package.

    Example:
        >>> getattr_, dir_ = lazy_exports("restorekit", {"load_image": "restorekit.inference.io"})
        >>> getattr_("load_image").__name__
        'load_image'
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
