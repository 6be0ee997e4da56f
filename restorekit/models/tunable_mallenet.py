"""Tunable MalleNet: MalleNet whose every kernel, bias and PReLU slope is a mixture steered by ω.

Tunable convolutions (Maggioni et al., CVPR 2023) on the MalleNet backbone: the same pyramid, noise-level
map and layer names as :class:`~restorekit.models.mallenet.MalleNet`, with each layer tunable over p = 2
experts, including the MalleConv kernel predictors, so ω also steers the dynamic kernels. Trained with the
parametric multi-loss ``ω1·L(ŷ, y) + ω2·L(ŷ, y_η)``, ``y_η = y + ω2·ν·(z − y)``: ω = (1, 0) removes the noise,
ω = (0, 1) keeps a fraction ν of it (grain and fine detail), and the settings between trade one for the other.

At one ω the whole network folds into a plain MalleNet (:meth:`TunableMalleNet.fold`), which is what
inference runs: the speed of the fixed model at any setting.

Tunable MalleNet-R (``blind=True``): the same without the noise-level input, for real camera noise, started
from the shipped MalleNet-R; ω2 then keeps camera grain (``z`` is the synthesised noisy photo).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers.tunable import (
    TunableConv2d,
    TunableInvertedBottleneck,
    TunableMalleConv,
    TunableSequential,
    fold_into,
)
from restorekit.models._architectures import register_architecture
from restorekit.models._base import Model, Requirements, store_hyperparameters
from restorekit.models.mallenet import LEVELS, MalleNet

OMEGA = ("remove noise", "keep grain and fine detail")


class TunableMalleNet(Model):
    """MalleNet with tunable layers; hyper-parameters as :class:`MalleNet` plus the number of experts.

    Args:
        params: Number of experts p, the length of ω (2: noise removal and noise retention).
        blind: No noise-level input (tunable MalleNet-R); ``sigma`` is then accepted and ignored.

    Shape:
        ``x (B, C, H, W)`` in [0, 1], ``sigma (B, 1, H, W)`` σ/255 (or ``None`` when blind), ``w (B, p)`` or
        ``(1, p)`` → ``(B, C, H, W)``; H and W multiples of 8.
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
        params: int = 2,
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
            malle = TunableMalleConv(hidden, predictor_width, kernel_size, stride, params)
            layers = [TunableInvertedBottleneck(widths[level], expansion, params, mixer=malle)]
            layers += [TunableInvertedBottleneck(widths[level], expansion, params) for _ in range(blocks[level] - 1)]
            self.stems.append(TunableConv2d(level_in, widths[level], 3, params, padding=1))
            self.encoders.append(TunableSequential(*layers))
        self.fuse = nn.ModuleList(
            TunableConv2d(widths[lv] + widths[lv + 1], widths[lv], 1, params) for lv in range(LEVELS - 1)
        )
        self.decoders = nn.ModuleList(TunableInvertedBottleneck(widths[lv], expansion, params) for lv in range(3))
        self.tail = TunableConv2d(widths[0], in_channels, 3, params, padding=1)
        self.requirements = Requirements(
            task="denoise",
            in_channels=in_channels,
            out_channels=in_channels,
            size_multiple=2 ** (LEVELS - 1),
            min_size=16,
            receptive_field=64,
            sigma_range=None if blind else (0.0, 75.0),
            tune_parameters=OMEGA[:params] if params == 2 else tuple(f"ω{i + 1}" for i in range(params)),
            tune_domain="simplex",
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None, w: torch.Tensor) -> torch.Tensor:
        level_input = x if self.blind else torch.cat([x, sigma.expand(-1, 1, -1, -1)], dim=1)
        features = []
        for level in range(LEVELS):
            if level:
                level_input = F.pixel_unshuffle(level_input, 2)
            features.append(self.encoders[level](self.stems[level](level_input, w), w))
        out = features[-1]
        for level in reversed(range(LEVELS - 1)):
            up = F.interpolate(out, size=features[level].shape[-2:], mode="bilinear", align_corners=False)
            out = self.decoders[level](self.fuse[level](torch.cat([features[level], up], dim=1), w), w)
        return x - self.tail(out, w)

    def fold(self, w: torch.Tensor | tuple[float, ...]) -> MalleNet:
        """The plain MalleNet this model computes at one setting ``w`` (p values), in eval mode.

        Example:
            >>> model = TunableMalleNet(in_channels=1)
            >>> type(model.fold((0.3, 0.7))).__name__
            'MalleNet'
        """
        return fold_into(self, MalleNet, w)


@register_architecture(TunableMalleNet)
def tunable_mallenet_s(in_channels: int = 3) -> TunableMalleNet:
    """Tunable MalleNet-S: width 16, p = 2 (noise removal ↔ noise retention)."""
    return TunableMalleNet(in_channels=in_channels, width=16)


@register_architecture(TunableMalleNet)
def tunable_mallenet_r(in_channels: int = 3) -> TunableMalleNet:
    """Tunable MalleNet-R: blind (real camera noise), width 16, p = 2 (noise removal ↔ grain retention)."""
    return TunableMalleNet(in_channels=in_channels, width=16, blind=True)
