"""The decode budget: the checks an input passes before any pixel is decoded.

The pixel limit (``max_pixels``, ``RESTOREKIT_MAX_PIXELS``), single frames, and per format the most pixels the
file's bytes can hold, so that truncated files and decompression bombs are refused from their headers.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import tifffile
from PIL import Image as PILImage

from restorekit._checks import check
from restorekit.errors import InputError, UsageError

MAX_PIXELS_ENV = "RESTOREKIT_MAX_PIXELS"
BUILTIN_MAX_PIXELS = 200_000_000

# restorekit checks the pixel limit itself, before decoding and with a message naming the file; Pillow's own
# check would fire first (a warning above 89 MP, an error above 179 MP) with a message that names neither.
PILImage.MAX_IMAGE_PIXELS = None


def _max_pixels_from_env(default: int = BUILTIN_MAX_PIXELS) -> int:
    """Return the pixel limit from ``RESTOREKIT_MAX_PIXELS``, or ``default`` when it is unset."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return default
    check(value.isdigit() and int(value) > 0, MAX_PIXELS_ENV, "a positive whole number of pixels", value)
    return int(value)


try:
    DEFAULT_MAX_PIXELS: int = _max_pixels_from_env()
except UsageError:  # reported cleanly when a command calls _max_pixels_from_env() itself
    DEFAULT_MAX_PIXELS = BUILTIN_MAX_PIXELS
"""Largest width × height :func:`load_image` decodes: ``RESTOREKIT_MAX_PIXELS`` at import, else 200 megapixels."""


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image larger than ``max_pixels``; called on the header, before any decoding."""
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            f"{path}: {width}×{height} = {_pixel_count(width * height)} exceeds the limit of "
            f"{_pixel_count(max_pixels)} (raise `max_pixels` or {MAX_PIXELS_ENV})"
        )


def _pixel_count(pixels: int) -> str:
    """A pixel count in words: megapixels from one megapixel up, else the count itself.

    Example:
        >>> _pixel_count(144_000_000), _pixel_count(4096)
        ('144.0 MP', '4,096 pixels')
    """
    return f"{pixels / 1e6:,.1f} MP" if pixels >= 1_000_000 else f"{pixels:,} pixels"


def _check_single_frame(path: Path, frames: int) -> None:
    """Refuse animated and multi-page files, whose other frames would be lost."""
    if frames != 1:
        raise InputError(f"{path}: animated or multi-page ({frames} frames); only single images are supported")


# ---------------------------------------------------------------------------------------------- decode budget
#
# A header can declare far more pixels than its file holds: a truncated file, or a decompression bomb that stays
# under the pixel limit. Before decoding, the declared width × height is compared with what the file's bytes can
# encode at the format's best possible compression. Only bounds that the format guarantees are used, so no valid
# file is refused:
#
# * PNG: Deflate expands at most 1032:1 (a 258-byte match in two bits), so the IDAT bytes bound the raw
#   scanlines, whose size the IHDR's bit depth and colour type give. Critical chunks must pass their CRC check,
#   and the IEND chunk must be there.
# * JPEG (Huffman-coded): each 8×8 block of a full-resolution component costs at least one bit, so at most 512
#   pixels per byte of file. The entropy-coded data must end in the end-of-image marker, restart markers in order.
# * TIFF: every strip or tile must lie inside the file; uncompressed, Deflate and PackBits data (at most 1:1,
#   1032:1 and 64:1) must hold the declared samples.
# * BMP (uncompressed): the declared rows must fit in the file.
#
# Where no such bound exists (arithmetic-coded JPEG, the WebP bitstreams, LZW or JPEG inside TIFF, RLE BMP),
# the pixel limit and the decoders' own truncation errors are the guard; WebP's demuxer refuses a cut-short
# container when the file is opened.

_DEFLATE_RATIO = 1032
_JPEG_PIXELS_PER_BYTE = 8 * 64
_JPEG_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x00, 0x01, *range(0xD0, 0xD8)})  # markers without a length (0x00: stray FF 00)
# A marker inside entropy-coded data: 0xFF (after any fill bytes) followed by anything but a stuffed 0x00.
_JPEG_SCAN_MARKER = re.compile(rb"\xff+[^\x00\xff]")
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Most bytes of samples one byte of TIFF data can decode to, per compression: none, Deflate, Adobe Deflate,
# PackBits. Other compressions have no bound here.
_TIFF_RATIOS = {1: 1, 8: _DEFLATE_RATIO, 32946: _DEFLATE_RATIO, 32773: 64}
# Most IFDs (pages, previews, masks) a TIFF may chain before it is refused as corrupt or hostile.
MAX_TIFF_IFDS = 1024


def _check_budget(path: Path, image_format: str, width: int, height: int, capacity: int | None) -> None:
    """Refuse a header that declares more pixels than the file's data can hold (``capacity``; ``None``: no bound)."""
    if capacity is not None and width * height > capacity:
        raise InputError(
            f"{path}: truncated or corrupt: the header declares {width}×{height} pixels, more than the "
            f"{image_format} data in the file can hold (at most {_pixel_count(capacity)}); refused before decoding"
        )


