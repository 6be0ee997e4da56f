"""Averages of trained denoisers: ``"a+b"`` runs models ``a`` and ``b`` on the same input and averages their outputs.

Two denoisers of different families make different errors — on real camera noise MalleNet-R and ACDANet-S win on
different photos (``docs/models.md``) — and the mean of their outputs is closer to the clean image than either
(the classic ensemble gain), at the sum of their costs. An average is not a trained model of its own: it has no
weights file, and ``create_model("a+b")`` builds it from the members' shipped weights (or ``.safetensors`` paths).
Members must be plain denoisers of the same channels: the same kind of σ input (all blind, or all σ-conditioned),
no interactive parameters, not layout-aware.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from restorekit.errors import WeightsError
from restorekit.models._base import Model, Requirements

SEPARATOR = "+"


class ModelAverage(Model):
    """The mean of its members' outputs.

    Args:
        members: Two or more denoisers (each carrying ``requirements``; see the module docstring).

    Shape:
        ``x (B, C, H, W)``, ``sigma`` as the members take it → ``(B, C, H, W)``.
    """

    def __init__(self, members: Sequence[Model]):
        super().__init__()
        names = [member.name for member in members]
        if len(members) < 2:
            raise WeightsError(f"an average needs two or more models, got {len(members)}")
        reqs = [member.requirements for member in members]
        first = reqs[0]
        for name, req in zip(names, reqs, strict=True):
            if req.task != "denoise" or req.tune_parameters or req.layout_aware or req.scale != 1:
                raise WeightsError(f"{name} cannot be averaged: only plain denoisers (not tunable, layout-aware, SR)")
            if (req.in_channels, req.out_channels) != (first.in_channels, first.out_channels):
                channels = f"{req.in_channels}-channel images, {names[0]} {first.in_channels}-channel ones"
                raise WeightsError(f"{name} cannot be averaged with {names[0]}: it takes {channels}")
            if (req.sigma_range is None) != (first.sigma_range is None):
                raise WeightsError(f"{name} and {names[0]} cannot be averaged: one is blind, the other takes σ")
        ranges = [req.sigma_range for req in reqs if req.sigma_range is not None]
        low, high = (max(r[0] for r in ranges), min(r[1] for r in ranges)) if ranges else (None, None)
        if ranges and low > high:
            raise WeightsError(f"{SEPARATOR.join(names)}: the members' σ ranges do not overlap")
        self.members = nn.ModuleList(members)
        self.name = SEPARATOR.join(names)
        self.metadata = {"name": self.name, "members": [member.metadata for member in members]}
        self.requirements = Requirements(
            task="denoise",
            in_channels=first.in_channels,
            out_channels=first.out_channels,
            size_multiple=math.lcm(*(req.size_multiple for req in reqs)),
            min_size=max(req.min_size for req in reqs),
            receptive_field=max(req.receptive_field for req in reqs),
            tiling="supported" if all(req.tiling == "supported" for req in reqs) else "discouraged",
            half_safe=all(req.half_safe for req in reqs),
            sigma_range=(low, high) if ranges else None,
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        total = self.members[0](x, sigma)
        for member in self.members[1:]:
            total = total + member(x, sigma)
        return total / len(self.members)
