"""TVConv: a depthwise convolution whose K×K kernels depend on the position in the image frame.

Chen et al., "TVConv: Efficient Translation Variant Convolution for Layout-aware Visual Processing", CVPR 2022
(release ``JierunChen/TVConv``). Learned affinity maps (``c_A`` channels, ones at the start) go through a weight
generator (conv3×3 → norm → ReLU, twice, then a conv3×3 to K²·C channels), whose output is one depthwise
kernel per channel and position, applied by :func:`restorekit.ops.tv_conv.tv_conv`.

Beyond the paper, which ties the layer to one input size (its affinity maps are the size of the feature map),
the affinity maps here cover the image frame on a fixed ``G × G`` grid in normalised coordinates: the weight
generator runs on that grid, and each output position samples the generated kernels (bilinearly, clamped at the
border) at its frame coordinates, which the caller passes in. So the layer runs at any resolution, a tile
samples its own region of the frame, and a position's kernels are a function of its frame coordinates alone:
tiled and untiled weights are equal, not merely close. Running the generator at the feature map's size
instead, as the paper does, would make its 3×3 convolutions span a smaller share of a larger frame (the learned
layout would change with the resolution) and see zero padding at every tile border.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers.blocks import ChannelNorm
from restorekit.ops.tv_conv import tv_conv


def frame_coordinates(
    height: int, width: int, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
) -> torch.Tensor:
    """Normalised frame coordinates ``(y, x)`` of pixel centres in a ``height × width`` frame.

    Pixel ``i`` of a side of length ``n`` has its centre at ``(i + 0.5) / n · 2 − 1``: the frame spans
    ``[-1, 1]`` edge to edge (``F.grid_sample``'s ``align_corners=False``), whatever its size or aspect.

    Args:
        height, width: The frame's size in pixels.
        rows, cols: Positions to describe, in pixel units of the frame (fractional for a rescaled crop);
            ``None`` takes every row (column) of the frame.

    Returns:
        ``(1, 2, len(rows), len(cols))`` float32: channel 0 is y, channel 1 is x.

    Example:
        >>> frame_coordinates(2, 4)[0, 1, 0]
        tensor([-0.7500, -0.2500,  0.2500,  0.7500])
    """
    rows = torch.arange(height, dtype=torch.float32) if rows is None else rows.float()
    cols = torch.arange(width, dtype=torch.float32) if cols is None else cols.float()
    y = ((rows + 0.5) / height * 2 - 1)[:, None].expand(-1, len(cols))
    x = ((cols + 0.5) / width * 2 - 1)[None, :].expand(len(rows), -1)
    return torch.stack([y, x])[None]


def bilinear_taps(coords: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 grid cells and weights that bilinearly interpolate a ``grid × grid`` map at frame coordinates.

    The same numbers as ``F.grid_sample(…, mode="bilinear", padding_mode="border", align_corners=False)``
    (tested against it), as indices into the flattened grid, so that :class:`TVConv` can gather whole rows of
    K²·C kernel values with one ``F.embedding_bag`` and get them in the layout the CPU kernel reads.

    Args:
        coords: ``(B, 2, h, w)`` frame coordinates (y, x), see :func:`frame_coordinates`.
        grid: G ≥ 2.

    Returns:
        ``indices (B·h·w, 4)`` int64 into the row-major ``G²`` cells, and ``weights (B·h·w, 4)`` summing to 1.

    Example:
        >>> indices, weights = bilinear_taps(torch.zeros(1, 2, 1, 1), 4)  # the centre of a 4 × 4 grid
        >>> indices.tolist(), weights.tolist()
        ([[5, 6, 9, 10]], [[0.25, 0.25, 0.25, 0.25]])
    """
    cells = ((coords.permute(0, 2, 3, 1).reshape(-1, 2).float() + 1) * grid - 1) / 2
    cells = cells.clamp(0, grid - 1)
    low = cells.floor().clamp(max=grid - 2)
    frac = cells - low
    low = low.long()
    y0, x0 = low[:, 0], low[:, 1]
    fy, fx = frac[:, 0], frac[:, 1]
    indices = torch.stack([y0 * grid + x0, y0 * grid + x0 + 1, (y0 + 1) * grid + x0, (y0 + 1) * grid + x0 + 1], 1)
    weights = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], 1)
    return indices, weights


def _layout(t: torch.Tensor) -> tuple:
    return t.shape, t.dtype, t.device


@dataclass
class _Cached:
    """A generated tensor and what it was generated from."""

    key: tuple
    value: torch.Tensor
    coords: torch.Tensor | None = None


