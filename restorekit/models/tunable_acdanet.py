"""Tunable ACDANet: the photo default's backbone with a noise-removal ↔ grain knob.

Tunable convolutions (Maggioni et al., CVPR 2023) on a static :class:`~restorekit.models.acdanet.ACDANet` (the
fast photo model's family): the same layers and names, each convolution and PReLU slope tunable over p = 2
experts. Trained with the parametric multi-loss ``ω1·L(ŷ, y) + ω2·L(ŷ, y_η)``, ``y_η = y + ω2·ν·(z − y)``, where y
may be the distillation teacher's output (as the plain model was trained): ω = (1, 0) removes the noise as the
plain model does, ω = (0, 1) keeps a fraction ν of it. At one ω the network folds into a plain ACDANet
(:meth:`TunableACDANet.fold`), which is what inference runs: the photo default's speed at every setting.

The pixel-(un)shuffles run as such here (training); the folded model runs them inside its convolutions
(:mod:`restorekit.layers.shuffle`), the same arithmetic.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from restorekit.layers.tunable import (
    Tunable,
    TunableConv2d,
    TunableDynamicBottleneck,
    TunableInvertedBottleneck,
    TunableSequential,
    expand_state_dict,
    fold_into,
)
from restorekit.models._architectures import register_architecture
from restorekit.models._base import Model, store_hyperparameters
from restorekit.models.acdanet import ACDANet

OMEGA = ("remove noise", "keep grain and fine detail")


class TunableACDANet(Model):
    """A static ACDANet with tunable layers; hyper-parameters as :class:`ACDANet` plus the number of experts.

    Only the static mixer and no TVConv (``mixer="static"``, ``tv_blocks=0``): the fast photo models' family.

    Shape:
        ``x (B, C, H, W)`` in [0, 1], ``sigma`` (ignored: blind), ``w (B, p)`` or ``(1, p)`` → ``(B, C, H, W)``.
    """

    @store_hyperparameters
    def __init__(
        self,
        in_channels: int = 3,
        width: int = 24,
        quarter_width: int = 64,
        blocks: int = 6,
        mixer: str = "static",
        kernel_size: int = 3,
        atoms: int = 4,
        bases_per_scale: int = 6,
        generator_width: int = 16,
        tv_blocks: int = 0,
        eighth_width: int = 0,
        eighth_blocks: int = 0,
        eighth_after: int | None = None,
        params: int = 2,
    ):
        super().__init__()
        if mixer != "static" or tv_blocks:
            raise ValueError(f"TunableACDANet: only mixer='static' without tv_blocks, got {mixer!r}, {tv_blocks}")
        plain = ACDANet(
            in_channels, width, quarter_width, blocks, mixer, kernel_size, atoms, bases_per_scale, generator_width,
            tv_blocks, eighth_width, eighth_blocks, eighth_after,
        )  # fmt: skip
        self.eighth_after = plain.eighth_after
        self.head = TunableConv2d(in_channels * 4, width, 3, params, padding=1)
        self.encode = TunableInvertedBottleneck(width, 2, params)
        self.down = TunableConv2d(width * 4, quarter_width, 1, params)
        self.body = TunableSequential(
            *(TunableDynamicBottleneck(quarter_width, kernel_size, 0, 0, 0, params, "static") for _ in range(blocks))
        )
        self.eighth = TunableEighthLevel(quarter_width, eighth_width, eighth_blocks, params) if eighth_blocks else None
        self.up = TunableConv2d(quarter_width, width * 4, 1, params)
        self.decode = TunableInvertedBottleneck(width, 2, params)
        self.tail = TunableConv2d(width, in_channels * 4, 3, params, padding=1)
        # From scratch it starts as its plain twin's fresh initialisation (every expert alike): the blocks and the
        # eighth level the identity, the output ≈ the input.
        self.load_state_dict(expand_state_dict(self, plain.state_dict()), strict=True)
        names = OMEGA[:params] if params == 2 else tuple(f"ω{i + 1}" for i in range(params))
        self.requirements = dataclasses.replace(plain.requirements, tune_parameters=names, tune_domain="simplex")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        half = self.encode(self.head(F.pixel_unshuffle(x, 2), w), w)
        quarter = self.down(F.pixel_unshuffle(half, 2), w)
        for index, block in enumerate(self.body):
            if index == self.eighth_after and self.eighth is not None:
                quarter = self.eighth(quarter, w)
            quarter = block(quarter, w)
        if self.eighth_after == len(self.body) and self.eighth is not None:
            quarter = self.eighth(quarter, w)
        half = self.decode(half + F.pixel_shuffle(self.up(quarter, w), 2), w)
        return x - F.pixel_shuffle(self.tail(half, w), 2)

    def fold(self, w: torch.Tensor | tuple[float, ...]) -> ACDANet:
        """The plain ACDANet this model computes at one setting ``w`` (p values), in eval mode.

        Example:
            >>> model = TunableACDANet(width=8, quarter_width=16, blocks=1)
            >>> type(model.fold((0.3, 0.7))).__name__
            'ACDANet'
        """
        return fold_into(self, ACDANet, w)


class TunableEighthLevel(Tunable):
    """Tunable twin of :class:`~restorekit.models.acdanet.EighthLevel` (initialised by :class:`TunableACDANet`).

    Shape:
        ``x (B, C, H, W), w (B, p) → (B, C, H, W)``; H and W even.
    """

    def __init__(self, channels: int, width: int, blocks: int, params: int = 2):
        super().__init__()
        self.down = TunableConv2d(channels * 4, width, 1, params)
        self.body = TunableSequential(
            *(TunableDynamicBottleneck(width, 3, 0, 0, 0, params, "static") for _ in range(blocks))
        )
        self.up = TunableConv2d(width, channels * 4, 1, params)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x + F.pixel_shuffle(self.up(self.body(self.down(F.pixel_unshuffle(x, 2), w), w), w), 2)


@register_architecture(TunableACDANet)
def tunable_acdanet_m3s_static(in_channels: int = 3) -> TunableACDANet:
    """Tunable ACDANet-M3s-static: the photo default's backbone (6 quarter + 4 eighth static bottlenecks), p = 2
    (noise removal ↔ grain retention)."""
    return TunableACDANet(
        in_channels=in_channels,
        width=32,
        quarter_width=128,
        blocks=6,
        eighth_width=128,
        eighth_blocks=4,
        eighth_after=4,
    )
