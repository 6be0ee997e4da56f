"""The engine's CPU path: the fused inference twin is the default and gives the eager model's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.bench.noise import add_noise
from restorekit.errors import UsageError
from restorekit.inference import api
from restorekit.inference.io import load_image
from restorekit.layers import FusedInvertedBottleneck
from restorekit.models import create_model, default_model
from restorekit.models.mallenet import MalleNet

CPU = torch.device("cpu")


def randomized_mallenet(in_channels: int = 3) -> MalleNet:
    """A small MalleNet whose every parameter, the PReLU slopes included, is random (trained slopes differ per
    channel and may leave [0, 1]); the biases stay small so the output stays in a sensible range."""
    torch.manual_seed(1)
    net = MalleNet(in_channels=in_channels, width=8, blocks=(2, 1, 1, 1), predictor_width=8).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith(("act1.weight", "act2.weight")):
                parameter.copy_(torch.rand(parameter.shape, generator=generator) * 1.6 - 0.3)
            elif name.endswith("weight"):
                parameter.mul_(1 + 0.5 * torch.randn(parameter.shape, generator=generator))
    return net


def run(monkeypatch, path: str, net: MalleNet, pixels: np.ndarray, tile: int | None, dtype: str) -> np.ndarray:
    monkeypatch.setenv(api.INFERENCE_ENV, path)
    out, info = api.denoise_image(pixels, 25, net, "cpu", tile, dtype)
    assert info.dtype == dtype
    return out


@pytest.mark.parametrize(
    ("height", "width", "tile"),
    [(37, 53, None), (64, 48, None), (97, 71, 40), (120, 83, 56)],  # odd sizes, padded; odd tiles with overlaps
)
def test_fused_fp32_matches_eager_within_1e4(monkeypatch, height, width, tile):
    net = randomized_mallenet()
    pixels = np.random.default_rng(height * width).random((height, width, 3), dtype=np.float32)
    eager = run(monkeypatch, "eager", net, pixels, tile, "fp32")
    fused = run(monkeypatch, "fused", net, pixels, tile, "fp32")
    assert np.abs(fused - eager).max() <= 1e-4


def test_fused_bf16_matches_eager_within_bf16_rounding(monkeypatch):
    net = randomized_mallenet()
    pixels = np.random.default_rng(3).random((61, 45, 3), dtype=np.float32)
    eager = run(monkeypatch, "eager", net, pixels, 32, "bf16")
    fused = run(monkeypatch, "fused", net, pixels, 32, "bf16")
    reference = run(monkeypatch, "eager", net, pixels, 32, "fp32")
    assert np.abs(fused - eager).max() <= 2e-2
    assert np.abs(fused - reference).max() <= np.abs(eager - reference).max() + 1e-2  # no worse than eager bf16


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize(
    ("folder", "kind", "pattern"),
    [("kodak24", "denoise", "*.png"), ("mcmaster", "denoise", "*.tif*"), ("set12", "denoise", "*.png"),
     ("real_cc15", "real", "*_real.png")],
)  # fmt: skip
def test_fused_fp32_matches_eager_within_1e4_on_the_evaluation_sets(monkeypatch, data_dir, folder, kind, pattern):
    """The shipped default models, whole evaluation sets: AWGN σ = 25 (file protocol, seeded) or the real photos."""
    files = sorted((data_dir / "eval" / folder).glob(pattern))
    assert files
    nets = {}  # per channel count, loaded once
    for path in files:
        pixels = load_image(path).pixels
        channels = pixels.shape[2]
        if channels not in nets:
            nets[channels] = create_model(default_model(channels, kind))
        net = nets[channels]
        if kind == "denoise":
            pixels = add_noise(pixels, path.name, 25, protocol="file")
        eager = run(monkeypatch, "eager", net, pixels, None, "fp32")
        fused = run(monkeypatch, "fused", net, pixels, None, "fp32")
        assert np.abs(fused - eager).max() <= 1e-4, path.name


def test_fused_gray_model_per_channel(monkeypatch):
    net = randomized_mallenet(in_channels=1)
    pixels = np.random.default_rng(4).random((40, 33, 3), dtype=np.float32)
    assert (
        np.abs(
            run(monkeypatch, "fused", net, pixels, None, "fp32") - run(monkeypatch, "eager", net, pixels, None, "fp32")
        ).max()
        <= 1e-4
    )


def test_the_fused_twin_is_the_default_and_built_once(monkeypatch):
    net = randomized_mallenet()
    monkeypatch.delenv(api.INFERENCE_ENV, raising=False)
    assert api.inference_path() == "fused"
    twin = api._prepared(net, CPU)
    assert twin is not net and any(isinstance(m, FusedInvertedBottleneck) for m in twin.modules())
    assert api._prepared(net, CPU) is twin
    assert not any(isinstance(m, FusedInvertedBottleneck) for m in net.modules())
    monkeypatch.setenv(api.INFERENCE_ENV, "eager")
    assert api._prepared(net, CPU) is net


def test_a_bad_inference_path_is_a_usage_error(monkeypatch, make_pixels):
    monkeypatch.setenv(api.INFERENCE_ENV, "compiled")
    with pytest.raises(UsageError, match="RESTOREKIT_INFERENCE"):
        api.denoise_image(make_pixels(16, 16), 25, randomized_mallenet(), "cpu")
