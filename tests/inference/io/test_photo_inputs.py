"""Camera files in restorekit.inference.io: multi-picture JPEGs (MPO), HEIC/HEIF, and the refusal of RAW files.

The MPO files are written by Pillow (which writes the CIPA multi-picture format cameras and phones use: a
primary JPEG followed by its previews), so no camera file is carried.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from restorekit.errors import InputError, OutputError
from restorekit.inference.io import RAW_SUFFIXES, Image, heif, load_image, save_image

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE = 0x010F


def _photo(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([60 + 2 * x, 40 + 3 * y, 120 + x - y], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _exif(payload: bytes) -> PILImage.Exif:
    exif = PILImage.Exif()
    exif.load(payload)
    return exif


def write_mpo(path, primary: np.ndarray, previews: int = 1, orientation: int = 1) -> None:
    """A multi-picture JPEG: ``primary`` (with EXIF Make and an sRGB ICC) followed by ``previews`` smaller images."""
    exif = PILImage.Exif()
    exif[MAKE] = "TestCam"
    exif[0x0112] = orientation
    first = PILImage.fromarray(primary)
    others = [first.resize((16 + 8 * i, 12 + 6 * i)) for i in range(previews)]
    first.save(path, "MPO", save_all=True, append_images=others, exif=exif.tobytes(), icc_profile=SRGB_ICC, quality=95)


def test_an_mpo_reads_as_its_primary_image_with_its_metadata_and_a_note(tmp_path):
    primary = _photo()
    write_mpo(tmp_path / "DSC_0001.JPG", primary, previews=2)
    with PILImage.open(tmp_path / "DSC_0001.JPG") as check:
        assert check.format == "MPO" and check.n_frames == 3  # what Pillow wrote is a real multi-picture file
        expected = np.asarray(check.convert("RGB"))
    image = load_image(tmp_path / "DSC_0001.JPG")
    assert image.format == "JPEG" and image.pixels.shape == (48, 64, 3)
    np.testing.assert_array_equal(np.round(image.pixels * 255).astype(np.uint8), expected)
    assert image.icc_profile == SRGB_ICC and _exif(image.exif)[MAKE] == "TestCam"
    assert len(image.notes) == 1 and "2 embedded" in image.notes[0] and "primary image" in image.notes[0]


def test_an_mpo_output_is_an_ordinary_jpeg_keeping_exif_and_icc(tmp_path):
    write_mpo(tmp_path / "in.jpg", _photo(), orientation=6)
    image = load_image(tmp_path / "in.jpg")
    assert image.pixels.shape == (64, 48, 3)  # the orientation of the primary image is applied
    save_image(image, tmp_path / "out.jpg")
    with PILImage.open(tmp_path / "out.jpg") as out:
        assert out.format == "JPEG" and getattr(out, "n_frames", 1) == 1
        assert out.getexif()[MAKE] == "TestCam" and out.getexif().get(0x0112, 1) == 1
        assert out.info["icc_profile"] == SRGB_ICC and out.size == (48, 64)


def test_animated_and_multi_page_files_are_still_refused(tmp_path):
    frames = [PILImage.fromarray(_photo(seed=s)) for s in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])  # GIF: not a supported format
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    with pytest.raises(InputError, match="animated or multi-page"):
        load_image(tmp_path / "anim.webp")
    with pytest.raises(InputError, match="not a supported image"):
        load_image(tmp_path / "anim.gif")


@pytest.mark.parametrize("suffix", [".dng", ".CR2", ".cr3", ".NEF", ".arw", ".RAF", ".orf", ".rw2"])
def test_raw_files_get_one_line_that_says_how_to_proceed(tmp_path, suffix):
    path = tmp_path / f"IMG_0001{suffix}"
    path.write_bytes(b"II*\x00" + bytes(200))  # DNG, CR2, NEF, ARW are TIFF containers: refused by name first
    with pytest.raises(InputError) as error:
        load_image(path)
    message = str(error.value)
    assert "\n" not in message and "RAW is not read" in message and "16-bit TIFF" in message
    assert suffix.lower() in RAW_SUFFIXES


@pytest.mark.parametrize(
    "head", [b"\x00\x00\x00\x18ftypcrx " + bytes(16), b"FUJIFILMCCD-RAW 0201" + bytes(8), b"IIRO\x08\x00\x00\x00"]
)
def test_raw_content_under_another_name_is_refused_as_raw(tmp_path, head):
    (tmp_path / "renamed.jpg").write_bytes(head + bytes(100))
    with pytest.raises(InputError, match="RAW is not read"):
        load_image(tmp_path / "renamed.jpg")


def test_heic_round_trip_keeps_pixels_exif_and_icc(tmp_path):
    pytest.importorskip("pillow_heif")
    exif = PILImage.Exif()
    exif[MAKE] = "Phone"
    source = Image(_photo().astype(np.float32) / 255, None, 8, "RGB", "JPEG", SRGB_ICC, exif.tobytes())
    save_image(source, tmp_path / "IMG_0001.HEIC")
    assert (tmp_path / "IMG_0001.HEIC").read_bytes()[4:12] in (b"ftypheic", b"ftypmif1")
    image = load_image(tmp_path / "IMG_0001.HEIC")
    assert image.format == "HEIF" and image.pixels.shape == (48, 64, 3) and image.icc_profile == SRGB_ICC
    assert _exif(image.exif)[MAKE] == "Phone"
    assert np.abs(image.pixels - source.pixels).mean() < 4 / 255  # lossy at quality 95


def test_heic_without_the_extra_names_it(tmp_path, monkeypatch):
    pytest.importorskip("pillow_heif")
    save_image(Image(_photo().astype(np.float32) / 255, None, 8, "RGB", "JPEG"), tmp_path / "a.heic")
    monkeypatch.setattr(heif, "_heif", lambda: None)
    with pytest.raises(InputError) as error:
        load_image(tmp_path / "a.heic")
    assert "pillow-heif" in str(error.value) and "restorekit[heif]" in str(error.value)
    with pytest.raises(OutputError, match=r"restorekit\[heif\]"):
        save_image(Image(_photo().astype(np.float32) / 255, None, 8, "RGB", "JPEG"), tmp_path / "b.heic")
    assert not (tmp_path / "b.heic").exists()
