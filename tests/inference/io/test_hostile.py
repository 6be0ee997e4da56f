"""Hostile and unusual inputs: each gives a one-line InputError in bounded time, or an image, and never hangs.

The corpus is built by ``tests/hostile_corpus.py``; nothing hostile is committed. A guard interrupts any case
that runs past its time limit, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageFile, TiffImagePlugin, WebPImagePlugin

from restorekit.errors import InputError
from restorekit.inference.io import MAX_TIFF_IFDS, budget, check_input_file, load_image

_spec = importlib.util.spec_from_file_location("hostile_corpus", Path(__file__).parents[2] / "hostile_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

CASES = corpus.cases()
LIMIT_S = 5.0


def time_limit(seconds: float = LIMIT_S):
    return corpus.time_limit(seconds)


def assert_one_line(error: InputError, path: Path, words: str | None) -> None:
    message = str(error)
    assert message.startswith(str(path)) and "\n" not in message, message
    assert words is None or words in message, message


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow and tifffile warn about damaged tags
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_gives_one_line_or_an_image_in_bounded_time(tmp_path, name):
    make, words = CASES[name]
    path = tmp_path / name
    path.write_bytes(make())
    started = time.perf_counter()
    try:
        with time_limit():
            image = load_image(path)
    except InputError as error:
        assert_one_line(error, path, words)
    else:
        assert words is None, f"{name} decoded to {image.pixels.shape}; expected an error with {words!r}"
    assert time.perf_counter() - started < LIMIT_S


@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_whose_next_ifd_is_itself_fails_fast(tmp_path, depth):
    path = tmp_path / "loop.tif"
    path.write_bytes(corpus.tiff_self_loop(depth))
    started = time.perf_counter()
    with time_limit(), pytest.raises(InputError, match="loops back") as excinfo:
        load_image(path)
    assert_one_line(excinfo.value, path, "TIFF")
    assert time.perf_counter() - started < 1.0


def test_tiff_directory_limits(tmp_path):
    chain = tmp_path / "chain.tif"
    chain.write_bytes(corpus.tiff_long_chain(MAX_TIFF_IFDS + 5))
    with time_limit(), pytest.raises(InputError, match=f"more than {MAX_TIFF_IFDS:,} TIFF directories"):
        load_image(chain)
    for name, make in [("count.tif", corpus.tiff_huge_count), ("big.tif", corpus.bigtiff_huge_count)]:
        path = tmp_path / name
        path.write_bytes(make())
        with time_limit(), pytest.raises(InputError, match="runs past the end"):
            load_image(path)


def test_a_real_multipage_tiff_still_counts_its_frames(tmp_path):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((8, 8), np.uint8))
        writer.write(np.zeros((4, 4), np.uint8), subfiletype=1)  # a reduced-resolution preview: not a frame
    assert load_image(path).pixels.shape == (8, 8, 1)
    with tifffile.TiffWriter(path) as writer:
        for _ in range(3):
            writer.write(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="3 frames"):
        load_image(path)


def forbid_decoding(monkeypatch) -> None:
    """Make any pixel decoding fail the test: the budget must refuse the file from its header alone."""

    def decoded(*args, **kwargs):
        raise AssertionError("decoded pixels that the budget should have refused")

    for owner in (ImageFile.ImageFile, WebPImagePlugin.WebPImageFile, TiffImagePlugin.TiffImageFile):
        monkeypatch.setattr(owner, "load", decoded)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", decoded)


DECLARES_BIG = ["jpeg_declares_big.jpg", "png_declares_big.png", "bmp_declares_big.bmp", "tiff_declares_big.tif"]


@pytest.mark.parametrize("name", [*DECLARES_BIG, "tiff_declares_big16.tif"])
def test_declared_size_beyond_the_data_is_refused_before_decoding(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_bytes(CASES[name][0]())
    forbid_decoding(monkeypatch)
    with pytest.raises(InputError, match="refused before decoding") as excinfo:
        load_image(path)
    assert_one_line(excinfo.value, path, f"{corpus.BIG}×{corpus.BIG}")


def test_the_issue_jpeg_bomb_under_the_pixel_limit(tmp_path, monkeypatch):
    """A 12000×12000 header over a few KB of JPEG (144 MP, under the 200 MP limit) decoded to minutes of grey."""
    data = bytearray(corpus.encoded("jpg", 64, 64))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 12000, 12000)
    path = tmp_path / "bomb.jpg"
    path.write_bytes(bytes(data))
    assert len(data) < 16_000 and budget.DEFAULT_MAX_PIXELS > 12000**2
    forbid_decoding(monkeypatch)
    with pytest.raises(InputError, match="12000×12000 pixels, more than the JPEG data"):
        load_image(path)


def test_truncated_jpeg_without_its_end_marker_is_refused(tmp_path):
    data = corpus.encoded("jpg", 64, 64)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:-2])  # only the end-of-image marker missing: libjpeg would pad silently
    with pytest.raises(InputError, match="ends before its end-of-image marker"):
        load_image(path)


def test_jpeg_restart_markers_out_of_order_are_refused(tmp_path):
    buffer = io.BytesIO()
    PILImage.fromarray(corpus.noisy(64, 64)).save(buffer, "JPEG", restart_marker_blocks=1)
    data = bytearray(buffer.getvalue())
    scan = data.index(b"\xff\xda")
    first = data.index(b"\xff\xd0", scan)
    data[first + 1] = 0xD3
    path = tmp_path / "rst.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="restart marker 3 where 0 was due"):
        load_image(path)


def test_png_chunk_crc_is_checked(tmp_path):
    data = bytearray(corpus.png_bytes(corpus.noisy(16, 16)))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0x01  # a flip that may still inflate: only the CRC tells
    path = tmp_path / "flip.png"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="IDAT chunk fails its CRC check"):
        load_image(path)


def flat_files(folder: Path) -> list[Path]:
    """Maximally compressible valid images: the budget's bounds must never refuse them."""
    folder.mkdir()
    flat = PILImage.new("RGB", (2048, 1536), (90, 120, 150))
    made = [
        (flat, "flat.png", {"optimize": True}),
        (flat.convert("1"), "bilevel.png", {"optimize": True}),
        (flat, "flat.jpg", {"quality": 1, "optimize": True}),
        (flat, "flat_progressive.jpg", {"quality": 1, "progressive": True, "optimize": True}),
        (flat.convert("L"), "flat_gray.jpg", {"quality": 1, "progressive": True, "optimize": True}),
        (flat, "flat.webp", {"lossless": True}),
        (flat, "flat_lossy.webp", {"quality": 0}),
        (flat, "flat.bmp", {}),
        (flat.convert("1"), "bilevel.bmp", {}),
        (flat, "flat_deflate.tif", {"compression": "tiff_adobe_deflate"}),
        (flat, "flat_packbits.tif", {"compression": "packbits"}),
        (flat.convert("1"), "bilevel_g4.tif", {"compression": "group4"}),
    ]
    for image, name, options in made:
        image.save(folder / name, **options)
    tifffile.imwrite(folder / "flat16.tif", np.full((1536, 2048, 3), 7, np.uint16), compression="zlib")
    return sorted(folder.iterdir())


