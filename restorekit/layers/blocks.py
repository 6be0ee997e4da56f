"""Plain convolutional building blocks shared by the architectures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class InvertedBottleneck(nn.Module):
    """Expand (1×1) → PReLU → spatial mixer → PReLU → project (1×1), with a residual connection.

    The spatial mixer is a depthwise 3×3 convolution unless one is given (MalleNet passes a MalleConv).
    As in the MalleNet release: expansion 5 and PReLU; no normalization, so results do not depend on the
    batch or on how an image is tiled.

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``
    """

    def __init__(self, channels: int, expansion: int = 5, mixer: nn.Module | None = None):
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.act1 = nn.PReLU(hidden, init=0.1)
        self.mixer = mixer if mixer is not None else nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act2 = nn.PReLU(hidden, init=0.1)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.act2(self.mixer(self.act1(self.expand(x)))))


class ResidualBlock(nn.Module):
    """conv3×3 → PReLU → conv3×3 with a residual connection. Shape: ``(B, C, H, W) → (B, C, H, W)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU(channels, init=0.1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel, with a learned per-channel scale and shift.

    The normalisation of the dynamic layers' generators (ACDA atoms, TVConv kernels). The ACDA release uses
    BatchNorm, whose batch statistics with CPU-sized batches differ from the running averages inference uses;
    GroupNorm or a LayerNorm over (C, H, W) would make a pixel depend on the whole tile (and on its size), so
    that tiled and untiled outputs differ. Per-pixel statistics depend on neither the batch nor the tiling.

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.movedim(1, -1), x.shape[1:2], self.weight, self.bias, self.eps).movedim(-1, 1)
