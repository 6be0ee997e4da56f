"""Functional ops: validate → pick backend → run. Each op has a pure-PyTorch ``<op>_reference``."""

from restorekit.ops.malleable_conv import malleable_conv, malleable_conv_naive, malleable_conv_reference

__all__ = ["malleable_conv", "malleable_conv_naive", "malleable_conv_reference"]
