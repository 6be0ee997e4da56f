"""Tests for restorekit.inference.io: round trips, metadata, orientation, conversions, bad files, atomic writes.

Source files are written with independent writers (Pillow, OpenCV, tifffile, a bare PNG writer below) and
outputs are read back with independent readers, so a symmetric bug in load_image/save_image cannot hide.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage
from PIL import ImageCms, ImageOps, JpegImagePlugin, PngImagePlugin

from restorekit.errors import InputError, OutputError, UsageError
from restorekit.inference.io import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_SUFFIXES,
    Image,
    atomic,
    budget,
    convert,
    files,
    image_to_tensor,
    load_image,
    save_image,
    tensor_to_pixels,
)
from restorekit.inference.io.image import _SUFFIX_FORMATS

H, W = 16, 24
SAMPLE_TYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE, DATE_TAKEN = 0x010F, 0x9003


# ------------------------------------------------------------------------------------------------- helpers


def random_samples(channels: int, depth: int, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """(height, width, channels) samples spanning the full range of the bit depth."""
    rng = np.random.default_rng(seed)
    if depth == 32:
        return rng.random((height, width, channels), dtype=np.float32)
    top = np.iinfo(SAMPLE_TYPES[depth]).max
    samples = rng.integers(0, top + 1, (height, width, channels))
    samples.flat[:2] = (0, top)  # both extremes always present
    return samples.astype(SAMPLE_TYPES[depth])


def smooth_samples(channels: int) -> np.ndarray:
    """(H, W, channels) uint8 gradients that lossy codecs keep close."""
    y, x = np.mgrid[0:H, 0:W]
    planes = [30 + 6 * x + 4 * y + 10 * c for c in range(channels)]  # at most 248: no wrap-around edges
    return np.stack(planes, axis=-1).astype(np.uint8)


def png16_bytes(samples: np.ndarray) -> bytes:
    """A bare 16-bit PNG (filter 0) of (H, W, S) uint16 samples, S = 1..4, independent of restorekit's encoder."""
    height, width, channels = samples.shape

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    rows = samples.astype(">u2").reshape(height, -1).view(np.uint8)
    raw = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def write_source(path: Path, samples: np.ndarray, has_alpha: bool) -> Path:
    """Write (H, W, S) samples with a third-party writer chosen by suffix and sample type."""
    suffix, channels = path.suffix, samples.shape[2]
    if suffix == ".tif":
        photometric = "minisblack" if channels - has_alpha == 1 else "rgb"
        extrasamples = ("unassalpha",) if has_alpha else None
        tifffile.imwrite(
            path, samples.squeeze(2) if channels == 1 else samples, photometric=photometric, extrasamples=extrasamples
        )
    elif samples.dtype == np.uint16:
        path.write_bytes(png16_bytes(samples))
    else:
        pil = PILImage.fromarray(samples.squeeze(2) if channels == 1 else samples)
        pil.save(path, **({"lossless": True, "exact": True} if suffix == ".webp" else {}))
    return path


def read_independently(path: Path) -> np.ndarray:
    """Samples of a file as (H, W, S) in its own sample type, read by a third-party decoder."""
    if path.suffix == ".tif":
        samples = tifffile.imread(path)
    elif path.suffix == ".png" and path.read_bytes()[24] == 16:  # IHDR bit depth
        samples = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if samples.ndim == 3:
            order = {3: [2, 1, 0], 4: [2, 1, 0, 3]}[samples.shape[2]]
            samples = samples[..., order]
            if path.read_bytes()[25] == 4:  # gray+alpha comes back as BGRA
                samples = samples[..., [0, 3]]
    else:
        samples = np.asarray(PILImage.open(path))
    return samples[..., None] if samples.ndim == 2 else samples


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_unchanged(path: Path, **kwargs) -> Image:
    """load_image, asserting the input file is byte-identical afterwards."""
    before = sha256(path)
    image = load_image(path, **kwargs)
    assert sha256(path) == before
    return image


def make_exif(orientation: int | None = None) -> bytes:
    exif = PILImage.Exif()
    exif[MAKE] = "RestoreCam"
    exif.get_ifd(0x8769)[DATE_TAKEN] = "2024:05:06 07:08:09"
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def parse_exif(data: bytes | None) -> PILImage.Exif:
    exif = PILImage.Exif()
    if data:
        exif.load(data)
    return exif


def one_line_error(excinfo: pytest.ExceptionInfo, path: Path) -> str:
    message = str(excinfo.value)
    assert str(path) in message and "\n" not in message
    return message


# ------------------------------------------------------------------------------ lossless loads and round trips

# suffix, bit depth, colour channels, alpha, expected mode
LOSSLESS = [
    (".png", 8, 1, False, "L"),
    (".png", 8, 1, True, "LA"),
    (".png", 8, 3, False, "RGB"),
    (".png", 8, 3, True, "RGBA"),
    (".png", 16, 1, False, "I;16"),
    (".png", 16, 1, True, "LA"),
    (".png", 16, 3, False, "RGB"),
    (".png", 16, 3, True, "RGBA"),
    (".tif", 8, 1, False, "L"),
    (".tif", 8, 1, True, "LA"),
    (".tif", 8, 3, False, "RGB"),
    (".tif", 8, 3, True, "RGBA"),
    (".tif", 16, 1, False, "I;16"),
    (".tif", 16, 1, True, "LA"),
    (".tif", 16, 3, False, "RGB"),
    (".tif", 16, 3, True, "RGBA"),
    (".tif", 32, 1, False, "F"),
    (".tif", 32, 1, True, "LA"),
    (".tif", 32, 3, False, "RGB"),
    (".tif", 32, 3, True, "RGBA"),
    (".webp", 8, 3, False, "RGB"),
    (".webp", 8, 3, True, "RGBA"),
    (".bmp", 8, 1, False, "L"),
    (".bmp", 8, 3, False, "RGB"),
]


