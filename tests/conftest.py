"""Shared fixtures: tiny models built in the tests (no placeholder model ships), devices, small images.

Tests marked ``gpu`` are skipped when CUDA is absent; tests marked ``data`` when ``../shared/data`` is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.layers.tunable import expand_state_dict
from restorekit.models._weights import save_model
from restorekit.models.mallenet import MalleNet
from restorekit.models.tunable_mallenet import TunableMalleNet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Weights files name their architecture, so the tiny MalleNet is saved under a registered one
# (mallenet_s): loading rebuilds MalleNet from the recorded hyper-parameters, not from the variant.
TINY_NAME = "mallenet_s.tiny_test"
TINY_TUNABLE_NAME = "tunable_mallenet_s.tiny_test"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    skip_data = pytest.mark.skip(reason=f"needs the datasets in {DATA}")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "data" in item.keywords and not DATA.is_dir():
            item.add_marker(skip_data)


@pytest.fixture(autouse=True)
def _auto_dtype_by_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dtype="auto"`` by the hardware rule in tests: a timed choice would make outputs depend on the machine's load.
    The measured choice (the product's default) has its own tests, which set ``RESTOREKIT_AUTO_DTYPE`` themselves."""
    monkeypatch.setenv("RESTOREKIT_AUTO_DTYPE", "rule")


def tiny_mallenet(in_channels: int = 3) -> MalleNet:
    """A MalleNet small enough for unit tests, with fixed weights."""
    torch.manual_seed(0)
    return MalleNet(in_channels=in_channels, width=4, blocks=(1, 1, 1, 1), predictor_width=4).eval()


@pytest.fixture
def tiny_model() -> MalleNet:
    """Colour tiny MalleNet (random weights, seed 0)."""
    return tiny_mallenet(3)


@pytest.fixture
def tiny_gray_model() -> MalleNet:
    """Gray tiny MalleNet (random weights, seed 0)."""
    return tiny_mallenet(1)


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """The colour tiny MalleNet saved as a weights file (for ``--model PATH``)."""
    path = tmp_path / "weights" / "tiny_color.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_model(tiny_mallenet(3), path, name=TINY_NAME)
    return path


@pytest.fixture
def tiny_gray_weights(tmp_path: Path) -> Path:
    """The gray tiny MalleNet saved as a weights file."""
    path = tmp_path / "weights" / "tiny_gray.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_model(tiny_mallenet(1), path, name=TINY_NAME)
    return path


def tiny_tunable(in_channels: int = 3) -> TunableMalleNet:
    """A tiny tunable MalleNet started from :func:`tiny_mallenet`, its experts then made to differ."""
    tunable = TunableMalleNet(in_channels=in_channels, width=4, blocks=(1, 1, 1, 1), predictor_width=4)
    tunable.load_state_dict(expand_state_dict(tunable, tiny_mallenet(in_channels).state_dict()))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in tunable.named_parameters():
            if parameter.dim() >= 2 and "phi" not in name:  # experts: the second one drifts
                parameter[1].add_(torch.randn(parameter[1].shape, generator=generator) * 0.05)
    return tunable.eval()


@pytest.fixture
def tiny_tunable_weights(tmp_path: Path) -> Path:
    """The colour tiny tunable MalleNet saved as a weights file, with the ν of its (pretend) recipe."""
    path = tmp_path / "weights" / "tiny_tunable.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_model(tiny_tunable(3), path, name=TINY_TUNABLE_NAME, recipe="tune: {nu: 0.9}\n")
    return path


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    """Each available device (CUDA variants are skipped without a GPU)."""
    return request.param


def noisy_pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth synthetic scene plus mild noise, ``(H, W, C)`` float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(x / (5 + c) + y / (7 + 2 * c) + seed) for c in range(channels)]
    clean = np.stack(planes, axis=-1)
    return np.clip(clean + rng.normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)


@pytest.fixture
def write_png() -> Callable[..., Path]:
    """``write_png(path, height=24, width=40, channels=3, seed=0)``: write an 8-bit PNG and return its path."""

    def write(path: Path, height: int = 24, width: int = 40, channels: int = 3, seed: int = 0) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = np.round(noisy_pixels(height, width, channels, seed) * 255).astype(np.uint8)
        Image.fromarray(samples[..., 0] if channels == 1 else samples).save(path)
        return path

    return write


@pytest.fixture
def tree_hash() -> Callable[[Path], dict[str, str]]:
    """``tree_hash(folder)``: SHA-256 of every file under ``folder`` (to prove inputs are untouched)."""

    def digest(folder: Path) -> dict[str, str]:
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    return digest


@pytest.fixture
def make_pixels() -> Callable[..., np.ndarray]:
    """``make_pixels(height, width, channels=3, seed=0)``: see :func:`noisy_pixels`."""
    return noisy_pixels


@pytest.fixture
def data_dir() -> Path:
    """``../shared/data`` (tests that use it are marked ``data`` and skip when it is absent)."""
    return DATA
