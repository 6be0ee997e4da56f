"""restorekit: image denoising and restoration with trained dynamic-convolution models.

The public names load on first use (a module-level ``__getattr__``), so that importing the package, and
``restorekit --help``, does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restorekit.inference.api import denoise, super_resolve, tune
    from restorekit.inference.io import load_image, save_image
    from restorekit.models import create_model, list_models

# Public name → the module that defines it.
_EXPORTS = {
    "create_model": "restorekit.models",
    "denoise": "restorekit.inference.api",
    "list_models": "restorekit.models",
    "load_image": "restorekit.inference.io",
    "save_image": "restorekit.inference.io",
    "super_resolve": "restorekit.inference.api",
    "tune": "restorekit.inference.api",
}

__all__ = ["create_model", "denoise", "list_models", "load_image", "save_image", "super_resolve", "tune"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