def case_id(case: tuple) -> str:
    suffix, depth, channels, alpha, _ = case
    return f"{suffix[1:]}-{depth}bit-{'gray' if channels == 1 else 'rgb'}{'+alpha' if alpha else ''}"


@pytest.mark.parametrize("case", LOSSLESS, ids=[case_id(c) for c in LOSSLESS])
def test_load_decodes_exact_samples(tmp_path, case):
    suffix, depth, channels, has_alpha, mode = case
    samples = random_samples(channels + has_alpha, depth)
    image = load_unchanged(write_source(tmp_path / f"in{suffix}", samples, has_alpha))

    top = 1.0 if depth == 32 else float(np.iinfo(samples.dtype).max)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (H, W, channels)
    np.testing.assert_array_equal(image.pixels, samples[..., :channels].astype(np.float32) / np.float32(top))
    assert (image.bit_depth, image.mode, image.format) == (depth, mode, _SUFFIX_FORMATS[suffix])
    if has_alpha:
        assert image.alpha.dtype == samples.dtype
        np.testing.assert_array_equal(image.alpha, samples[..., channels])
    else:
        assert image.alpha is None


@pytest.mark.parametrize("case", LOSSLESS, ids=[case_id(c) for c in LOSSLESS])
def test_round_trip_is_exact_and_keeps_bit_depth(tmp_path, case):
    suffix, depth, channels, has_alpha, mode = case
    samples = random_samples(channels + has_alpha, depth, seed=1)
    image = load_unchanged(write_source(tmp_path / f"in{suffix}", samples, has_alpha))

    save_image(image, tmp_path / f"out{suffix}")
    written = read_independently(tmp_path / f"out{suffix}")
    assert written.dtype == samples.dtype
    np.testing.assert_array_equal(written, samples)
    again = load_unchanged(tmp_path / f"out{suffix}")
    np.testing.assert_array_equal(again.pixels, image.pixels)
    assert (again.bit_depth, again.mode) == (depth, mode)
    if has_alpha:
        assert again.alpha.dtype == image.alpha.dtype
        np.testing.assert_array_equal(again.alpha, image.alpha)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_every_16bit_value_survives(tmp_path, suffix):
    samples = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    image = load_unchanged(write_source(tmp_path / f"in{suffix}", samples, has_alpha=False))
    save_image(image, tmp_path / f"out{suffix}")
    np.testing.assert_array_equal(read_independently(tmp_path / f"out{suffix}"), samples)


@pytest.mark.parametrize(("height", "width", "channels"), [(1, 1, 1), (1, 7, 2), (5, 1, 3), (300, 3, 4), (400, 400, 4)])
def test_png16_encoder_shapes(tmp_path, height, width, channels):
    # 300 rows cross the encoder's 256-row filter blocks; 400×400 noise needs several 1 MiB IDAT chunks
    samples = random_samples(channels, 16, seed=15, height=height, width=width)
    color, alpha = (samples, None) if channels in (1, 3) else (samples[..., :-1], samples[..., -1])
    save_image(Image(convert._to_unit(color), alpha, 16, "x", "PNG"), tmp_path / "out.png")
    np.testing.assert_array_equal(read_independently(tmp_path / "out.png"), samples)


def test_float_tiff_keeps_values_outside_unit_range(tmp_path):
    samples = np.array([[-0.5, 0.0, 1e-8], [0.25, 1.0, 3.75]], np.float32)[..., None]
    image = load_unchanged(write_source(tmp_path / "in.tif", samples, has_alpha=False))
    np.testing.assert_array_equal(image.pixels, samples)
    save_image(image, tmp_path / "out.tif")
    np.testing.assert_array_equal(read_independently(tmp_path / "out.tif"), samples)


@pytest.mark.parametrize(
    ("suffix", "channels", "has_alpha"),
    [(".jpg", 1, False), (".jpg", 3, False), (".webp", 3, False), (".webp", 3, True)],
)
def test_lossy_formats_round_trip_within_tolerance(tmp_path, suffix, channels, has_alpha):
    samples = smooth_samples(channels + has_alpha)
    source = tmp_path / f"in{suffix}"
    PILImage.fromarray(samples.squeeze(2) if samples.shape[2] == 1 else samples).save(source, quality=92)
    image = load_unchanged(source)
    expected = samples[..., :channels] / 255
    assert image.lossy and image.bit_depth == 8 and image.pixels.shape == (H, W, channels)
    assert np.abs(image.pixels - expected).mean() < 0.02
    if has_alpha:  # WebP compresses alpha losslessly even in lossy files
        np.testing.assert_array_equal(image.alpha, samples[..., channels])

    save_image(image, tmp_path / f"out{suffix}", quality=92)
    again = load_unchanged(tmp_path / f"out{suffix}")
    assert np.abs(again.pixels - expected).mean() < 0.03
    if has_alpha:
        np.testing.assert_array_equal(again.alpha, image.alpha)


def test_lzw_16bit_tiff_falls_back_to_opencv(tmp_path):
    samples = random_samples(3, 16, seed=2)
    ok, encoded = cv2.imencode(".tiff", samples[..., ::-1])  # OpenCV writes LZW, which tifffile cannot decode alone
    assert ok
    path = tmp_path / "lzw.tif"
    path.write_bytes(encoded.tobytes())
    assert tifffile.TiffFile(path).pages.first.compression == tifffile.COMPRESSION.LZW
    image = load_unchanged(path)
    assert image.bit_depth == 16
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 16), samples)


def test_planar_16bit_tiff(tmp_path):
    samples = random_samples(3, 16, seed=3)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(samples, -1, 0), photometric="rgb", planarconfig="separate")
    image = load_unchanged(tmp_path / "planar.tif")
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 16), samples)


@pytest.mark.parametrize("suffix", (*SUPPORTED_SUFFIXES, ".PNG", ".Tif"))
def test_every_suffix_writes_its_format(tmp_path, suffix):
    image = Image(smooth_samples(3) / np.float32(255), None, 8, "RGB", "PNG")
    save_image(image, tmp_path / f"out{suffix}")
    assert load_unchanged(tmp_path / f"out{suffix}").format == _SUFFIX_FORMATS[suffix.lower()]