class TVConv(nn.Module):
    """Translation-variant depthwise K×K convolution with kernels generated from frame-wide affinity maps.

    Normalisation. The paper's generator uses LayerNorm over ``(C, h, w)``, whose statistics (and parameter
    count) grow with the map's size, so its weights would depend on the input's size. Here the generator
    normalises each position over its channels only (:class:`~restorekit.layers.blocks.ChannelNorm`): a pointwise
    operation, so a position's kernels depend on the affinity values near it and on nothing else, neither the
    size of the map nor a tile. (It runs on the fixed ``G × G`` grid, which would make a LayerNorm's size fixed
    too; the per-position form keeps each region of the frame from rescaling the others.)

    Caching. In eval mode with gradients disabled the generated kernels are kept: the grid's (for any input) and
    the sampled map's (for the last coordinate map, compared exactly; its ``2·h·w`` values are cheap next to the
    ``C·K²·h·w`` kernel values they save), keyed on every parameter's storage and version counter, so an
    optimiser step or a ``load_state_dict`` (both write the parameters in place) can never be served stale;
    ``train()`` and ``load_state_dict`` also drop them. Training never caches.

    Args:
        channels: C, in and out (depthwise).
        kernel_size: K, odd.
        affinity_channels: c_A, channels of the affinity maps (the paper's default is 4).
        grid: G, the affinity maps' side over the frame.
        hidden: Channels of the weight generator (the paper's default is 16).
        stride: 1 or 2; the kernels are generated at the output positions.

    Shape:
        ``x (B, C, H, W)``, ``coords (B_c, 2, H, W)`` (the frame coordinates of x's pixels, B_c 1 or B)
        → ``(B, C, ceil(H / stride), ceil(W / stride))``
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        affinity_channels: int = 4,
        grid: int = 32,
        hidden: int = 16,
        stride: int = 1,
    ):
        super().__init__()
        self.channels, self.kernel_size, self.grid, self.stride = channels, kernel_size, grid, stride
        self.affinity = nn.Parameter(torch.ones(1, affinity_channels, grid, grid))
        self.generator = nn.Sequential(
            nn.Conv2d(affinity_channels, hidden, 3, padding=1, bias=False),
            ChannelNorm(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            ChannelNorm(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, channels * kernel_size**2, 3, padding=1, bias=False),
        )
        self._kernels: _Cached | None = None
        self._weights: _Cached | None = None

    def forward(self, x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        weight = self.weight_map(coords[..., :: self.stride, :: self.stride] if self.stride > 1 else coords)
        return tv_conv(x.to(weight.dtype), weight, self.stride).to(x.dtype)

    def kernel_table(self) -> torch.Tensor:
        """The generated kernels on the grid as ``(G², K²·C)`` rows, tap-major (the CPU kernel's layout).

        With gradients off the affinity maps go in detached: a parameter as a module's input trips the module
        tracker of PyTorch's FLOP counter under ``inference_mode``.
        """
        affinity = self.affinity if torch.is_grad_enabled() else self.affinity.detach()
        kernels = self.generator(affinity)  # (1, C·K², G, G), channel c·K² + t
        taps, cells = self.kernel_size**2, self.grid * self.grid
        return kernels.view(self.channels, taps, cells).permute(2, 1, 0).reshape(cells, taps * self.channels)

    def weight_map(self, coords: torch.Tensor) -> torch.Tensor:
        """The per-position kernels at frame coordinates ``coords (B_c, 2, h, w)``: ``(B_c, C, K², h, w)``,
        a view of a ``(B_c, h, w, K², C)`` tensor (what ``ops.tv_conv``'s CPU kernel reads without a copy).

        Runs in the parameters' dtype, outside autocast: the forward casts the features to the kernels rather
        than rounding the kernels (and the cached kernels serve every precision).
        """
        with torch.autocast(coords.device.type, enabled=False):
            if self.training or torch.is_grad_enabled():
                return self._sample(self.kernel_table(), coords)
            return self._cached(coords)

    def _cached(self, coords: torch.Tensor) -> torch.Tensor:
        key = self._key()
        if self._kernels is None or self._kernels.key != key:
            self._kernels, self._weights = _Cached(key, self.kernel_table()), None
        cached = self._weights
        same = cached is not None and _layout(cached.coords) == _layout(coords) and torch.equal(cached.coords, coords)
        if not same:
            cached = self._weights = _Cached(key, self._sample(self._kernels.value, coords), coords.clone())
        return cached.value

    def clear_cache(self) -> None:
        """Drop the cached kernels."""
        self._kernels = self._weights = None

    def train(self, mode: bool = True) -> TVConv:
        self.clear_cache()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.clear_cache()
        super()._load_from_state_dict(*args, **kwargs)

    def _key(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.parameters())

    def _sample(self, table: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = coords.shape
        indices, weights = bilinear_taps(coords.to(table.device), self.grid)
        rows = F.embedding_bag(indices, table, per_sample_weights=weights.to(table.dtype), mode="sum")
        taps = self.kernel_size**2
        return rows.view(batch, height, width, taps, self.channels).permute(0, 4, 3, 1, 2)
