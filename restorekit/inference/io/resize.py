"""An :class:`~restorekit.inference.io.image.Image` brought to a new size: alpha, resolution and EXIF follow."""

from __future__ import annotations

import dataclasses

import numpy as np

from restorekit.inference.io.convert import _to_samples, _to_unit, image_to_tensor, tensor_to_pixels
from restorekit.inference.io.image import Image
from restorekit.inference.io.metadata import _exif_with_size
from restorekit.ops.resize import imresize


def resized(image: Image, pixels: np.ndarray) -> Image:
    """``image`` with new ``pixels`` of another size, and everything that describes the size brought along.

    The alpha plane is resized with MATLAB-style bicubic interpolation (never through a model), clipped to its
    sample range (a float plane to its own minimum and maximum) and stored at its sample type; the resolution
    (DPI) scales with the pixels, so the printed size stays the same; EXIF ``PixelXDimension`` /
    ``PixelYDimension`` are set to the new size (the EXIF is carried byte for byte when it has neither).
    Everything else is carried as it is.

    Args:
        image: The source image.
        pixels: ``(H', W', C)`` float32, the new pixels.

    Example:
        >>> src = Image(np.zeros((4, 6, 3), np.float32), np.full((4, 6), 255, np.uint8), 8, "RGBA", "PNG", dpi=(72, 72))
        >>> out = resized(src, np.zeros((8, 12, 3), np.float32))
        >>> out.alpha.shape, out.alpha.dtype, out.dpi
        ((8, 12), dtype('uint8'), (144.0, 144.0))
    """
    height, width = pixels.shape[:2]
    ratio_y, ratio_x = height / image.pixels.shape[0], width / image.pixels.shape[1]
    alpha = image.alpha
    if alpha is not None:
        plane = image_to_tensor(_to_unit(alpha)[..., None]).double()
        values = tensor_to_pixels(imresize(plane, size=(height, width)))[..., 0]
        if alpha.dtype == np.float32:  # float alpha is kept as stored: clip the overshoot to its own range
            alpha = np.clip(values, alpha.min(), alpha.max()).astype(np.float32)
        else:
            alpha = _to_samples(values, alpha.itemsize * 8)
    dpi = None if image.dpi is None else (image.dpi[0] * ratio_x, image.dpi[1] * ratio_y)
    return dataclasses.replace(
        image, pixels=pixels, alpha=alpha, dpi=dpi, exif=_exif_with_size(image.exif, width, height)
    )