def test_encoder_settings(tmp_path):
    image = Image(smooth_samples(3) / np.float32(255), None, 16, "RGB", "PNG")
    save_image(image, tmp_path / "out.tif")
    page = tifffile.TiffFile(tmp_path / "out.tif").pages.first
    assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert page.predictor == tifffile.PREDICTOR.HORIZONTAL
    save_image(image, tmp_path / "out.jpg", bit_depth=8)
    assert JpegImagePlugin.get_sampling(PILImage.open(tmp_path / "out.jpg")) == 0  # 4:4:4, no chroma subsampling


def test_format_comes_from_content_not_suffix(tmp_path):
    path = write_source(tmp_path / "in.png", random_samples(3, 8), has_alpha=False).rename(tmp_path / "really.jpg")
    assert load_unchanged(path).format == "PNG"


# ------------------------------------------------------------------------------------------ bit-depth changes


def test_16_to_8_bit_rounds_pixels_and_rescales_alpha(tmp_path):
    samples = random_samples(4, 16, seed=4)
    image = load_unchanged(write_source(tmp_path / "in.png", samples, has_alpha=True))
    save_image(image, tmp_path / "out.png", bit_depth=8)
    written = read_independently(tmp_path / "out.png")
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, np.round(samples / 65535 * 255).astype(np.uint8))


def test_8_to_16_bit_is_exact(tmp_path):
    samples = random_samples(2, 8, seed=5)
    image = load_unchanged(write_source(tmp_path / "in.png", samples, has_alpha=True))
    save_image(image, tmp_path / "out.tif", bit_depth=16)
    np.testing.assert_array_equal(read_independently(tmp_path / "out.tif"), samples.astype(np.uint16) * 257)


def test_float_to_16_bit_clips_and_rounds(tmp_path):
    pixels = np.array([[-0.2, 0.5, 1.3]], np.float32)[..., None]
    alpha = np.array([[0.0, 0.25, 1.0]], np.float32)
    save_image(Image(pixels, alpha, 32, "LA", "TIFF"), tmp_path / "out.png", bit_depth=16)
    written = read_independently(tmp_path / "out.png")
    np.testing.assert_array_equal(written[..., 0], [[0, 32768, 65535]])
    np.testing.assert_array_equal(written[..., 1], [[0, 16384, 65535]])


@pytest.mark.parametrize(("suffix", "depth"), [(".jpg", 16), (".webp", 16), (".bmp", 16), (".png", 32), (".jpg", 32)])
def test_bit_depth_the_format_cannot_hold_is_refused(tmp_path, suffix, depth):
    image = Image(np.zeros((H, W, 3), np.float32), None, depth, "RGB", "TIFF")
    with pytest.raises(OutputError, match="bit depth") as excinfo:
        save_image(image, tmp_path / f"out{suffix}")
    one_line_error(excinfo, tmp_path / f"out{suffix}")
    with pytest.raises(OutputError):
        save_image(Image(image.pixels, None, 8, "RGB", "PNG"), tmp_path / f"out{suffix}", bit_depth=depth)
    assert list(tmp_path.iterdir()) == []


def test_invalid_arguments_are_usage_errors(tmp_path):
    image = Image(np.zeros((H, W, 3), np.float32), None, 8, "RGB", "PNG")
    with pytest.raises(UsageError, match="bit_depth"):
        save_image(image, tmp_path / "out.png", bit_depth=12)
    with pytest.raises(UsageError, match="quality"):
        save_image(image, tmp_path / "out.jpg", quality=0)
    with pytest.raises(UsageError, match="pixels"):
        save_image(Image(np.zeros((H, W, 2), np.float32), None, 8, "LA", "PNG"), tmp_path / "out.png")
    with pytest.raises(UsageError, match="alpha"):
        save_image(Image(image.pixels, np.zeros((H, W + 1), np.uint8), 8, "RGBA", "PNG"), tmp_path / "out.png")


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_alpha_into_a_format_without_alpha_is_refused(tmp_path, suffix):
    image = Image(np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.uint8), 8, "RGBA", "PNG")
    with pytest.raises(OutputError, match="alpha"):
        save_image(image, tmp_path / f"out{suffix}")


# --------------------------------------------------------------------------------------------- ICC and EXIF

METADATA_OUTPUTS = [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8), (".tif", 16), (".tif", 32), (".webp", 8)]


@pytest.mark.parametrize(("suffix", "depth"), METADATA_OUTPUTS, ids=[f"{s[1:]}-{d}" for s, d in METADATA_OUTPUTS])
def test_icc_and_exif_are_carried(tmp_path, suffix, depth):
    pixels = smooth_samples(3) / np.float32(255)
    save_image(Image(pixels, None, depth, "RGB", "PNG", SRGB_ICC, make_exif()), tmp_path / f"out{suffix}")
    image = load_unchanged(tmp_path / f"out{suffix}")
    assert image.icc_profile == SRGB_ICC
    exif = parse_exif(image.exif)
    assert image.exif.startswith(b"Exif\x00\x00")
    assert exif[MAKE] == "RestoreCam" and exif.get_ifd(0x8769)[DATE_TAKEN] == "2024:05:06 07:08:09"
    if depth == 32:  # Pillow cannot open float RGB TIFF: check the tags with tifffile
        with tifffile.TiffFile(tmp_path / f"out{suffix}") as tif:
            page = tif.pages.first
            assert page.iccprofile == SRGB_ICC and page.tags["Make"].value == "RestoreCam"
            assert page.tags["ExifTag"].value["DateTimeOriginal"] == "2024:05:06 07:08:09"
    else:
        written = PILImage.open(tmp_path / f"out{suffix}")
        assert written.info["icc_profile"] == SRGB_ICC and written.getexif()[MAKE] == "RestoreCam"


