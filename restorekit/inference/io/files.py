"""Opening input files safely: regular files only, never blocking, and one error line naming the file.

A directory, named pipe, socket or device is refused before it is read (opening a named pipe would wait for a
writer); file-system and decoder exceptions become one :class:`~restorekit.errors.InputError` line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from PIL import UnidentifiedImageError

from restorekit.errors import InputError
from restorekit.inference.io.image import _CODEC_ERRORS

# What a path that is not a regular file turns out to be, for the one-line error.
_FILE_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def check_input_file(path: str | Path) -> None:
    """Raise :class:`InputError` unless ``path`` names a regular file (symlinks followed); never opens it.

    The command line calls it while planning a batch, so that a symlink loop, a named pipe, a socket or a
    device gets its one-line error without being opened (opening a named pipe waits for a writer).

    Example:
        >>> check_input_file("/dev/null")
        Traceback (most recent call last):
        ...
        restorekit.errors.InputError: /dev/null: is a character device, expected an image file
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise _open_error(path, error) from error
    _check_regular(path, mode)


def _check_regular(path: Path, mode: int) -> None:
    """Refuse a file mode that is not a regular file, naming what it is."""
    kind = _file_kind(mode)
    if kind is not None:
        raise InputError(f"{path}: is a {kind}, expected an image file")


def _file_kind(mode: int) -> str | None:
    """What a file mode names when it is not a regular file (``None`` when it is)."""
    return next((kind for is_kind, kind in _FILE_KINDS if is_kind(mode)), None)


def _open_error(path: Path, error: OSError) -> InputError:
    """The one-line :class:`InputError` for an ``OSError`` met while opening ``path``."""
    reasons = {
        errno.ENOENT: "no such file",
        errno.ENOTDIR: "no such file",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ELOOP: "symlink loop (following its links leads back to a link already followed)",
        errno.EISDIR: "is a directory, expected an image file",
    }
    reason = reasons.get(error.errno or 0)
    if error.errno == errno.ENXIO:  # a socket, or a device file without its device
        with contextlib.suppress(OSError):
            reason = f"is a {_file_kind(os.stat(path).st_mode) or 'device'}, expected an image file"
    return InputError(f"{path}: {reason or f'cannot open ({error.strerror or error})'}")


def _nonblocking(path: str, flags: int) -> int:
    """``open`` opener: ``O_NONBLOCK``, so that opening a named pipe returns at once instead of waiting."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


@contextlib.contextmanager
def _open_input(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` read-only without ever blocking, and refuse it unless the open file is a regular file."""
    try:
        fh = open(path, "rb", opener=_nonblocking)  # noqa: SIM115 (closed by the `with` below)
    except OSError as error:
        raise _open_error(path, error) from error
    with fh:
        _check_regular(path, os.fstat(fh.fileno()).st_mode)
        yield fh


@contextlib.contextmanager
def _input_errors(path: Path) -> Iterator[None]:
    """Turn file-system and decoder exceptions into one :class:`InputError` line naming ``path``."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise _open_error(path, error) from error
    except UnidentifiedImageError as error:
        raise InputError(
            f"{path}: cannot read the image header (truncated, corrupt or an unsupported variant)"
        ) from error
    except _CODEC_ERRORS as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise InputError(f"{path}: cannot decode, the file is truncated or corrupt ({reason})") from error
