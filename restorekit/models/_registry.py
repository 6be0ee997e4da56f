"""Explicit model registry: names of architectures (``arch_variant``) and trained models (``arch_variant.tag``).

Architectures register with :func:`~restorekit.models._architectures.register_architecture` next to their
definition; trained models are the weights files listed in ``restorekit_weights/manifest.json``. Nothing is
discovered by scanning for code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from restorekit.errors import WeightsError
from restorekit.models import _weights
from restorekit.models._architectures import architecture
from restorekit.models._base import Model
from restorekit.models.average import SEPARATOR, ModelAverage


def list_models() -> list[str]:
    """Names of the trained models that ship with restorekit (``arch_variant.tag``), sorted.

    Example:
        >>> all("." in name for name in list_models())
        True
    """
    return sorted(_weights.shipped())


def create_model(name: str, pretrained: bool = True, device: str | torch.device | None = None) -> Model:
    """Build a model by name, in eval mode.

    Args:
        name: ``arch_variant.tag`` for a trained model (see :func:`list_models`), ``arch_variant`` for an
            untrained architecture (only with ``pretrained=False``), a path to a ``.safetensors`` file, or
            trained models joined by ``+`` for the average of their outputs
            (:class:`~restorekit.models.average.ModelAverage`).
        pretrained: Load the shipped weights (built from their metadata, loaded strictly).
        device: Where to put the model; ``None`` leaves it on the CPU.

    Example:
        >>> create_model("mallenet_s", pretrained=False).requirements.task
        'denoise'
    """
    if SEPARATOR in name and not Path(name).is_file():
        model = ModelAverage([create_model(part) for part in name.split(SEPARATOR)])
    elif name.endswith(".safetensors"):
        model = _weights.load_model(name)
    elif pretrained or "." in name:
        model = _weights.load_model(_weights.shipped_path(name))
    else:
        model = architecture(name).build()
        model.name = name
    return model.to(device).eval() if device is not None else model.eval()


# Preference order of the shipped models per kind and channels, best first; the first that ships is the default.
_DEFAULTS = {
    "denoise": {
        3: ("mallenet_m.awgn_color", "mallenet_s.awgn_color"),
        1: ("mallenet_m.awgn_gray", "mallenet_s.awgn_gray"),
    },
    "tune": {3: ("tunable_mallenet_s.awgn_color",), 1: ("tunable_mallenet_s.awgn_gray",)},
    "tune_real": {3: ("tunable_acdanet_m3s_static.real_color", "tunable_mallenet_r.real_color")},
    "real": {
        3: (
            "acdanet_m3s_static.real_color",
            "mallenet_r.real_color+acdanet_s.real_color_nr2",
            "mallenet_r.real_color",
            "acdanet_s.real_color_nr2",
            "acdanet_s.real_color_nr",
            "acdanet_s.real_color",
        )
    },
    # Real-world models first (camera photos, JPEGs). ``--model acdasr_s.xN``: clean inputs.
    "sr2": {3: ("acdasr_s.real_x2", "acdasr_s.x2")},
    "sr3": {3: ("acdasr_s.real_x3", "acdasr_s.x3")},
    "sr4": {3: ("acdasr_s.real_x4", "acdasr_s.x4")},
    "tune_sr4": {3: ("tunable_acdasr_s.real_x4",)},
}


def default_model(channels: int, kind: str = "denoise") -> str:
    """The best shipped model of ``kind`` for ``channels``-channel images (1 or 3).

    Kinds: ``denoise`` (Gaussian, σ-conditioned), ``tune`` (tunable), ``real`` (blind, real camera noise),
    ``tune_real`` (tunable and blind: real camera noise),
    ``sr2``/``sr3``/``sr4`` (super-resolution by that factor; colour models, which also serve gray images) and
    ``tune_sr2``/``tune_sr3``/``tune_sr4`` (tunable super-resolution, fidelity ↔ detail).
    """
    shipped = _weights.shipped()
    upscaling = kind.startswith(("sr", "tune_sr"))
    for name in _DEFAULTS.get(kind, {}).get(3 if upscaling else channels, ()):
        if all(part in shipped for part in name.split(SEPARATOR)):  # an average: every member ships
            return name
    if kind.startswith("tune_sr"):
        tunable = [f"×{k[7:]}" for k, names in _DEFAULTS.items() if k.startswith("tune_sr") and names[3][0] in shipped]
        raise WeightsError(
            f"no tunable ×{kind[7:]} super-resolution model ships with this install "
            f"(tunable: {', '.join(tunable) or 'none'}); without ω the ×{kind[7:]} model runs"
        )
    if kind.startswith("sr"):
        raise WeightsError(f"no trained ×{kind[2:]} super-resolution model ships with this install")
    what = {
        "denoise": "denoiser",
        "tune": "tunable model",
        "real": "real-noise denoiser",
        "tune_real": "tunable real-noise model",
    }[kind]
    raise WeightsError(f"no trained {what} for {channels}-channel images ships with this install")
