"""Read and write images without losing anything, and the single ``[0, 1]`` float ↔ tensor conversion point.

Decoders, chosen per file by its content (never by its suffix):

* PNG, JPEG, WebP, BMP and 8-bit TIFF: Pillow, after the checks of the decode budget below (truncated files and
  headers that declare more than the data can hold are refused before anything is decoded). A multi-picture JPEG
  (MPO: the primary image plus previews or depth maps, as cameras and phones write) is read as its primary image.
* HEIC/HEIF: the optional ``pillow-heif`` package (``pip install 'restorekit[heif]'``), primary image, 8 bits.
* Camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, …) are refused with a line that says how to proceed.
* 16-bit PNG: OpenCV (libpng); Pillow would reduce 16-bit colour PNGs to 8 bits.
* 16-bit and float32 TIFF, and 8-bit TIFF with an unspecified extra sample (Pillow would drop it): tifffile, or
  OpenCV (libtiff) where tifffile lacks the codec (LZW, JPEG and the floating-point predictor need the optional
  ``imagecodecs`` package).

A TIFF may have one extra sample beyond its colour channels, read as alpha; more are refused at every depth,
with a message naming them, rather than dropped.

Encoders:

* 8-bit PNG, JPEG, WebP, BMP: Pillow; HEIC/HEIF: pillow-heif.
* 16-bit PNG: a small encoder here (Paeth filter, zlib), the only way to write 16-bit gray+alpha and ICC/EXIF.
* TIFF at every depth: tifffile (Deflate; horizontal predictor for integers), EXIF IFDs appended here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import io
import math
import os
import re
import secrets
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

import cv2
import numpy as np
import tifffile
import torch
from PIL import Image as PILImage
from PIL import ImageCms, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

from restorekit._checks import check, check_choice, check_shape, fail
from restorekit.errors import InputError, OutputError, UsageError
from restorekit.ops.resize import imresize

SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif")
"""Lower-case file suffixes that :func:`load_image` and :func:`save_image` handle (HEIC/HEIF with pillow-heif)."""

RAW_SUFFIXES: tuple[str, ...] = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".pef",
    ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".mos", ".mrw", ".kdc", ".dcr", ".raw",
)  # fmt: skip
"""Lower-case suffixes of camera RAW files, which are refused (:func:`raw_error`) rather than read."""
HEIF_EXTRA = "pip install 'restorekit[heif]'"
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")

MAX_PIXELS_ENV = "RESTOREKIT_MAX_PIXELS"
BUILTIN_MAX_PIXELS = 200_000_000

# restorekit checks the pixel limit itself, before decoding and with a message naming the file; Pillow's own
# check would fire first (a warning above 89 MP, an error above 179 MP) with a message that names neither.
PILImage.MAX_IMAGE_PIXELS = None

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
_FORMAT_DEPTHS = {"PNG": (8, 16), "TIFF": (8, 16, 32), "JPEG": (8,), "WEBP": (8,), "BMP": (8,), "HEIF": (8,)}
_ALPHA_FORMATS = ("PNG", "TIFF", "WEBP", "HEIF")
_METADATA_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "HEIF")
_SAMPLE_TYPES = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: np.dtype(np.float32)}
_BIT_DEPTHS = {dtype: depth for depth, dtype in _SAMPLE_TYPES.items()}

# What the Pillow decoder's modes become: gray, gray+alpha, RGB or RGBA (CMYK is converted on its own).
_PIL_MODES = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "PA": "RGBA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "RGBX": "RGB",
    "RGBa": "RGBA",
    "YCbCr": "RGB",
}
_ORIENTATION = 0x0112
_DESCRIPTION = 0x010E
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
_XMP_TAG = 700  # TIFF tag holding the XMP packet
_PNG_XMP_KEY = "XML:com.adobe.xmp"  # the iTXt keyword of XMP in PNG
_JPEG_MAX_XMP = 65502  # one APP1 segment; longer XMP ("extended XMP") is not written to JPEG
# Which output formats hold which metadata (PNG text chunks go to PNG only).
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


def _check_input(condition: bool, what: str, expected: str, got: object) -> None:
    """Raise :class:`InputError` unless ``condition`` holds."""
    check(condition, what, expected, got, error=InputError)


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


class _Decoded(NamedTuple):
    """Samples as the decoder gave them, before orientation and scaling to ``[0, 1]``."""

    color: np.ndarray  # (H, W, C) uint8 / uint16 / float32, C = 1 or 3
    alpha: np.ndarray | None  # (H, W), same sample type
    mode: str
    orientation: int  # EXIF orientation the decoder left unapplied
    icc_profile: bytes | None
    exif: bytes | None  # already reset to orientation 1
    dpi: tuple[float, float] | None = None  # upright: swapped when the file's orientation turns the image
    xmp: bytes | None = None
    text: dict[str, str] | None = None
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------- reading


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file into ``[0, 1]`` float32 pixels plus everything needed to write it back.

    Palette images become RGB, or RGBA when they have transparency. CMYK becomes RGB through its embedded ICC
    profile to sRGB when it has one (the sRGB profile is then carried), else by ``R = (1 − C)(1 − K)`` (and
    likewise for G, B), with no profile carried. Bilevel becomes 8-bit gray. The EXIF orientation is applied.
    The file is opened read-only and never modified.

    Args:
        path: PNG, JPEG (MPO too), TIFF, WebP, BMP or, with pillow-heif, HEIC/HEIF file; the format is taken
            from the content, not the suffix (but for camera RAW suffixes, refused before opening).
        max_pixels: Refuse images with more than this many pixels (width × height), checked before decoding;
            ``None`` for no limit.

    Returns:
        The decoded :class:`Image`.

    Raises:
        InputError: The file is missing, unreadable, empty, truncated, not a supported image (camera RAW
            included), animated or multi-page, of an unsupported mode or sample type, or larger than
            ``max_pixels``; HEIC/HEIF without pillow-heif.

    Example:
        >>> image = load_image("photo.png")  # doctest: +SKIP
        >>> image.pixels.shape, image.bit_depth  # doctest: +SKIP
        ((480, 640, 3), 8)
    """
    path = Path(path)
    if path.suffix.lower() in RAW_SUFFIXES:
        raise InputError(raw_error(path))
    with _input_errors(path), _open_input(path) as fh:
        image_format = _sniff_format(fh.read(16), path)
        fh.seek(0)
        if image_format == "TIFF":
            decoded = _read_tiff(fh, path, max_pixels)
        elif image_format == "HEIF":
            decoded = _read_heif(fh, path, max_pixels)
        else:
            decoded = _read_with_pil(fh, path, image_format, max_pixels)
        lossy = image_format == "JPEG" or (image_format == "WEBP" and _webp_is_lossy(fh))
        quality = jpeg_quality(fh) if image_format == "JPEG" else None
    _check_decoded(path, decoded)
    color = _upright(decoded.color, decoded.orientation)
    alpha = None if decoded.alpha is None else _upright(decoded.alpha, decoded.orientation)
    if color.dtype == np.float32:
        finite = np.isfinite(color).all() and (alpha is None or np.isfinite(alpha).all())
        if not finite:
            raise InputError(f"{path}: float samples include NaN or infinity")
    return Image(
        pixels=_to_unit(color),
        alpha=alpha,
        bit_depth=_BIT_DEPTHS[color.dtype],
        mode=decoded.mode,
        format=image_format,
        icc_profile=decoded.icc_profile,
        exif=decoded.exif,
        lossy=lossy,
        dpi=decoded.dpi,
        xmp=decoded.xmp,
        text=decoded.text,
        notes=decoded.notes,
        quality=quality,
    )