def test_bmp_drops_metadata_silently(tmp_path):
    save_image(
        Image(np.zeros((H, W, 3), np.float32), None, 8, "RGB", "PNG", SRGB_ICC, make_exif()), tmp_path / "out.bmp"
    )
    image = load_unchanged(tmp_path / "out.bmp")
    assert image.icc_profile is None and image.exif is None


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_metadata_is_read_from_third_party_files(tmp_path, suffix):
    source = tmp_path / f"in{suffix}"
    PILImage.fromarray(smooth_samples(3)).save(source, icc_profile=SRGB_ICC, exif=make_exif())
    image = load_unchanged(source)
    assert image.icc_profile == SRGB_ICC
    exif = parse_exif(image.exif)
    assert exif[MAKE] == "RestoreCam" and exif.get_ifd(0x8769)[DATE_TAKEN] == "2024:05:06 07:08:09"


def test_tiff_exif_leaves_out_layout_tags(tmp_path):
    source = tmp_path / "in.tif"
    PILImage.fromarray(smooth_samples(3)).save(source, exif=make_exif())
    exif = parse_exif(load_unchanged(source).exif)
    assert exif[MAKE] == "RestoreCam"
    assert not {256, 257, 273, 279} & set(exif)  # width, height, strip offsets / byte counts belong to the source


# ----------------------------------------------------------------------------------- DPI, XMP and PNG text

XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
TEXT = {"Title": "a noisy photo", "Author": "Zoë Ünïcode 写真"}
EXTRAS_OUTPUTS = [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8), (".tif", 16), (".webp", 8), (".bmp", 8)]


def with_extras(depth: int = 8) -> Image:
    pixels = smooth_samples(3) / np.float32(255)
    return Image(pixels, None, depth, "RGB", "PNG", dpi=(300.0, 150.0), xmp=XMP, text=TEXT)


@pytest.mark.parametrize(("suffix", "depth"), EXTRAS_OUTPUTS, ids=[f"{s[1:]}-{d}" for s, d in EXTRAS_OUTPUTS])
def test_dpi_xmp_and_text_round_trip_where_the_format_holds_them(tmp_path, suffix, depth):
    path = tmp_path / f"out{suffix}"
    save_image(with_extras(depth), path)
    image = load_unchanged(path)
    fmt = image.format
    if fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        assert image.dpi == pytest.approx((300, 150), abs=0.03)
        with tifffile.TiffFile(path) if fmt == "TIFF" else PILImage.open(path) as written:  # independent readers
            dpi = written.pages.first.resolution if fmt == "TIFF" else written.info["dpi"]
        assert dpi == pytest.approx((300, 150), abs=0.03)
    else:
        assert image.dpi is None
    assert image.xmp == (None if fmt == "BMP" else XMP)
    assert image.text == (TEXT if fmt == "PNG" else None)
    if fmt == "PNG":
        written = PILImage.open(path)
        written.load()
        assert {k: v for k, v in written.text.items() if k != "XML:com.adobe.xmp"} == TEXT


def test_metadata_is_read_from_third_party_pngs_and_tiffs(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "zipped " * 20, zip=True)
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    PILImage.fromarray(smooth_samples(3)).save(tmp_path / "in.png", pnginfo=info, dpi=(72, 72))
    image = load_unchanged(tmp_path / "in.png")
    assert image.text == {"Comment": "zipped " * 20} and image.xmp == XMP
    assert image.dpi == pytest.approx((72, 72), abs=0.01)
    samples = random_samples(3, 16)
    tags = [(700, "B", len(XMP), XMP, True)]
    tifffile.imwrite(
        tmp_path / "in.tif",
        samples,
        photometric="rgb",
        resolution=(40, 20),
        resolutionunit="CENTIMETER",
        extratags=tags,
    )
    image = load_unchanged(tmp_path / "in.tif")
    assert image.dpi == pytest.approx((101.6, 50.8)) and image.xmp == XMP
    tifffile.imwrite(tmp_path / "plain.tif", samples, photometric="rgb")  # tifffile: unit none, (1, 1)
    assert load_unchanged(tmp_path / "plain.tif").dpi is None


@pytest.mark.parametrize("kind", ["jpg", "tif8", "tif16"])
def test_dpi_turns_with_the_orientation(tmp_path, kind):
    samples = random_samples(3, 16 if kind == "tif16" else 8)
    path = tmp_path / f"in.{kind[:3]}"
    if kind == "jpg":
        PILImage.fromarray(samples).save(path, dpi=(300, 150), exif=make_exif(orientation=6))
    else:
        extratags = [(274, "H", 1, 6, True)]
        tifffile.imwrite(
            path, samples, photometric="rgb", resolution=(300, 150), resolutionunit="INCH", extratags=extratags
        )
    image = load_image(path)
    assert image.pixels.shape[:2] == (W, H) and image.dpi == pytest.approx((150, 300))


def test_a_stale_layout_description_is_not_carried(tmp_path):
    source = tmp_path / "in.tif"
    tifffile.imwrite(source, random_samples(3, 16), photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    with tifffile.TiffFile(source) as tif:
        assert tif.pages.first.description.startswith('{"shape": [16, 24')  # tifffile's own record of the layout
    image = load_image(source)
    assert image.pixels.shape[:2] == (W, H)
    save_image(image, tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert "shape" not in tif.pages.first.description and tif.pages.first.shape[:2] == (W, H)


# ----------------------------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    source = tmp_path / "in.png"
    PILImage.fromarray(random_samples(3, 8, seed=orientation)).save(source, exif=make_exif(orientation))
    image = load_unchanged(source)
    expected = np.asarray(ImageOps.exif_transpose(PILImage.open(source)))
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 8), expected)
    exif = parse_exif(image.exif)
    assert exif[0x0112] == 1 and exif[MAKE] == "RestoreCam"


def rotated_clockwise(samples: np.ndarray) -> np.ndarray:
    return np.rot90(samples, -1)


