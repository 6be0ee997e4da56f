"""The :class:`Image` record (decoded pixels and all that is needed to write them back) and the formats.

Shared by :mod:`.decode` and :mod:`.encode`: the supported suffixes and the format each names, and the exceptions
the codecs raise on bad data.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import ImageCms

SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif")
"""Lower-case file suffixes that :func:`load_image` and :func:`save_image` handle (HEIC/HEIF with pillow-heif)."""

_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".heic": "HEIF",
    ".heif": "HEIF",
}
# Exceptions that codecs raise on bad data; each becomes one InputError / OutputError line naming the file.
_CODEC_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    cv2.error,
    ImageCms.PyCMSError,
)


@dataclass
class Image:
    """A decoded image and what is needed to write it back without losing anything.

    Attributes:
        pixels: ``(H, W, C)`` float32, ``C`` = 1 (gray) or 3 (RGB), upright (EXIF orientation applied). In
            ``[0, 1]`` for 8/16-bit sources; float TIFF values are kept as stored (normally ``[0, 1]``).
        alpha: ``(H, W)`` alpha plane at its original sample type and values (uint8, uint16 or float32), upright;
            ``None`` when the source has none.
        bit_depth: Bits per sample of the source: 8, 16, or 32 (float TIFF).
        mode: Source layout as read, in Pillow's names: "1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"
            (16-bit gray), "F" (float gray), …; ``bit_depth`` tells 8-bit "RGB" from 16-bit "RGB".
        format: Source format: "PNG", "JPEG", "TIFF", "WEBP", "BMP" or "HEIF" (an MPO file reads as "JPEG").
        icc_profile: ICC profile bytes describing ``pixels``, or ``None``.
        exif: EXIF as an APP1 payload (``b"Exif\\0\\0"`` + TIFF header + IFDs) with the orientation reset to 1,
            or ``None``.
        lossy: The source was lossily compressed (JPEG, lossy WebP); WebP output follows it (lossy or lossless).
        dpi: Resolution ``(horizontal, vertical)`` in dots per inch, upright, or ``None`` when the source gives none.
        xmp: XMP packet (XML bytes), or ``None``.
        text: PNG text chunks (tEXt, zTXt, iTXt) other than XMP, keyword → text, or ``None``.
        notes: What reading left out that the user should know (e.g. the previews of a multi-picture JPEG).
        quality: A JPEG source's quality (1–100) estimated from its quantisation tables (:func:`jpeg_quality`),
            or ``None``; :func:`save_image` writes JPEG, WebP and HEIC at it unless told otherwise.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    lossy: bool = False
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    text: dict[str, str] | None = None
    notes: tuple[str, ...] = ()
    quality: int | None = None


def format_suffix(image_format: str) -> str:
    """The usual file suffix of a format (``"JPEG"`` → ``".jpg"``).

    Example:
        >>> format_suffix("TIFF")
        '.tif'
    """
    return next(suffix for suffix, name in _SUFFIX_FORMATS.items() if name == image_format)
