"""MalleConv: a depthwise convolution whose kernels a small low-resolution network predicts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers.blocks import ResidualBlock
from restorekit.ops import malleable_conv


class KernelPredictor(nn.Module):
    """Predicts per-cell depthwise kernels and biases from an average-pooled copy of the input.

    avg-pool ``avg_pool``× → conv3×3 → PReLU → [residual block → max-pool 2×] … → residual block →
    conv1×1, giving a grid ``stride = avg_pool · 2^max_pools`` times smaller than the input.

    Shape:
        ``(B, C, H, W) → kernels (B, C·K², H/stride, W/stride), bias (B, C, H/stride, W/stride)``
    """

    def __init__(self, channels: int, width: int, kernel_size: int, avg_pool: int, max_pools: int):
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        layers: list[nn.Module] = [nn.AvgPool2d(avg_pool, ceil_mode=True)] if avg_pool > 1 else []
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.PReLU(width, init=0.1)]
        for _ in range(max_pools):
            layers += [ResidualBlock(width), nn.MaxPool2d(2, ceil_mode=True)]
        layers += [ResidualBlock(width)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, channels * (kernel_size**2 + 1), 1)
        self._init_identity()
        # The head's outputs are interleaved per channel (K² taps, then the bias: the trained layout); the
        # forward pass gathers its rows so that all taps come first and the kernels and biases are plain
        # channel slices of one output — no copy of the (B, C·K², h, w) kernel map.
        taps = kernel_size**2
        order = torch.arange(channels * (taps + 1)).view(channels, taps + 1)
        self.register_buffer("order", torch.cat([order[:, :taps].flatten(), order[:, taps]]), persistent=False)

    def _init_identity(self) -> None:
        """Start as the identity filter (centre tap 1, bias 0) with small learned deviations."""
        taps = self.kernel_size**2
        nn.init.normal_(self.head.weight, std=1e-3)
        bias = torch.zeros(self.channels, taps + 1)
        bias[:, taps // 2] = 1.0
        with torch.no_grad():
            self.head.bias.copy_(bias.flatten())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.conv2d(self.body(x), self.head.weight[self.order], self.head.bias[self.order])
        return out.split([self.channels * self.kernel_size**2, self.channels], dim=1)


class MalleConv(nn.Module):
    """Malleable convolution layer: kernel predictor + on-the-fly bilinear slicing (``ops.malleable_conv``).

    Args:
        channels: Channels C of the feature map it filters.
        predictor_width: Width of the predictor network.
        kernel_size: 3 for the paper's K×K depthwise kernels, 1 for the release's per-channel scale/offset.
        stride: How many times smaller than the input the kernel grid is (a power of two ≥ 1).

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``
    """

    def __init__(self, channels: int, predictor_width: int, kernel_size: int = 3, stride: int = 8):
        super().__init__()
        avg_pool = min(stride, 4)
        max_pools = (stride // avg_pool).bit_length() - 1
        self.predictor = KernelPredictor(channels, predictor_width, kernel_size, avg_pool, max_pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels, bias = self.predictor(x)
        return malleable_conv(x, kernels, bias)
