"""Read and write images without losing anything, and the single ``[0, 1]`` float ↔ tensor conversion point.

Decoders, chosen per file by its content (never by its suffix):

* PNG, JPEG, WebP, BMP and 8-bit TIFF: Pillow.
* 16-bit PNG: OpenCV (libpng); Pillow would reduce 16-bit colour PNGs to 8 bits.
* 16-bit and float32 TIFF: tifffile, or OpenCV (libtiff) where tifffile lacks the codec (LZW, JPEG and the
  floating-point predictor need the optional ``imagecodecs`` package).

Encoders:

* 8-bit PNG, JPEG, WebP, BMP: Pillow.
* 16-bit PNG: a small encoder here (Paeth filter, zlib), the only way to write 16-bit gray+alpha and ICC/EXIF.
* TIFF at every depth: tifffile (Deflate; horizontal predictor for integers), EXIF IFDs appended here.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
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
from PIL import ImageCms, TiffImagePlugin, UnidentifiedImageError

from restorekit._checks import check, check_choice, check_shape, fail
from restorekit.errors import InputError, OutputError, UsageError

SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
"""Lower-case file suffixes that :func:`load_image` and :func:`save_image` handle."""

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
}
_FORMAT_DEPTHS = {"PNG": (8, 16), "TIFF": (8, 16, 32), "JPEG": (8,), "WEBP": (8,), "BMP": (8,)}
_ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
_METADATA_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
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
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
# The descriptive IFD0 tags and sub-IFDs that make up "the EXIF" of a TIFF, whose IFD0 also holds its layout.
_TIFF_EXIF_TAGS = (270, 271, 272, _ORIENTATION, 305, 306, 315, 316, 33432, _EXIF_IFD, _GPS_IFD)
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
        format: Source format: "PNG", "JPEG", "TIFF", "WEBP" or "BMP".
        icc_profile: ICC profile bytes describing ``pixels``, or ``None``.
        exif: EXIF as an APP1 payload (``b"Exif\\0\\0"`` + TIFF header + IFDs) with the orientation reset to 1,
            or ``None``.
        lossy: The source was lossily compressed (JPEG, lossy WebP); WebP output follows it (lossy or lossless).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    mode: str
    format: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    lossy: bool = False


class _Decoded(NamedTuple):
    """Samples as the decoder gave them, before orientation and scaling to ``[0, 1]``."""

    color: np.ndarray  # (H, W, C) uint8 / uint16 / float32, C = 1 or 3
    alpha: np.ndarray | None  # (H, W), same sample type
    mode: str
    orientation: int  # EXIF orientation the decoder left unapplied
    icc_profile: bytes | None
    exif: bytes | None  # already reset to orientation 1


# ---------------------------------------------------------------------------------------------------- reading


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file into ``[0, 1]`` float32 pixels plus everything needed to write it back.

    Palette images become RGB, or RGBA when they have transparency. CMYK becomes RGB through its embedded ICC
    profile to sRGB when it has one (the sRGB profile is then carried), else by ``R = (1 − C)(1 − K)`` (and
    likewise for G, B), with no profile carried. Bilevel becomes 8-bit gray. The EXIF orientation is applied.
    The file is opened read-only and never modified.

    Args:
        path: PNG, JPEG, TIFF, WebP or BMP file; the format is taken from the content, not the suffix.
        max_pixels: Refuse images with more than this many pixels (width × height), checked before decoding;
            ``None`` for no limit.

    Returns:
        The decoded :class:`Image`.

    Raises:
        InputError: The file is missing, unreadable, empty, truncated, not a supported image, animated or
            multi-page, of an unsupported mode or sample type, or larger than ``max_pixels``.

    Example:
        >>> image = load_image("photo.png")  # doctest: +SKIP
        >>> image.pixels.shape, image.bit_depth  # doctest: +SKIP
        ((480, 640, 3), 8)
    """
    path = Path(path)
    with _input_errors(path), open(path, "rb") as fh:
        image_format = _sniff_format(fh.read(16), path)
        fh.seek(0)
        if image_format == "TIFF":
            decoded = _read_tiff(fh, path, max_pixels)
        else:
            decoded = _read_with_pil(fh, path, image_format, max_pixels)
        lossy = image_format == "JPEG" or (image_format == "WEBP" and _webp_is_lossy(fh))
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
    )


