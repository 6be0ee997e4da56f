"""nn.Modules that own parameters; each forward delegates to an op or plain convolutions."""

from restorekit.layers.blocks import InvertedBottleneck, ResidualBlock
from restorekit.layers.malle_conv import KernelPredictor, MalleConv

__all__ = ["InvertedBottleneck", "KernelPredictor", "MalleConv", "ResidualBlock"]
