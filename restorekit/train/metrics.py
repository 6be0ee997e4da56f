"""Image quality metrics on [0, 1] data."""

from __future__ import annotations

import math

import torch


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of ``prediction`` against ``target`` (both in [0, 1], same shape); ``inf`` if equal.

    Example:
        >>> round(psnr(torch.full((1, 4), 0.1), torch.zeros(1, 4)), 2)
        20.0
    """
    mse = (prediction.double() - target.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)