def _check_decoded(path: Path, decoded: _Decoded) -> None:
    """Refuse what a decoder returns from damaged headers: empty or misshapen sample arrays."""
    color, alpha = decoded.color, decoded.alpha
    well_formed = color.ndim == 3 and color.shape[2] in (1, 3) and color.size > 0
    well_formed = well_formed and (alpha is None or alpha.shape == color.shape[:2])
    _check_input(well_formed, f"{path}: decoded samples", "an (H, W, 1|3) image of at least 1×1", color.shape)


@contextlib.contextmanager
def _input_errors(path: Path) -> Iterator[None]:
    """Turn file-system and decoder exceptions into one :class:`InputError` line naming ``path``."""
    try:
        yield
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such file") from error
    except IsADirectoryError as error:
        raise InputError(f"{path}: is a directory, expected an image file") from error
    except PermissionError as error:
        raise InputError(f"{path}: permission denied") from error
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
    raise InputError(f"{path}: not a supported image; expected PNG, JPEG, TIFF, WebP or BMP content")


def _check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image larger than ``max_pixels``; called on the header, before any decoding."""
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            f"{path}: {width}×{height} = {width * height / 1e6:.1f} MP exceeds the {max_pixels / 1e6:g} MP limit "
            f"(set {MAX_PIXELS_ENV} or --max-pixels)"
        )


def _check_single_frame(path: Path, frames: int) -> None:
    """Refuse animated and multi-page files, whose other frames would be lost."""
    if frames != 1:
        raise InputError(f"{path}: animated or multi-page ({frames} frames); only single images are supported")


def _read_with_pil(fh: IO[bytes], path: Path, image_format: str, max_pixels: int | None) -> _Decoded:
    """Decode a PNG, JPEG, WebP or BMP file (16-bit PNG samples through OpenCV)."""
    image = PILImage.open(fh, formats=[image_format])
    _check_pixels(path, *image.size, max_pixels)
    _check_single_frame(path, getattr(image, "n_frames", 1))
    image.load()  # decodes fully: truncated data raises here, and PNG metadata after the pixels is read
    exif = image.getexif()
    orientation = exif.get(_ORIENTATION, 1)
    if image_format == "PNG" and _png_bit_depth(fh) == 16:
        color, alpha, mode = _read_png16(fh, path)
        icc_profile = image.info.get("icc_profile")
    else:
        color, alpha, mode, icc_profile = _pil_samples(image, path)
    return _Decoded(color, alpha, mode, orientation, icc_profile, _carried_exif(exif, image.info))


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
    with tifffile.TiffFile(fh) as tiff:  # leaves ``fh`` open
        page = tiff.pages.first
        _check_pixels(path, page.imagewidth, page.imagelength, max_pixels)
        _check_single_frame(path, sum(1 for frame in tiff.pages if not frame.subfiletype & 1))  # not previews
        if page.dtype not in (np.dtype(np.uint8), np.dtype(bool)):
            color, alpha, mode = _tiff_samples(page, fh, path)
            return _Decoded(color, alpha, mode, page.tags.valueof(_ORIENTATION, 1), page.iccprofile, _tiff_exif(fh))
    fh.seek(0)
    image = PILImage.open(fh, formats=["TIFF"])
    image.load()  # Pillow ≥ 13 applies the orientation itself and drops the tag: apply what it left
    color, alpha, mode, icc_profile = _pil_samples(image, path)
    return _Decoded(color, alpha, mode, image.getexif().get(_ORIENTATION, 1), icc_profile, _tiff_exif(fh))


def _tiff_samples(page: tifffile.TiffPage, fh: IO[bytes], path: Path) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Decode a 16-bit or float32 gray / gray+alpha / RGB / RGBA TIFF page exactly."""
    what = f"{path}: TIFF samples"
    sample_types = (np.dtype(np.uint16), np.dtype(np.float32))
    _check_input(page.dtype in sample_types, what, "8/16-bit unsigned or float32 samples", str(page.dtype))
    photometric = tifffile.PHOTOMETRIC(page.photometric)
    check_choice(photometric.name, ["MINISBLACK", "RGB"], f"{path}: TIFF photometric", error=InputError)
    colors = 1 if photometric == tifffile.PHOTOMETRIC.MINISBLACK else 3
    extras = tuple(page.extrasamples)
    _check_input(len(extras) <= 1, what, "at most one extra (alpha) sample", f"{len(extras)} extra samples")
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
    gray_mode = "F" if page.dtype == np.float32 else "I;16"
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
    return _carried_exif(exif, {}) if len(exif) else None


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
    image: Image, path: str | Path, bit_depth: int | None = None, quality: int = 95, overwrite: bool = False
) -> None:
    """Write an image atomically, in the format its suffix names, carrying alpha, ICC profile and EXIF.

    The file is encoded in memory, written to ``.<name>.<random>.part`` in the same directory, synced and
    renamed onto ``path``, so a failure or interruption never leaves a partial output. Pixels are quantized as
    ``round(clip(x, 0, 1) · max)``; float32 TIFF is written unclipped. Alpha is written untouched when its
    sample type is the output's, rescaled otherwise. ICC and EXIF go to PNG, JPEG, TIFF and WebP (BMP holds
    neither). JPEG uses 4:4:4 chroma. WebP has no gray mode (gray is written as RGB) and is written lossless
    unless the source was lossy.

    Args:
        image: The image to write.
        path: Output file; its suffix (one of :data:`SUPPORTED_SUFFIXES`) chooses the format.
        bit_depth: 8, 16 (PNG, TIFF) or 32 (float TIFF); ``None`` keeps the image's own bit depth.
        quality: JPEG and lossy WebP quality, 1–100.
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
    check(1 <= quality <= 100, "quality", "a quality from 1 to 100", quality)
    _check_writable(path, image, image_format, depth, overwrite)
    color = _to_samples(image.pixels, depth)
    alpha = None if image.alpha is None else _alpha_samples(image.alpha, depth)
    try:
        data = _encode(image, image_format, color, alpha, quality)
    except _CODEC_ERRORS as error:
        raise OutputError(f"{path}: cannot encode as {image_format} ({' '.join(str(error).split())})") from error
    _write_atomically(path, data)


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
            f"one that {image_format} stores (set bit_depth / --bit-depth)",
            depth,
            valid=depths,
            error=OutputError,
        )
    if image.alpha is not None and image_format not in _ALPHA_FORMATS:
        fail(f"{path}: alpha", "a format that stores it", image_format, valid=_ALPHA_FORMATS, error=OutputError)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory, expected an image file path")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")


def _alpha_samples(alpha: np.ndarray, depth: int) -> np.ndarray:
    """Return alpha untouched when it already has the output's sample type, else rescaled to it."""
    if alpha.dtype == _SAMPLE_TYPES[depth]:
        return alpha
    return _to_samples(_to_unit(alpha), depth)