def _file_size(fh: IO[bytes]) -> int:
    """Size in bytes of an open file."""
    return os.fstat(fh.fileno()).st_size


def _pil_capacity(fh: IO[bytes], path: Path, image_format: str, image: PILImage.Image) -> int | None:
    """The most pixels a PNG, JPEG, WebP or BMP file's data can hold (``None``: no bound); checks its structure."""
    if image_format == "PNG":
        return _png_capacity(fh, path)
    if image_format == "JPEG":
        return _jpeg_capacity(fh, path)
    if image_format == "WEBP":
        return None  # Pillow's open already ran libwebp's demuxer, which refuses a container cut short
    (tile,) = image.tile
    if tile.codec_name != "raw" or not tile.args[1]:
        return None  # RLE-compressed BMP
    return max(_file_size(fh) - tile.offset, 0) // tile.args[1] * image.width  # whole rows of args[1] bytes


def _png_capacity(fh: IO[bytes], path: Path) -> int:
    """Walk a PNG's chunks (critical ones' CRCs checked, IEND required) → the most pixels its IDAT data can hold."""
    fh.seek(24)
    depth, colour_type = fh.read(2)
    fh.seek(8)
    idat = 0
    while len(header := fh.read(8)) == 8:
        length, kind = struct.unpack(">I4s", header)
        crc, left = zlib.crc32(kind), length
        while left and (block := fh.read(min(left, 1 << 20))):
            crc, left = zlib.crc32(block, crc), left - len(block)
        stored = fh.read(4)
        if left or len(stored) < 4:
            break
        if not kind[0] & 0x20 and crc != int.from_bytes(stored, "big"):  # critical chunk: upper-case initial
            raise InputError(f"{path}: corrupt: the PNG's {kind.decode('latin-1')} chunk fails its CRC check")
        idat += length if kind == b"IDAT" else 0
        if kind == b"IEND":
            return idat * _DEFLATE_RATIO * 8 // max(depth * _PNG_CHANNELS.get(colour_type, 1), 1)
    raise InputError(f"{path}: truncated: the PNG data ends before its IEND chunk")


def _jpeg_capacity(fh: IO[bytes], path: Path) -> int | None:
    """Walk a JPEG's markers and scans up to its end-of-image → the most pixels it can hold (``None``: arithmetic).

    Bytes between segments are skipped, as libjpeg does; a scan must end in a marker, its restart markers in order.
    """
    fh.seek(0)
    data = fh.read()
    position, arithmetic = 2, False
    while (position := data.find(b"\xff", position)) >= 0 and position + 1 < len(data):
        marker = data[position + 1]
        if marker == 0xD9:  # end of image
            return None if arithmetic else _JPEG_PIXELS_PER_BYTE * len(data)
        if marker == 0xFF or marker in _JPEG_STANDALONE:
            position += 1 if marker == 0xFF else 2
            continue
        arithmetic |= marker in _JPEG_ARITHMETIC_SOF
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker that is not a restart
            position = _jpeg_scan_end(data, position, path)
    raise InputError(f"{path}: truncated: the JPEG data ends before its end-of-image marker")


