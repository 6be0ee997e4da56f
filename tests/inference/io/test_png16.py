"""Tests for restorekit.inference.io.png16: the 16-bit PNG encoder, read back by OpenCV."""

from __future__ import annotations

import numpy as np
import pytest

from restorekit.inference.io import Image, convert, save_image
from tests.inference.io.conftest import random_samples, read_independently


@pytest.mark.parametrize(("height", "width", "channels"), [(1, 1, 1), (1, 7, 2), (5, 1, 3), (300, 3, 4), (400, 400, 4)])
def test_png16_encoder_shapes(tmp_path, height, width, channels):
    # 300 rows cross the encoder's 256-row filter blocks; 400×400 noise needs several 1 MiB IDAT chunks
    samples = random_samples(channels, 16, seed=15, height=height, width=width)
    color, alpha = (samples, None) if channels in (1, 3) else (samples[..., :-1], samples[..., -1])
    save_image(Image(convert._to_unit(color), alpha, 16, "x", "PNG"), tmp_path / "out.png")
    np.testing.assert_array_equal(read_independently(tmp_path / "out.png"), samples)