def raw_error(path: Path) -> str:
    """The one line that refuses a camera RAW file and says how to proceed.

    Example:
        >>> raw_error(Path("DSC_0001.NEF"))[:58]
        'DSC_0001.NEF: a camera RAW file (.NEF); RAW is not read: d'
    """
    return (
        f"{path}: a camera RAW file ({path.suffix}); RAW is not read: develop it to a 16-bit TIFF (darktable, "
        "RawTherapee, Lightroom, or `dcraw -T -6 -W`) and denoise that"
    )


def _check_decoded(path: Path, decoded: _Decoded) -> None:
    """Refuse what a decoder returns from damaged headers: empty or misshapen sample arrays."""
    color, alpha = decoded.color, decoded.alpha
    well_formed = color.ndim == 3 and color.shape[2] in (1, 3) and color.size > 0
    well_formed = well_formed and (alpha is None or alpha.shape == color.shape[:2])
    _check_input(well_formed, f"{path}: decoded samples", "an (H, W, 1|3) image of at least 1×1", color.shape)


# What a path that is not a regular file turns out to be, for the one-line error.
_FILE_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def check_input_file(path: str | Path) -> None:
    """Raise :class:`InputError` unless ``path`` names a regular file (symlinks followed); never opens it.

    The command line calls it while planning a batch, so that a symlink loop, a named pipe, a socket or a
    device gets its one-line error without being opened (opening a named pipe waits for a writer).

    Example:
        >>> check_input_file("/dev/null")
        Traceback (most recent call last):
        ...
        restorekit.errors.InputError: /dev/null: is a character device, expected an image file
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise _open_error(path, error) from error
    _check_regular(path, mode)


def _check_regular(path: Path, mode: int) -> None:
    """Refuse a file mode that is not a regular file, naming what it is."""
    kind = _file_kind(mode)
    if kind is not None:
        raise InputError(f"{path}: is a {kind}, expected an image file")


def _file_kind(mode: int) -> str | None:
    """What a file mode names when it is not a regular file (``None`` when it is)."""
    return next((kind for is_kind, kind in _FILE_KINDS if is_kind(mode)), None)


def _open_error(path: Path, error: OSError) -> InputError:
    """The one-line :class:`InputError` for an ``OSError`` met while opening ``path``."""
    reasons = {
        errno.ENOENT: "no such file",
        errno.ENOTDIR: "no such file",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ELOOP: "symlink loop (following its links leads back to a link already followed)",
        errno.EISDIR: "is a directory, expected an image file",
    }
    reason = reasons.get(error.errno or 0)
    if error.errno == errno.ENXIO:  # a socket, or a device file without its device
        with contextlib.suppress(OSError):
            reason = f"is a {_file_kind(os.stat(path).st_mode) or 'device'}, expected an image file"
    return InputError(f"{path}: {reason or f'cannot open ({error.strerror or error})'}")


def _nonblocking(path: str, flags: int) -> int:
    """``open`` opener: ``O_NONBLOCK``, so that opening a named pipe returns at once instead of waiting."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


