"""Functional ops: validate → pick backend → run. Each op has a pure-PyTorch ``<op>_reference``."""

from restorekit.ops.bottleneck import (
    expand_prelu_pool,
    expand_prelu_pool_reference,
    inverted_bottleneck,
    inverted_bottleneck_reference,
)
from restorekit.ops.malleable_conv import malleable_conv, malleable_conv_naive, malleable_conv_reference
from restorekit.ops.prelu import prelu, prelu_reference

__all__ = [
    "expand_prelu_pool",
    "expand_prelu_pool_reference",
    "inverted_bottleneck",
    "inverted_bottleneck_reference",
    "malleable_conv",
    "malleable_conv_naive",
    "malleable_conv_reference",
    "prelu",
    "prelu_reference",
]
