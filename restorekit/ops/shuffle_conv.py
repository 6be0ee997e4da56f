"""Convolutions on either side of a pixel-(un)shuffle, without the shuffle's pass over memory.

``conv(pixel_unshuffle(x, 2))`` is one convolution of x with stride 2 and a kernel twice as large
(:func:`unshuffle_conv`): tap (i, j) of unshuffled channel 4c + 2a + b is tap (2i + a, 2j + b) of channel c.
``pixel_shuffle(conv(x), 2)`` is the convolution with its output channels in phase-major order, (2a + b)·C + c,
followed by a reshape that moves C-long runs (:func:`conv_shuffle`); the sum with the map it is added to reads
that reshape as a view, so the shuffled map is never written.

Why: on channels_last maps PyTorch's pixel_(un)shuffle moves single elements (a ``C``-strided gather), a pass
that cost more than the convolution after it in ACDANet's bf16 profile. Through the engine (``restorekit bench
latency -m acdanet_m3_static.real_color -m acdanet_m_static.real_color --peers none --references none --size 2048
--dtype bf16,fp32 --repeats 3 --threads 2``, the Sapphire Rapids machine of docs/benchmarks.md, quiet), ACDANet-M3
went from 807 to 732 ms in bf16 and from 1557 to 1475 ms in fp32 with this op, ACDANet-M from 715 to 663 and from
1390 to 1360 ms. Same arithmetic, so the results agree with the literal compositions (:func:`unshuffle_conv_reference`,
:func:`conv_shuffle_reference`) up to float rounding; autograd runs through both. One implementation for every
device (plain PyTorch calls), so there is no backend to pick; its speed on CUDA has not been measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape


def _check(x: torch.Tensor, weight: torch.Tensor, channels: int, name: str) -> dict[str, int]:
    sizes = check_shape(x, "B C H W", f"{name} x")
    check(
        weight.dim() == 4 and weight.shape[1] == channels and weight.shape[2] == weight.shape[3],
        f"{name} weight",
        f"shape (O, {channels}, k, k)",
        tuple(weight.shape),
    )
    return sizes


def unshuffle_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """``F.conv2d(F.pixel_unshuffle(x, 2), weight, bias, padding=padding)`` as one stride-2 convolution of x.

    Args:
        x: ``(B, C, H, W)``, H and W even.
        weight: ``(O, 4·C, k, k)``; bias ``(O,)`` or ``None``.
        padding: Zero padding of the unshuffled map (2·padding pixels of x).

    Returns:
        ``(B, O, H/2 + 2·padding - k + 1, …)``, in the dtype and layout ``F.conv2d`` gives.

    Example:
        >>> x, w = torch.rand(1, 2, 4, 6), torch.rand(3, 8, 1, 1)
        >>> torch.allclose(unshuffle_conv(x, w, None, 0), unshuffle_conv_reference(x, w, None, 0), atol=1e-6)
        True
    """
    sizes = _check(x, weight, 4 * x.shape[1] if x.dim() == 4 else -1, "unshuffle_conv")
    check(sizes["H"] % 2 == 0 and sizes["W"] % 2 == 0, "unshuffle_conv x", "even height and width", tuple(x.shape))
    out, channels, k = weight.shape[0], sizes["C"], weight.shape[-1]
    # (O, C, a, b, i, j) → (O, C, i, a, j, b): tap (2i + a, 2j + b) of channel c.
    kernel = weight.reshape(out, channels, 2, 2, k, k).permute(0, 1, 4, 2, 5, 3).reshape(out, channels, 2 * k, 2 * k)
    return F.conv2d(x, kernel, bias, stride=2, padding=2 * padding)


def unshuffle_conv_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int
) -> torch.Tensor:
    """The literal composition :func:`unshuffle_conv` computes. Shapes as there.

    Example:
        >>> unshuffle_conv_reference(torch.ones(1, 1, 2, 2), torch.ones(1, 4, 1, 1), None, 0).item()
        4.0
    """
    return F.conv2d(F.pixel_unshuffle(x, 2), weight, bias, padding=padding)


def conv_shuffle(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.pixel_shuffle(F.conv2d(x, weight, bias, padding=padding), 2)``, plus ``add`` when given.

    Args:
        x: ``(B, I, H, W)``.
        weight: ``(4·C, I, k, k)``; bias ``(4·C,)`` or ``None``.
        padding: Zero padding of x.
        add: ``(B, C, 2·H', 2·W')`` (H', W' the convolution's output size), or ``None``.

    Returns:
        ``(B, C, 2·H', 2·W')``, channels_last; its dtype is the convolution's (promoted with ``add``'s).

    Example:
        >>> x, w = torch.rand(1, 3, 4, 5), torch.rand(8, 3, 3, 3)
        >>> torch.allclose(conv_shuffle(x, w, None, 1), conv_shuffle_reference(x, w, None, 1), atol=1e-6)
        True
    """
    _check(x, weight, x.shape[1] if x.dim() == 4 else -1, "conv_shuffle")
    check(weight.shape[0] % 4 == 0, "conv_shuffle weight", "a multiple of 4 output channels", tuple(weight.shape))
    channels, rest = weight.shape[0] // 4, weight.shape[1:]
    # Output channel 4c + 2a + b → (2a + b)·C + c: each phase's C channels contiguous in a channels_last map.
    weight = weight.reshape(channels, 4, *rest).transpose(0, 1).reshape(4 * channels, *rest)
    bias = None if bias is None else bias.reshape(channels, 4).t().reshape(-1)
    y = F.conv2d(x, weight, bias, padding=padding)
    batch, _, height, width = y.shape
    # (B, H, W, a, b, C) → (B, H, a, W, b, C): the shuffled map, as a view where y is channels_last.
    phases = y.permute(0, 2, 3, 1).reshape(batch, height, width, 2, 2, channels).permute(0, 1, 3, 2, 4, 5)
    if add is None:
        shuffled = phases.reshape(batch, 2 * height, 2 * width, channels)
    else:
        check(
            tuple(add.shape) == (batch, channels, 2 * height, 2 * width),
            "conv_shuffle add",
            f"shape {(batch, channels, 2 * height, 2 * width)}",
            tuple(add.shape),
        )
        base = add.permute(0, 2, 3, 1).reshape(batch, height, 2, width, 2, channels)  # a view where add is NHWC
        shuffled = (base + phases).contiguous().view(batch, 2 * height, 2 * width, channels)
    return shuffled.permute(0, 3, 1, 2)


def conv_shuffle_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: int,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """The literal composition :func:`conv_shuffle` computes. Shapes as there.

    Example:
        >>> conv_shuffle_reference(torch.ones(1, 1, 1, 1), torch.ones(4, 1, 1, 1), None, 0).shape
        torch.Size([1, 1, 2, 2])
    """
    shuffled = F.pixel_shuffle(F.conv2d(x, weight, bias, padding=padding), 2)
    return shuffled if add is None else add + shuffled
