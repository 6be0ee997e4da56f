"""Inference twins of layers: the same computation, with element-wise work moved inside the kernels' passes.

An inverted bottleneck (:class:`~restorekit.layers.blocks.InvertedBottleneck`) writes its expanded map (5× the
channels) once per step: expand, PReLU, depthwise or malleable filter, PReLU, project. On the CPU those steps are
bound by that memory traffic. :class:`FusedInvertedBottleneck` runs the whole block as one pass of
:func:`restorekit.ops.bottleneck.inverted_bottleneck` (a depthwise filter is the malleable convolution's 1×1-grid
case), whose CPU kernel keeps the expanded map to a few rows in cache. A MalleConv's kernel predictor reads the
activated map, through an average pooling where it starts with one: :func:`~restorekit.ops.bottleneck.
expand_prelu_pool` expands, activates and pools in one pass, and the block's pass expands again rather than
read a stored map, so the expanded map is never written. Nor is the kernel grid: the op computes each grid row as
it needs it from the predictor's features and its head (the head's output rows reordered into the op's planes).

A static bottleneck of ACDANet (:class:`~restorekit.layers.acda.DynamicBottleneck` with a K×K convolution as its
mixer) has no depthwise step to keep in cache; :class:`FusedStaticBottleneck` runs its convolutions in the
precision autocast asks for with its weights cast once per call (autocast would run the PReLUs and the residual
sum on fp32 maps and convert every map twice), its PReLUs in :func:`~restorekit.ops.prelu.prelu`'s kernel, and
the final ``x + expand(…)`` as one convolution with a sum post-op (:func:`~restorekit.ops.residual_conv.
residual_conv`).

:func:`fuse` gives a model's inference twin: its module tree with each bottleneck replaced, parameters and
buffers shared, the model itself untouched. The engine runs the twin on the CPU by default (``inference.api``;
``RESTOREKIT_INFERENCE=eager`` runs the model as it is); tests hold it to the eager model (fp32 within 1e-4 end to
end).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers.acda import DynamicBottleneck
from restorekit.layers.blocks import InvertedBottleneck
from restorekit.layers.malle_conv import MalleConv
from restorekit.ops.bottleneck import expand_prelu_pool, inverted_bottleneck
from restorekit.ops.prelu import prelu
from restorekit.ops.residual_conv import residual_conv


class FusedInvertedBottleneck(nn.Module):
    """An :class:`InvertedBottleneck` for inference: expand → PReLU → filter → PReLU → project, + x in one pass.

    Args:
        block: The bottleneck to run (its modules and parameters are used, not copied); its mixer is a
            MalleConv or a depthwise convolution (see :func:`fusable`).

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``
    """

    def __init__(self, block: InvertedBottleneck):
        super().__init__()
        self.block = block
        if isinstance(block.mixer, MalleConv):  # the predictor head's output rows as the grid's planes (t·C + c)
            head, channels = block.mixer.predictor.head, block.mixer.predictor.channels
            order = torch.arange(head.out_channels, device=head.weight.device).view(channels, -1).t().flatten()
            self.register_buffer("plane_order", order, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = self.block
        expand, project = (block.expand.weight, block.expand.bias), (block.project.weight, block.project.bias)
        slope_in, slope_out = block.act1.weight, block.act2.weight
        if not isinstance(block.mixer, MalleConv):
            return inverted_bottleneck(x, expand, depthwise_planes(block.mixer, x), project, slope_in, slope_out)
        # The predictor reads the activated map, through its pooling if it starts with one: expand, activate and pool
        # in one pass. The block's pass then expands x again rather than read a stored expanded map.
        predictor = block.mixer.predictor
        pool = pooling(predictor.body[0])
        body = predictor.body[1:] if pool else predictor.body
        features = body(expand_prelu_pool(x, expand, slope_in, max(pool, 1)))
        head = (predictor.head.weight[self.plane_order], predictor.head.bias[self.plane_order])
        return inverted_bottleneck(x, expand, features.to(x.dtype), project, slope_in, slope_out, head)


class FusedStaticBottleneck(nn.Module):
    """A static :class:`DynamicBottleneck` for inference: reduce → PReLU → K×K → PReLU → expand, + x.

    Args:
        block: The bottleneck to run (its parameters are used, not copied); see :func:`fusable`.

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``, in autocast's dtype where autocast is on, else in x's.
    """

    def __init__(self, block: DynamicBottleneck):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, coords: torch.Tensor | None = None) -> torch.Tensor:
        block, device = self.block, x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        x = x.to(dtype)
        reduce, mixer, expand = block.reduce, block.mixer, block.expand
        with torch.autocast(device, enabled=False):
            inner = prelu(F.conv2d(x, reduce.weight.to(dtype), reduce.bias.to(dtype)), block.act1.weight)
            inner = F.conv2d(inner, mixer.weight.to(dtype), mixer.bias.to(dtype), padding=mixer.padding)
            return residual_conv(prelu(inner, block.act2.weight), x, expand.weight, expand.bias)


def pooling(layer: nn.Module) -> int:
    """k if ``layer`` is a k×k average pooling that :func:`restorekit.ops.prelu` can do (``pool=k``), else 0."""
    if not isinstance(layer, nn.AvgPool2d) or layer.divisor_override is not None:
        return 0
    kernel, stride, padding = (
        v if isinstance(v, tuple) else (v, v) for v in (layer.kernel_size, layer.stride, layer.padding)
    )
    square = kernel[0] == kernel[1] and stride == kernel and padding == (0, 0)
    return kernel[0] if square and (layer.ceil_mode or kernel[0] == 1) else 0


def depthwise_planes(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A depthwise convolution's kernel and bias as a 1×1 grid of planes (``ops.bottleneck``), for a batch like x's.

    Returns:
        ``(B, (K²+1)·C, 1, 1)`` in x's dtype (plane t of channel c at t·C + c: the K² taps, then the bias; the batch
        dimension broadcast).
    """
    channels = conv.out_channels
    bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(channels)
    grid = torch.cat([conv.weight.reshape(channels, -1).t().flatten(), bias]).to(x.dtype)
    return grid.reshape(1, -1, 1, 1).expand(x.shape[0], -1, -1, -1)


