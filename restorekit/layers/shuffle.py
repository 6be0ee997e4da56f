"""Convolutions that change the resolution by 2 through pixel-(un)shuffling, as one op each.

:class:`UnshuffleConv` is ``conv(pixel_unshuffle(x, 2))`` and :class:`ConvShuffle` is ``pixel_shuffle(conv(x), 2)``
(plus a map to add): plain :class:`torch.nn.Conv2d` layers, so their parameters and weights files are those of the
convolution alone, whose forward runs :mod:`restorekit.ops.shuffle_conv` (the same arithmetic, without the
shuffle's pass over memory).
"""

from __future__ import annotations

import torch
from torch import nn

from restorekit.ops.shuffle_conv import conv_shuffle, unshuffle_conv


class UnshuffleConv(nn.Conv2d):
    """``conv(pixel_unshuffle(x, 2))``: a stride-1, square, "same"-or-valid zero-padded convolution over the 4·C
    channels of x's 2×2 blocks. Constructed as the :class:`~torch.nn.Conv2d` it holds (``in_channels`` = 4·C).

    Shape:
        ``(B, C, H, W) → (B, out_channels, H/2 + 2·padding - k + 1, …)``; H and W even.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unshuffle_conv(x, self.weight, self.bias, self.padding[0])


class ConvShuffle(nn.Conv2d):
    """``pixel_shuffle(conv(x), 2) (+ add)``: a stride-1, square, zero-padded convolution to 4·C channels, each 2×2
    block of the output made from a pixel's 4·C values. Constructed as the :class:`~torch.nn.Conv2d` it holds
    (``out_channels`` = 4·C).

    Shape:
        ``x (B, I, H, W)``, ``add (B, C, 2·H', 2·W')`` or ``None`` → ``(B, C, 2·H', 2·W')`` (H', W' the
        convolution's output size), channels_last.
    """

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        return conv_shuffle(x, self.weight, self.bias, self.padding[0], add)
