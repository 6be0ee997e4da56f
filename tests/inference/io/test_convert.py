"""Tests for restorekit.inference.io.convert: pixels ↔ (1, C, H, W) tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import UsageError
from restorekit.inference.io import image_to_tensor, tensor_to_pixels
from tests.inference.io.conftest import H, W, random_samples


def test_image_to_tensor_layout_and_copy():
    pixels = random_samples(3, 32, seed=13)
    tensor = image_to_tensor(pixels)
    assert tensor.shape == (1, 3, H, W) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor[0, 2].numpy(), pixels[..., 2])
    tensor.zero_()
    assert pixels.any()  # a copy, not a view
    assert image_to_tensor(pixels.astype(np.float64)).dtype == torch.float32


def test_tensor_to_pixels_round_trip_and_dtypes():
    pixels = random_samples(1, 32, seed=14)
    np.testing.assert_array_equal(tensor_to_pixels(image_to_tensor(pixels)), pixels)
    half = image_to_tensor(np.full((2, 3, 3), 1.25, np.float32)).half().requires_grad_()
    out = tensor_to_pixels(half)
    assert out.dtype == np.float32 and out.shape == (2, 3, 3) and (out == 1.25).all()  # not clipped


@pytest.mark.parametrize("bad", [torch.zeros(3, H, W), torch.zeros(2, 3, H, W)])
def test_tensor_to_pixels_rejects_other_shapes(bad):
    with pytest.raises(UsageError, match="tensor"):
        tensor_to_pixels(bad)


def test_image_to_tensor_rejects_other_shapes():
    with pytest.raises(UsageError, match="pixels"):
        image_to_tensor(np.zeros((H, W), np.float32))
