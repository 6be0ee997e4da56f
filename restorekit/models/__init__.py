"""Architectures (one file per family), the registry and the weights format."""

from restorekit.models import acdanet, acdasr, mallenet, tunable_acdanet, tunable_acdasr, tunable_mallenet  # noqa: F401  (register the architectures)
from restorekit.models._architectures import list_architectures
from restorekit.models._base import Model, Requirements
from restorekit.models._registry import create_model, default_model, list_models

__all__ = ["Model", "Requirements", "create_model", "default_model", "list_architectures", "list_models"]
