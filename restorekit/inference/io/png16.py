"""The 16-bit PNG encoder (Paeth filter, zlib): the only way to write 16-bit gray+alpha with ICC and EXIF."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import numpy as np


def _encode_png16(
    samples: np.ndarray, icc_profile: bytes | None, exif: bytes | None, chunks: list[tuple[bytes, bytes]]
) -> bytes:
    """Encode ``(H, W, S)`` uint16 samples (gray, gray+alpha, RGB, RGBA) as a 16-bit PNG with iCCP, eXIf and the
    ancillary ``chunks`` (type, payload) before the image data."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(block) for block in _paeth_filtered(rows, bytes_per_pixel=2 * channels))
    idat += compressor.flush()
    encoded = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc_profile:
        encoded.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        encoded.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    encoded += [_png_chunk(kind, payload) for kind, payload in chunks]
    encoded += [_png_chunk(b"IDAT", idat[i : i + (1 << 20)]) for i in range(0, len(idat), 1 << 20)]
    return b"\x89PNG\r\n\x1a\n" + b"".join(encoded) + _png_chunk(b"IEND", b"")


def _paeth_filtered(rows: np.ndarray, bytes_per_pixel: int, block: int = 256) -> Iterator[bytes]:
    """Yield PNG scanlines with the Paeth filter (type 4), ``block`` rows at a time to bound memory."""
    for start in range(0, rows.shape[0], block):
        current = rows[start : start + block].astype(np.int16)
        above = np.zeros_like(current)
        above[1:] = current[:-1]
        if start:
            above[0] = rows[start - 1]
        left, upper_left = np.zeros_like(current), np.zeros_like(current)
        left[:, bytes_per_pixel:] = current[:, :-bytes_per_pixel]
        upper_left[:, bytes_per_pixel:] = above[:, :-bytes_per_pixel]
        estimate = left + above - upper_left
        to_left, to_above, to_upper_left = (np.abs(estimate - x) for x in (left, above, upper_left))
        predictor = np.where(
            (to_left <= to_above) & (to_left <= to_upper_left),
            left,
            np.where(to_above <= to_upper_left, above, upper_left),
        )
        filtered = (current - predictor).astype(np.uint8)
        yield np.hstack([np.full((len(filtered), 1), 4, np.uint8), filtered]).tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """Return one PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
