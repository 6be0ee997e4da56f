"""Tests for restorekit.inference.io.encode: round trips, encoder settings, bit-depth changes, WebP compression
and the outputs that are refused.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import JpegImagePlugin

from restorekit.errors import OutputError, UsageError
from restorekit.inference.io import SUPPORTED_SUFFIXES, Image, save_image
from restorekit.inference.io.image import _SUFFIX_FORMATS
from tests.inference.io.conftest import (
    LOSSLESS,
    H,
    W,
    case_id,
    load_unchanged,
    one_line_error,
    random_samples,
    read_independently,
    rgb_image,
    smooth_samples,
    write_source,
)

# ---------------------------------------------------------------------------------------------------- round trips


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


def test_unsupported_output_suffix(tmp_path):
    with pytest.raises(OutputError, match=r"\.gif"):
        save_image(rgb_image(), tmp_path / "out.gif")


# ---------------------------------------------------------------------------------------------- bit-depth changes


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


# ----------------------------------------------------------------------------------------------- WebP compression


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
