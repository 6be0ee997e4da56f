"""Training losses."""

from __future__ import annotations

from collections.abc import Callable

import torch


def charbonnier(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss mean(sqrt((p - t)² + eps²)), a smooth L1. Shapes: any, equal."""
    return torch.sqrt((prediction - target).square() + eps * eps).mean()


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error. Shapes: any, equal."""
    return (prediction - target).abs().mean()


LOSSES = {"charbonnier": charbonnier, "l1": l1}


def multi_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    prediction: torch.Tensor,
    clean: torch.Tensor,
    noisy: torch.Tensor,
    w: torch.Tensor,
    nu: float,
) -> torch.Tensor:
    """Parametric multi-loss of tunable convolutions (Maggioni et al., §4.1.1), averaged over the batch.

    ``Σ_b ω1_b·L(ŷ_b, y_b) + ω2_b·L(ŷ_b, y_η,b)`` with ``y_η = y + ω2·ν·(z − y)``: at ω = (1, 0) plain
    denoising, at ω = (0, 1) a fraction ν of the noise kept.

    Args:
        loss: A reducing loss such as :func:`charbonnier`.
        prediction, clean, noisy: ``(B, C, H, W)``.
        w: ``(B, 2)`` per-image ω.
        nu: Fraction of the noise the retention objective keeps.
    """
    target = noise_target(clean, noisy, w[:, 1], nu)
    terms = [
        w[b, 0] * loss(prediction[b], clean[b]) + w[b, 1] * loss(prediction[b], target[b])
        for b in range(prediction.shape[0])
    ]
    return torch.stack(terms).mean()


def noise_target(clean: torch.Tensor, noisy: torch.Tensor, w2: torch.Tensor, nu: float) -> torch.Tensor:
    """The noise-retention target ``y_η = y + ω2·ν·(z − y)``; ``w2`` is ``(B,)``. Shapes ``(B, C, H, W)``."""
    return clean + (w2 * nu).view(-1, 1, 1, 1) * (noisy - clean)
