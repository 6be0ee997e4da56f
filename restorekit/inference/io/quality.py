"""JPEG quality: the one a source was written at (from its quantisation tables), and the one an output gets."""

from __future__ import annotations

from typing import IO

import numpy as np
from PIL import Image as PILImage

from restorekit._checks import check
from restorekit.inference.io.image import Image

DEFAULT_QUALITY = 95
"""JPEG / WebP / HEIC quality of an output whose source gives none (not a JPEG)."""

# The IJG's base quantisation tables (ITU-T T.81 Annex K), natural order: quality q scales them by 5000/q
# below 50 and by 200 - 2q from 50 up (libjpeg's jpeg_quality_scaling), clamped to 1..255.
_IJG_TABLES = (
    (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22,
     29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103,
     121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
    (17, 18, 24, 47, *(99,) * 4, 18, 21, 26, 66, *(99,) * 4, 24, 26, 56, *(99,) * 5, 47, 66, *(99,) * 38),
)  # fmt: skip


def jpeg_quality(fh: IO[bytes]) -> int | None:
    """The quality (1–100) a JPEG was most likely written at: the IJG quality whose scaled quantisation tables
    are nearest the file's (exact for files written by libjpeg, Pillow, OpenCV, most cameras and editors;
    the nearest match otherwise). ``None`` when the tables cannot be read.

    Example:
        >>> import io
        >>> buffer = io.BytesIO()
        >>> PILImage.new("RGB", (16, 16)).save(buffer, "JPEG", quality=83)
        >>> jpeg_quality(buffer)
        83
    """
    try:
        fh.seek(0)
        with PILImage.open(fh, formats=["JPEG"]) as image:
            tables = {index: np.asarray(table, np.float64) for index, table in image.quantization.items()}
    except Exception:  # a damaged header: the reader reports it, the estimate is only left out
        return None
    finally:
        fh.seek(0)
    pairs = [(tables[i], np.asarray(base, np.float64)) for i, base in enumerate(_IJG_TABLES) if i in tables]
    if not pairs or any(table.size != 64 for table, _ in pairs):
        return None

    def distance(q: int) -> float:
        scale = 5000 / q if q < 50 else 200 - 2 * q
        scaled = [np.clip(np.floor((base * scale + 50) / 100), 1, 255) for _, base in pairs]
        return sum(float(np.abs(table - expected).sum()) for (table, _), expected in zip(pairs, scaled, strict=True))

    return min(range(1, 101), key=distance)


def output_quality(image: Image, quality: int | None) -> int:
    """The quality an output is written at: ``quality``, else the source's (:attr:`Image.quality`), else 95.

    Raises:
        UsageError: ``quality`` outside 1–100.
    """
    if quality is None:
        return image.quality if image.quality is not None else DEFAULT_QUALITY
    check(isinstance(quality, int) and 1 <= quality <= 100, "quality", "a quality from 1 to 100", quality)
    return quality
