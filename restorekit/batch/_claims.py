"""Claims on outputs: two runs writing to one folder never do the same file twice, nor replace each other's.

Before a file runs, its output is claimed: a hidden claim file beside it (``.<name>.claim``, or a hashed name for a
long one: :func:`restorekit.inference.io.hidden_name`) is created with ``O_CREAT | O_EXCL``, which succeeds for
one process only, and holds who claimed it (host, process id and the process's start time). The claim is removed
when the file is done — written, failed or interrupted. Another run that finds the claim skips that output
(``claimed``: in progress elsewhere) and never writes it.

The claims a process holds are also kept in a set, so that whatever interrupts it between two lines of its work
(a stop signal while it releases one), :func:`release_all` removes them before it exits.

A claim left by a process that no longer runs (killed, or the machine went down) is stale: on the same host, its
process id is gone or now belongs to a process started at another time; from another host (a shared folder), it
is older than :data:`FOREIGN_STALE_S`. A stale claim is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from restorekit.inference.io import hidden_name

CLAIM_ENDING = ".claim"
# A claim from another host cannot be checked; after this long it is taken for a crashed run's.
FOREIGN_STALE_S = 24 * 3600
# The claims this process holds (see release_all).
_held: set[Path] = set()


def claim_path(target: Path) -> Path:
    """The claim file of the output ``target``."""
    return hidden_name(target, CLAIM_ENDING)


def acquire(target: Path) -> Path | None:
    """Claim ``target`` for this process: the claim file's path, or ``None`` when another live run holds it.

    Call it inside :func:`restorekit.batch._signals.deferred`, with the path stored before the section ends, so
    that a stop signal cannot come between creating the claim and knowing to release it.

    Raises:
        OSError: The claim file cannot be created (a read-only folder, a full disk).
    """
    path = claim_path(target)
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid())})
    for _ in range(2):  # a second try after removing a stale claim
        try:
            with open(path, "x", encoding="utf-8") as out:  # O_CREAT | O_EXCL
                _held.add(path)
                out.write(record)
            return path
        except FileExistsError:
            if not _stale(path):
                return None
            path.unlink(missing_ok=True)
    return None


def release(path: Path) -> None:
    """Remove a claim made by :func:`acquire`."""
    with contextlib.suppress(OSError):
        path.unlink()
    _held.discard(path)


def release_all() -> None:
    """Remove every claim this process still holds (after a batch, however it ended)."""
    for path in list(_held):
        release(path)


def _stale(path: Path) -> bool:
    """Whether the claim at ``path`` was left by a process that no longer runs (see the module docstring)."""
    try:
        holder: dict[str, Any] = json.loads(path.read_text(encoding="utf-8") or "{}")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True  # released meanwhile
    except (OSError, ValueError):
        holder, age = {}, 0.0  # being written this instant, or unreadable: another run's
    if not isinstance(holder, dict) or holder.get("host") != socket.gethostname():
        return age > FOREIGN_STALE_S
    pid = holder.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return True
    started = holder.get("started")
    return started is not None and started != _started(pid)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``), to tell a reused id; else
    ``None``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None
