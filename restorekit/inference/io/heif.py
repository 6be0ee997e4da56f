"""HEIC/HEIF through the optional ``pillow-heif`` package: the primary image read at 8 bits, and written.

Both directions ask :func:`_heif` for the package, and name the extra that installs it when it is missing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image as PILImage

from restorekit.errors import InputError, OutputError
from restorekit.inference.io.budget import _check_pixels

HEIF_EXTRA = "pip install 'restorekit[heif]'"
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")


def _heif() -> object:
    """The pillow-heif module, or ``None`` when the optional package is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return None
    return pillow_heif


def _open_heif(fh: IO[bytes], path: Path, max_pixels: int | None) -> tuple[PILImage.Image, tuple[str, ...]]:
    """A HEIC/HEIF file's primary image, decoded to 8 bits (EXIF, ICC and XMP in its info), and what was left out."""
    heif = _heif()
    if heif is None:
        raise InputError(f"{path}: HEIC/HEIF needs the optional pillow-heif package ({HEIF_EXTRA})")
    container = heif.open_heif(fh, convert_hdr_to_8bit=True)
    primary = container[container.primary_index]
    _check_pixels(path, *primary.size, max_pixels)
    image = primary.to_pillow()
    extra = len(container) - 1
    notes = (f"HEIF: read its primary image; {extra} other image(s) not kept",) if extra else ()
    return image, notes


def _encode_heif(
    samples: np.ndarray, icc_profile: bytes | None, exif: bytes | None, xmp: bytes | None, quality: int
) -> bytes:
    """Encode 8-bit ``(H, W, S)`` samples as HEIC through pillow-heif (gray is written as RGB)."""
    heif = _heif()
    if heif is None:
        raise OutputError(f"writing HEIC/HEIF needs the optional pillow-heif package ({HEIF_EXTRA})")
    if samples.shape[2] in (1, 2):  # HEIC holds no gray+alpha; libheif's gray support varies: write RGB(A)
        samples = np.dstack([np.repeat(samples[..., :1], 3, axis=2), samples[..., 1:]])
    mode = "RGBA" if samples.shape[2] == 4 else "RGB"
    container = heif.from_bytes(mode, samples.shape[1::-1], np.ascontiguousarray(samples).tobytes())
    options = {"quality": quality, "icc_profile": icc_profile, "exif": exif, "xmp": xmp}
    buffer = io.BytesIO()
    container.save(buffer, **{key: value for key, value in options.items() if value is not None})
    return buffer.getvalue()
