"""Atomic writes: a hidden temp file beside the target, synced, then moved onto it without replacing a file
that appeared meanwhile (unless asked to); the hidden names that temp and claim files share."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from pathlib import Path

from restorekit.errors import OutputError

NAME_MAX = 255
"""Longest file name, in bytes, that the usual file systems take (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)."""
_LONGEST_ENDING = len(".0123abcd.part")  # of the endings hidden_name is given (".claim", temp files')


def hidden_name(path: Path, ending: str) -> Path:
    """A hidden file beside ``path`` that belongs to it: ``.<name><ending>``, or where that would pass
    :data:`NAME_MAX` bytes, ``.<16 hex digits of the name's SHA-256><ending>`` (so every legal output name has
    its temp and claim files).

    Example:
        >>> hidden_name(Path("out/a.png"), ".claim")
        PosixPath('out/.a.png.claim')
        >>> len(hidden_name(Path("x" * 250 + ".png"), ".claim").name)
        23
    """
    stem = path.name
    if 1 + len(stem.encode("utf-8", "surrogateescape")) + _LONGEST_ENDING > NAME_MAX:
        stem = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return path.parent / f".{stem}{ending}"


def temp_path(path: Path) -> Path:
    """A new temp file name for writing ``path``: ``.<name>.<8 random hex>.part`` (:func:`hidden_name`)."""
    return hidden_name(path, f".{secrets.token_hex(4)}.part")


def temp_pattern(path: Path) -> re.Pattern[str]:
    """What the names of ``path``'s temp files (:func:`temp_path`) match, whatever their random part."""
    stem = hidden_name(path, ".").name[:-1]
    return re.compile(rf"{re.escape(stem)}\.[0-9a-f]{{8}}\.part")


def _write_atomically(path: Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to a hidden temp file beside ``path``, fsync it and move it onto ``path``.

    Without ``overwrite`` the move is a hard link, which fails if ``path`` exists by then (another process wrote
    it since the caller looked); where the file system has no hard links, a rename after one more look.
    Whatever stops the write (an error, an interrupt at any point after the temp file was created), the temp
    file is removed: its name is new, so a file of that name is this call's.
    """
    temp = temp_path(path)
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        _move(temp, path, overwrite)
    except BaseException as error:  # also KeyboardInterrupt: never leave the temp file behind
        if not isinstance(error, FileExistsError) or str(error.filename) != str(temp):
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        if isinstance(error, FileExistsError) and str(error.filename) == str(path):
            raise OutputError(f"{path}: already exists (pass `overwrite=True` to replace it)") from error
        if isinstance(error, OSError):
            raise OutputError(f"{path}: cannot write ({error.strerror or error})") from error
        raise


def _move(temp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``temp`` onto ``path``: a rename, or without ``overwrite`` a link that never replaces."""
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
    except OSError:  # no hard links here (FAT, some network shares)
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temp, path)
    else:
        temp.unlink()
