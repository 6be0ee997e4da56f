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
from collections.abc import Sequence
from types import FrameType

from restorekit.batch._signals import (  # the state a batch reads; the program sets it
    HANGUP,
    INTERRUPTED,
    _state,
    begin_work,
    deferred,
    exit_code,
    finish,
    interruptible,
    raise_if_pending,
    received,
)

__all__ = [  # the program's side here; the state and the sections are restorekit.batch._signals's
    "HANGUP",
    "INTERRUPTED",
    "begin_work",
    "deferred",
    "exit_code",
    "finish",
    "install",
    "interruptible",
    "is_program",
    "received",
    "wants_json",
    "wants_jsonl",
]
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


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
    raise_if_pending(frame)


def _on_retry(signum: int, frame: FrameType | None) -> None:
    raise_if_pending(frame)


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
