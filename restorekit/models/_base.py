"""What every restorekit model declares, so that the inference engine never special-cases a model."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Requirements:
    """What a model needs from its input and what it supports.

    Attributes:
        task: ``denoise`` or ``sr``.
        in_channels: Image channels in (1 gray, 3 colour).
        out_channels: Image channels out.
        size_multiple: Height and width must be multiples of this (the engine reflect-pads).
        min_size: Smallest height/width the model accepts (the engine reflect-pads up to it).
        receptive_field: Pixels of context each side that an output pixel depends on in practice;
            the tiler overlaps tiles by at least this.
        tiling: ``supported`` (tile freely) or ``discouraged`` (tile only when memory forces it).
        half_safe: Whether fp16/bf16 inference is known to be accurate.
        sigma_range: ``(low, high)`` on the 0–255 scale for noise-conditioned models, else ``None``.
        scale: Output/input size ratio (1 for denoisers).
        tune_parameters: For tunable models, what each interactive parameter ω_i does (empty otherwise).
        tune_domain: Where ω may lie: ``simplex`` (ω_i ≥ 0, Σ ω_i = 1) or ``box`` (each ω_i in [0, 1]).
        layout_aware: Whether the model's output depends on where a pixel lies in the camera's frame (TVConv
            layers). The engine then passes ``frame``, the normalised frame coordinates of every pixel of the
            image as given (``(1, 2, H, W)``, y and x in [-1, 1]), windowed per tile like the σ map, so it must be
            the whole, uncropped frame.
    """

    task: str
    in_channels: int
    out_channels: int
    size_multiple: int = 1
    min_size: int = 1
    receptive_field: int = 16
    tiling: str = "supported"
    half_safe: bool = True
    sigma_range: tuple[float, float] | None = None
    scale: int = 1
    tune_parameters: tuple[str, ...] = ()
    tune_domain: str | None = None
    layout_aware: bool = False


class Model(nn.Module):
    """The base of every restorekit model: what it needs (``requirements``) and who it is (``name``, ``metadata``).

    A model built by its constructor is named after its class and carries no metadata; whoever loads it names it:
    :func:`~restorekit.models.create_model` (``arch_variant`` for an untrained architecture) and the weights loader
    (``arch_variant.tag`` and the file's metadata, see :mod:`restorekit.models._weights`).

    Attributes:
        requirements: What the model needs from its input and supports (:class:`Requirements`).
        name: ``arch_variant.tag`` for trained weights, ``arch_variant`` for an untrained architecture.
        metadata: The weights file's metadata, JSON fields decoded (empty for a model not loaded from a file).
    """

    requirements: Requirements
    name: str
    metadata: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.name = type(self).__name__
        self.metadata = {}


def store_hyperparameters(init):
    """Decorate ``__init__`` so the model records its constructor arguments in ``self.hyperparameters``.

    Constructors take explicit, typed arguments (no ``**kwargs``); the record is what the weights file
    stores, so loading builds exactly the same model.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: nn.Module, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        hyperparameters = {k: v for k, v in bound.arguments.items() if k != "self"}
        init(self, *args, **kwargs)
        self.hyperparameters = {k: list(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()}

    return wrapper
