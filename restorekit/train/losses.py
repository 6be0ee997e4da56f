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
    second: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Parametric multi-loss of tunable convolutions (Maggioni et al., §4.1.1), averaged over the batch.

    ``Σ_b ω1_b·L(ŷ_b, y_b) + ω2_b·L(ŷ_b, t_b)`` with ``t`` the second objective's target: the noise-retention
    target ``y_η = y + ω2·ν·(z − y)`` (:func:`noise_target`; at ω = (0, 1) a fraction ν of the noise kept), or
    the unsharp-masked ``y`` (:func:`unsharp_mask`) for detail over fidelity.

    Args:
        loss: A reducing loss such as :func:`charbonnier`.
        prediction, clean, target: ``(B, C, H, W)``.
        w: ``(B, 2)`` per-image ω.
        second: The second objective's loss of ``(ŷ_b, y_b)`` (both ``(1, C, H, W)``) in place of
            ``L(ŷ_b, t_b)``, e.g. :func:`texture_loss`.
    """
    terms = [
        w[b, 0] * loss(prediction[b], clean[b])
        + w[b, 1]
        * (loss(prediction[b], target[b]) if second is None else second(prediction[b : b + 1], clean[b : b + 1]))
        for b in range(prediction.shape[0])
    ]
    return torch.stack(terms).mean()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel (reflected borders, radius 3σ). Shape: ``(B, C, H, W)`` → same."""
    radius = max(1, round(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2)
    taps = (taps / taps.sum()).to(images.device)
    channels = images.shape[1]
    blurred = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(blurred, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(blurred, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def unsharp_mask(images: torch.Tensor, sigma: float, amount: float) -> torch.Tensor:
    """``y + amount·(y − G_σ * y)`` clipped to [0, 1]: edges and texture boosted, flat regions unchanged (the
    sharpened target of Real-ESRGAN's ``gt_usm`` and of the tunable-convolution paper's deblurring objective).

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``

    Example:
        >>> flat = torch.full((1, 3, 8, 8), 0.5)
        >>> torch.allclose(unsharp_mask(flat, 1.0, 1.0), flat)
        True
    """
    return (images + amount * (images - gaussian_blur(images, sigma))).clamp(0, 1)


def local_energy(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Local gradient energy ``sqrt(G_σ * (∂x² + ∂y²))`` per channel: how much detail a neighbourhood holds,
    whatever its phase. Shape: ``(B, C, H, W) → (B, C, H − 1, W − 1)``.

    Example:
        >>> local_energy(torch.full((1, 1, 8, 8), 0.5), 1.0).abs().max() < 1e-2
        tensor(True)
    """
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]
    return torch.sqrt(gaussian_blur(dx.square() + dy.square(), sigma) + 1e-6)


def texture_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    prediction: torch.Tensor,
    clean: torch.Tensor,
    sigma: float,
    weight: float,
) -> torch.Tensor:
    """A detail objective that needs no pretrained network: ``L(G_σ*ŷ, G_σ*y) + weight·L(E(ŷ), E(y))``.

    The low-pass term keeps the content; the second matches the local gradient energy E
    (:func:`local_energy`) of the HR image, which an L1 or L2 fit to an unpredictable high band does not do (its
    optimum is the smooth conditional median). E ignores where within σ the detail lies, so the network may
    render texture the LR image only implies. Shapes ``(B, C, H, W)``.
    """
    low = loss(gaussian_blur(prediction, sigma), gaussian_blur(clean, sigma))
    return low + weight * loss(local_energy(prediction, sigma), local_energy(clean, sigma))


def noise_target(clean: torch.Tensor, noisy: torch.Tensor, w2: torch.Tensor, nu: float) -> torch.Tensor:
    """The noise-retention target ``y_η = y + ω2·ν·(z − y)``; ``w2`` is ``(B,)``. Shapes ``(B, C, H, W)``."""
    return clean + (w2 * nu).view(-1, 1, 1, 1) * (noisy - clean)
