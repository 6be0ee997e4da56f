"""Image metadata: EXIF (orientation, TIFF IFDs, pixel dimensions), resolution (DPI), XMP and PNG text.

Read from each container (the EXIF a reader carries has its orientation reset to 1, the pixels being turned
upright by :func:`_upright`), and written into each: which formats hold what, PNG chunks, and the EXIF and GPS
IFDs that tifffile cannot write.
"""

from __future__ import annotations

import io
import math
import struct
from typing import IO

import numpy as np
import tifffile
from PIL import Image as PILImage
from PIL import TiffImagePlugin

_ORIENTATION = 0x0112
_DESCRIPTION = 0x010E
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_XMP_TAG = 700  # TIFF tag holding the XMP packet
_PNG_XMP_KEY = "XML:com.adobe.xmp"  # the iTXt keyword of XMP in PNG
_JPEG_MAX_XMP = 65502  # one APP1 segment; longer XMP ("extended XMP") is not written to JPEG
_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003
# Which output formats hold which metadata: ICC and EXIF, DPI, XMP (PNG text chunks go to PNG only).
_METADATA_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "HEIF")
_DPI_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
_XMP_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
# The descriptive IFD0 tags and sub-IFDs that make up "the EXIF" of a TIFF, whose IFD0 also holds its layout.
_TIFF_EXIF_TAGS = (_DESCRIPTION, 271, 272, _ORIENTATION, 305, 306, 315, 316, 33432, _EXIF_IFD, _GPS_IFD)
# tifffile refuses to write the EXIF and GPS pointer tags; these stand in for them, sorting into the same place.
_PLACEHOLDER_TAGS = {_EXIF_IFD: _EXIF_IFD - 1, _GPS_IFD: _GPS_IFD - 1}
# Pillow's exif_transpose: orientation → what makes the image upright, on (H, W, ...) arrays.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _tiff_dpi(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """A TIFF page's resolution in dots per inch, or ``None`` when its unit is none (an aspect ratio only)."""
    per_inch = {tifffile.RESUNIT.INCH: 1.0, tifffile.RESUNIT.CENTIMETER: 2.54}.get(page.resolutionunit)
    return None if per_inch is None else (page.resolution[0] * per_inch, page.resolution[1] * per_inch)


def _upright_dpi(dpi: tuple[float, float] | None, orientation: int) -> tuple[float, float] | None:
    """Resolution after applying an EXIF orientation: swapped where it turns the image (5–8); ``None`` unless
    both values are positive and finite."""
    if dpi is None or len(dpi) != 2 or not all(math.isfinite(v) and v > 0 for v in dpi):
        return None
    horizontal, vertical = float(dpi[0]), float(dpi[1])
    return (vertical, horizontal) if orientation in (5, 6, 7, 8) else (horizontal, vertical)


def _tiff_exif(fh: IO[bytes]) -> bytes | None:
    """Return a TIFF's EXIF: its descriptive IFD0 tags and EXIF/GPS IFDs, not its layout tags (classic TIFF only)."""
    fh.seek(0)
    if fh.read(4) not in (b"II*\x00", b"MM\x00*"):
        return None  # BigTIFF: Pillow's EXIF reader takes classic TIFF headers only
    fh.seek(0)
    tiff_tags = PILImage.Exif()
    tiff_tags.load_from_fp(fh)
    exif = PILImage.Exif()
    _copy_exif_tags(tiff_tags, exif)
    if _DESCRIPTION in exif and _describes_layout(exif[_DESCRIPTION]):
        del exif[_DESCRIPTION]
    return _carried_exif(exif, {}) if len(exif) else None


def _describes_layout(description: str | bytes) -> bool:
    """Whether an ImageDescription is a writer's record of the array layout (tifffile's JSON, ImageJ's header):
    it would go stale once the image is turned upright or its samples change, so it is not carried."""
    text = description.decode("latin-1") if isinstance(description, bytes) else str(description)
    return text.lstrip().startswith(('{"shape":', "ImageJ=", "shape=("))


def _copy_exif_tags(source: PILImage.Exif, target: PILImage.Exif) -> None:
    """Copy the EXIF-proper tags of ``source`` (descriptive IFD0 tags, EXIF and GPS IFDs) into ``target``."""
    for tag in _TIFF_EXIF_TAGS:
        if tag in (_EXIF_IFD, _GPS_IFD):
            if ifd := source.get_ifd(tag):
                target[tag] = dict(ifd)
        elif tag in source:
            target[tag] = source[tag]


