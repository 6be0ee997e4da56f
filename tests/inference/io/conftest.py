"""Helpers of the restorekit.inference.io tests: samples, independent writers and readers of image files.

Source files are written with independent writers (Pillow, OpenCV, tifffile, a bare PNG writer below) and
outputs are read back with independent readers, so a symmetric bug in load_image/save_image cannot hide.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageCms

from restorekit.inference.io import Image, load_image

H, W = 16, 24
SAMPLE_TYPES = {8: np.uint8, 16: np.uint16, 32: np.float32}
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE, DATE_TAKEN = 0x010F, 0x9003


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


def rgb_image() -> Image:
    return Image(smooth_samples(3) / np.float32(255), None, 8, "RGB", "PNG")
