"""σ estimation: within 15 % or 2 σ-units of the true AWGN level."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restorekit.errors import UsageError
from restorekit.inference.noise import estimate_sigma


def clean_scene(height: int = 160, width: int = 200, channels: int = 3) -> np.ndarray:
    """Piecewise-smooth synthetic scene: gradients, a disc and a bar."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = []
    for c in range(channels):
        plane = 0.2 + 0.5 * x / width + 0.1 * c + 0.1 * np.sin(y / 17 + c)
        plane[(x - 70) ** 2 + (y - 80) ** 2 < 40**2] = 0.8 - 0.2 * c
        plane[20:40, 120:190] = 0.3
        planes.append(plane)
    return np.clip(np.stack(planes, axis=-1), 0.05, 0.95)


def add_noise(clean: np.ndarray, sigma: float, seed: int = 0, clip_8bit: bool = False) -> np.ndarray:
    noisy = clean + np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)
    if clip_8bit:
        noisy = np.round(np.clip(noisy, 0, 1) * 255) / 255
    return noisy.astype(np.float32)


def close(estimate: float, sigma: float) -> bool:
    return abs(estimate - sigma) <= max(2.0, 0.15 * sigma)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [5, 15, 25, 50])
def test_estimate_within_tolerance(channels, sigma):
    estimate = estimate_sigma(add_noise(clean_scene(channels=channels), sigma, seed=sigma))
    assert close(estimate, sigma), estimate


@pytest.mark.parametrize("sigma", [15, 25])
def test_estimate_on_8bit_clipped_files(sigma):
    estimate = estimate_sigma(add_noise(clean_scene(), sigma, clip_8bit=True))
    assert close(estimate, sigma), estimate


def test_clean_image_reads_near_zero():
    assert estimate_sigma(clean_scene()) < 2.0


@pytest.mark.parametrize("bad", [np.zeros((30, 30)), np.zeros((30, 30, 4)), [[0.0]], np.zeros((10, 40, 3))])
def test_bad_input_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        estimate_sigma(bad)


@pytest.mark.data
def test_estimate_on_natural_images(data_dir):
    for name in ("kodim03.png", "kodim13.png"):
        clean = np.asarray(Image.open(data_dir / "eval" / "kodak24" / name).convert("RGB"), np.float32) / 255
        for sigma in (15, 25, 50):
            assert close(estimate_sigma(add_noise(clean, sigma, seed=sigma)), sigma)
