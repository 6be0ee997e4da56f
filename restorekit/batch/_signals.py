"""Where a stop signal may reach a batch: the sections a signal must not cut in two, and those it may stop at once.

A batch defers stop signals for its bookkeeping (claiming and releasing outputs, reporting: :func:`deferred`)
and lets them through only where a file's work runs or the batch waits (:func:`interruptible`); a signal held
so far is raised there as :class:`KeyboardInterrupt`, or at the end of the section. Only one is ever raised, and
never inside an import (it is tried again every :data:`RETRY_S`).

This module holds the state only; who takes the signals over decides when they count. The ``restorekit``
program does (:mod:`restorekit.cli._signals`); in a library user's process the phase stays ``off``, the
sections change nothing and the process keeps its own handlers.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

INTERRUPTED = 130  # SIGINT and SIGTERM, as a shell reports Ctrl-C
HANGUP = 129  # SIGHUP: 128 + 1
RETRY_S = 0.05  # how often a signal held during an import is tried again


class _State:
    """Where the program is (``off`` outside the program) and what it has received."""

    phase = "off"
    received: int | None = None
    raised = False
    deferred = 0
    argv: tuple[str, ...] = ()


_state = _State()


def begin_work() -> None:
    """A command begins: from now on a signal raises :class:`KeyboardInterrupt` (one that came already, now)."""
    if _state.phase == "startup":
        _state.phase = "work"
        raise_if_pending()


def finish() -> None:
    """The outcome is settled: later signals are recorded and change nothing."""
    if _state.phase != "off":
        _state.phase = "done"


def received() -> int | None:
    """The first stop signal this program received, or ``None``."""
    return _state.received


def exit_code() -> int:
    """The exit code of a stopped run: 129 after SIGHUP, else 130."""
    return HANGUP if _state.received == getattr(signal, "SIGHUP", None) else INTERRUPTED


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section a signal must not cut in two (a file created and recorded): the signal waits for its end, or
    for an :func:`interruptible` section inside it."""
    _state.deferred += 1
    try:
        yield
    finally:
        _state.deferred -= 1
    raise_if_pending()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside a :func:`deferred` section, a part a signal may stop at once (a file's work, a wait); a signal
    held so far is raised on entering it."""
    saved, _state.deferred = _state.deferred, 0
    try:
        raise_if_pending()
        yield
    finally:
        _state.deferred = saved


def raise_if_pending(frame: FrameType | None = None) -> None:
    """Raise the held signal as :class:`KeyboardInterrupt` where that is safe; else try again shortly."""
    if _state.phase != "work" or _state.received is None or _state.raised or _state.deferred:
        return
    if _importing(frame):
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _state.raised = True
    if hasattr(signal, "setitimer"):  # a retry timer left from an import must not fire later: at interpreter exit
        signal.setitimer(signal.ITIMER_REAL, 0)  # Python restores SIGALRM's default, which would kill the process
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    """Whether the interrupted code runs inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
