"""restorekit: image denoising and restoration with trained dynamic-convolution models.

The public names load on first use (a module-level ``__getattr__``), so that importing the package, and
``restorekit --help``, does not import PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from restorekit._lazy import lazy_exports

if TYPE_CHECKING:
    from restorekit.batch import Engine, restore_files
    from restorekit.inference.api import Restoration, denoise, restore, super_resolve, tune
    from restorekit.inference.io import load_image, save_image
    from restorekit.models import create_model, list_models

# Public name → the module that defines it.
_EXPORTS = {
    "Engine": "restorekit.batch",
    "Restoration": "restorekit.inference.api",
    "create_model": "restorekit.models",
    "denoise": "restorekit.inference.api",
    "list_models": "restorekit.models",
    "load_image": "restorekit.inference.io",
    "restore": "restorekit.inference.api",
    "restore_files": "restorekit.batch",
    "save_image": "restorekit.inference.io",
    "super_resolve": "restorekit.inference.api",
    "tune": "restorekit.inference.api",
}

__all__ = [
    "Engine",
    "Restoration",
    "create_model",
    "denoise",
    "list_models",
    "load_image",
    "restore",
    "restore_files",
    "save_image",
    "super_resolve",
    "tune",
]
__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