@pytest.mark.parametrize("kind", ["png16", "tif8", "tif16", "jpg"])
def test_orientation_6_rotates_clockwise_on_every_decoder(tmp_path, kind):
    samples = random_samples(4, 16 if kind.endswith("16") else 8, seed=6)
    if kind == "png16":
        path = tmp_path / "in.png"
        save_image(
            Image(convert._to_unit(samples[..., :3]), samples[..., 3], 16, "RGBA", "PNG", exif=make_exif(6)), path
        )
    elif kind.startswith("tif"):
        path = tmp_path / "in.tif"
        tifffile.imwrite(
            path, samples, photometric="rgb", extrasamples=("unassalpha",), extratags=[(274, "H", 1, 6, True)]
        )
    else:
        path = tmp_path / "in.jpg"
        samples = smooth_samples(3)
        PILImage.fromarray(samples).save(path, exif=make_exif(6), quality=95)
    image = load_unchanged(path)
    assert image.pixels.shape[:2] == (W, H)
    expected = rotated_clockwise(samples)
    if kind == "jpg":
        assert np.abs(image.pixels - expected / 255).mean() < 0.02
    else:
        np.testing.assert_array_equal(convert._to_samples(image.pixels, image.bit_depth), expected[..., :3])
        np.testing.assert_array_equal(image.alpha, expected[..., 3])
    assert parse_exif(image.exif).get(0x0112, 1) == 1


def test_saved_image_is_upright_without_orientation(tmp_path):
    source = tmp_path / "in.png"
    samples = random_samples(3, 8, seed=7)
    PILImage.fromarray(samples).save(source, exif=make_exif(8))
    save_image(load_unchanged(source), tmp_path / "out.png")
    written = PILImage.open(tmp_path / "out.png")
    assert written.getexif()[0x0112] == 1
    np.testing.assert_array_equal(np.asarray(written), np.rot90(samples, 1))


# ------------------------------------------------------------------------------------ palette, CMYK, bilevel


def palette_image(transparent_index: int | None) -> tuple[PILImage.Image, np.ndarray, np.ndarray]:
    indices = (np.arange(H * W).reshape(H, W) % 4).astype(np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [17, 34, 51]], np.uint8)
    pil = PILImage.fromarray(indices, "P")
    pil.putpalette(palette.ravel().tolist())
    if transparent_index is not None:
        pil.info["transparency"] = transparent_index
    return pil, indices, palette


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_palette_becomes_rgb(tmp_path, suffix):
    pil, indices, palette = palette_image(None)
    pil.save(tmp_path / f"in{suffix}")
    image = load_unchanged(tmp_path / f"in{suffix}")
    assert image.mode == "P" and image.alpha is None
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 8), palette[indices])


def test_palette_with_transparency_becomes_rgba(tmp_path):
    pil, indices, palette = palette_image(transparent_index=3)
    pil.save(tmp_path / "in.png", transparency=3)
    image = load_unchanged(tmp_path / "in.png")
    assert image.mode == "P" and image.alpha.dtype == np.uint8
    np.testing.assert_array_equal(image.alpha, np.where(indices == 3, 0, 255))
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 8), palette[indices])


def cmyk_samples() -> np.ndarray:
    rng = np.random.default_rng(8)
    return rng.integers(0, 256, (H, W, 4)).astype(np.uint8)


def cmyk_formula(cmyk: np.ndarray) -> np.ndarray:
    c = cmyk.astype(np.float64)
    return np.round((255 - c[..., :3]) * (255 - c[..., 3:]) / 255).astype(np.uint8)


def test_cmyk_tiff_without_profile_uses_the_formula(tmp_path):
    cmyk = cmyk_samples()
    PILImage.fromarray(cmyk, "CMYK").save(tmp_path / "in.tif")
    image = load_unchanged(tmp_path / "in.tif")
    assert image.mode == "CMYK" and image.pixels.shape == (H, W, 3) and image.icc_profile is None
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 8), cmyk_formula(cmyk))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    y, x = np.mgrid[0:H, 0:W]
    cmyk = np.stack([8 * x, 10 * y, 4 * x + 4 * y, np.full_like(x, 30)], axis=-1).astype(np.uint8)
    PILImage.fromarray(cmyk, "CMYK").save(tmp_path / "in.jpg", quality=95)
    image = load_unchanged(tmp_path / "in.jpg")
    assert image.mode == "CMYK" and image.pixels.shape == (H, W, 3)
    assert np.abs(image.pixels - cmyk_formula(cmyk) / 255).mean() < 0.02


def test_cmyk_with_unusable_profile_falls_back_to_the_formula(tmp_path):
    cmyk = cmyk_samples()
    PILImage.fromarray(cmyk, "CMYK").save(tmp_path / "in.tif", icc_profile=SRGB_ICC)  # an RGB profile: unusable
    image = load_unchanged(tmp_path / "in.tif")
    assert image.icc_profile is None
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 8), cmyk_formula(cmyk))


def test_cmyk_with_profile_converts_through_it_to_srgb(tmp_path, monkeypatch):
    calls = []

    def fake_profile_to_profile(image, source, target, outputMode):
        calls.append((image.mode, source.profile.xcolor_space, target.profile.xcolor_space, outputMode))
        return PILImage.new("RGB", image.size, (1, 2, 3))

    monkeypatch.setattr(ImageCms, "profileToProfile", fake_profile_to_profile)
    PILImage.fromarray(cmyk_samples(), "CMYK").save(tmp_path / "in.tif", icc_profile=SRGB_ICC)
    image = load_unchanged(tmp_path / "in.tif")
    assert calls == [("CMYK", "RGB ", "RGB ", "RGB")]
    np.testing.assert_array_equal(convert._to_samples(image.pixels, 8)[0, 0], [1, 2, 3])
    profile = ImageCms.ImageCmsProfile(io.BytesIO(image.icc_profile)).profile  # sRGB now describes the pixels
    assert profile.xcolor_space == "RGB " and "sRGB" in profile.profile_description


