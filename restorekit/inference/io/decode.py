"""Reading image files: format sniffing, the decoders, and the :class:`~restorekit.inference.io.image.Image` they
produce (upright, in ``[0, 1]``).

Every file is opened through :mod:`.files` and passes the checks of :mod:`.budget` before it is decoded; the
metadata readers are in :mod:`.metadata`.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import IO, NamedTuple

import cv2
import numpy as np
import tifffile
from PIL import Image as PILImage
from PIL import ImageCms

from restorekit._checks import check, check_choice
from restorekit.errors import InputError
from restorekit.inference.io.budget import (
    DEFAULT_MAX_PIXELS,
    _check_budget,
    _check_pixels,
    _check_single_frame,
    _file_size,
    _pil_capacity,
    _tiff_capacity,
    _tiff_frames,
)
from restorekit.inference.io.convert import _BIT_DEPTHS, _to_unit
from restorekit.inference.io.files import _input_errors, _open_input
from restorekit.inference.io.heif import _HEIF_BRANDS, _open_heif
from restorekit.inference.io.image import Image
from restorekit.inference.io.metadata import (
    _ORIENTATION,
    _PNG_XMP_KEY,
    _XMP_TAG,
    _carried_exif,
    _tiff_dpi,
    _tiff_exif,
    _upright,
    _upright_dpi,
)
from restorekit.inference.io.quality import jpeg_quality

RAW_SUFFIXES: tuple[str, ...] = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".pef",
    ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".mos", ".mrw", ".kdc", ".dcr", ".raw",
)  # fmt: skip
"""Lower-case suffixes of camera RAW files, which are refused (:func:`raw_error`) rather than read."""

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


def _check_input(condition: bool, what: str, expected: str, got: object) -> None:
    """Raise :class:`InputError` unless ``condition`` holds."""
    check(condition, what, expected, got, error=InputError)


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


def _read_heif(fh: IO[bytes], path: Path, max_pixels: int | None) -> _Decoded:
    """Decode a HEIC/HEIF file's primary image to 8 bits through pillow-heif (EXIF, ICC and XMP kept)."""
    image, notes = _open_heif(fh, path, max_pixels)
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
