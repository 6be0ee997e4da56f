"""Speed references for ``bench latency``: networks shaped like the denoisers users would pick instead.

Random weights (their outputs mean nothing; only their time does), run through the same engine as
restorekit's models — :func:`restorekit.inference.api.denoise`, with the same channels_last layout, dtype
choice and tiling — so every machine can see restorekit's speed against theirs in one run.

* ``ffdnet_shape`` — FFDNet (Zhang et al. 2018): 2× pixel-unshuffle of the image and a noise-level map,
  conv3×3 + ReLU, 13 conv3×3 + ReLU at 96 (colour) or 64 (gray) channels, conv3×3, pixel
  shuffle: 15 convolutions in all, as in the paper's colour model.
* ``dncnn_shape`` — DnCNN (Zhang et al. 2017): 20 (colour, CDnCNN) or 17 (gray) conv3×3 layers of 64
  channels at full resolution, ReLU, residual output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.models._base import Model, Requirements


class FFDNetShape(Model):
    """FFDNet's layout with random weights. Shape: ``x (B, C, H, W), sigma (B, 1, H, W) → (B, C, H, W)``."""

    def __init__(self, channels: int = 3):
        super().__init__()
        width = 96 if channels == 3 else 64
        layers: list[nn.Module] = [nn.Conv2d(4 * channels + 4, width, 3, padding=1), nn.ReLU()]
        for _ in range(13):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, 4 * channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.requirements = Requirements("denoise", channels, channels, size_multiple=2, sigma_range=(0.0, 75.0))
        self.name = "ffdnet_shape"

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([F.pixel_unshuffle(x, 2), F.pixel_unshuffle(sigma.expand(-1, 1, -1, -1), 2)], 1)
        return F.pixel_shuffle(self.body(inputs), 2)


class DnCNNShape(Model):
    """DnCNN's layout with random weights. Shape: ``x (B, C, H, W), sigma (ignored) → (B, C, H, W)``."""

    def __init__(self, channels: int = 3):
        super().__init__()
        depth = 20 if channels == 3 else 17
        layers: list[nn.Module] = [nn.Conv2d(channels, 64, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(64, 64, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(64, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.requirements = Requirements("denoise", channels, channels, sigma_range=None)
        self.name = "dncnn_shape"

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        return x - self.body(x)


SPEED_REFERENCES = {"ffdnet_shape": FFDNetShape, "dncnn_shape": DnCNNShape}


def build(name: str, channels: int) -> nn.Module:
    """The speed reference ``name`` for ``channels``-channel images, with fixed random weights, in eval mode."""
    torch.manual_seed(0)
    return SPEED_REFERENCES[name](channels).eval()
