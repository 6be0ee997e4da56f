"""The one PSNR: every user (the tunable sweep here, ``bench``, ``train``) imports it from this floor."""

from __future__ import annotations

import math

import numpy as np
import torch


def psnr(image: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``image`` against ``reference``, computed in float64; ``inf`` if they are equal.

    Args:
        image: Arrays or tensors of one shape, any layout (``(H, W, C)`` images, ``(B, C, H, W)`` batches, a
            luma plane), on the ``data_range`` scale.
        reference: The target it is measured against, the same shape.
        data_range: The value of white (1 for [0, 1] data, 255 for 8-bit values).

    Example:
        >>> round(psnr(np.full((4, 4, 1), 0.1), np.zeros((4, 4, 1))), 2)
        20.0
    """
    mse = float(np.mean(np.square(_float64(image) - _float64(reference))))
    return math.inf if mse == 0 else float(10 * np.log10(float(data_range) ** 2 / mse))


def _float64(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)
