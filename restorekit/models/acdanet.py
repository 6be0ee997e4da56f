"""ACDANet: a compact blind denoiser for real camera noise built from ACDA layers.

The shape of the ACDA paper's restoration networks: pixel-unshuffle to reduce the resolution, consecutive
dynamic bottleneck blocks with ACDA layers, pixel-shuffle to restore it, and the noise predicted as a
residual. Here a first level at half resolution (a plain inverted bottleneck, cheap) feeds a second at a
quarter, where the dynamic blocks run; no noise level is given (real noise varies with the signal and
within the frame, so the network must see it). ``mixer="static"`` swaps every ACDA layer for a plain K×K
convolution of the same width: the paper's ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers import InvertedBottleneck
from restorekit.layers.acda import MIXERS, DynamicBottleneck
from restorekit.models._base import Requirements, store_hyperparameters
from restorekit.models._registry import register_architecture


class ACDANet(nn.Module):
    """Blind real-noise denoiser with ACDA dynamic bottlenecks at a quarter of the resolution.

    Args:
        in_channels: 3 (colour) or 1.
        width: Channels at half resolution.
        quarter_width: Channels at quarter resolution (the dynamic blocks mix at half of it).
        blocks: Dynamic bottleneck blocks at quarter resolution.
        mixer: ``acda`` or ``static`` (the ablation).
        kernel_size: ACDA kernel size K (largest basis scale).
        atoms: M atoms per pixel.
        bases_per_scale: b bases per scale.
        generator_width: Hidden width of each atom generator.

    Shape:
        ``x (B, C, H, W)`` in [0, 1] → ``(B, C, H, W)``; H and W multiples of 4. A ``sigma`` argument is
        accepted and ignored (blind model), so the engine calls every denoiser alike.
    """

    @store_hyperparameters
    def __init__(
        self,
        in_channels: int = 3,
        width: int = 24,
        quarter_width: int = 64,
        blocks: int = 6,
        mixer: str = "acda",
        kernel_size: int = 3,
        atoms: int = 4,
        bases_per_scale: int = 6,
        generator_width: int = 16,
    ):
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"ACDANet mixer: expected one of {MIXERS}, got {mixer!r}")
        self.head = nn.Conv2d(in_channels * 4, width, 3, padding=1)
        self.encode = InvertedBottleneck(width, expansion=2)
        self.down = nn.Conv2d(width * 4, quarter_width, 1)
        self.body = nn.Sequential(
            *(
                DynamicBottleneck(quarter_width, mixer, kernel_size, atoms, bases_per_scale, generator_width)
                for _ in range(blocks)
            )
        )
        self.up = nn.Conv2d(quarter_width, width * 4, 1)
        self.decode = InvertedBottleneck(width, expansion=2)
        self.tail = nn.Conv2d(width, in_channels * 4, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)  # start by predicting almost no noise: output ≈ input
        nn.init.zeros_(self.tail.bias)
        self.requirements = Requirements(
            task="denoise",
            in_channels=in_channels,
            out_channels=in_channels,
            size_multiple=4,
            min_size=16,
            receptive_field=64,
            sigma_range=None,
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        half = self.encode(self.head(F.pixel_unshuffle(x, 2)))
        quarter = self.body(self.down(F.pixel_unshuffle(half, 2)))
        half = self.decode(half + F.pixel_shuffle(self.up(quarter), 2))
        return x - F.pixel_shuffle(self.tail(half), 2)


@register_architecture(ACDANet)
def acdanet_s(in_channels: int = 3) -> ACDANet:
    """ACDANet-S: 24/64 channels, 6 ACDA bottlenecks (K = 3, M = 4 atoms over 6 Fourier–Bessel bases)."""
    return ACDANet(in_channels=in_channels)


@register_architecture(ACDANet)
def acdanet_s_static(in_channels: int = 3) -> ACDANet:
    """ACDANet-S with plain 3×3 convolutions in place of the ACDA layers: the paper's ablation."""
    return ACDANet(in_channels=in_channels, mixer="static")
