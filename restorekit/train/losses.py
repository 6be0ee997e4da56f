"""Training losses."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


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
    target: torch.Tensor,
    w: torch.Tensor,
) -> torch.Tensor:
    """Parametric multi-loss of tunable convolutions (Maggioni et al., §4.1.1), averaged over the batch.

    ``Σ_b ω1_b·L(ŷ_b, y_b) + ω2_b·L(ŷ_b, t_b)`` with ``t`` the second objective's target: the noise-retention
    target ``y_η = y + ω2·ν·(z − y)`` (:func:`noise_target`; at ω = (0, 1) a fraction ν of the noise kept), or
    the unsharp-masked ``y`` (:func:`unsharp_mask`) for detail over fidelity.

    Args:
        loss: A reducing loss such as :func:`charbonnier`.
        prediction, clean, target: ``(B, C, H, W)``.
        w: ``(B, 2)`` per-image ω.
    """
    terms = [
        w[b, 0] * loss(prediction[b], clean[b]) + w[b, 1] * loss(prediction[b], target[b])
        for b in range(prediction.shape[0])
    ]
    return torch.stack(terms).mean()


def unsharp_mask(images: torch.Tensor, sigma: float, amount: float) -> torch.Tensor:
    """``y + amount·(y − G_σ * y)`` clipped to [0, 1]: edges and texture boosted, flat regions unchanged (the
    sharpened target of Real-ESRGAN's ``gt_usm`` and of the tunable-convolution paper's deblurring objective).

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``

    Example:
        >>> flat = torch.full((1, 3, 8, 8), 0.5)
        >>> torch.equal(unsharp_mask(flat, 1.0, 1.0), flat)
        True
    """
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2)
    taps = (taps / taps.sum()).to(images.device)
    channels = images.shape[1]
    blurred = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(blurred, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    blurred = F.conv2d(blurred, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return (images + amount * (images - blurred)).clamp(0, 1)


def noise_target(clean: torch.Tensor, noisy: torch.Tensor, w2: torch.Tensor, nu: float) -> torch.Tensor:
    """The noise-retention target ``y_η = y + ω2·ν·(z − y)``; ``w2`` is ``(B,)``. Shapes ``(B, C, H, W)``."""
    return clean + (w2 * nu).view(-1, 1, 1, 1) * (noisy - clean)
