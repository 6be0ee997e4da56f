"""Tests for restorekit.inference.io.decode: exact samples from every decoder, palette, CMYK and bilevel
sources, content over suffix, and bad or unsupported files.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageCms

from restorekit.errors import InputError
from restorekit.inference.io import convert, save_image
from restorekit.inference.io.image import _SUFFIX_FORMATS
from tests.inference.io.conftest import (
    LOSSLESS,
    SRGB_ICC,
    H,
    W,
    case_id,
    load_unchanged,
    one_line_error,
    png16_bytes,
    random_samples,
    smooth_samples,
    write_source,
)

# ------------------------------------------------------------------------------------------------- lossless loads


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


def test_format_comes_from_content_not_suffix(tmp_path):
    path = write_source(tmp_path / "in.png", random_samples(3, 8), has_alpha=False).rename(tmp_path / "really.jpg")
    assert load_unchanged(path).format == "PNG"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_non_ascii_paths(tmp_path, suffix):
    folder = tmp_path / "фото 写真"
    folder.mkdir()
    samples = random_samples(3, 16, seed=9)
    source = write_source(folder / f"снимок é{suffix}", samples, has_alpha=False)
    image = load_unchanged(source)
    save_image(image, folder / f"выход ü{suffix}")
    np.testing.assert_array_equal(load_unchanged(folder / f"выход ü{suffix}").pixels, image.pixels)


# ----------------------------------------------------------------------------------------- palette, CMYK, bilevel


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


# ----------------------------------------------------------------------------------------------------- bad inputs


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
