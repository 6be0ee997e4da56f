"""ACDANet: a compact blind denoiser for real camera noise built from ACDA layers.

The shape of the ACDA paper's restoration networks: pixel-unshuffle to reduce the resolution, consecutive
dynamic bottleneck blocks with ACDA layers, pixel-shuffle to restore it, and the noise predicted as a
residual. Here a first level at half resolution (a plain inverted bottleneck, cheap) feeds a second at a
quarter, where the dynamic blocks run; no noise level is given (real noise varies with the signal and
within the frame, so the network must see it). ``mixer="static"`` swaps every ACDA layer for a plain K×K
convolution of the same width: the paper's ablation.

``tv_blocks`` adds TVConv layers (:class:`~restorekit.layers.tv_conv.TVConv`) to that many of the dynamic
blocks: depthwise kernels that depend on the position in the image frame, for degradations tied to the
optics, such as the noise that lens-shading correction amplifies toward the corners. Such a model is
layout-aware (``Requirements.layout_aware``): the engine passes it the frame coordinates of every pixel, and it
assumes that the image is the whole frame the camera took, uncropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from restorekit.layers import InvertedBottleneck
from restorekit.layers.acda import MIXERS, DynamicBottleneck
from restorekit.layers.shuffle import ConvShuffle, UnshuffleConv
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.models._architectures import register_architecture
from restorekit.models._base import Model, Requirements, store_hyperparameters


class ACDANet(Model):
    """Blind real-noise denoiser with ACDA dynamic bottlenecks at a quarter of the resolution.

    Args:
        in_channels: 3 (colour) or 1.
        width: Channels at half resolution.
        quarter_width: Channels at quarter resolution (the dynamic blocks mix at half of it).
        blocks: Dynamic bottleneck blocks at quarter resolution.
        mixer: ``acda`` or ``static`` (the ablation).
        kernel_size: ACDA kernel size K (largest basis scale).
        atoms: M atoms per pixel.
        bases_per_scale: b bases per scale.
        generator_width: Hidden width of each atom generator.
        tv_blocks: Dynamic blocks (spread evenly, from the first) that get a TVConv; 0 for none.
        eighth_width: Channels of an eighth-resolution level between the first and second half of the quarter
            blocks (static bottlenecks: wide context for little work, 1/64 of the pixels); 0 for none.
        eighth_blocks: Bottleneck blocks at an eighth of the resolution.
        eighth_after: Quarter blocks before the eighth level (the rest follow it); ``None``: half of them.

    Shape:
        ``x (B, C, H, W)`` in [0, 1] → ``(B, C, H, W)``; H and W multiples of 4. A ``sigma`` argument is
        accepted and ignored (blind model), so the engine calls every denoiser alike. ``frame (B_f, 2, H, W)``
        (B_f 1 or B) gives the frame coordinates of x's pixels (see
        :func:`~restorekit.layers.tv_conv.frame_coordinates`) to a model with TVConv layers; ``None`` takes x to
        be the whole frame.
    """

    @store_hyperparameters
    def __init__(
        self,
        in_channels: int = 3,
        width: int = 24,
        quarter_width: int = 64,
        blocks: int = 6,
        mixer: str = "acda",
        kernel_size: int = 3,
        atoms: int = 4,
        bases_per_scale: int = 6,
        generator_width: int = 16,
        tv_blocks: int = 0,
        eighth_width: int = 0,
        eighth_blocks: int = 0,
        eighth_after: int | None = None,
    ):
        super().__init__()
        if mixer not in MIXERS:
            raise ValueError(f"ACDANet mixer: expected one of {MIXERS}, got {mixer!r}")
        if not 0 <= tv_blocks <= blocks:
            raise ValueError(f"ACDANet tv_blocks: expected 0 to blocks={blocks}, got {tv_blocks}")
        if eighth_after is not None and not 0 <= eighth_after <= blocks:
            raise ValueError(f"ACDANet eighth_after: expected 0 to blocks={blocks}, got {eighth_after}")
        self.eighth_after = blocks // 2 if eighth_after is None else eighth_after
        self.head = UnshuffleConv(in_channels * 4, width, 3, padding=1)
        self.encode = InvertedBottleneck(width, expansion=2)
        self.down = UnshuffleConv(width * 4, quarter_width, 1)
        layout = [index * tv_blocks % blocks < tv_blocks for index in range(blocks)]  # e.g. 3 of 6: 0, 2, 4
        self.body = nn.Sequential(
            *(
                DynamicBottleneck(quarter_width, mixer, kernel_size, atoms, bases_per_scale, generator_width, tv)
                for tv in layout
            )
        )
        self.eighth = EighthLevel(quarter_width, eighth_width, eighth_blocks) if eighth_blocks else None
        self.up = ConvShuffle(quarter_width, width * 4, 1)
        self.decode = InvertedBottleneck(width, expansion=2)
        self.tail = ConvShuffle(width, in_channels * 4, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)  # start by predicting almost no noise: output ≈ input
        nn.init.zeros_(self.tail.bias)
        self.requirements = Requirements(
            task="denoise",
            in_channels=in_channels,
            out_channels=in_channels,
            size_multiple=8 if eighth_blocks else 4,
            min_size=32 if eighth_blocks else 16,
            receptive_field=receptive_field(mixer, kernel_size, blocks, tv_blocks, eighth_blocks),
            sigma_range=None,
            layout_aware=tv_blocks > 0,
        )

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | None = None, frame: torch.Tensor | None = None
    ) -> torch.Tensor:
        half = self.encode(self.head(x))
        quarter = self.down(half)
        coords = self._quarter_coordinates(x, frame) if self.requirements.layout_aware else None
        for index, block in enumerate(self.body):
            if index == self.eighth_after and self.eighth is not None:
                quarter = self.eighth(quarter)
            quarter = block(quarter, coords)
        if self.eighth_after == len(self.body) and self.eighth is not None:
            quarter = self.eighth(quarter)
        half = self.decode(self.up(quarter, add=half))
        return x - self.tail(half)

    @staticmethod
    def _quarter_coordinates(x: torch.Tensor, frame: torch.Tensor | None) -> torch.Tensor:
        """Frame coordinates at quarter resolution: the mean over each 4×4 block of pixels it stands for."""
        if frame is None:
            return frame_coordinates(x.shape[-2] // 4, x.shape[-1] // 4).to(x.device)
        return F.avg_pool2d(frame.float(), 4)


def receptive_field(mixer: str, kernel_size: int, blocks: int, tv_blocks: int, eighth_blocks: int) -> int:
    """How far (pixels, each side) an output pixel of an ACDANet can see: the tiles' context (tests/models/
    test_acdanet.py holds it to the reach of a randomly initialised model's gradient, at every pixel phase).

    Static mixers: 12 px for the half-resolution layers and the shuffles, 4·(K // 2) px per K×K window at a quarter
    (each block), 4 px per TVConv (3×3), 8 px per block at an eighth plus 4 for its shuffle's phase; ACDANet-M reaches
    43 px, M3 63. ACDA mixers (atoms over Fourier–Bessel bases up to the kernel size) keep 64 px, above ACDANet-S's
    reach of 59.

    Example:
        >>> receptive_field("static", 3, 8, 0, 0), receptive_field("static", 3, 8, 0, 2)
        (44, 64)
    """
    eighth = 8 * eighth_blocks + 4 if eighth_blocks else 0
    if mixer == "static":
        return 12 + 4 * (kernel_size // 2) * blocks + 4 * tv_blocks + eighth
    return 64 + 4 * tv_blocks + (8 * eighth_blocks if eighth_blocks else 0)


class EighthLevel(nn.Module):
    """x + up(blocks(down(unshuffle(x)))): static bottlenecks at half of x's resolution, added back to x.

    The output convolution starts at zero, so a model that gains the level starts as the one without it.

    Shape:
        ``(B, C, H, W) → (B, C, H, W)``; H and W even.
    """

    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        self.down = UnshuffleConv(channels * 4, width, 1)
        self.body = nn.Sequential(*(DynamicBottleneck(width, "static", 3, 0, 0, 0) for _ in range(blocks)))
        self.up = ConvShuffle(width, channels * 4, 1)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(self.down(x)), add=x)


@register_architecture(ACDANet)
def acdanet_s(in_channels: int = 3) -> ACDANet:
    """ACDANet-S: 24/64 channels, 6 ACDA bottlenecks (K = 3, M = 4 atoms over 6 Fourier–Bessel bases)."""
    return ACDANet(in_channels=in_channels)


@register_architecture(ACDANet)
def acdanet_s_static(in_channels: int = 3) -> ACDANet:
    """ACDANet-S with plain 3×3 convolutions in place of the ACDA layers: the paper's ablation."""
    return ACDANet(in_channels=in_channels, mixer="static")


@register_architecture(ACDANet)
def acdanet_m_static(in_channels: int = 3) -> ACDANet:
    """A wider, deeper static ACDANet (32/128 channels, 8 bottlenecks): the fast photo model, distilled from the
    two-model photo default. Grown from ACDANet-S-static (:func:`grown_state_dict`) so training starts from it."""
    return ACDANet(in_channels=in_channels, width=32, quarter_width=128, blocks=8, mixer="static")


@register_architecture(ACDANet)
def acdanet_m3_static(in_channels: int = 3) -> ACDANet:
    """ACDANet-M-static with a third level: 2 static bottlenecks at an eighth of the resolution (128 channels, 1/64
    of the pixels) between its quarter blocks 4 and 5, for the low-frequency part of camera noise that ACDANet-M's
    44-px reach sees only in part. 11% more work per pixel. Grown from ACDANet-M-static: the level's output
    convolution starts at zero, so it starts as that model."""
    return ACDANet(
        in_channels=in_channels,
        width=32,
        quarter_width=128,
        blocks=8,
        mixer="static",
        eighth_width=128,
        eighth_blocks=2,
    )


@register_architecture(ACDANet)
def acdanet_m3s_static(in_channels: int = 3) -> ACDANet:
    """ACDANet-M3-static slimmed for speed: 6 quarter blocks (4 before the eighth level, 2 after) where M3 has 8,
    and 4 eighth-resolution blocks where it has 2 — the work moves to the level with a quarter of the pixels: 31.5 K
    multiply-adds per pixel against M3's 36.4 K and ACDANet-M's 32.7 K. Starts from ACDANet-M3-static without its
    last two quarter blocks (:func:`grown_state_dict` drops what the slimmer model lacks); the two new eighth blocks
    start as the identity."""
    return ACDANet(
        in_channels=in_channels,
        width=32,
        quarter_width=128,
        blocks=6,
        mixer="static",
        eighth_width=128,
        eighth_blocks=4,
        eighth_after=4,
    )


@register_architecture(ACDANet)
def tv_acdanet_s(in_channels: int = 3) -> ACDANet:
    """ACDANet-S with a TVConv in 3 of its 6 dynamic blocks, for noise that depends on the position in the frame
    (lens shading). Layout-aware: for whole, uncropped frames only; a cropped image breaks the assumption that a
    pixel's place in the image is its place in the camera's frame."""
    return ACDANet(in_channels=in_channels, tv_blocks=3)


# An architecture → the one it can start from (grown_state_dict): a larger one, or, for acdanet_m3s_static, one
# with more quarter blocks, whose last ones it drops.
GROWN_FROM = {
    "acdanet_m_static": "acdanet_s_static",
    "acdanet_m3_static": "acdanet_m_static",
    "acdanet_m3s_static": "acdanet_m3_static",
}


def grown_state_dict(fresh: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of a smaller ACDANet (same mixer) placed into a wider, deeper one so that it computes the same.

    Every tensor of ``weights`` fills the leading slice of its counterpart in ``fresh`` (the larger model's fresh
    initialisation); the larger model's extra channels keep their fresh values, except the weights that would
    carry an extra channel into an original one, which start at zero; its extra blocks start as the identity
    (their last 1×1 convolution starts at zero). Pixel-(un)shuffling maps channel c to channels 4c…4c+3, so the
    original channels stay the leading ones at every resolution, and the output starts unchanged; the zeros get
    gradients (their inputs are not zero) and learn. Tensors of ``weights`` that ``fresh`` lacks (the quarter blocks
    past a slimmer model's last) are dropped; that model then starts near, not at, the one it came from.

    Shape:
        every ``weights[k]`` no larger than ``fresh[k]`` in any dimension; either may hold keys the other lacks.
    """
    grown = {}
    for key, value in fresh.items():
        value = value.clone()
        old = weights.get(key)
        if old is not None:
            if old.dim() != value.dim() or any(a > b for a, b in zip(old.shape, value.shape, strict=True)):
                raise ValueError(f"grown_state_dict: {key} {tuple(old.shape)} does not fit in {tuple(value.shape)}")
            if value.dim() >= 2:
                value[: old.shape[0], old.shape[1] :] = 0  # an extra input channel never reaches an original output
            value[tuple(slice(0, n) for n in old.shape)] = old
        grown[key] = value
    return grown
