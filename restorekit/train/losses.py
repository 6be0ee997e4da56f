"""Training losses."""

from __future__ import annotations

import torch


def charbonnier(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier loss mean(sqrt((p - t)² + eps²)), a smooth L1. Shapes: any, equal."""
    return torch.sqrt((prediction - target).square() + eps * eps).mean()


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error. Shapes: any, equal."""
    return (prediction - target).abs().mean()


LOSSES = {"charbonnier": charbonnier, "l1": l1}