def _carried_exif(exif: PILImage.Exif, info: dict) -> bytes | None:
    """Return the EXIF to carry: the source bytes as they were, re-serialized only to reset the orientation to 1."""
    if _ORIENTATION in exif and exif[_ORIENTATION] != 1:
        exif[_ORIENTATION] = 1
        return exif.tobytes()
    raw = info.get("exif")
    if raw:
        return raw if raw.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + raw
    return exif.tobytes() if len(exif) else None


def _upright(samples: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1–8) to ``(H, W)`` or ``(H, W, C)`` samples; other values leave them as they are."""
    transform = _UPRIGHT.get(orientation)
    return samples if transform is None else np.ascontiguousarray(transform(samples))


def _exif_with_size(exif: bytes | None, width: int, height: int) -> bytes | None:
    """EXIF with its pixel-dimension tags set to ``width`` × ``height`` (untouched when it has none)."""
    if not exif:
        return exif
    tags = PILImage.Exif()
    tags.load(exif)
    sub = tags.get_ifd(_EXIF_IFD)
    if _PIXEL_X_DIMENSION not in sub and _PIXEL_Y_DIMENSION not in sub:
        return exif
    sub[_PIXEL_X_DIMENSION], sub[_PIXEL_Y_DIMENSION] = width, height
    data = tags.tobytes()
    return data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data


def _png_metadata_chunks(
    dpi: tuple[float, float] | None, xmp: bytes | None, text: dict[str, str] | None
) -> list[tuple[bytes, bytes]]:
    """PNG chunks (type, payload) for a resolution (pHYs), text (tEXt, or iTXt beyond Latin-1) and XMP (iTXt)."""
    chunks = []
    if dpi:
        chunks.append((b"pHYs", struct.pack(">IIB", *(round(value / 0.0254) for value in dpi), 1)))  # per metre
    for keyword, value in (text or {}).items():
        try:
            chunks.append((b"tEXt", keyword.encode("latin-1") + b"\0" + value.encode("latin-1")))
        except UnicodeEncodeError:
            chunks.append((b"iTXt", keyword.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8")))
    if xmp:
        chunks.append((b"iTXt", _PNG_XMP_KEY.encode("latin-1") + b"\0\0\0\0\0" + xmp))
    return chunks


def _tiff_tags(exif: bytes | None, xmp: bytes | None) -> tuple[list[tuple], dict[int, dict]]:
    """The tifffile ``extratags`` that carry EXIF (its descriptive IFD0 tags, placeholders for the EXIF and GPS IFD
    pointers, which tifffile cannot write) and XMP, and those IFDs, for :func:`_append_ifds` to add."""
    tags = PILImage.Exif()
    if exif:
        tags.load(exif)
    ascii_tags = [tag for tag in _TIFF_EXIF_TAGS if tag in tags and isinstance(tags[tag], str | bytes)]
    sub_ifds = {tag: ifd for tag in (_EXIF_IFD, _GPS_IFD) if (ifd := tags.get_ifd(tag))}
    extratags = [(tag, "s", 0, _ascii(tags[tag]), True) for tag in ascii_tags]
    extratags += [(_ORIENTATION, "H", 1, 1, True)] if _ORIENTATION in tags else []
    extratags += [(_PLACEHOLDER_TAGS[tag], "I", 1, 0, True) for tag in sub_ifds]
    extratags += [(_XMP_TAG, "B", len(xmp), xmp, True)] if xmp else []
    return extratags, sub_ifds


def _ascii(value: str | bytes) -> bytes:
    """Return an EXIF text value as the bytes of a TIFF ASCII tag."""
    return value.encode("utf-8", "replace") if isinstance(value, str) else value


def _append_ifds(tiff: bytes, sub_ifds: dict[int, dict]) -> bytes:
    """Append EXIF / GPS IFDs to a little-endian TIFF and turn its placeholder tags into pointers to them."""
    if not sub_ifds:
        return tiff
    with tifffile.TiffFile(io.BytesIO(tiff)) as parsed:
        entries = {tag: parsed.pages.first.tags[_PLACEHOLDER_TAGS[tag]] for tag in sub_ifds}
    out = bytearray(tiff)
    for tag, values in sub_ifds.items():
        out += b"\x00" * (len(out) % 2)  # IFDs start on a word boundary
        ifd = TiffImagePlugin.ImageFileDirectory_v2(group=tag)
        for key, value in values.items():
            if key != _INTEROP_IFD:  # a pointer into the source file, meaningless here
                ifd[key] = value
        entry = entries[tag]
        out[entry.offset : entry.offset + 2] = tag.to_bytes(2, "little")
        out[entry.valueoffset : entry.valueoffset + 4] = len(out).to_bytes(4, "little")
        out += ifd.tobytes(len(out))
    return bytes(out)
