"""Tunable ACDA-SR: super-resolution whose fidelity ↔ detail trade-off is chosen at run time.

Tunable convolutions (Maggioni et al., CVPR 2023) on the ACDA-SR backbone: the same layers and names as
:class:`~restorekit.models.acdasr.ACDASR`, each convolution (the ACDA atom generators and coefficients too, so ω
steers the dynamic atoms) and PReLU slope tunable over p = 2 experts. Trained with the parametric multi-loss
``ω1·L(ŷ, y) + ω2·L(ŷ, y_d)``, ``y_d`` the unsharp-masked high-resolution image
(:func:`restorekit.train.losses.unsharp_mask`): ω = (1, 0) is the faithful model, ω = (0, 1) restores more
detail than the data holds. At one ω the network folds into a plain ACDA-SR (:meth:`TunableACDASR.fold`), which
is what inference runs.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from restorekit.layers.tunable import (
    TunableConv2d,
    TunableDynamicBottleneck,
    TunablePReLU,
    TunableSequential,
    fold_into,
)
from restorekit.models._architectures import register_architecture
from restorekit.models._base import Model, store_hyperparameters
from restorekit.models.acdasr import ACDASR

OMEGA = ("fidelity", "detail")


class TunableACDASR(Model):
    """ACDA-SR with tunable layers; hyper-parameters as :class:`ACDASR` (ACDA mixers) plus the number of experts.

    Shape:
        ``x (B, C, H, W)`` in [0, 1], ``sigma`` (ignored), ``w (B, p)`` or ``(1, p)`` → ``(B, C, H·scale, W·scale)``.
    """

    @store_hyperparameters
    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 3,
        width: int = 64,
        blocks: int = 10,
        kernel_size: int = 3,
        atoms: int = 4,
        bases_per_scale: int = 6,
        generator_width: int = 16,
        params: int = 2,
    ):
        super().__init__()
        plain = ACDASR(scale, in_channels, width, blocks, "acda", kernel_size, atoms, bases_per_scale, generator_width)
        self.scale = scale
        self.head = TunableSequential(
            TunableConv2d(in_channels, width, 3, params, padding=1),
            TunablePReLU(width, params),
            TunableConv2d(width, width, 3, params, padding=1),
        )
        self.body = TunableSequential(
            *(
                TunableDynamicBottleneck(width, kernel_size, atoms, bases_per_scale, generator_width, params)
                for _ in range(blocks)
            )
        )
        self.tail = TunableSequential(
            TunableConv2d(width, width, 3, params, padding=1),
            TunablePReLU(width, params),
            TunableConv2d(width, in_channels * scale * scale, 3, params, padding=1),
        )
        names = OMEGA[:params] if params == 2 else tuple(f"ω{i + 1}" for i in range(params))
        self.requirements = dataclasses.replace(plain.requirements, tune_parameters=names, tune_domain="simplex")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        features = self.head(x, w)
        residual = F.pixel_shuffle(self.tail(features + self.body(features, w), w), self.scale)
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False) + residual

    def fold(self, w: torch.Tensor | tuple[float, ...]) -> ACDASR:
        """The plain ACDA-SR this model computes at one setting ``w`` (p values), in eval mode.

        Example:
            >>> model = TunableACDASR(scale=2, width=8, blocks=1)
            >>> type(model.fold((0.3, 0.7))).__name__
            'ACDASR'
        """
        return fold_into(self, ACDASR, w)


@register_architecture(TunableACDASR)
def tunable_acdasr_s(scale: int = 2, in_channels: int = 3) -> TunableACDASR:
    """Tunable ACDA-SR-S: 64 channels, 10 tunable ACDA bottlenecks, p = 2 (fidelity ↔ detail)."""
    return TunableACDASR(scale=scale, in_channels=in_channels)