def test_highly_compressed_valid_files_are_never_refused(tmp_path):
    for path in flat_files(tmp_path / "flat"):
        assert load_image(path).pixels.shape[:2] == (1536, 2048), path.name


# ------------------------------------------------------------------------------------------ not regular files


def test_symlink_loops_are_one_line_errors(tmp_path):
    (tmp_path / "a.png").symlink_to("b.png")
    (tmp_path / "b.png").symlink_to("a.png")
    (tmp_path / "self.png").symlink_to("self.png")
    for name in ("a.png", "self.png"):
        for call in (load_image, check_input_file):
            with pytest.raises(InputError, match="symlink loop") as excinfo:
                call(tmp_path / name)
            assert_one_line(excinfo.value, tmp_path / name, None)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    for call in (load_image, check_input_file):
        with time_limit(), pytest.raises(InputError, match="is a named pipe, expected an image file"):
            call(pipe)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_socket_and_device_are_refused(tmp_path):
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "s.png"))
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    for name, words in (("s.png", "is a socket"), ("zero.png", "is a character device")):
        for call in (load_image, check_input_file):
            with time_limit(), pytest.raises(InputError, match=words):
                call(tmp_path / name)


def test_pixel_counts_read_in_sensible_units(tmp_path):
    path = tmp_path / "small.png"
    PILImage.new("RGB", (64, 64)).save(path)
    with pytest.raises(InputError, match=r"64×64 = 4,096 pixels exceeds the limit of 100 pixels"):
        load_image(path, max_pixels=100)
    assert budget._pixel_count(144_000_000) == "144.0 MP"
