"""Tests for restorekit.inference.io.atomic: writes through a hidden temp file, under failures, races, signals
and long names.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from restorekit.errors import OutputError
from restorekit.inference.io import atomic, load_image, save_image
from tests.inference.io.conftest import H, W, load_unchanged, one_line_error, rgb_image

# ------------------------------------------------------------------------------------------------- atomic writing


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


# ------------------------------------------------------------------------ writes under races, signals, long names


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
