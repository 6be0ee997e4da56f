"""A corpus of hostile and unusual inputs, built by the tests: nothing hostile is committed as a file.

:func:`cases` gives each file case as ``name → (bytes, words)``: the bytes to write and words its one-line
error must contain (``None`` where an image or an error are both acceptable, e.g. a bit flip the decoder
cannot notice). :func:`build` writes them into a folder, adds the file-system cases (symlink loops, a named
pipe, a socket, a device behind a symlink) and returns ``name → words`` for all of them. :func:`time_limit`
bounds a test's time, so that a regression fails instead of hanging the suite.

Run as a script to write a corpus for trying the command line by hand::

    python tests/hostile_corpus.py /tmp/corpus && restorekit denoise /tmp/corpus -o /tmp/out
"""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

# A declared size far beyond what the bytes can hold, yet under the default pixel limit (so only the decode
# budget stands between it and a full decode).
BIG = 4096


class Hung(BaseException):
    """Raised by :func:`time_limit`; a BaseException, so that no error handling on the way can swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (any Python-level loop, such as following a TIFF's IFD chain)."""

    def expire(signum: int, frame: object) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def noisy(height: int = 64, width: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Random ``(H, W, C)`` uint8 samples: hard to compress, so a cut always lands in the image data."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def encoded(kind: str, height: int = 64, width: int = 64) -> bytes:
    """A valid noisy image of ``kind``: png, png16, jpg, jpg_progressive, webp, webp_lossy, bmp, tif, tif16."""
    buffer = io.BytesIO()
    samples = noisy(height, width)
    if kind == "tif":
        tifffile.imwrite(buffer, samples, photometric="rgb")
    elif kind == "tif16":
        tifffile.imwrite(buffer, samples.astype(np.uint16) * 257, photometric="rgb")
    elif kind == "png16":
        return png_bytes(samples.astype(np.uint16) * 257)
    else:
        fmt, options = {
            "png": ("PNG", {}),
            "jpg": ("JPEG", {"quality": 90}),
            "jpg_progressive": ("JPEG", {"quality": 90, "progressive": True}),
            "webp": ("WEBP", {"lossless": True}),
            "webp_lossy": ("WEBP", {"quality": 80}),
            "bmp": ("BMP", {}),
        }[kind]
        Image.fromarray(samples).save(buffer, fmt, **options)
    return buffer.getvalue()


KINDS = ("png", "png16", "jpg", "jpg_progressive", "webp", "webp_lossy", "bmp", "tif", "tif16")
SUFFIXES = {"png": ".png", "png16": ".png", "jpg": ".jpg", "jpg_progressive": ".jpg", "webp": ".webp"}
SUFFIXES |= {"webp_lossy": ".webp", "bmp": ".bmp", "tif": ".tif", "tif16": ".tif"}


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(samples: np.ndarray) -> bytes:
    """A bare PNG (filter 0) of ``(H, W, 3)`` uint8 or uint16 samples."""
    height, width, _ = samples.shape
    depth = 16 if samples.dtype == np.uint16 else 8
    rows = samples.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()
    header = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(raw))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + idat + png_chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------------------ TIFF


def _ifd0(data: bytes | bytearray) -> tuple[int, int]:
    """Offset and entry count of the first IFD of a little-endian classic TIFF."""
    offset = struct.unpack_from("<I", data, 4)[0]
    return offset, struct.unpack_from("<H", data, offset)[0]


def _next_pointer(data: bytes | bytearray, offset: int) -> int:
    """Where the next-IFD offset of the IFD at ``offset`` is stored (classic little-endian TIFF)."""
    return offset + 2 + 12 * struct.unpack_from("<H", data, offset)[0]


def _tiff(samples: np.ndarray, pages: int = 1, **options) -> bytearray:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer, byteorder="<") as writer:
        for _ in range(pages):
            writer.write(samples, photometric="rgb", contiguous=False, **options)
    return bytearray(buffer.getvalue())


def tiff_self_loop(depth: int = 8) -> bytes:
    """A TIFF whose first IFD names itself as the next one."""
    data = _tiff(noisy(8, 8).astype(np.uint16) * 257 if depth == 16 else noisy(8, 8))
    offset, _ = _ifd0(data)
    struct.pack_into("<I", data, _next_pointer(data, offset), offset)
    return bytes(data)


