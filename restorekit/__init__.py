"""restorekit: image denoising and restoration with trained dynamic-convolution models."""

from restorekit.inference.api import denoise, tune
from restorekit.inference.io import load_image, save_image
from restorekit.models import create_model, list_models

__all__ = ["create_model", "denoise", "list_models", "load_image", "save_image", "tune"]
__version__ = "0.1.0"