@contextlib.contextmanager
def _open_input(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` read-only without ever blocking, and refuse it unless the open file is a regular file."""
    try:
        fh = open(path, "rb", opener=_nonblocking)  # noqa: SIM115 (closed by the `with` below)
    except OSError as error:
        raise _open_error(path, error) from error
    with fh:
        _check_regular(path, os.fstat(fh.fileno()).st_mode)
        yield fh


@contextlib.contextmanager
def _input_errors(path: Path) -> Iterator[None]:
    """Turn file-system and decoder exceptions into one :class:`InputError` line naming ``path``."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise _open_error(path, error) from error
    except UnidentifiedImageError as error:
        raise InputError(
            f"{path}: cannot read the image header (truncated, corrupt or an unsupported variant)"
        ) from error
    except _CODEC_ERRORS as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InputError(f"{path}: cannot decode, the file is truncated or corrupt ({reason})") from error


def _sniff_format(head: bytes, path: Path) -> str:
    """Return the format named by the first bytes of a file."""
    if not head:
        raise InputError(f"{path}: empty file (0 bytes)")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIF"
    if head[4:12] == b"ftypcrx " or head.startswith((b"FUJIFILMCCD-RAW", b"IIRO", b"IIU\x00")):
        raise InputError(raw_error(path))
    raise InputError(f"{path}: not a supported image; expected PNG, JPEG, TIFF, WebP, BMP or HEIC content")


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image larger than ``max_pixels``; called on the header, before any decoding."""
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            f"{path}: {width}×{height} = {_pixel_count(width * height)} exceeds the limit of "
            f"{_pixel_count(max_pixels)} (raise max_pixels or {MAX_PIXELS_ENV})"
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


def _read_with_pil(fh: IO[bytes], path: Path, image_format: str, max_pixels: int | None) -> _Decoded:
    """Decode a PNG, JPEG, WebP or BMP file (16-bit PNG samples through OpenCV); an MPO as its primary image."""
    image = PILImage.open(fh, formats=[image_format])
    _check_pixels(path, *image.size, max_pixels)
    notes: tuple[str, ...] = ()
    if image.format == "MPO":  # the primary image is frame 0, the one open() positions on
        extra = image.n_frames - 1
        notes = (f"multi-picture JPEG: read its primary image; {extra} embedded preview/extra image(s) not kept",)
    else:
        _check_single_frame(path, getattr(image, "n_frames", 1))
    _check_budget(path, image_format, *image.size, _pil_capacity(fh, path, image_format, image))
    image.load()  # decodes fully: truncated data raises here, and PNG metadata after the pixels is read
    if image_format == "PNG" and _png_bit_depth(fh) == 16:
        samples = (*_read_png16(fh, path), image.info.get("icc_profile"))
    else:
        samples = _pil_samples(image, path)
    return _decoded_pil(image, samples, notes)


def _decoded_pil(
    image: PILImage.Image, samples: tuple[np.ndarray, np.ndarray | None, str, bytes | None], notes: tuple[str, ...]
) -> _Decoded:
    """A loaded Pillow image's samples ``(colour, alpha, mode, ICC)`` with its EXIF, DPI, XMP and text."""
    exif = image.getexif()
    orientation = exif.get(_ORIENTATION, 1)
    xmp = image.info.get("xmp")
    text = {key: str(value) for key, value in getattr(image, "text", {}).items() if key != _PNG_XMP_KEY}
    color, alpha, mode, icc_profile = samples
    return _Decoded(
        color,
        alpha,
        mode,
        orientation,
        icc_profile,
        _carried_exif(exif, image.info),
        _upright_dpi(image.info.get("dpi"), orientation),
        xmp.encode("utf-8") if isinstance(xmp, str) else xmp or None,
        text or None,
        notes,
    )


def _heif() -> object:
    """The pillow-heif module, or ``None`` when the optional package is not installed."""
    try:
        import pillow_heif
    except ImportError:
        return None
    return pillow_heif


def _read_heif(fh: IO[bytes], path: Path, max_pixels: int | None) -> _Decoded:
    """Decode a HEIC/HEIF file's primary image to 8 bits through pillow-heif (EXIF, ICC and XMP kept)."""
    heif = _heif()
    if heif is None:
        raise InputError(f"{path}: HEIC/HEIF needs the optional pillow-heif package ({HEIF_EXTRA})")
    container = heif.open_heif(fh, convert_hdr_to_8bit=True)
    primary = container[container.primary_index]
    _check_pixels(path, *primary.size, max_pixels)
    image = primary.to_pillow()
    extra = len(container) - 1
    notes = (f"HEIF: read its primary image; {extra} other image(s) not kept",) if extra else ()
    return _decoded_pil(image, _pil_samples(image, path), notes)


def _pil_samples(image: PILImage.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None, str, bytes | None]:
    """Convert a loaded 8-bit Pillow image to ``(H, W, C)`` uint8 colour, alpha, its mode and ICC profile."""
    icc_profile = image.info.get("icc_profile")
    if image.mode == "CMYK":
        converted, icc_profile = _cmyk_to_rgb(image, icc_profile)
    elif image.mode == "P":
        converted = image.convert("RGBA" if "transparency" in image.info else "RGB")
    else:
        check_choice(image.mode, ["CMYK", "P", *_PIL_MODES], f"{path}: image mode", error=InputError)
        converted = image if image.mode == _PIL_MODES[image.mode] else image.convert(_PIL_MODES[image.mode])
    color, alpha = _split_alpha(np.asarray(converted), converted.mode in ("LA", "RGBA"))
    return color, alpha, image.mode, icc_profile


def _cmyk_to_rgb(image: PILImage.Image, icc_profile: bytes | None) -> tuple[PILImage.Image, bytes | None]:
    """Convert CMYK to RGB: through its ICC profile to sRGB if it has a usable one, else by the simple formula."""
    if icc_profile:
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        with contextlib.suppress(ImageCms.PyCMSError, OSError):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB"), srgb.tobytes()
    return image.convert("RGB"), None  # Pillow: R = (255 − C)(255 − K) / 255, likewise G and B


def _split_alpha(samples: np.ndarray, has_alpha: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Split ``(H, W)`` or ``(H, W, S)`` samples into ``(H, W, C)`` colour and an ``(H, W)`` alpha plane."""
    samples = samples[..., None] if samples.ndim == 2 else samples
    if not has_alpha:
        return np.ascontiguousarray(samples), None
    return np.ascontiguousarray(samples[..., :-1]), np.ascontiguousarray(samples[..., -1])


def _png_bit_depth(fh: IO[bytes]) -> int:
    """Return the bit depth from a PNG's IHDR chunk."""
    fh.seek(24)
    return fh.read(1)[0]


def _read_png16(fh: IO[bytes], path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Decode a 16-bit PNG exactly; OpenCV returns gray, or BGR(A) with gray+alpha widened to BGRA."""
    fh.seek(25)
    gray = fh.read(1)[0] in (0, 4)  # IHDR colour type: 0 gray, 4 gray+alpha
    fh.seek(0)
    samples = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    _check_input(samples is not None, str(path), "a decodable 16-bit PNG", "data libpng rejects")
    if samples.ndim == 2:
        return samples[..., None], None, "I;16"
    color = samples[..., :1] if gray else samples[..., 2::-1]
    alpha = samples[..., 3] if samples.shape[2] == 4 else None
    mode = ("LA" if gray else "RGBA") if alpha is not None else ("I;16" if gray else "RGB")
    return np.ascontiguousarray(color), alpha, mode


def _webp_is_lossy(fh: IO[bytes]) -> bool:
    """Tell a lossy WebP (a ``VP8 `` bitstream) from a lossless one (``VP8L``) by walking its RIFF chunks."""
    fh.seek(12)
    while len(header := fh.read(8)) == 8:
        fourcc, size = header[:4], int.from_bytes(header[4:], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8 "
        fh.seek(size + size % 2, os.SEEK_CUR)
    return False


def _read_tiff(fh: IO[bytes], path: Path, max_pixels: int | None) -> _Decoded:
    """Decode a TIFF: 8-bit through Pillow, 16-bit and float32 through tifffile (OpenCV for missing codecs)."""
    frames = _tiff_frames(fh, path)  # before tifffile, which would follow a looping chain forever
    fh.seek(0)
    with tifffile.TiffFile(fh) as tiff:  # leaves ``fh`` open
        page = tiff.pages.first
        _check_pixels(path, page.imagewidth, page.imagelength, max_pixels)
        _check_single_frame(path, frames)
        _check_budget(path, "TIFF", page.imagewidth, page.imagelength, _tiff_capacity(page, path, _file_size(fh)))
        orientation = page.tags.valueof(_ORIENTATION, 1)
        xmp = page.tags.valueof(_XMP_TAG)
        metadata = (_upright_dpi(_tiff_dpi(page), orientation), xmp if isinstance(xmp, bytes) and xmp else None)
        extras = _tiff_extras(page, path)
        # Pillow drops an unspecified extra sample (RGBX, gray + X): tifffile keeps it, as alpha.
        if page.dtype not in (np.dtype(np.uint8), np.dtype(bool)) or extras == (tifffile.EXTRASAMPLE.UNSPECIFIED,):
            color, alpha, mode = _tiff_samples(page, fh, path)
            return _Decoded(color, alpha, mode, orientation, page.iccprofile, _tiff_exif(fh), *metadata)
    fh.seek(0)
    image = PILImage.open(fh, formats=["TIFF"])
    image.load()  # Pillow ≥ 13 applies the orientation itself and drops the tag: apply what it left
    color, alpha, mode, icc_profile = _pil_samples(image, path)
    left = image.getexif().get(_ORIENTATION, 1)
    return _Decoded(color, alpha, mode, left, icc_profile, _tiff_exif(fh), *metadata)


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


# What each kind of TIFF extra sample holds, in an error message.
_EXTRA_SAMPLE_NAMES = {0: "unspecified", 1: "premultiplied alpha", 2: "alpha"}


def _tiff_extras(page: tifffile.TiffPage, path: Path) -> tuple[int, ...]:
    """A TIFF page's extra samples (beyond its colour channels), refused unless there is at most one: it is kept
    as alpha, at every bit depth."""
    extras = tuple(page.extrasamples)
    names = ", ".join(_EXTRA_SAMPLE_NAMES.get(int(e), f"kind {int(e)}") for e in extras)
    got = f"{len(extras)} extra samples ({names})"
    _check_input(len(extras) <= 1, f"{path}: TIFF extra samples", "at most one (alpha)", got)
    return extras


def _tiff_samples(page: tifffile.TiffPage, fh: IO[bytes], path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Decode a gray / gray+alpha / RGB / RGBA TIFF page exactly: 16-bit, float32, or 8-bit with an unspecified
    extra sample (kept as alpha)."""
    what = f"{path}: TIFF samples"
    gray_modes = {np.dtype(np.uint8): "L", np.dtype(np.uint16): "I;16", np.dtype(np.float32): "F"}
    _check_input(page.dtype in gray_modes, what, "8/16-bit unsigned or float32 samples", str(page.dtype))
    photometric = tifffile.PHOTOMETRIC(page.photometric)
    check_choice(photometric.name, ["MINISBLACK", "RGB"], f"{path}: TIFF photometric", error=InputError)
    colors = 1 if photometric == tifffile.PHOTOMETRIC.MINISBLACK else 3
    extras = _tiff_extras(page, path)
    _check_input(extras != (tifffile.EXTRASAMPLE.ASSOCALPHA,), what, "unassociated alpha", "premultiplied alpha")
    _check_input(
        page.samplesperpixel == colors + len(extras),
        what,
        f"{colors + len(extras)} samples per pixel",
        page.samplesperpixel,
    )
    codecs = tifffile.TIFF.DECOMPRESSORS
    if page.compression in codecs and page.predictor in tifffile.TIFF.UNPREDICTORS:
        samples = page.asarray()
        samples = np.moveaxis(samples, 0, -1) if page.axes.startswith("S") else samples
    else:
        samples = _read_tiff_cv2(fh, path, page.samplesperpixel, page.compression.name)
    color, alpha = _split_alpha(samples, bool(extras))
    gray_mode = gray_modes[page.dtype]
    mode = ("LA" if alpha is not None else gray_mode) if colors == 1 else ("RGBA" if alpha is not None else "RGB")
    return color, alpha, mode


def _read_tiff_cv2(fh: IO[bytes], path: Path, samples_per_pixel: int, compression: str) -> np.ndarray:
    """Decode a 16-bit or float32 TIFF through OpenCV's libtiff, as ``(H, W[, S])`` samples in file order."""
    what = f"{path}: gray+alpha TIFF compression"
    _check_input(samples_per_pixel != 2, what, "one tifffile decodes (imagecodecs adds more)", compression)
    fh.seek(0)
    samples = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_UNCHANGED)
    _check_input(samples is not None, str(path), "a TIFF that libtiff decodes", "data it rejects")
    if samples.ndim == 2:
        return samples
    return cv2.cvtColor(samples, cv2.COLOR_BGR2RGB if samples.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)


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


def _to_unit(samples: np.ndarray) -> np.ndarray:
    """Scale uint8 / uint16 samples to float32 ``[0, 1]``; float32 samples are copied as they are."""
    if samples.dtype == np.float32:
        return samples.copy()
    return samples.astype(np.float32) / np.float32(np.iinfo(samples.dtype).max)


def _to_samples(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Quantize float values to ``bit_depth`` samples: ``round(clip(x, 0, 1) · max)``; float32 is kept as is."""
    if bit_depth == 32:
        return values.astype(np.float32)
    sample_type = _SAMPLE_TYPES[bit_depth]
    scaled = np.clip(values, 0, 1, dtype=np.float32) * np.float32(np.iinfo(sample_type).max)
    return np.round(scaled).astype(sample_type)


# ---------------------------------------------------------------------------------------------------- writing


def save_image(
    image: Image, path: str | Path, bit_depth: int | None = None, quality: int | None = None, overwrite: bool = False
) -> None:
    """Write an image atomically, in the format its suffix names, carrying alpha and metadata (ICC, EXIF, DPI, XMP).

    The file is encoded in memory, written to a hidden temp file in the same directory (:func:`temp_path`),
    synced and moved onto ``path`` — without ``overwrite`` by a hard link that fails if ``path`` appeared in the
    meantime, so a file another process wrote is never replaced — so a failure or interruption never leaves a
    partial output. Pixels are quantized as
    ``round(clip(x, 0, 1) · max)``; float32 TIFF is written unclipped. Alpha is written untouched when its
    sample type is the output's, rescaled otherwise. ICC and EXIF go to PNG, JPEG, TIFF and WebP (BMP holds
    neither); the resolution (DPI) to PNG, JPEG, TIFF and BMP; XMP to PNG, JPEG (up to 65,502 bytes, one
    segment), TIFF and WebP; PNG text chunks to PNG. JPEG uses 4:4:4 chroma. WebP has no gray mode (gray is
    written as RGB) and is written lossless unless the source was lossy.

    Args:
        image: The image to write.
        path: Output file; its suffix (one of :data:`SUPPORTED_SUFFIXES`) chooses the format.
        bit_depth: 8, 16 (PNG, TIFF) or 32 (float TIFF); ``None`` keeps the image's own bit depth.
        quality: JPEG, lossy WebP and HEIC quality, 1–100; ``None`` is the source's (``image.quality``, estimated
            from a JPEG's quantisation tables), else :data:`DEFAULT_QUALITY`.
        overwrite: Replace an existing file instead of refusing.

    Raises:
        OutputError: The file exists (and not ``overwrite``), the suffix is unsupported, the format cannot
            hold the bit depth or the alpha, or the file cannot be written.
        UsageError: ``image`` is malformed, or ``bit_depth`` / ``quality`` is out of range.

    Example:
        >>> save_image(load_image("in.png"), "out.tif", bit_depth=16)  # doctest: +SKIP
    """
    path = Path(path)
    image_format = _output_format(path)
    _check_image(image)
    depth = image.bit_depth if bit_depth is None else bit_depth
    check_choice(depth, list(_SAMPLE_TYPES), "bit_depth")
    quality = output_quality(image, quality)
    _check_writable(path, image, image_format, depth, overwrite)
    color = _to_samples(image.pixels, depth)
    alpha = None if image.alpha is None else _alpha_samples(image.alpha, depth)
    try:
        data = _encode(image, image_format, color, alpha, quality)
    except _CODEC_ERRORS as error:
        raise OutputError(f"{path}: cannot encode as {image_format} ({' '.join(str(error).split())})") from error
    _write_atomically(path, data, overwrite)


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


def format_suffix(image_format: str) -> str:
    """The usual file suffix of a format (``"JPEG"`` → ``".jpg"``).

    Example:
        >>> format_suffix("TIFF")
        '.tif'
    """
    return next(suffix for suffix, name in _SUFFIX_FORMATS.items() if name == image_format)


def _output_format(path: Path) -> str:
    """Return the format an output suffix names."""
    suffix = path.suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        fail(f"{path}: output suffix", "an image suffix", suffix, valid=SUPPORTED_SUFFIXES, error=OutputError)
    return _SUFFIX_FORMATS[suffix]


def _check_image(image: Image) -> None:
    """Check that an :class:`Image` holds ``(H, W, 1|3)`` float pixels and a matching ``(H, W)`` alpha plane."""
    pixels = image.pixels
    shape = getattr(pixels, "shape", None)
    check(
        isinstance(pixels, np.ndarray) and pixels.ndim == 3 and shape[2] in (1, 3),
        "image.pixels",
        "an (H, W, 1|3) array",
        shape,
    )
    check(np.issubdtype(pixels.dtype, np.floating), "image.pixels", "a float array in [0, 1]", str(pixels.dtype))
    if image.alpha is not None:
        check(image.alpha.shape == shape[:2], "image.alpha", f"shape {shape[:2]}", image.alpha.shape)
        check(
            image.alpha.dtype in _BIT_DEPTHS, "image.alpha", "uint8, uint16 or float32 samples", str(image.alpha.dtype)
        )


def _check_writable(path: Path, image: Image, image_format: str, depth: int, overwrite: bool) -> None:
    """Refuse outputs that would lose data or clobber a file, before encoding anything."""
    depths = _FORMAT_DEPTHS[image_format]
    if depth not in depths:
        fail(
            f"{path}: bit depth",
            f"one that {image_format} stores (set bit_depth)",
            depth,
            valid=depths,
            error=OutputError,
        )
    if image.alpha is not None and image_format not in _ALPHA_FORMATS:
        fail(f"{path}: alpha", "a format that stores it", image_format, valid=_ALPHA_FORMATS, error=OutputError)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory, expected an image file path")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass overwrite=True to replace it)")


def _alpha_samples(alpha: np.ndarray, depth: int) -> np.ndarray:
    """Return alpha untouched when it already has the output's sample type, else rescaled to it."""
    if alpha.dtype == _SAMPLE_TYPES[depth]:
        return alpha
    return _to_samples(_to_unit(alpha), depth)


def _encode(image: Image, image_format: str, color: np.ndarray, alpha: np.ndarray | None, quality: int) -> bytes:
    """Encode ``(H, W, C)`` samples and an optional ``(H, W)`` alpha plane into file bytes."""
    icc_profile, exif = (image.icc_profile, image.exif) if image_format in _METADATA_FORMATS else (None, None)
    dpi = image.dpi if image_format in _DPI_FORMATS else None
    xmp = image.xmp if image_format in _XMP_FORMATS else None
    samples = color if alpha is None else np.dstack([color, alpha])
    if image_format == "TIFF":
        return _encode_tiff(samples, alpha is not None, icc_profile, exif, dpi, xmp)
    if image_format == "PNG" and color.dtype == np.uint16:
        return _encode_png16(samples, icc_profile, exif, _png_metadata_chunks(dpi, xmp, image.text))
    if image_format == "HEIF":
        return _encode_heif(samples, icc_profile, exif, xmp, quality)
    pil_image = PILImage.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)
    options: dict = {"icc_profile": icc_profile, "exif": exif, "dpi": dpi, "xmp": xmp}
    if image_format == "PNG":  # Pillow writes the resolution itself; text and XMP go in as chunks
        options |= {"pnginfo": PngImagePlugin.PngInfo(), "xmp": None}
        for kind, payload in _png_metadata_chunks(None, xmp, image.text):
            options["pnginfo"].add(kind, payload)
    elif image_format == "JPEG":
        options |= {"quality": quality, "subsampling": 0, "xmp": xmp if xmp and len(xmp) <= _JPEG_MAX_XMP else None}
    elif image_format == "WEBP":
        options |= {"quality": quality, "exact": True} if image.lossy else {"lossless": True, "exact": True}
    buffer = io.BytesIO()
    pil_image.save(buffer, image_format, **{key: value for key, value in options.items() if value is not None})
    return buffer.getvalue()


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


def _encode_tiff(
    samples: np.ndarray,
    has_alpha: bool,
    icc_profile: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    xmp: bytes | None,
) -> bytes:
    """Encode ``(H, W, S)`` uint8 / uint16 / float32 samples as a Deflate-compressed little-endian TIFF.

    EXIF goes in as its descriptive IFD0 tags plus EXIF and GPS IFDs, which tifffile cannot write: placeholder
    tags stand in for their pointers, and the IFDs are appended after the image and the placeholders patched.
    """
    tags = PILImage.Exif()
    if exif:
        tags.load(exif)
    ascii_tags = [tag for tag in _TIFF_EXIF_TAGS if tag in tags and isinstance(tags[tag], str | bytes)]
    sub_ifds = {tag: ifd for tag in (_EXIF_IFD, _GPS_IFD) if (ifd := tags.get_ifd(tag))}
    extratags = [(tag, "s", 0, _ascii(tags[tag]), True) for tag in ascii_tags]
    extratags += [(_ORIENTATION, "H", 1, 1, True)] if _ORIENTATION in tags else []
    extratags += [(_PLACEHOLDER_TAGS[tag], "I", 1, 0, True) for tag in sub_ifds]
    extratags += [(_XMP_TAG, "B", len(xmp), xmp, True)] if xmp else []
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        samples[..., 0] if samples.shape[2] == 1 else samples,
        photometric="minisblack" if samples.shape[2] - has_alpha == 1 else "rgb",
        extrasamples=("unassalpha",) if has_alpha else None,
        compression="zlib",
        predictor=samples.dtype != np.float32,  # the float predictor needs imagecodecs
        iccprofile=icc_profile,
        resolution=dpi,
        resolutionunit="INCH" if dpi else None,
        metadata=None,
        software=False,
        extratags=extratags,
        byteorder="<",
    )
    return _append_ifds(buffer.getvalue(), sub_ifds)


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


NAME_MAX = 255
"""Longest file name, in bytes, that the usual file systems take (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)."""
_LONGEST_ENDING = len(".0123abcd.part")  # of the endings hidden_name is given (".claim", temp files')


def hidden_name(path: Path, ending: str) -> Path:
    """A hidden file beside ``path`` that belongs to it: ``.<name><ending>``, or where that would pass
    :data:`NAME_MAX` bytes, ``.<16 hex digits of the name's SHA-256><ending>`` (so every legal output name has
    its temp and claim files).

    Example:
        >>> hidden_name(Path("out/a.png"), ".claim")
        PosixPath('out/.a.png.claim')
        >>> len(hidden_name(Path("x" * 250 + ".png"), ".claim").name)
        23
    """
    stem = path.name
    if 1 + len(stem.encode("utf-8", "surrogateescape")) + _LONGEST_ENDING > NAME_MAX:
        stem = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return path.parent / f".{stem}{ending}"


def temp_path(path: Path) -> Path:
    """A new temp file name for writing ``path``: ``.<name>.<8 random hex>.part`` (:func:`hidden_name`)."""
    return hidden_name(path, f".{secrets.token_hex(4)}.part")


def temp_pattern(path: Path) -> re.Pattern[str]:
    """What the names of ``path``'s temp files (:func:`temp_path`) match, whatever their random part."""
    stem = hidden_name(path, ".").name[:-1]
    return re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{8}}\.part")


def _write_atomically(path: Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to a hidden temp file beside ``path``, fsync it and move it onto ``path``.

    Without ``overwrite`` the move is a hard link, which fails if ``path`` exists by then (another process wrote
    it since the caller looked); where the file system has no hard links, a rename after one more look.
    Whatever stops the write (an error, an interrupt at any point after the temp file was created), the temp
    file is removed: its name is new, so a file of that name is this call's.
    """
    temp = temp_path(path)
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _move(temp, path, overwrite)
    except BaseException as error:  # also KeyboardInterrupt: never leave the temp file behind
        if not isinstance(error, FileExistsError) or str(error.filename) != str(temp):
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        if isinstance(error, FileExistsError) and str(error.filename) == str(path):
            raise OutputError(f"{path}: already exists (pass overwrite=True to replace it)") from error
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from error
        raise


def _move(temp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``temp`` onto ``path``: a rename, or without ``overwrite`` a link that never replaces."""
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    except OSError:  # no hard links here (FAT, some network shares)
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temp, path)
    else:
        temp.unlink()


# ---------------------------------------------------------------------------------------------------- resizing

_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003


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
        plane = torch.from_numpy(_to_unit(alpha))[None, None].double()
        values = imresize(plane, size=(height, width))[0, 0].numpy()
        if alpha.dtype == np.float32:  # float alpha is kept as stored: clip the overshoot to its own range
            alpha = np.clip(values, alpha.min(), alpha.max()).astype(np.float32)
        else:
            alpha = _to_samples(values, alpha.itemsize * 8)
    dpi = None if image.dpi is None else (image.dpi[0] * ratio_x, image.dpi[1] * ratio_y)
    return dataclasses.replace(
        image, pixels=pixels, alpha=alpha, dpi=dpi, exif=_exif_with_size(image.exif, width, height)
    )


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


# ---------------------------------------------------------------------------------------------------- tensors


def image_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """Convert ``(H, W, C)`` float pixels to a new ``(1, C, H, W)`` float32 tensor; the one conversion point.

    Example:
        >>> image_to_tensor(np.zeros((4, 6, 3), np.float32)).shape
        torch.Size([1, 3, 4, 6])
    """
    check(
        isinstance(pixels, np.ndarray) and pixels.ndim == 3,
        "pixels",
        "an (H, W, C) array",
        getattr(pixels, "shape", type(pixels)),
    )
    return torch.from_numpy(np.array(pixels.transpose(2, 0, 1), dtype=np.float32, order="C")).unsqueeze(0)


def tensor_to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """Convert a ``(1, C, H, W)`` tensor on any device and dtype to ``(H, W, C)`` float32 pixels, unclipped.

    Example:
        >>> tensor_to_pixels(torch.zeros(1, 3, 4, 6)).shape
        (4, 6, 3)
    """
    check_shape(tensor, "1 C H W", "tensor")
    return np.ascontiguousarray(tensor.detach()[0].permute(1, 2, 0).to("cpu", torch.float32).numpy())
