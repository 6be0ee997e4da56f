"""ACDA-SR: super-resolution ×2/×3/×4 built from ACDA dynamic bottlenecks.

The ACDA paper's restoration network, placed where super-resolution is cheapest: two convolutions lift the
low-resolution image to features, consecutive dynamic bottleneck blocks with ACDA layers refine them, and two
convolutions with a pixel-shuffle produce the ``scale``² sub-pixel residuals added to the bicubic upsampling of
the input. Every convolution runs on the low-resolution grid, so a pixel of output costs 1/``scale``² of what
the same network costs on a bicubic-upsampled input (RealSR's placement); the pixel-unshuffle of the paper's
denoisers is the identity here, the input being already small. ``mixer="static"`` swaps every ACDA layer for
a plain K×K convolution: the paper's ablation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers.acda import MIXERS, DynamicBottleneck
from restorekit.models._architectures import register_architecture
from restorekit.models._base import Model, Requirements, store_hyperparameters

SCALES = (2, 3, 4)


class ACDASR(Model):
    """Super-resolution network: ACDA bottlenecks on the low-resolution grid, pixel-shuffle tail, bicubic skip.

    Args:
        scale: Upscaling factor, 2, 3 or 4.
        in_channels: 3 (colour) or 1.
        width: Feature channels (the dynamic blocks mix at half of it).
        blocks: Dynamic bottleneck blocks.
        mixer: ``acda`` or ``static`` (the ablation).
        kernel_size: ACDA kernel size K (largest basis scale).
        atoms: M atoms per pixel.
        bases_per_scale: b bases per scale.
        generator_width: Hidden width of each atom generator.

    Shape:
        ``x (B, C, H, W)`` in [0, 1] → ``(B, C, H·scale, W·scale)``. A ``sigma`` argument is accepted and
        ignored, so the engine calls every model alike.
    """

    @store_hyperparameters
    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        width: int = 64,
        blocks: int = 10,
        mixer: str = "acda",
        kernel_size: int = 3,
        atoms: int = 4,
        bases_per_scale: int = 6,
        generator_width: int = 16,
    ):
        super().__init__()
        if not isinstance(scale, int) or isinstance(scale, bool) or scale not in SCALES:
            raise ValueError(f"ACDASR scale: expected one of {SCALES}, got {scale!r}")
        if mixer not in MIXERS:
            raise ValueError(f"ACDASR mixer: expected one of {MIXERS}, got {mixer!r}")
        self.scale = scale
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.PReLU(width, init=0.1),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.body = nn.Sequential(
            *(
                DynamicBottleneck(width, mixer, kernel_size, atoms, bases_per_scale, generator_width)
                for _ in range(blocks)
            )
        )
        self.tail = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.PReLU(width, init=0.1),
            nn.Conv2d(width, in_channels * scale * scale, 3, padding=1),
        )
        nn.init.normal_(self.tail[-1].weight, std=1e-3)  # start as bicubic upsampling
        nn.init.zeros_(self.tail[-1].bias)
        # Context each side, in input pixels: 2 head convolutions, 3 per block (two generator convolutions and
        # the K×K atoms), 2 tail convolutions, doubled as a margin for the tiler.
        reach = 2 + blocks * (2 + kernel_size // 2) + 2
        self.requirements = Requirements(
            task="sr",
            in_channels=in_channels,
            out_channels=in_channels,
            size_multiple=1,
            min_size=4,
            receptive_field=min(2 * reach, 64),
            sigma_range=None,
            scale=scale,
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        features = self.head(x)
        residual = F.pixel_shuffle(self.tail(features + self.body(features)), self.scale)
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) + residual


@register_architecture(ACDASR)
def acdasr_s(scale: int = 2, in_channels: int = 3) -> ACDASR:
    """ACDA-SR-S: 64 channels, 10 ACDA bottlenecks (K = 3, M = 4 atoms over 6 Fourier–Bessel bases)."""
    return ACDASR(scale=scale, in_channels=in_channels)


@register_architecture(ACDASR)
def acdasr_s_static(scale: int = 2, in_channels: int = 3) -> ACDASR:
    """ACDA-SR-S with plain 3×3 convolutions in place of the ACDA layers: the paper's ablation."""
    return ACDASR(scale=scale, in_channels=in_channels, mixer="static")
