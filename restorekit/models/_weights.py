"""Weights files: safetensors tensors plus metadata that says how to rebuild the model. Never pickles.

Metadata keys (all values are strings; structured ones are JSON):
    ``format``           ``restorekit-weights/1``
    ``name``             ``arch_variant.tag``
    ``architecture``     registered architecture name (``arch_variant``)
    ``hyperparameters``  JSON of the constructor arguments
    ``recipe``           the training recipe (YAML text)
    ``training``         JSON: data, iterations, device, wall time, date, code version
    ``quality``          JSON: measured quality (dataset → σ → PSNR)
    ``license``          licence of the weights
    ``omega``            tunable models only, JSON: what each interactive parameter ω_i does, the domain of ω
                         and the training objective that gives them that meaning
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from restorekit._checks import fail
from restorekit.errors import WeightsError
from restorekit.models._registry import architecture

FORMAT = "restorekit-weights/1"
REQUIRED_KEYS = ("format", "name", "architecture", "hyperparameters")


def weights_dir() -> Path:
    """The folder of shipped weights (the installed ``restorekit_weights`` package)."""
    return Path(str(resources.files("restorekit_weights")))


def shipped() -> dict[str, Path]:
    """Shipped trained models: ``arch_variant.tag`` → weights path."""
    return {p.name.removesuffix(".safetensors"): p for p in weights_dir().glob("*.safetensors")}


def shipped_path(name: str) -> Path:
    """Path of the shipped weights for ``name``, or a :class:`WeightsError` listing the valid names."""
    models = shipped()
    if name not in models:
        fail("model", "a shipped model name", name, valid=sorted(models), error=WeightsError)
    return models[name]


def save_model(model: nn.Module, path: str | Path, name: str, **metadata: Any) -> None:
    """Write ``model``'s weights and metadata to ``path`` (safetensors).

    Args:
        model: A registered architecture's model (it carries ``hyperparameters``).
        path: Destination file.
        name: ``arch_variant.tag``.
        **metadata: ``recipe`` (str), ``training``, ``quality`` (JSON-able), ``license`` (str).
    """
    header = {
        "format": FORMAT,
        "name": name,
        "architecture": name.split(".")[0],
        "hyperparameters": json.dumps(model.hyperparameters),
    }
    for key, value in metadata.items():
        header[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(save(tensors, metadata=header))  # a plain write, so the umask sets the mode (save_file: 0600)
    tmp.replace(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a weights file, JSON fields decoded."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise WeightsError(f"weights file {path} is corrupted or not safetensors: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing or raw.get("format") != FORMAT:
        raise WeightsError(f"weights file {path}: expected {FORMAT} metadata, missing {missing or 'format'}")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value) if key in ("hyperparameters", "training", "quality", "omega") else value
        except json.JSONDecodeError:
            raise WeightsError(f"weights file {path}: metadata {key!r} is not valid JSON") from None
    return meta


def load_model(path: str | Path) -> nn.Module:
    """Build the model a weights file describes and load its tensors strictly."""
    meta = read_metadata(path)
    family = architecture(meta["architecture"]).family
    try:
        model = family(**meta["hyperparameters"])
    except TypeError as exc:
        raise WeightsError(f"weights file {path}: hyper-parameters do not fit {family.__name__}: {exc}") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"weights file {path} does not match {meta['architecture']}: {first}") from None
    except Exception as exc:
        raise WeightsError(f"weights file {path} is corrupted: {exc}") from None
    model.name = meta["name"]
    model.metadata = meta
    return model


def describe(path: str | Path) -> dict[str, Any]:
    """Metadata plus parameter count, for ``restorekit models``."""
    meta = read_metadata(path)
    with safe_open(str(path), framework="pt") as f:
        meta["parameters"] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return meta
