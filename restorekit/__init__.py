"""restorekit: image denoising and restoration with trained dynamic-convolution models."""

from restorekit.models import create_model, list_models

__all__ = ["create_model", "list_models"]
__version__ = "0.1.0"
