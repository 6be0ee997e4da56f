"""What a benchmark runs: one interface over restorekit models and peer denoisers.

A :class:`Method` maps a noisy image (H, W, C) in [0, 1] and the noise level σ it is told (0–255 scale) to a
denoised image of the same shape. restorekit models run through the public
:func:`restorekit.inference.api.denoise`, so the benchmark measures what users run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from restorekit.bench import speed_refs
from restorekit.inference.api import (
    DTYPES,
    auto_precision,
    check_omega,
    denoise,
    fold_tunable,
    resolve_device,
    super_resolve,
    tune,
)
from restorekit.models import create_model, list_models

# Signature of a method's work: noisy (H, W, C) float32 in [0, 1], σ (0–255), a per-pixel σ map (H, W) for a
# method that ``takes_map``, or None → (H, W, C).
RunFn = Callable[[np.ndarray, "float | np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Method:
    """A denoiser under benchmark.

    Attributes:
        name: Row label: a model name (``arch_variant.tag``) or a peer name (``cbm3d``, …).
        kind: ``restorekit`` or ``peer``.
        channels: Image channel counts it accepts (1 gray, 3 colour).
        needs_sigma: Whether it must be told the noise level.
        input: What it reads: ``float32`` (the noisy input as is) or ``uint8`` (clipped and rounded first).
        license: Licence of the implementation or weights.
        settings: How it is configured, in words (σ mapping, patch sizes, …).
        run: The denoising function.
        package: Import name of the optional package it needs, if any.
        parameters: Learned parameters (models only).
        model: The loaded model (models only), for FLOP counting.
        sigma_range: The σ range it takes (σ-conditioned models only), 0–255.
        takes_map: Whether it also takes a per-pixel σ map (H, W) in place of one σ.
    """

    name: str
    kind: str
    channels: tuple[int, ...]
    needs_sigma: bool
    input: str
    license: str
    settings: str
    run: RunFn
    package: str | None = None
    parameters: int | None = None
    model: nn.Module | None = None
    sigma_range: tuple[float, float] | None = None
    takes_map: bool = False

    def available(self) -> bool:
        """Whether the package it needs is installed."""
        return self.package is None or find_spec(self.package) is not None

    def describe(self) -> dict[str, Any]:
        """The JSON-able declaration of this method (the ``methods`` list of a report)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "channels": list(self.channels),
            "needs_sigma": self.needs_sigma,
            "input": self.input,
            "license": self.license,
            "settings": self.settings,
            "parameters": self.parameters,
        }


def model_method(
    model: str | Path,
    device: str = "auto",
    dtype: str | None = None,
    tile: int | None = None,
    ensemble: bool = False,
    module: nn.Module | None = None,
    w: tuple[float, ...] | None = None,
    channels: int = 3,
) -> Method:
    """A restorekit model as a :class:`Method`, loaded once.

    A tunable model runs through :func:`restorekit.inference.api.tune` (a tunable SR model: ``super_resolve``
    with ``w``) at the setting ``w`` (default: the centre of its domain, equal weights), as ``restorekit tune
    --w`` (``sr --w``) runs it; ``Method.model`` is then the
    plain model it folds into (what runs, and what FLOP counting sees). A super-resolution model runs through
    :func:`restorekit.inference.api.super_resolve` at its own factor (σ is ignored), for ``bench latency``.

    Args:
        model: A model name (``arch_variant.tag``), a ``.safetensors`` path, or a speed reference's name
            (:mod:`restorekit.bench.speed_refs`, random weights: for timing only).
        device: Where it runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        dtype: Inference precision (``None``/``auto``, ``fp32``, ``fp16``, ``bf16``).
        tile: Tile size, ``0`` for none, ``None`` to size tiles from the available memory.
        ensemble: Average over the 8 flips and rotations of the input; the method is named ``<model>+x8``.
        module: The model already loaded (e.g. shared with its non-ensemble method); loaded from ``model``
            when ``None``.
        w: The setting of a tunable model.
        channels: Image channels a speed reference is built for.
    """
    if module is None:
        module = speed_refs.build(str(model), channels) if str(model) in speed_refs.SPEED_REFERENCES else None
    module = create_model(str(model)) if module is None else module
    requirements = module.requirements
    runs = module
    setting = ""
    if requirements.tune_parameters:
        count = len(requirements.tune_parameters)
        w = check_omega(w if w is not None else (1 / count,) * count, requirements, str(model))
        runs = fold_tunable(module, w)
        setting = f", ω ({', '.join(f'{v:g}' for v in w)})"

        def run(noisy: np.ndarray, sigma: float | np.ndarray | None) -> np.ndarray:
            if requirements.task == "sr":  # as `restorekit sr --w` runs it, at its own factor (σ is ignored)
                return super_resolve(
                    noisy, requirements.scale, model=module, device=device, tile=tile, dtype=dtype, w=w
                )
            return tune(noisy, w, sigma=sigma, model=module, device=device, tile=tile, dtype=dtype)

    elif requirements.task == "sr":
        setting = f", upscales ×{requirements.scale} (the size is the input's)"

        def run(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
            del sigma  # an upscaler takes no noise level
            scale = requirements.scale
            return super_resolve(noisy, scale, model=module, device=device, tile=tile, dtype=dtype, ensemble=ensemble)

    else:

        def run(noisy: np.ndarray, sigma: float | np.ndarray | None) -> np.ndarray:
            return denoise(noisy, sigma=sigma, model=module, device=device, tile=tile, dtype=dtype, ensemble=ensemble)

    precision = dtype if dtype in DTYPES else f"auto: {auto_precision(requirements, resolve_device(device), module)}"
    views = ", self-ensemble of 8 flips/rotations" if ensemble else ""
    views += setting
    return Method(
        name=module.name + ("+x8" if ensemble else ""),
        kind="reference" if str(model) in speed_refs.SPEED_REFERENCES else "restorekit",
        channels=(requirements.in_channels,),
        needs_sigma=requirements.sigma_range is not None,
        input="float32",
        license=module.metadata.get("license", "unspecified"),
        settings=f"device {device}, dtype {precision}, tile {'auto' if tile is None else tile}{views}",
        run=run,
        parameters=sum(p.numel() for p in module.parameters()),
        model=runs,
        sigma_range=requirements.sigma_range,
        takes_map=requirements.task == "denoise" and requirements.sigma_range is not None,
    )


def chain_method(method: Any, device: str = "auto", dtype: str | None = None, tile: int | None = None) -> Any:
    """``restorekit denoise`` (the photo model, no σ) then ``method``, a super-resolution :class:`Method` or
    :class:`restorekit.bench.sr.SRMethod`: the two-command route to a clean large photo, as one method named
    ``denoise → <model>`` that passes its second argument (σ or the factor) to ``method``."""

    def run(image: np.ndarray, argument: Any) -> np.ndarray:
        return method.run(denoise(image, device=device, tile=tile, dtype=dtype), argument)

    settings = f"photo denoiser, then {method.name} ({method.settings})"
    return dataclasses.replace(method, name=f"denoise → {method.name}", settings=settings, run=run)


def denoisers(chosen: Sequence[str] | None, warn: Callable[[str], None] | None = None) -> list[str]:
    """``chosen``, or every shipped plain denoiser (a tunable one runs at a setting only when named); ``warn`` is
    told when that leaves none."""
    names = list(chosen or [])
    names = names or [
        n for n in list_models() if (r := create_model(n).requirements).task == "denoise" and not r.tune_parameters
    ]
    if not names and warn is not None:
        warn("no trained model ships with this install and none was given (--model); measuring peers only")
    return names