def _jpeg_scan_end(data: bytes, start: int, path: Path) -> int:
    """Where the entropy-coded data that begins at ``start`` ends (its next marker), checking its restart markers."""
    expected = 0
    for match in _JPEG_SCAN_MARKER.finditer(data, start):
        code = data[match.end() - 1]
        if not 0xD0 <= code <= 0xD7:
            return match.end() - 2
        if code - 0xD0 != expected:
            raise InputError(f"{path}: corrupt: JPEG restart marker {code - 0xD0} where {expected} was due")
        expected = (expected + 1) % 8
    return len(data)


def _tiff_frames(fh: IO[bytes], path: Path) -> int:
    """Count a TIFF's full-resolution frames by walking its IFD chain, refusing loops and impossible IFDs.

    tifffile and Pillow follow next-IFD offsets without remembering where they have been, so a chain that points
    back into itself would be followed forever. Here each IFD is visited once and must lie inside the file, the
    IFDs together cannot be larger than the file, and there are at most :data:`MAX_TIFF_IFDS` of them.
    Reduced-resolution previews (NewSubfileType bit 0) are not frames.
    """
    size = _file_size(fh)
    fh.seek(0)
    head = fh.read(16)
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    count_format, offset_format, entry_size = ("Q", "Q", 20) if big else ("H", "I", 12)
    count_size, offset_size = (8, 8) if big else (2, 4)
    entry_type = np.dtype([("tag", order + "u2"), ("type", order + "u2"), ("rest", f"V{entry_size - 4}")])
    offset = struct.unpack_from(order + offset_format, head.ljust(16, b"\0"), 8 if big else 4)[0]
    seen: set[int] = set()
    frames = directory_bytes = 0
    while offset:
        if offset in seen:
            raise InputError(f"{path}: corrupt: the TIFF's directory chain loops back to byte {offset:,}")
        if len(seen) == MAX_TIFF_IFDS:
            raise InputError(
                f"{path}: more than {MAX_TIFF_IFDS:,} TIFF directories (pages); only single images are supported"
            )
        seen.add(offset)
        fh.seek(offset)
        raw = fh.read(count_size)
        if len(raw) < count_size:
            raise InputError(f"{path}: corrupt: a TIFF directory at byte {offset:,} lies past the end of the file")
        count = struct.unpack(order + count_format, raw)[0]
        length = count_size + count * entry_size + offset_size
        directory_bytes += length
        if offset + length > size or directory_bytes > size:
            raise InputError(
                f"{path}: corrupt: a TIFF directory of {count:,} entries at byte {offset:,} runs past the end of "
                f"the {size:,}-byte file"
            )
        table = fh.read(length - count_size)
        entries = np.frombuffer(table, entry_type, count)
        subfile = np.flatnonzero(entries["tag"] == 254)[:1]  # NewSubfileType, its value inline in the entry
        for i in subfile.tolist():
            value_format = order + ("H" if entries["type"][i] == 3 else "I")
            frames -= struct.unpack_from(value_format, table, i * entry_size + entry_size - offset_size)[0] & 1
        frames += 1
        offset = struct.unpack_from(order + offset_format, table, count * entry_size)[0]
    return frames


def _tiff_capacity(page: tifffile.TiffPage, path: Path, size: int) -> int | None:
    """Check that a TIFF page's strips or tiles lie inside the file → the most pixels they can hold (``None``: no
    bound for its compression)."""
    end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)), default=0)
    if end > size:
        raise InputError(f"{path}: truncated: the TIFF's image data runs to byte {end:,} of a {size:,}-byte file")
    ratio = _TIFF_RATIOS.get(int(page.compression))
    bits_per_pixel = page.bitspersample * page.samplesperpixel
    return None if ratio is None else sum(page.databytecounts) * ratio * 8 // max(bits_per_pixel, 1)
