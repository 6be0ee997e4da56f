"""The one conversion point of pixel values: file samples ↔ ``[0, 1]`` float32 pixels ↔ ``(1, C, H, W)`` tensors.

:mod:`.decode` scales samples to ``[0, 1]`` once (:func:`_to_unit`), :mod:`.encode` quantizes them once
(:func:`_to_samples`); the restoration turns the ``(H, W, C)`` pixels into a model's ``(1, C, H, W)`` tensor once
(:func:`image_to_tensor`) and its output back once (:func:`tensor_to_pixels`).
"""

from __future__ import annotations

import numpy as np
import torch

from restorekit._checks import check, check_shape

_SAMPLE_TYPES = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: np.dtype(np.float32)}
_BIT_DEPTHS = {dtype: depth for depth, dtype in _SAMPLE_TYPES.items()}


def _to_unit(samples: np.ndarray) -> np.ndarray:
    """Scale uint8 / uint16 samples to float32 ``[0, 1]``; float32 samples are copied as they are."""
    if samples.dtype == np.float32:
        return samples.copy()
    return samples.astype(np.float32) / np.float32(np.iinfo(samples.dtype).max)


def _to_samples(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Quantize float values to ``bit_depth`` samples: ``round(clip(x, 0, 1) · max)``; float32 is kept as is."""
    if bit_depth == 32:
        return values.astype(np.float32)
    sample_type = _SAMPLE_TYPES[bit_depth]
    scaled = np.clip(values, 0, 1, dtype=np.float32) * np.float32(np.iinfo(sample_type).max)
    return np.round(scaled).astype(sample_type)


def image_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """Convert ``(H, W, C)`` float pixels to a new ``(1, C, H, W)`` float32 tensor; the one conversion point.

    Example:
        >>> image_to_tensor(np.zeros((4, 6, 3), np.float32)).shape
        torch.Size([1, 3, 4, 6])
    """
    check(
        isinstance(pixels, np.ndarray) and pixels.ndim == 3,
        "pixels",
        "an (H, W, C) array",
        getattr(pixels, "shape", type(pixels)),
    )
    return torch.from_numpy(np.array(pixels.transpose(2, 0, 1), dtype=np.float32, order="C")).unsqueeze(0)


def tensor_to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """Convert a ``(1, C, H, W)`` tensor on any device and dtype to ``(H, W, C)`` float32 pixels, unclipped.

    Example:
        >>> tensor_to_pixels(torch.zeros(1, 3, 4, 6)).shape
        (4, 6, 3)
    """
    check_shape(tensor, "1 C H W", "tensor")
    return np.ascontiguousarray(tensor.detach()[0].permute(1, 2, 0).to("cpu", torch.float32).numpy())
