"""Fixtures for the benchmark tests: a tiny MalleNet weights file and folders of small synthetic images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.models._weights import save_model
from restorekit.models.mallenet import MalleNet


def _write_images(folder: Path, channels: int, count: int = 3, height: int = 32, width: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    for index in range(count):
        planes = [np.sin(6 * x + index), np.cos(5 * y - index), x * y][:channels]
        pixels = np.clip(np.stack(planes, -1) * 0.45 + 0.5, 0, 1)
        # Saturated corners, so that the float protocol leaves [0, 1] and clipping matters.
        pixels[:4, :4] = 0.0
        pixels[-4:, -4:] = 1.0
        array = (pixels * 255).round().astype(np.uint8)
        Image.fromarray(array[..., 0] if channels == 1 else array).save(folder / f"img{index}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained colour MalleNet small enough to run in milliseconds, saved as safetensors."""
    torch.manual_seed(0)
    model = MalleNet(in_channels=3, width=4, blocks=(1, 1, 1, 1), predictor_width=4)
    path = tmp_path_factory.mktemp("weights") / "mallenet_s.tinytest.safetensors"
    save_model(model, path, name="mallenet_s.tinytest")
    return path


@pytest.fixture(scope="session")
def colour_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 32×48 colour PNGs."""
    return _write_images(tmp_path_factory.mktemp("colour") / "synthetic", channels=3)


@pytest.fixture(scope="session")
def gray_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 32×48 grayscale PNGs."""
    return _write_images(tmp_path_factory.mktemp("gray") / "synthetic_gray", channels=1, count=2)
