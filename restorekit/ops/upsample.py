"""Bilinear upsampling concatenated to a feature map: how a coarse-to-fine decoder merges a level into the next.

``upsample_concat(features, coarse)`` is ``torch.cat([features, F.interpolate(coarse, features' size, "bilinear",
align_corners=False)], dim=1)``. Run as two ATen ops on a channels_last bf16 map (MalleNet's decoder on the CPU) the
interpolation alone takes about twice as long as in fp32, and the concatenation writes the upsampled map a second
time. The CPU kernel (in the malleable convolution's library, :mod:`restorekit.ops._malleable_cpu`) writes each
output row once: the features' row, then the two coarse rows around it blended and interpolated along the row, in
fp32 (the grid slicing's sampling tables: the same half-pixel centres and replicated borders). No backward: with a
gradient to compute, or off the CPU, the reference runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from restorekit._checks import check, check_shape
from restorekit.ops import _malleable_cpu
from restorekit.ops._backend import Backends, pick_backend

BACKENDS = Backends("upsample_concat", cpu=_malleable_cpu, cpu_backward=False)


def upsample_concat(features: torch.Tensor, coarse: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """``features`` and ``coarse`` bilinearly upsampled to its size, concatenated along the channels.

    Args:
        features: ``(B, Cf, H, W)``.
        coarse: ``(B, C, h, w)``, features' dtype and device.
        backend: ``auto`` (the CPU kernel for CPU tensors when no gradient is needed and a compiler is present,
            else the reference), ``reference`` or ``cpu``.

    Returns:
        ``(B, Cf + C, H, W)`` in features' dtype and memory format.

    Example:
        >>> out = upsample_concat(torch.zeros(1, 2, 4, 4), torch.ones(1, 3, 2, 2))
        >>> out.shape, out[:, 2:].unique().tolist()
        (torch.Size([1, 5, 4, 4]), [1.0])
    """
    sizes = check_shape(features, "B Cf H W", "upsample_concat features")
    check_shape(coarse, f"{sizes['B']} C h w", "upsample_concat coarse")
    check(coarse.dtype == features.dtype, "upsample_concat dtypes", "features and coarse alike",
          (features.dtype, coarse.dtype))  # fmt: skip
    if pick_backend(BACKENDS, backend, features, coarse) == "cpu":
        return _malleable_cpu.upsample_cat_cpu(features, coarse)
    return upsample_concat_reference(features, coarse)


def upsample_concat_reference(features: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """The two ATen ops. Arguments as for :func:`upsample_concat`."""
    up = F.interpolate(coarse, size=features.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([features, up], dim=1)
