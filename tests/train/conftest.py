"""Fixtures for the training tests: a tiny registered MalleNet architecture, a folder of small images, recipes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from restorekit.models import _architectures
from restorekit.models.mallenet import MalleNet
from restorekit.train.config import recipe_from_dict


def tiny_builder(in_channels: int = 3, blind: bool = False) -> MalleNet:
    return MalleNet(in_channels=in_channels, width=4, blocks=(1, 1, 1, 1), predictor_width=4, blind=blind)


@pytest.fixture
def tiny_arch(monkeypatch):
    arch = _architectures.Architecture("mallenet_tiny", MalleNet, tiny_builder)
    monkeypatch.setitem(_architectures._ARCHITECTURES, "mallenet_tiny", arch)
    return arch


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        base = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((40, 32), Image.BILINEAR).save(folder / f"{index}.png")
    return folder


def recipe_for(folder, out, iterations=4):
    return recipe_from_dict(
        {
            "model": {"architecture": "mallenet_tiny", "name": "mallenet_tiny.test", "options": {"in_channels": 3}},
            "data": {"train": [str(folder)], "patch": 16, "batch": 2, "holdout": 2, "val_crop": 16},
            "optim": {"iterations": iterations, "warmup": 1},
            "run": {"out": str(out), "checkpoint_every": 2, "validate_every": 2, "log_every": 1, "threads": 1},
        }
    )
