"""Writing image files: checks, quantization, the encoders per format, then an atomic write (:mod:`.atomic`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image as PILImage
from PIL import PngImagePlugin

from restorekit._checks import check, check_choice, fail
from restorekit.errors import OutputError
from restorekit.inference.io.atomic import _write_atomically
from restorekit.inference.io.convert import _BIT_DEPTHS, _SAMPLE_TYPES, _to_samples, _to_unit
from restorekit.inference.io.heif import _encode_heif
from restorekit.inference.io.image import _CODEC_ERRORS, _SUFFIX_FORMATS, SUPPORTED_SUFFIXES, Image
from restorekit.inference.io.metadata import (
    _DPI_FORMATS,
    _JPEG_MAX_XMP,
    _METADATA_FORMATS,
    _XMP_FORMATS,
    _append_ifds,
    _png_metadata_chunks,
    _tiff_tags,
)
from restorekit.inference.io.png16 import _encode_png16
from restorekit.inference.io.quality import output_quality

_FORMAT_DEPTHS = {"PNG": (8, 16), "TIFF": (8, 16, 32), "JPEG": (8,), "WEBP": (8,), "BMP": (8,), "HEIF": (8,)}
_ALPHA_FORMATS = ("PNG", "TIFF", "WEBP", "HEIF")


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
            f"one that {image_format} stores (set `bit_depth`)",
            depth,
            valid=depths,
            error=OutputError,
        )
    if image.alpha is not None and image_format not in _ALPHA_FORMATS:
        fail(f"{path}: alpha", "a format that stores it", image_format, valid=_ALPHA_FORMATS, error=OutputError)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory, expected an image file path")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass `overwrite=True` to replace it)")


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
    extratags, sub_ifds = _tiff_tags(exif, xmp)
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