def test_bilevel_becomes_gray(tmp_path):
    bits = np.arange(H * W).reshape(H, W) % 3 == 0
    PILImage.fromarray(bits).save(tmp_path / "in.png")
    image = load_unchanged(tmp_path / "in.png")
    assert image.mode == "1" and image.bit_depth == 8
    np.testing.assert_array_equal(image.pixels[..., 0], bits.astype(np.float32))


# ----------------------------------------------------------------------------------------- WebP compression


def test_webp_output_follows_the_source_compression(tmp_path):
    png = load_unchanged(write_source(tmp_path / "in.png", random_samples(3, 8), has_alpha=False))
    save_image(png, tmp_path / "from_png.webp")
    assert b"VP8L" in (tmp_path / "from_png.webp").read_bytes()[:64]
    np.testing.assert_array_equal(load_unchanged(tmp_path / "from_png.webp").pixels, png.pixels)

    PILImage.fromarray(smooth_samples(3)).save(tmp_path / "in.jpg")
    jpeg = load_unchanged(tmp_path / "in.jpg")
    save_image(jpeg, tmp_path / "from_jpg.webp")
    assert b"VP8 " in (tmp_path / "from_jpg.webp").read_bytes()[:64]
    assert load_unchanged(tmp_path / "from_jpg.webp").lossy


def test_gray_webp_is_written_as_rgb(tmp_path):
    image = load_unchanged(write_source(tmp_path / "in.png", random_samples(1, 8), has_alpha=False))
    save_image(image, tmp_path / "out.webp")
    again = load_unchanged(tmp_path / "out.webp")
    np.testing.assert_array_equal(again.pixels, np.repeat(image.pixels, 3, axis=2))


# -------------------------------------------------------------------------------------------- paths and limits


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_non_ascii_paths(tmp_path, suffix):
    folder = tmp_path / "фото 写真"
    folder.mkdir()
    samples = random_samples(3, 16, seed=9)
    source = write_source(folder / f"снимок é{suffix}", samples, has_alpha=False)
    image = load_unchanged(source)
    save_image(image, folder / f"выход ü{suffix}")
    np.testing.assert_array_equal(load_unchanged(folder / f"выход ü{suffix}").pixels, image.pixels)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming width × height 8-bit gray pixels, with (far too little) data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(bomb_png(30000, 30000))
    assert PILImage.MAX_IMAGE_PIXELS is None  # Pillow's own check must not fire first
    with pytest.raises(InputError) as excinfo:
        load_unchanged(path)
    message = one_line_error(excinfo, path)
    assert f"30000×30000 = 900.0 MP exceeds the limit of {DEFAULT_MAX_PIXELS / 1e6:.1f} MP" in message
    assert "max_pixels" in message and "RESTOREKIT_MAX_PIXELS" in message and "--" not in message


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp", ".bmp"])
def test_pixel_limit_is_configurable(tmp_path, suffix):
    source = tmp_path / f"in{suffix}"
    PILImage.fromarray(smooth_samples(3)).save(source)
    assert load_unchanged(source, max_pixels=H * W).pixels.shape == (H, W, 3)
    assert load_unchanged(source, max_pixels=None).pixels.shape == (H, W, 3)
    with pytest.raises(InputError, match="exceeds"):
        load_unchanged(source, max_pixels=H * W - 1)


def test_pixel_limit_from_environment(monkeypatch):
    monkeypatch.delenv("RESTOREKIT_MAX_PIXELS", raising=False)
    assert budget._max_pixels_from_env() == 200_000_000
    monkeypatch.setenv("RESTOREKIT_MAX_PIXELS", "1234")
    assert budget._max_pixels_from_env() == 1234
    monkeypatch.setenv("RESTOREKIT_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="RESTOREKIT_MAX_PIXELS"):
        budget._max_pixels_from_env()


# ------------------------------------------------------------------------------------------------- bad inputs


def valid_bytes(kind: str) -> bytes:
    buffer = io.BytesIO()
    if kind == "png16":
        return png16_bytes(random_samples(3, 16))
    if kind == "tif16":
        tifffile.imwrite(buffer, random_samples(3, 16), photometric="rgb")
    else:
        fmt = {"png": "PNG", "jpg": "JPEG", "tif": "TIFF", "webp": "WEBP", "bmp": "BMP"}[kind]
        PILImage.fromarray(random_samples(3, 8)).save(buffer, fmt)
    return buffer.getvalue()


KINDS = ["png", "png16", "jpg", "tif", "tif16", "webp", "bmp"]


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_file(tmp_path, kind):
    data = valid_bytes(kind)
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(InputError) as excinfo:
        load_unchanged(path)
    one_line_error(excinfo, path)


@pytest.mark.filterwarnings("ignore:Tag data larger than file")  # Pillow, on damaged TIFF tags
@pytest.mark.parametrize("kind", KINDS)
def test_corrupted_bytes_give_input_error_or_an_image(tmp_path, kind):
    data = valid_bytes(kind)
    rng = np.random.default_rng(10)
    for trial in range(6):
        corrupted = bytearray(data)
        positions = rng.integers(8, len(data), 4)
        corrupted[positions[0] : positions[0] + 1 + trial] = rng.integers(0, 256, 1 + trial, dtype=np.uint8).tobytes()
        for position in positions[1:]:
            corrupted[position] ^= 0xFF
        path = tmp_path / f"bad{trial}.{kind}"
        path.write_bytes(bytes(corrupted))
        try:
            image = load_unchanged(path)
        except InputError as error:
            assert str(path) in str(error) and "\n" not in str(error)
        else:
            assert image.pixels.dtype == np.float32 and image.pixels.ndim == 3


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.png", b"", "empty file"),
        (
            "noise.png",
            np.random.default_rng(11).integers(0, 256, 500, dtype=np.uint8).tobytes(),
            "not a supported image",
        ),
        ("notes.jpg", "just some text, не изображение\n".encode(), "not a supported image"),
        ("fake.tif", b"II*\x00" + b"\xff" * 40, "corrupt"),
        ("header_only.png", b"\x89PNG\r\n\x1a\n", "header"),
    ],
)
def test_not_an_image(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=fragment) as excinfo:
        load_unchanged(path)
    one_line_error(excinfo, path)