def tiff_cycle() -> bytes:
    """A two-page TIFF whose second IFD points back to the first."""
    data = _tiff(noisy(8, 8), pages=2)
    first, _ = _ifd0(data)
    second = struct.unpack_from("<I", data, _next_pointer(data, first))[0]
    struct.pack_into("<I", data, _next_pointer(data, second), first)
    return bytes(data)


def tiff_long_chain(count: int = 100_000) -> bytes:
    """A TIFF followed by ``count`` empty IFDs, each pointing to the next (6 bytes each)."""
    data = _tiff(noisy(8, 8))
    first, _ = _ifd0(data)
    start = len(data) + len(data) % 2
    data += b"\x00" * (start - len(data))
    struct.pack_into("<I", data, _next_pointer(data, first), start)
    for i in range(count):
        data += struct.pack("<HI", 0, 0 if i == count - 1 else start + 6 * (i + 1))
    return bytes(data)


def tiff_huge_count() -> bytes:
    """A classic TIFF whose first IFD claims 65,535 entries (far past the end of the file)."""
    data = _tiff(noisy(8, 8))
    offset, _ = _ifd0(data)
    struct.pack_into("<H", data, offset, 0xFFFF)
    return bytes(data)


def bigtiff_huge_count() -> bytes:
    """A BigTIFF whose first IFD claims 2⁴⁰ entries."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, noisy(8, 8), photometric="rgb", bigtiff=True, byteorder="<")
    data = bytearray(buffer.getvalue())
    offset = struct.unpack_from("<Q", data, 8)[0]
    struct.pack_into("<Q", data, offset, 1 << 40)
    return bytes(data)


def tiff_ifd_past_end() -> bytes:
    """A TIFF whose first IFD offset lies past the end of the file."""
    data = _tiff(noisy(8, 8))
    struct.pack_into("<I", data, 4, len(data) + 1000)
    return bytes(data)


def _patch_tag(data: bytearray, tag: int, value: int) -> None:
    """Set an inline SHORT or LONG tag of the first IFD (classic little-endian TIFF)."""
    offset, count = _ifd0(data)
    for i in range(count):
        entry = offset + 2 + 12 * i
        code, kind = struct.unpack_from("<HH", data, entry)
        if code == tag:
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, value)
            return
    raise ValueError(f"tag {tag} not found")


def tiff_declares_big(depth: int = 8) -> bytes:
    """An uncompressed single-strip TIFF whose header declares BIG×BIG pixels over 8×8 of data."""
    samples = noisy(8, 8).astype(np.uint16) * 257 if depth == 16 else noisy(8, 8)
    data = _tiff(samples, rowsperstrip=2**31 - 1)
    _patch_tag(data, 256, BIG)
    _patch_tag(data, 257, BIG)
    _patch_tag(data, 278, BIG)
    return bytes(data)


def tiff_pointer_to_itself(tag: int) -> bytes:
    """A TIFF with an IFD-pointer tag (SubIFDs 330 or the EXIF IFD 34665) pointing at the first IFD."""
    data = _tiff(noisy(8, 8), extratags=[(tag - 1, "I", 1, 0, True)])  # tifffile will not write pointer tags
    offset, count = _ifd0(data)
    for entry in range(offset + 2, offset + 2 + 12 * count, 12):
        if struct.unpack_from("<H", data, entry)[0] == tag - 1:
            struct.pack_into("<HHII", data, entry, tag, 4, 1, offset)
    return bytes(data)


# ---------------------------------------------------------------------------------------- other formats


def jpeg_declares_big() -> bytes:
    """A complete 16×16 JPEG whose SOF declares BIG×BIG."""
    data = bytearray(encoded("jpg", 16, 16))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, BIG, BIG)
    return bytes(data)


def png_declares_big() -> bytes:
    """A 16×16 PNG whose IHDR (CRC fixed up) declares BIG×BIG."""
    data = bytearray(png_bytes(noisy(16, 16)))
    header = struct.pack(">IIBBBBB", BIG, BIG, 8, 2, 0, 0, 0)
    data[8:33] = png_chunk(b"IHDR", header)
    return bytes(data)


def webp_declares_big() -> bytes:
    """A 16×16 lossless WebP whose VP8L header declares BIG×BIG."""
    data = bytearray(encoded("webp", 16, 16))
    start = data.index(b"VP8L") + 8
    assert data[start] == 0x2F
    bits = int.from_bytes(data[start + 1 : start + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (BIG - 1) | ((BIG - 1) << 14)
    data[start + 1 : start + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def bmp_declares_big() -> bytes:
    """A 16×16 BMP whose header declares BIG×BIG."""
    data = bytearray(encoded("bmp", 16, 16))
    struct.pack_into("<ii", data, 18, BIG, BIG)
    return bytes(data)


def truncated(kind: str, fraction: float) -> bytes:
    """A larger noisy image of ``kind`` cut to ``fraction`` of its bytes."""
    data = encoded(kind, 256, 256)
    return data[: max(int(len(data) * fraction), 32)]


def bit_flipped(kind: str, seed: int) -> bytes:
    """A noisy image of ``kind`` with one bit flipped past its signature, at a seeded position."""
    data = bytearray(encoded(kind))
    rng = np.random.default_rng(seed)
    position = int(rng.integers(16, len(data)))
    data[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(data)


def cases() -> dict[str, tuple[Callable[[], bytes], str | None]]:
    """Every file case: name → (a function that builds its bytes, words its error must contain or None)."""
    corpus: dict[str, tuple[Callable[[], bytes], str | None]] = {
        "tiff_self_loop.tif": (tiff_self_loop, "loop"),
        "tiff_self_loop16.tif": (lambda: tiff_self_loop(16), "loop"),
        "tiff_cycle.tif": (tiff_cycle, "loop"),
        "tiff_long_chain.tif": (tiff_long_chain, "directories"),
        "tiff_huge_count.tif": (tiff_huge_count, "past the end"),
        "bigtiff_huge_count.tif": (bigtiff_huge_count, "past the end"),
        "tiff_ifd_past_end.tif": (tiff_ifd_past_end, "past the end"),
        "tiff_subifd_to_itself.tif": (lambda: tiff_pointer_to_itself(330), None),
        "tiff_exif_ifd_to_itself.tif": (lambda: tiff_pointer_to_itself(34665), None),
        "tiff_declares_big.tif": (tiff_declares_big, "truncated"),
        "tiff_declares_big16.tif": (lambda: tiff_declares_big(16), "truncated"),
        "jpeg_declares_big.jpg": (jpeg_declares_big, "truncated"),
        "png_declares_big.png": (png_declares_big, "truncated"),
        "webp_declares_big.webp": (webp_declares_big, None),
        "bmp_declares_big.bmp": (bmp_declares_big, "truncated"),
    }
    for kind in KINDS:
        suffix = SUFFIXES[kind]
        for fraction in (0.1, 0.5, 0.9, 0.999):
            corpus[f"cut{int(fraction * 1000):03d}_{kind}{suffix}"] = (
                lambda kind=kind, fraction=fraction: truncated(kind, fraction),
                "truncated",
            )
        for seed in range(4):
            corpus[f"flip{seed}_{kind}{suffix}"] = (lambda kind=kind, seed=seed: bit_flipped(kind, seed), None)
    return corpus


def build(folder: Path) -> dict[str, str | None]:
    """Write every case into ``folder`` (created) → name: words its one-line error must contain, or None."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}
    for name, (make, words) in cases().items():
        (folder / name).write_bytes(make())
        expected[name] = words
    (folder / "loop_a.png").symlink_to("loop_b.png")
    (folder / "loop_b.png").symlink_to("loop_a.png")
    (folder / "self_loop.png").symlink_to("self_loop.png")
    (folder / "dangling.png").symlink_to("nowhere.png")
    expected |= {"loop_a.png": "symlink loop", "loop_b.png": "symlink loop", "self_loop.png": "symlink loop"}
    expected["dangling.png"] = "no such file"
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.png")
        expected["pipe.png"] = "named pipe"
    if Path("/dev/zero").exists():
        (folder / "zero.png").symlink_to("/dev/zero")
        expected["zero.png"] = "device"
    if hasattr(socket, "AF_UNIX") and len(str(folder / "socket.png")) < 100:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(folder / "socket.png"))
        expected["socket.png"] = "socket"
    return expected


if __name__ == "__main__":
    for name, words in build(Path(sys.argv[1])).items():
        print(f"{name}: {words or 'an image or a one-line error'}")
