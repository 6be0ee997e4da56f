"""MalleNet (Jiang et al., "Fast and High-Quality Image Denoising via Malleable Convolutions", ECCV 2022).

A 4-level pyramid made by 2× pixel-unshuffle of the noisy image (and, beyond the paper, of a per-pixel
noise-level map as in FFDNet, so one model covers σ ∈ [0, 75]). Each level: a 3×3 stem, then inverted
bottlenecks (expansion 5, PReLU) the first of which filters with a MalleConv whose kernel grid is 8× coarser
than the image. Coarse-to-fine merging (bilinear 2× upsampling, concatenation, 1×1 fusion, one more
bottleneck), and a 3×3 tail that predicts the noise, which is subtracted from the input.

MalleNet-R (``blind=True``), the paper's real-noise variant: the same network without the noise-level input,
for noise whose level varies with the signal and within the frame, so the network must see it. It can start
from a trained σ-conditioned MalleNet of the same width (:func:`blind_state_dict`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers import InvertedBottleneck, MalleConv
from restorekit.models._architectures import register_architecture
from restorekit.models._base import Model, Requirements, store_hyperparameters
from restorekit.ops.upsample import upsample_concat

LEVELS = 4


class MalleNet(Model):
    """MalleNet denoiser, noise-level conditioned.

    Args:
        in_channels: 1 (gray) or 3 (colour); the output has the same channels.
        width: Channels at full resolution; the levels use width × (1, 1, 2, 4) as in the release.
        blocks: Inverted bottlenecks per encoder level (the first of each uses a MalleConv).
        expansion: Bottleneck expansion.
        kernel_size: MalleConv kernel size (3 as in the paper, 1 as in the release's scale/offset).
        grid_stride: Kernel-grid stride in full-resolution pixels.
        predictor_width: Width of the MalleConv kernel predictors.
        blind: No noise-level input (MalleNet-R); ``sigma`` is then accepted and ignored.

    Shape:
        ``x (B, C, H, W)`` in [0, 1], ``sigma (B, 1, H, W)`` noise level σ/255 → ``(B, C, H, W)``;
        H and W multiples of 8.
    """

    @store_hyperparameters
    def __init__(
        self,
        in_channels: int = 3,
        width: int = 16,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        expansion: int = 5,
        kernel_size: int = 3,
        grid_stride: int = 8,
        predictor_width: int = 16,
        blind: bool = False,
    ):
        super().__init__()
        self.blind = blind
        widths = [width * m for m in (1, 1, 2, 4)]
        self.stems = nn.ModuleList()
        self.encoders = nn.ModuleList()
        for level in range(LEVELS):
            level_in = (in_channels + (not blind)) * 4**level
            hidden = widths[level] * expansion
            stride = max(grid_stride >> level, 1)
            malle = MalleConv(hidden, predictor_width, kernel_size, stride)
            layers = [InvertedBottleneck(widths[level], expansion, mixer=malle)]
            layers += [InvertedBottleneck(widths[level], expansion) for _ in range(blocks[level] - 1)]
            self.stems.append(nn.Conv2d(level_in, widths[level], 3, padding=1))
            self.encoders.append(nn.Sequential(*layers))
        self.fuse = nn.ModuleList(nn.Conv2d(widths[lv] + widths[lv + 1], widths[lv], 1) for lv in range(3))
        self.decoders = nn.ModuleList(InvertedBottleneck(widths[lv], expansion) for lv in range(3))
        self.tail = nn.Conv2d(widths[0], in_channels, 3, padding=1)
        self.requirements = Requirements(
            task="denoise",
            in_channels=in_channels,
            out_channels=in_channels,
            size_multiple=2 ** (LEVELS - 1),
            min_size=16,
            receptive_field=64,
            sigma_range=None if blind else (0.0, 75.0),
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        if self.blind:
            level_input = x
        else:  # the noise-level map in x's memory format, so that every level's input keeps it (channels_last on CPU)
            noise_level = sigma.expand(-1, 1, -1, -1).to(memory_format=_memory_format(x))
            level_input = torch.cat([x, noise_level], dim=1)
        device = level_input.device.type
        if torch.is_autocast_enabled(device):  # each stem would cast its level's input: cast once, then unshuffle
            level_input = level_input.to(torch.get_autocast_dtype(device))
        features = []
        for level in range(LEVELS):
            if level:
                level_input = F.pixel_unshuffle(level_input, 2)
            features.append(self.encoders[level](self.stems[level](level_input)))
        out = features[-1]
        for level in reversed(range(LEVELS - 1)):
            out = self.decoders[level](self.fuse[level](upsample_concat(features[level], out)))
        return x - self.tail(out)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


@register_architecture(MalleNet)
def mallenet_s(in_channels: int = 3) -> MalleNet:
    """MalleNet-S: width 16."""
    return MalleNet(in_channels=in_channels, width=16)


@register_architecture(MalleNet)
def mallenet_r(in_channels: int = 3) -> MalleNet:
    """MalleNet-R: MalleNet-S without the noise-level input, for real camera noise (blind)."""
    return MalleNet(in_channels=in_channels, width=16, blind=True)


BLIND_TWINS = {"mallenet_r": "mallenet_s"}  # a blind architecture → the σ-conditioned one it can start from
BLIND_START_SIGMA = 10.0  # the σ a blind twin starts at: a typical real camera-noise level (0–255 scale)


def blind_state_dict(weights: dict[str, torch.Tensor], in_channels: int, sigma: float) -> dict[str, torch.Tensor]:
    """The weights of a σ-conditioned MalleNet as a blind one's (same width): at every level the stem drops
    the input channels of the noise-level map and adds what they gave at a constant ``sigma`` (0–255 scale)
    to its bias, so that the blind network starts as the conditioned one at that σ (exactly, but for the
    stems' zero-padded borders). Pixel-unshuffle keeps the map's channels last at every level.
    """
    out = dict(weights)
    for level in range(LEVELS):
        key = f"stems.{level}"
        image = in_channels * 4**level
        weight = weights[f"{key}.weight"]
        out[f"{key}.weight"] = weight[:, :image].clone()
        out[f"{key}.bias"] = weights[f"{key}.bias"] + weight[:, image:].sum(dim=(1, 2, 3)) * (sigma / 255)
    return out


@register_architecture(MalleNet)
def mallenet_m(in_channels: int = 3) -> MalleNet:
    """MalleNet-M: width 32."""
    return MalleNet(in_channels=in_channels, width=32, predictor_width=32)


@register_architecture(MalleNet)
def mallenet_l(in_channels: int = 3) -> MalleNet:
    """MalleNet-L: width 64."""
    return MalleNet(in_channels=in_channels, width=64, predictor_width=64)


@register_architecture(MalleNet)
def mallenet_xl(in_channels: int = 3) -> MalleNet:
    """MalleNet-XL: width 128."""
    return MalleNet(in_channels=in_channels, width=128, predictor_width=128)
