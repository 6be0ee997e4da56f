"""nn.Modules that own parameters; each forward delegates to an op or plain convolutions."""

from restorekit.layers.blocks import ChannelNorm, InvertedBottleneck, ResidualBlock
from restorekit.layers.fused import FusedInvertedBottleneck, fuse
from restorekit.layers.malle_conv import KernelPredictor, MalleConv
from restorekit.layers.tv_conv import TVConv

__all__ = [
    "ChannelNorm",
    "FusedInvertedBottleneck",
    "InvertedBottleneck",
    "KernelPredictor",
    "MalleConv",
    "ResidualBlock",
    "TVConv",
    "fuse",
]
