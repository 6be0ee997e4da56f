"""Layout-aware models through the engine: frame coordinates of the original image in every tile and view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from restorekit.inference import tiling
from restorekit.inference.api import denoise_image
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.models import Requirements, create_model
from tests.models.test_tv_acdanet import randomized


class FrameEcho(nn.Module):
    """Returns ``(y + 1) / 2``, ``(x + 1) / 2`` of the frame it is given and the σ map, per pixel."""

    def __init__(self, layout_aware: bool = True):
        super().__init__()
        self.requirements = Requirements(
            task="denoise", in_channels=3, out_channels=3, size_multiple=4, receptive_field=2,
            layout_aware=layout_aware,
        )  # fmt: skip
        self.calls: list[tuple[tuple[int, ...], bool]] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, frame: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((tuple(sigma.shape), frame is not None))
        where = frame if frame is not None else torch.zeros_like(x[:, :2])
        return torch.cat([(where + 1) / 2, sigma], dim=1)


@pytest.mark.parametrize("tile", [0, 24])
@pytest.mark.parametrize("ensemble", [False, True])
def test_every_pixel_gets_its_place_in_the_original_frame(tile, ensemble):
    model = FrameEcho()
    pixels = np.random.default_rng(0).random((70, 93, 3), dtype=np.float32)
    out, info = denoise_image(pixels, model=model, device="cpu", tile=tile, dtype="fp32", ensemble=ensemble)
    truth = (frame_coordinates(70, 93)[0].permute(1, 2, 0).numpy() + 1) / 2
    assert np.allclose(out[..., :2], truth, atol=1e-6)
    assert np.all(out[..., 2] == 0)  # blind: a zero σ map
    assert (info.tile is not None) == (tile == 24)
    assert any("uncropped" in note for note in info.notes)
    shapes = {shape for shape, _ in model.calls}
    assert all(with_frame for _, with_frame in model.calls) and all(shape[1] == 1 for shape in shapes)


def test_a_model_that_is_not_layout_aware_gets_the_sigma_map_alone():
    model = FrameEcho(layout_aware=False)
    pixels = np.random.default_rng(0).random((30, 41, 3), dtype=np.float32)
    model.requirements = Requirements(task="denoise", in_channels=3, out_channels=3, sigma_range=(0, 75))
    out, info = denoise_image(pixels, sigma=25, model=model, device="cpu", tile=16, dtype="fp32")
    assert all(not with_frame and shape[1] == 1 for shape, with_frame in model.calls)
    assert np.allclose(out[..., :2], 0.5) and np.allclose(out[..., 2], 25 / 255)
    assert not any("uncropped" in note for note in info.notes)


def test_the_conditioning_window_carries_extra_channels_like_the_pixels():
    condition = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)
    window = tiling._condition_window(condition, 2, 3, 6, 6)
    assert torch.equal(window, tiling._gather(condition, 2, 3, 6, 6))
    assert window.shape == (1, 2, 6, 6)
    assert tiling._condition_window(0.1, 0, 0, 3, 4).shape == (1, 1, 3, 4)


def test_tv_acdanet_s_tiled_equals_untiled():
    model = randomized(create_model("tv_acdanet_s", pretrained=False))
    pixels = np.random.default_rng(1).random((241, 253, 3), dtype=np.float32)  # odd, larger than the smallest tile
    whole, _ = denoise_image(pixels, model=model, device="cpu", tile=0, dtype="fp32")
    tile = tiling.min_tile(model.requirements)
    tiled, info = denoise_image(pixels, model=model, device="cpu", tile=tile, dtype="fp32")
    assert info.tile == tile and tiling.work_ratio(241, 253, tile, model.requirements) > 1
    assert np.abs(tiled - whole).max() <= 1 / 255
    assert np.abs(whole - pixels).max() > 0.05  # the random model does change the image
    # the frame is the original image's: the same pixels as a crop of a larger frame give another result
    with torch.no_grad():
        x = torch.from_numpy(pixels[:240, :252]).permute(2, 0, 1)[None]
        here = model(x, frame=frame_coordinates(240, 252))
        elsewhere = model(x, frame=frame_coordinates(480, 504)[..., 240:, 252:])
    assert (here - elsewhere).abs().max() > 1 / 255
