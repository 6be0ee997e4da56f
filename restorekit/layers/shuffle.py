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


def _check_plain(conv: nn.Conv2d) -> None:
    """Refuse the settings the shuffle ops do not take: they run a square kernel, stride 1, no dilation or groups,
    and the same zero padding on every side."""
    kernel, padding = conv.kernel_size, conv.padding
    plain = (
        kernel[0] == kernel[1]
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and not isinstance(padding, str)
        and padding[0] == padding[1]
        and conv.padding_mode == "zeros"
    )
    if not plain:
        raise ValueError(
            f"{type(conv).__name__}: expected a square kernel, stride 1, no dilation or groups and equal zero padding, "
            f"got kernel {kernel}, stride {conv.stride}, dilation {conv.dilation}, groups {conv.groups}, "
            f"padding {padding!r} ({conv.padding_mode})"
        )


class UnshuffleConv(nn.Conv2d):
    """``conv(pixel_unshuffle(x, 2))``: a square, stride-1, zero-padded convolution over the 4·C channels of x's
    2×2 blocks. Constructed as the :class:`~torch.nn.Conv2d` it holds (``in_channels`` = 4·C).

    Shape:
        ``(B, C, H, W) → (B, out_channels, H/2 + 2·padding - k + 1, …)``; H and W even.

    Example:
        >>> UnshuffleConv(12, 8, 3, padding=1)(torch.rand(1, 3, 16, 20)).shape
        torch.Size([1, 8, 8, 10])
    """

    def __init__(self, *args: object, **kwargs: object) -> None:  # nn.Conv2d's arguments
        super().__init__(*args, **kwargs)
        _check_plain(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return unshuffle_conv(x, self.weight, self.bias, self.padding[0])


class ConvShuffle(nn.Conv2d):
    """``pixel_shuffle(conv(x), 2) (+ add)``: a square, stride-1, zero-padded convolution to 4·C channels, each 2×2
    block of the output made from a pixel's 4·C values. Constructed as the :class:`~torch.nn.Conv2d` it holds
    (``out_channels`` = 4·C).

    Shape:
        ``x (B, I, H, W)``, ``add (B, C, 2·H', 2·W')`` or ``None`` → ``(B, C, 2·H', 2·W')`` (H', W' the
        convolution's output size), channels_last.

    Example:
        >>> ConvShuffle(8, 12, 1)(torch.rand(1, 8, 8, 10), add=torch.rand(1, 3, 16, 20)).shape
        torch.Size([1, 3, 16, 20])
    """

    def __init__(self, *args: object, **kwargs: object) -> None:  # nn.Conv2d's arguments
        super().__init__(*args, **kwargs)
        _check_plain(self)

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        return conv_shuffle(x, self.weight, self.bias, self.padding[0], add)