def fusable(block: nn.Module) -> bool:
    """Whether ``block`` is an :class:`InvertedBottleneck` whose mixer :class:`FusedInvertedBottleneck` can run:
    a MalleConv, or a depthwise convolution with a 1×1 or 3×3 kernel, stride 1, "same" zero padding and no
    dilation; or a :class:`DynamicBottleneck` that :class:`FusedStaticBottleneck` can run: a plain convolution
    (with bias, odd kernel, stride 1, "same" zero padding, no dilation or groups) as its mixer, and no TVConv."""
    if isinstance(block, DynamicBottleneck):
        mixer = block.mixer
        return (
            block.tv is None
            and type(mixer) is nn.Conv2d
            and mixer.bias is not None
            and mixer.groups == 1
            and mixer.kernel_size[0] == mixer.kernel_size[1] == 2 * mixer.padding[0] + 1
            and mixer.padding[0] == mixer.padding[1]
            and mixer.stride == (1, 1)
            and mixer.dilation == (1, 1)
            and mixer.padding_mode == "zeros"
        )
    if not isinstance(block, InvertedBottleneck):
        return False
    mixer, channels = block.mixer, block.expand.out_channels
    if isinstance(mixer, MalleConv):
        return True
    return (
        type(mixer) is nn.Conv2d
        and mixer.in_channels == mixer.out_channels == mixer.groups == channels
        and mixer.kernel_size in ((1, 1), (3, 3))
        and mixer.stride == (1, 1)
        and mixer.dilation == (1, 1)
        and mixer.padding == (mixer.kernel_size[0] // 2,) * 2
        and mixer.padding_mode == "zeros"
    )


def fuse(model: nn.Module) -> nn.Module:
    """``model``'s inference twin: its module tree with each fusable bottleneck as a :class:`FusedInvertedBottleneck`.

    The modules on the way to a replaced bottleneck are shallow copies (their parameters, buffers and other
    attributes shared, their dictionaries of children and hooks their own); everything else is shared. ``model``
    is left as it is, and returned itself when it holds nothing to fuse.

    Example:
        >>> net = nn.Sequential(InvertedBottleneck(4), nn.ReLU())
        >>> twin = fuse(net)
        >>> type(twin[0]).__name__, twin[0].block is net[0], type(net[0]).__name__
        ('FusedInvertedBottleneck', True, 'InvertedBottleneck')
    """
    if fusable(model):
        return FusedStaticBottleneck(model) if isinstance(model, DynamicBottleneck) else FusedInvertedBottleneck(model)
    children = {name: fuse(child) for name, child in model.named_children()}
    if all(children[name] is child for name, child in model.named_children()):
        return model
    twin = copy.copy(model)
    twin.__dict__.update({key: copy.copy(value) for key, value in vars(model).items() if isinstance(value, dict)})
    twin._modules.update(children)
    return twin
