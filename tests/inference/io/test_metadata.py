"""Tests for restorekit.inference.io.metadata: ICC, EXIF, DPI, XMP and PNG text carried, and orientation applied."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps, PngImagePlugin

from restorekit.inference.io import Image, convert, load_image, save_image
from tests.inference.io.conftest import (
    DATE_TAKEN,
    MAKE,
    SRGB_ICC,
    H,
    W,
    load_unchanged,
    make_exif,
    parse_exif,
    random_samples,
    smooth_samples,
)

# --------------------------------------------------------------------------------------------------- ICC and EXIF


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


# ------------------------------------------------------------------------------------------ DPI, XMP and PNG text


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


# ---------------------------------------------------------------------------------------------------- orientation


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
