"""Lens-shading synthesis, crops of whole frames with their coordinates, and training a layout-aware model on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from restorekit.errors import UsageError
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.models import _architectures
from restorekit.models._weights import load_model
from restorekit.models.acdanet import ACDANet
from restorekit.train.config import load_recipe, recipe_from_dict
from restorekit.train.data import load_clean_images, sample_frame_patches
from restorekit.train.loop import draw_batch, train
from restorekit.train.shading import add_shaded_noise, draw_shading, shading_gain

RECIPES = Path(__file__).resolve().parents[2] / "weights" / "recipes"


def test_gain_is_one_on_the_axis_and_grows_to_the_corner_gain():
    coords = frame_coordinates(41, 61)
    size = torch.tensor([[41.0, 61.0]])
    gain = shading_gain(coords, size, torch.zeros(1, 2), torch.tensor([3.0]))
    assert gain.shape == (1, 1, 41, 61) and gain.min() >= 1
    assert gain[0, 0, 20, 30] == pytest.approx(1.0)  # the centre pixel is the axis
    corners = shading_gain(frame_coordinates(2, 2, torch.tensor([-0.5, 1.5]), torch.tensor([-0.5, 1.5])), size,
                           torch.zeros(1, 2), torch.tensor([3.0]))  # fmt: skip
    assert torch.allclose(corners, torch.full_like(corners, 3.0))
    # an off-centre axis: gain 1 there, ≥ 1 everywhere
    axis = torch.tensor([[0.2, -0.1]])
    assert shading_gain(axis[:, :, None, None], size, axis, torch.tensor([3.0])).item() == pytest.approx(1.0)
    assert shading_gain(coords, size, axis, torch.tensor([3.0])).min() >= 1


def test_draws_stay_in_their_ranges_and_repeat_with_the_seed():
    axis, corner = draw_shading(1000, torch.Generator().manual_seed(0), (1.5, 4.0), 0.1)
    assert axis.abs().max() <= 0.2 and axis.abs().max() > 0.18  # ±10 % of a side spanning 2
    assert corner.min() >= 1.5 and corner.max() <= 4.0
    again = draw_shading(1000, torch.Generator().manual_seed(0), (1.5, 4.0), 0.1)
    assert torch.equal(axis, again[0]) and torch.equal(corner, again[1])


def test_noise_grows_toward_the_corners_as_the_gain_says():
    clean = torch.full((2, 3, 128, 192), 0.5)
    coords = frame_coordinates(128, 192).expand(2, -1, -1, -1)
    size = torch.tensor([[128.0, 192.0]] * 2)
    sigma, as_file = torch.tensor([10.0, 10.0]), torch.zeros(2, dtype=torch.bool)
    strong = ((3.0, 4.0), 0.1)
    noisy, level = add_shaded_noise(clean, coords, size, sigma, as_file, torch.Generator().manual_seed(3), *strong)
    again, _ = add_shaded_noise(clean, coords, size, sigma, as_file, torch.Generator().manual_seed(3), *strong)
    assert torch.equal(noisy, again)
    assert level.shape == (2, 1, 128, 192) and level.min() >= 10
    for image in range(2):
        centre = (noisy[image, :, 48:80, 80:112] - 0.5).std() * 255
        corner = (noisy[image, :, :24, :24] - 0.5).std() * 255
        expected = level[image, 0, :24, :24].square().mean().sqrt() / level[image, 0, 48:80, 80:112].mean()
        assert float(corner / centre) == pytest.approx(float(expected), rel=0.15)
        assert expected > 1.3
        # the exact map: (noisy − clean) / (level/255) is standard normal
        z = (noisy[image] - 0.5) / (level[image] / 255)
        assert float(z.std()) == pytest.approx(1.0, abs=0.02)


def test_frame_patches_carry_the_coordinates_of_their_pixels():
    frame = np.random.default_rng(0).integers(0, 255, size=(60, 90, 3), dtype=np.uint8)
    crops, coords, size = sample_frame_patches([frame], 6, 30, np.random.default_rng(1), (90.0, 90.0))
    assert crops.shape == (6, 3, 30, 30) and coords.shape == (6, 2, 30, 30) and size.tolist() == [[60, 90]] * 6
    whole = torch.from_numpy(frame).permute(2, 0, 1).float() / 255
    for crop, where in zip(crops, coords, strict=True):  # frame at its own size: pixels are copied, not resized
        rows = ((where[0] + 1) / 2 * 60 - 0.5).round().long()
        cols = ((where[1] + 1) / 2 * 90 - 0.5).round().long()
        assert torch.equal(crop, whole[:, rows, cols])
    _, coords, _ = sample_frame_patches([frame], 40, 30, np.random.default_rng(2), (45.0, 60.0))
    span = coords[:, 1].amax(dim=(1, 2)) - coords[:, 1].amin(dim=(1, 2))
    span = torch.maximum(span, coords[:, 0].amax(dim=(1, 2)) - coords[:, 0].amin(dim=(1, 2)))
    assert span.min() > 0.9  # a 30-px crop of a frame 45 to 60 px long covers half of it or more
    assert (coords.abs() > 0.9).any()


def tiny_tv(in_channels: int = 3) -> ACDANet:
    return ACDANet(in_channels=in_channels, width=4, quarter_width=8, blocks=2, generator_width=4, tv_blocks=1)


@pytest.fixture
def tiny_tv_arch(monkeypatch):
    arch = _architectures.Architecture("tv_tiny", ACDANet, tiny_tv)
    monkeypatch.setitem(_architectures._ARCHITECTURES, "tv_tiny", arch)
    return arch


def shading_recipe(folder, out, iterations=2):
    return recipe_from_dict(
        {
            "model": {"architecture": "tv_tiny", "name": "tv_tiny.test", "options": {"in_channels": 3}},
            "data": {
                "train": [str(folder)], "patch": 16, "batch": 2, "holdout": 2, "val_crop": 16,
                "degradation": "shading", "frame_side": [24, 40], "sigma": [5, 30],
            },
            "optim": {"iterations": iterations, "warmup": 1},
            "run": {"out": str(out), "checkpoint_every": 2, "validate_every": 2, "log_every": 1, "threads": 1},
        }
    )  # fmt: skip


def test_a_shading_batch_is_noisier_where_the_map_says(image_folder):
    recipe = shading_recipe(image_folder, "unused")
    images = load_clean_images(recipe.data.train, 3, 16)
    clean, noisy, level, frame = draw_batch(recipe, images, np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert clean.shape == noisy.shape == (2, 3, 16, 16) and level.shape == (2, 1, 16, 16)
    assert frame.shape == (2, 2, 16, 16) and frame.abs().max() <= 1
    assert level.min() * 255 >= 5 - 1e-4


def test_shading_training_passes_the_frame_and_validates(tiny_tv_arch, image_folder, tmp_path, monkeypatch):
    seen = []
    forward = ACDANet.forward

    def spy(self, x, sigma=None, frame=None):
        seen.append((self.training, None if frame is None else tuple(frame.shape)))
        return forward(self, x, sigma, frame)

    monkeypatch.setattr(ACDANet, "forward", spy)
    weights = train(shading_recipe(image_folder, tmp_path / "run"))
    assert (True, (2, 2, 16, 16)) in seen  # training crops with their coordinates
    assert (False, (1, 2, 16, 16)) in seen  # validation crops too
    model = load_model(weights)
    assert model.requirements.layout_aware and model.metadata["training"]["iterations"] == 2
    record = model.metadata["training"]["val_psnr"]
    assert "lens-shading" in record["set"] and np.isfinite(record["psnr"])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and "val_psnr" in log[1]


def test_a_shading_recipe_needs_a_frame_side_at_least_the_patch(tmp_path):
    base = {"model": {"architecture": "a", "name": "a.b"}, "data": {"train": ["x"], "degradation": "shading"}}
    with pytest.raises(UsageError, match="frame_side"):
        recipe_from_dict(base)
    base["data"] |= {"patch": 64, "frame_side": [32, 128]}
    with pytest.raises(UsageError, match="frame_side"):
        recipe_from_dict(base)
    base["data"]["frame_side"] = [64, 128]
    assert recipe_from_dict(base).data.frame_side == (64, 128)


def test_the_shipped_shading_recipes_are_twins():
    tv = load_recipe(RECIPES / "tv_acdanet_s.shading_color.yaml")
    twin = load_recipe(RECIPES / "acdanet_s.shading_color.yaml")
    assert (tv.model.architecture, twin.model.architecture) == ("tv_acdanet_s", "acdanet_s")
    assert tv.data == twin.data and tv.optim == twin.optim
    assert tv.run.seed == twin.run.seed and tv.run.out != twin.run.out
    assert tv.model.init == twin.model.init == "weights/acdanet_s.real_color.safetensors"  # one starting point
    assert tv.data.degradation == "shading" and tv.data.batch == 8 and tv.data.patch == 96