def _encode(image: Image, image_format: str, color: np.ndarray, alpha: np.ndarray | None, quality: int) -> bytes:
    """Encode ``(H, W, C)`` samples and an optional ``(H, W)`` alpha plane into file bytes."""
    icc_profile, exif = (image.icc_profile, image.exif) if image_format in _METADATA_FORMATS else (None, None)
    samples = color if alpha is None else np.dstack([color, alpha])
    if image_format == "TIFF":
        return _encode_tiff(samples, alpha is not None, icc_profile, exif)
    if color.dtype == np.uint16:
        return _encode_png16(samples, icc_profile, exif)
    pil_image = PILImage.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)
    options: dict = {"icc_profile": icc_profile, "exif": exif}
    if image_format == "JPEG":
        options |= {"quality": quality, "subsampling": 0}
    elif image_format == "WEBP":
        options |= {"quality": quality, "exact": True} if image.lossy else {"lossless": True, "exact": True}
    buffer = io.BytesIO()
    pil_image.save(buffer, image_format, **{key: value for key, value in options.items() if value is not None})
    return buffer.getvalue()


def _encode_tiff(samples: np.ndarray, has_alpha: bool, icc_profile: bytes | None, exif: bytes | None) -> bytes:
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
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        samples[..., 0] if samples.shape[2] == 1 else samples,
        photometric="minisblack" if samples.shape[2] - has_alpha == 1 else "rgb",
        extrasamples=("unassalpha",) if has_alpha else None,
        compression="zlib",
        predictor=samples.dtype != np.float32,  # the float predictor needs imagecodecs
        iccprofile=icc_profile,
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


def _encode_png16(samples: np.ndarray, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """Encode ``(H, W, S)`` uint16 samples (gray, gray+alpha, RGB, RGBA) as a 16-bit PNG with iCCP and eXIf."""
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    compressor = zlib.compressobj(6)
    idat = b"".join(compressor.compress(block) for block in _paeth_filtered(rows, bytes_per_pixel=2 * channels))
    idat += compressor.flush()
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    chunks += [_png_chunk(b"IDAT", idat[i : i + (1 << 20)]) for i in range(0, len(idat), 1 << 20)]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + _png_chunk(b"IEND", b"")


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


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temp file beside ``path``, fsync it and rename it onto ``path``."""
    temp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from error
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException as error:  # also KeyboardInterrupt: never leave the temp file behind
        temp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from error
        raise


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
