"""Tests for restorekit.inference.io.budget: the pixel limit and bombs refused before decoding."""

from __future__ import annotations

import struct
import zlib

import pytest
from PIL import Image as PILImage

from restorekit.errors import InputError, UsageError
from restorekit.inference.io import DEFAULT_MAX_PIXELS, budget
from tests.inference.io.conftest import H, W, load_unchanged, one_line_error, smooth_samples


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
