"""Stop signals of the ``restorekit`` program: SIGINT, SIGTERM and SIGHUP stop it cleanly at any moment.

Ctrl-C (SIGINT), ``kill`` or a scheduler (SIGTERM) and a closed terminal (SIGHUP) all stop a run the same way:
exit code 130 (129 for SIGHUP), the word ``interrupted`` on stderr, no traceback, no temp or claim file left
behind, the finished outputs kept, and with ``--json`` a JSON answer on stdout. A signal that the parent set to
be ignored (``nohup``, a background job of a non-interactive shell) stays ignored.

Where the signal lands decides how the run stops (the *phase*, set as the program goes):

* ``startup`` (from the import of :mod:`restorekit.cli` in the program until a command begins: parsing the
  command line, importing PyTorch and the command): nothing is written yet, so the process exits at once
  (``os._exit``) with the line and the JSON answer. Raising there would unwind through half-done imports, which
  is what printed tracebacks (a ``RecursionError`` inside importlib) or aborted in C++ (exit 134).
* ``work`` (a command runs): :class:`KeyboardInterrupt` is raised, so that the batch cleans up (temp and claim
  files) and reports what it finished. Not inside an import (the signal is tried again every ``RETRY_S``
  through SIGALRM until the import is over), and not inside a :func:`deferred` section: a batch defers signals
  for its bookkeeping (claiming and releasing outputs, reporting) and lets them through only where a file's
  work runs (:func:`interruptible`); a held signal is raised where that next happens, or at the end of the
  section. Only one is ever raised: further signals while it is being handled change nothing.
* ``done`` (the outcome is settled: the last file finished, the summary is being written): signals are recorded
  and change nothing; the run ends as it was going to.

Only the program takes the signals over (:func:`install` from :func:`restorekit.cli.app.main`, and as early as
the import of :mod:`restorekit.cli` when the process is the program); a library user's process keeps its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
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


def is_program() -> bool:
    """Whether this process is the ``restorekit`` program (the console script or ``python -m restorekit``)."""
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    script = os.path.basename(getattr(main, "__file__", None) or "")
    return spec_name == "restorekit.__main__" or script in ("restorekit", "restorekit.exe")


def install() -> None:
    """Take the stop signals over for this process (once; see the module docstring), in the ``startup`` phase."""
    if _state.phase != "off":
        return
    _state.phase, _state.argv = "startup", tuple(sys.argv[1:])
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _on_retry)


def begin_work() -> None:
    """A command begins: from now on a signal raises :class:`KeyboardInterrupt` (one that came already, now)."""
    if _state.phase == "startup":
        _state.phase = "work"
        _raise_if_pending()


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
    _raise_if_pending()


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside a :func:`deferred` section, a part a signal may stop at once (a file's work, a wait); a signal
    held so far is raised on entering it."""
    saved, _state.deferred = _state.deferred, 0
    try:
        _raise_if_pending()
        yield
    finally:
        _state.deferred = saved


def wants_json(args: Sequence[str]) -> bool:
    """Whether a command line asks for ``--json`` (options after ``--`` are arguments)."""
    return "--json" in _options(args)


def wants_jsonl(args: Sequence[str]) -> bool:
    """Whether a command line asks for ``--progress jsonl``."""
    options = _options(args)
    pairs = zip(options, (*options[1:], ""), strict=True)
    return "--progress=jsonl" in options or any(a == "--progress" and b == "jsonl" for a, b in pairs)


def _options(args: Sequence[str]) -> list[str]:
    args = list(args)
    return args[: args.index("--")] if "--" in args else args


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.received is None:
        _state.received = signum
    if _state.phase == "startup":
        _exit_now()
    _raise_if_pending(frame)


def _on_retry(signum: int, frame: FrameType | None) -> None:
    _raise_if_pending(frame)


def _raise_if_pending(frame: FrameType | None = None) -> None:
    """Raise the held signal as :class:`KeyboardInterrupt` where that is safe; else try again shortly."""
    if _state.phase != "work" or _state.received is None or _state.raised or _state.deferred:
        return
    if _importing(frame):
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, RETRY_S)
        return
    _state.raised = True
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    """Whether the interrupted code runs inside an import (importlib's frames are on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _exit_now() -> None:
    """Stop at once during start-up: the line on stderr, the JSON answer where asked, and the exit code."""
    code = exit_code()
    _write(2, "interrupted\n")
    if wants_jsonl(_state.argv):
        _write(2, json.dumps({"event": "end", "error": "interrupted", "interrupted": True, "exit_code": code}) + "\n")
    if wants_json(_state.argv):
        _write(1, json.dumps({"error": "interrupted", "interrupted": True, "exit_code": code}, indent=2) + "\n")
    os._exit(code)


def _write(fd: int, text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, text.encode("utf-8"))