def test_gif_is_not_a_supported_format(tmp_path):
    path = tmp_path / "anim.gif"
    PILImage.fromarray(smooth_samples(3)).save(path)
    with pytest.raises(InputError, match="not a supported image"):
        load_unchanged(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file") as excinfo:
        load_image(tmp_path / "missing.png")
    one_line_error(excinfo, tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory") as excinfo:
        load_image(tmp_path)
    one_line_error(excinfo, tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = write_source(tmp_path / "locked.png", random_samples(3, 8), has_alpha=False)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_permission_denied_reading_as_any_user(tmp_path, monkeypatch):
    path = write_source(tmp_path / "locked.png", random_samples(3, 8), has_alpha=False)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "open", denied, raising=False)  # the module's built-in open
    with pytest.raises(InputError, match="permission denied") as excinfo:
        load_image(path)
    one_line_error(excinfo, path)


def unsupported_files(path: Path) -> None:
    """Write an image in a layout load_image must refuse, chosen by the file name."""
    rng = np.random.default_rng(12)
    frames = [PILImage.fromarray(np.roll(smooth_samples(3), 8 * i, axis=1)) for i in range(3)]  # distinct frames
    name = path.stem
    if name == "multipage":
        tifffile.imwrite(path, np.zeros((2, H, W), np.uint8))
    elif name in ("animated_png", "animated_webp"):
        frames[0].save(path, save_all=True, append_images=frames[1:])
    elif name == "int16":
        tifffile.imwrite(path, rng.integers(-100, 100, (H, W)).astype(np.int16))
    elif name == "float64":
        tifffile.imwrite(path, rng.random((H, W)))
    elif name == "cmyk16":
        tifffile.imwrite(path, rng.integers(0, 65535, (H, W, 4)).astype(np.uint16), photometric="separated")
    elif name == "two_extra_samples":
        tifffile.imwrite(path, random_samples(5, 16), photometric="rgb", extrasamples=("unassalpha", "unspecified"))
    elif name == "premultiplied":
        tifffile.imwrite(path, random_samples(4, 16), photometric="rgb", extrasamples=("assocalpha",))
    elif name == "lab":
        tifffile.imwrite(path, random_samples(3, 8), photometric="cielab")
    elif name == "nan":
        tifffile.imwrite(path, np.full((H, W), np.nan, np.float32))


UNSUPPORTED = [
    ("multipage.tif", "2 frames"),
    ("animated_png.png", "3 frames"),
    ("animated_webp.webp", "3 frames"),
    ("int16.tif", "int16"),
    ("float64.tif", "float64"),
    ("cmyk16.tif", "SEPARATED"),
    ("two_extra_samples.tif", "2 extra samples"),
    ("premultiplied.tif", "premultiplied"),
    ("lab.tif", "LAB"),
    ("nan.tif", "NaN"),
]


@pytest.mark.parametrize(("name", "fragment"), UNSUPPORTED)
def test_unsupported_layouts_are_refused(tmp_path, name, fragment):
    path = tmp_path / name
    unsupported_files(path)
    with pytest.raises(InputError, match=fragment) as excinfo:
        load_unchanged(path)
    one_line_error(excinfo, path)


@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_extra_samples_beyond_alpha_are_refused_at_every_depth(tmp_path, depth):
    path = tmp_path / f"extras{depth}.tif"
    tifffile.imwrite(path, random_samples(5, depth), photometric="rgb", extrasamples=("unassalpha", "unspecified"))
    with pytest.raises(InputError, match=r"TIFF extra samples: expected at most one \(alpha\)") as excinfo:
        load_unchanged(path)
    assert "2 extra samples (alpha, unspecified)" in one_line_error(excinfo, path)


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
def test_one_unspecified_tiff_extra_sample_is_kept_as_alpha_at_every_depth(tmp_path, depth, channels):
    path = tmp_path / f"x{channels}_{depth}.tif"
    samples = random_samples(channels + 1, depth)
    photometric = "rgb" if channels == 3 else "minisblack"
    tifffile.imwrite(path, samples, photometric=photometric, planarconfig="contig", extrasamples=("unspecified",))
    image = load_unchanged(path)
    assert image.bit_depth == depth and image.pixels.shape[2] == channels and image.mode[-1] == "A"
    np.testing.assert_array_equal(image.alpha, samples[..., -1])
    np.testing.assert_array_equal(image.pixels, samples[..., :channels] / np.float32(2**depth - 1))


# -------------------------------------------------------------------------------------------- atomic writing


def rgb_image() -> Image:
    return Image(smooth_samples(3) / np.float32(255), None, 8, "RGB", "PNG")


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists") as excinfo:
        save_image(rgb_image(), path)
    one_line_error(excinfo, path)
    assert path.read_bytes() == b"keep me"
    save_image(rgb_image(), path, overwrite=True)
    np.testing.assert_array_equal(load_unchanged(path).pixels, rgb_image().pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_output_file_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        save_image(rgb_image(), tmp_path / "out.png")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o644


@pytest.mark.parametrize("overwrite", [False, True])
def test_writes_through_a_hidden_temp_file_in_the_same_directory(tmp_path, monkeypatch, overwrite):
    moves = []
    for name in ("replace", "link"):  # a link where nothing may be replaced, a rename otherwise
        real = getattr(os, name)

        def recording(source, target, real=real):
            moves.append((Path(source), Path(target)))
            real(source, target)

        monkeypatch.setattr(os, name, recording)
    save_image(rgb_image(), tmp_path / "out.png", overwrite=overwrite)
    [(temp, target)] = moves
    assert target == tmp_path / "out.png" and temp.parent == tmp_path
    assert temp.name.startswith(".out.png.") and temp.name.endswith(".part")
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_no_files(tmp_path, monkeypatch, failure):
    def failing_fsync(descriptor):
        raise failure

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OutputError if isinstance(failure, OSError) else KeyboardInterrupt) as excinfo:
        save_image(rgb_image(), tmp_path / "out.png")
    if isinstance(failure, OSError):
        assert "No space left on device" in one_line_error(excinfo, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_failed_encode_leaves_no_files(tmp_path):
    image = rgb_image()
    image.exif = b"Exif\x00\x00garbage"
    with pytest.raises(OutputError, match="cannot encode"):
        save_image(image, tmp_path / "out.tif")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["missing_dir", "parent_is_file", "target_is_dir"])
def test_unwritable_destinations(tmp_path, where):
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()
    path = {
        "missing_dir": tmp_path / "nope" / "out.png",
        "parent_is_file": tmp_path / "file" / "out.png",
        "target_is_dir": tmp_path / "dir.png",
    }[where]
    with pytest.raises(OutputError) as excinfo:
        save_image(rgb_image(), path, overwrite=True)
    one_line_error(excinfo, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "file"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_directory(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            save_image(rgb_image(), folder / "out.png")
    finally:
        folder.chmod(stat.S_IRWXU)


def test_permission_denied_writing_as_any_user(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(OutputError, match="Permission denied") as excinfo:
        save_image(rgb_image(), tmp_path / "out.png")
    one_line_error(excinfo, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_output_suffix(tmp_path):
    with pytest.raises(OutputError, match=r"\.gif"):
        save_image(rgb_image(), tmp_path / "out.gif")


# ----------------------------------------------------------------------------------------------------- tensors


def test_image_to_tensor_layout_and_copy():
    pixels = random_samples(3, 32, seed=13)
    tensor = image_to_tensor(pixels)
    assert tensor.shape == (1, 3, H, W) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor[0, 2].numpy(), pixels[..., 2])
    tensor.zero_()
    assert pixels.any()  # a copy, not a view
    assert image_to_tensor(pixels.astype(np.float64)).dtype == torch.float32


def test_tensor_to_pixels_round_trip_and_dtypes():
    pixels = random_samples(1, 32, seed=14)
    np.testing.assert_array_equal(tensor_to_pixels(image_to_tensor(pixels)), pixels)
    half = image_to_tensor(np.full((2, 3, 3), 1.25, np.float32)).half().requires_grad_()
    out = tensor_to_pixels(half)
    assert out.dtype == np.float32 and out.shape == (2, 3, 3) and (out == 1.25).all()  # not clipped


@pytest.mark.parametrize("bad", [torch.zeros(3, H, W), torch.zeros(2, 3, H, W)])
def test_tensor_to_pixels_rejects_other_shapes(bad):
    with pytest.raises(UsageError, match="tensor"):
        tensor_to_pixels(bad)


def test_image_to_tensor_rejects_other_shapes():
    with pytest.raises(UsageError, match="pixels"):
        image_to_tensor(np.zeros((H, W), np.float32))


# ------------------------------------------------------------------------- writes under races, signals, long names


def test_a_write_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"another process wrote this")
    with pytest.raises(OutputError, match="already exists"):
        atomic._write_atomically(target, b"ours", overwrite=False)
    assert target.read_bytes() == b"another process wrote this" and list(tmp_path.iterdir()) == [target]
    atomic._write_atomically(target, b"ours", overwrite=True)
    assert target.read_bytes() == b"ours"


def test_an_interrupt_at_any_line_of_a_write_leaves_no_temp_file(tmp_path):
    """A signal can land between any two lines (between creating the temp file and guarding it, too)."""
    import sys

    data = b"x" * 4096
    for line in range(1, 500):
        target = tmp_path / f"out{line}.png"
        seen = 0

        def tracer(frame, event, arg, stop_at=line):
            nonlocal seen
            if frame.f_code.co_filename == atomic.__file__ and event == "line":
                seen += 1
                if seen == stop_at:
                    raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            atomic._write_atomically(target, data)
            interrupted = False
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sys.settrace(None)
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")], line
        assert not target.exists() or target.read_bytes() == data
        if not interrupted:
            break
    assert line > 5 and not interrupted  # every line of the write was interrupted once


def test_every_legal_output_name_has_a_temp_name(tmp_path):
    for length in (200, 240, 241, 250, 255):
        target = tmp_path / ("n" * (length - 4) + ".png")
        save_image(rgb_image(), target)
        assert load_image(target).pixels.shape == (H, W, 3)
        assert len(atomic.temp_path(target).name.encode()) <= 255
        assert atomic.temp_pattern(target).fullmatch(atomic.temp_path(target).name)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 83, 90, 95, 100])
def test_jpeg_quality_is_estimated_from_the_quantisation_tables(tmp_path, quality):
    for subsampling in (0, 2):
        path = tmp_path / f"q{quality}_{subsampling}.jpg"
        PILImage.fromarray(random_samples(3, 8)).save(path, quality=quality, subsampling=subsampling)
        assert load_image(path).quality == quality
    gray = tmp_path / "gray.jpg"
    PILImage.fromarray(random_samples(1, 8)[..., 0]).save(gray, quality=quality)
    assert load_image(gray).quality == quality


def test_jpeg_output_quality_follows_the_source_unless_given(tmp_path):
    source = tmp_path / "in.jpg"
    PILImage.fromarray(random_samples(3, 8)).save(source, quality=62)
    image = load_image(source)
    save_image(image, tmp_path / "same.jpg")
    save_image(image, tmp_path / "given.jpg", quality=88)
    save_image(rgb_image(), tmp_path / "default.jpg")
    assert [load_image(tmp_path / f"{name}.jpg").quality for name in ("same", "given", "default")] == [62, 88, 95]
    assert load_image(tmp_path / "same.jpg").quality == 62
    with pytest.raises(UsageError, match="quality"):
        save_image(image, tmp_path / "bad.jpg", quality=101)
