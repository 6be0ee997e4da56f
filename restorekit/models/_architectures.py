"""The table of registered architectures: ``arch_variant`` → its family class and variant builder.

Architectures register with :func:`register_architecture` next to their definition. The table sits below the
weights files (:mod:`restorekit.models._weights` builds a file's model from the architecture it names) and the
names that resolve to them (:mod:`restorekit.models._registry`), so neither of those imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from restorekit._checks import fail
from restorekit.errors import WeightsError
from restorekit.models._base import Model


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: ``name`` (``arch_variant``), its family class and variant builder."""

    name: str
    family: type[Model]
    build: Callable[..., Model]


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(family: type[Model]):
    """Decorate a variant builder ``def mallenet_s(**overrides) -> MalleNet`` to register it by name."""

    def decorator(build: Callable[..., Model]):
        _ARCHITECTURES[build.__name__] = Architecture(build.__name__, family, build)
        return build

    return decorator


def architecture(name: str) -> Architecture:
    """The registered architecture ``name`` (``arch_variant``), or a :class:`WeightsError`."""
    if name not in _ARCHITECTURES:
        fail("architecture", "a registered architecture", name, valid=sorted(_ARCHITECTURES), error=WeightsError)
    return _ARCHITECTURES[name]


def list_architectures() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_ARCHITECTURES)
