"""The CLI's console: messages and progress on stderr, exit codes, and the error boundary of every command.

The library raises :class:`~restorekit.errors.RestoreKitError` subclasses and never exits; a command
decorated with :func:`handle_errors` turns them into one red line and an exit code (a traceback only with
``--verbose``; with ``--json`` also ``{"error": …, "exit_code": …}`` on stdout, with ``--progress jsonl`` an
``end`` record on stderr). Results go to stdout (:func:`print_json`, :data:`results`), everything else to stderr
(:data:`console`). Without a terminal both lay out for :data:`PIPE_WIDTH` columns, so piped tables keep one line
per row.

JSON on every path: a command prints at most one JSON document on stdout (a batch's summary, or the error that
stopped it), and when ``--json`` was asked for, always one. A stdout that cannot be written (a full disk, a
closed pipe) is one error line and exit 1, not a traceback; messages that cannot be written to stderr are lost
without stopping the run.

The library's messages name its Python arguments (``overwrite=True``); :func:`describe` shows the command
line's options in their place (``--overwrite``, from :data:`FLAGS`), so that each side speaks its own words.

Exit codes: 0 all done; 1 some files failed (or an unexpected error); 2 usage error; 3 model or weights
error; 4 device unavailable or out of memory; 130 interrupted (SIGINT, SIGTERM); 129 hung up (SIGHUP).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Any, TypeVar

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from restorekit.cli import _signals
from restorekit.errors import OutputError, RestoreKitError

# Width of a console that writes to a pipe or a file (no terminal, no COLUMNS): wide enough that a table
# row or a message is never broken, since nothing there will wrap it back.
PIPE_WIDTH = 4096


class _Console(Console):
    """A rich console that lays out for its terminal, and for :data:`PIPE_WIDTH` columns without one (rich's
    default of 80 would hard-wrap table rows and long lines in a file or a pipe)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal and not self._environ.get("COLUMNS", "").isdigit():
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


class _Stderr:
    """Standard error as the console writes to it: ``sys.stderr`` looked up at each write (test runners and the
    Ray engine swap it; a live progress bar's proxy is looked through, as rich does), and what cannot be written
    (a full disk, a closed pipe, a terminal that hung up) lost rather than failing the run."""

    @staticmethod
    def _stream() -> Any:
        return getattr(sys.stderr, "rich_proxied_file", sys.stderr)

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self._stream().write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream().flush()

    def isatty(self) -> bool:
        try:
            return self._stream().isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._stream().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream(), "encoding", None) or "utf-8"


# Messages, warnings and progress; stdout is kept for results.
console = _Console(file=_Stderr(), highlight=False)  # type: ignore[arg-type]
# Human-readable results (tables, listings) on stdout.
results = _Console(highlight=False)


class ExitCode(IntEnum):
    """Process exit codes (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    WEIGHTS = 3
    DEVICE = 4
    HANGUP = _signals.HANGUP
    INTERRUPTED = _signals.INTERRUPTED


def exit_code(error: BaseException) -> int:
    """The exit code for ``error``: its class's ``exit_code``, 130 for an interrupt (129 after SIGHUP), 1
    otherwise."""
    if isinstance(error, KeyboardInterrupt):
        return _signals.exit_code()
    return int(getattr(error, "exit_code", ExitCode.FAILED))


# A library argument (as its messages name it) → the command line's option.
FLAGS = {
    "bit_depth": "--bit-depth",
    "device": "--device",
    "dtype": "--dtype",
    "engine": "--engine",
    "ensemble": "--ensemble",
    "max_pixels": "--max-pixels",
    "model": "--model",
    "output": "-o",
    "overwrite": "--overwrite",
    "quality": "--quality",
    "ray_actors": "--ray-actors",
    "ray_address": "--ray-address",
    "recursive": "-r",
    "reference": "--reference",
    "scale": "--scale",
    "sigma": "--sigma",
    "suffix": "--suffix",
    "sweep": "--sweep",
    "tile": "--tile",
    "w": "--w",
}
_NAMED = re.compile(r"`([a-z_]+)(?:=([^`]*))?`")


def describe(error: BaseException | str) -> str:
    """The message of ``error`` in the command line's words: the one place that names options.

    The library's messages name arguments in its own words (:class:`~restorekit.errors.RestoreKitError`): the
    argument a message is about comes first (its ``parameter``), and an argument named inside the text is in
    backticks. Each becomes its option from :data:`FLAGS` (``overwrite=True`` → ``--overwrite``, ``device='cpu'``
    → ``--device cpu``); other words are left as they are.

    Example:
        >>> describe(ValueError("a.png: already exists (pass `overwrite=True` to replace it)"))
        'a.png: already exists (pass --overwrite to replace it)'
    """
    message = str(error)
    parameter = getattr(error, "parameter", None)
    if parameter in FLAGS and message[len(parameter) : len(parameter) + 1] in (":", " "):
        message = FLAGS[parameter] + message[len(parameter) :]
    return _NAMED.sub(_option, message)


def _option(match: re.Match[str]) -> str:
    """The option for one backticked argument (with its value, unless ``True``); unknown names stay."""
    name, value = match.group(1), match.group(2)
    if name not in FLAGS:
        return match.group(0)
    if value is None or value == "True":
        return FLAGS[name]
    return f"{FLAGS[name]} {value.strip(chr(39) + chr(34))}"


def error_line(message: str) -> None:
    """Print one red ``error: …`` line on stderr."""
    console.print(f"[bold red]error:[/] [red]{escape(message)}[/]", soft_wrap=True)


def warning_line(message: str) -> None:
    """Print one yellow ``warning: …`` line on stderr."""
    console.print(f"[yellow]warning: {escape(message)}[/]", soft_wrap=True)


class _Answer:
    """Whether the command now running has printed its JSON document on stdout."""

    printed = False


def print_json(payload: Any) -> None:
    """Write ``payload`` as indented JSON on stdout (the machine-readable result of a command).

    Raises:
        OutputError: stdout cannot be written (a full disk, a closed pipe); stdout is then pointed at the null
            device, so that nothing fails again when the process exits.
    """
    _Answer.printed = True
    try:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except OSError as error:
        _silence_stdout()
        raise OutputError(f"stdout: cannot write the JSON result ({error.strerror or error})") from None


def _silence_stdout() -> None:
    """Point descriptor 1 at the null device (what Python still holds for stdout is flushed there at exit)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def emit_jsonl(record: dict[str, Any]) -> None:
    """Write one JSON line on stderr (``--progress jsonl``); a stderr that cannot be written loses it."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(json.dumps(record, ensure_ascii=False) + "\n")
        sys.stderr.flush()


F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(command: F) -> F:
    """Decorate a Typer command: errors become one red line and an exit code.

    ``RestoreKitError`` → its ``exit_code``; ``KeyboardInterrupt`` (or whatever a stop signal broke on its way
    out) → 130, 129 after SIGHUP; any other exception → 1 with a hint to rerun with ``--verbose``. The traceback
    is printed only when the command was called with ``verbose=True``. When it was called with ``json=True``
    and has printed no JSON yet, the error also goes to stdout as JSON; with ``progress="jsonl"`` it is the
    ``end`` record on stderr instead of the red line. ``typer.Exit`` passes through untouched.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose", False))
        jsonl = str(getattr(kwargs.get("progress"), "value", kwargs.get("progress"))) == "jsonl"
        _Answer.printed = False
        try:
            _signals.begin_work()
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            if _signals.received() is None or isinstance(exc, RestoreKitError):
                if verbose:
                    console.print_exception()
                if isinstance(exc, RestoreKitError):
                    message, code = describe(exc), exit_code(exc)
                else:
                    hint = "" if verbose else " (rerun with --verbose for the traceback)"
                    message, code = f"unexpected {type(exc).__name__}: {exc}{hint}", int(ExitCode.FAILED)
                _stopped(message, code, jsonl, bool(kwargs.get("json")))
                raise typer.Exit(code) from None
            _stopped("interrupted", _signals.exit_code(), jsonl, bool(kwargs.get("json")), interrupted=True)
            raise typer.Exit(_signals.exit_code()) from None
        except KeyboardInterrupt:
            _stopped("interrupted", _signals.exit_code(), jsonl, bool(kwargs.get("json")), interrupted=True)
            raise typer.Exit(_signals.exit_code()) from None

    return wrapper  # type: ignore[return-value]


def _stopped(message: str, code: int, jsonl: bool, json_output: bool, interrupted: bool = False) -> None:
    """Report an error (or a stop) that ended a command: the line or ``end`` record, and the JSON answer."""
    _signals.finish()
    extra = {"interrupted": True} if interrupted else {}
    if jsonl:
        emit_jsonl({"event": "end", "error": message, **extra, "exit_code": code})
    elif interrupted:
        console.print("[yellow]interrupted[/]")
    else:
        error_line(message)
    if json_output and not _Answer.printed:
        try:
            print_json({"error": message, **extra, "exit_code": code})
        except OutputError as error:
            if not jsonl:
                error_line(str(error))


class Reporter:
    """Reports the progress of a batch: a rich bar, JSON lines on stderr, or nothing.

    Call :meth:`start` when an item begins (the bar names it), :meth:`tiles` as its tiles finish, and
    :meth:`done` once it has finished, with any JSON-able fields worth reporting; :meth:`warn` for a warning
    (each one once), :meth:`end` when the batch is over. In JSON lines (``jsonl``, then the only thing on
    stderr): ``start``, ``tile`` (only for items of more than one tile), ``progress`` (with ``error`` for a
    failed item), ``warning`` and a last ``end`` event.
    """

    def __init__(self, mode: str, total: int, label: str):
        self.mode = mode
        self.total = total
        self.count = 0
        self.item = ""
        self._bar: Any = None
        self._warned: set[str] = set()
        if mode == "rich":
            from rich.progress import Progress

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[item]}"),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task(label, total=total, item="")

    def set_total(self, total: int) -> None:
        """Record how many items there are (known once the batch is planned)."""
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def start(self, item: str) -> None:
        """Record that ``item`` is now being worked on."""
        self.item = item
        if self._bar is not None:
            self._bar.update(self._task, item=escape(item))
        self._emit("start", index=self.count + 1)

    def tiles(self, done: int, total: int) -> None:
        """Record that ``done`` of the ``total`` tiles of the current pass over the current item are finished."""
        if total <= 1:
            return
        if self._bar is not None:
            self._bar.update(self._task, item=f"{escape(self.item)} [dim]· tile {done}/{total}[/]")
        self._emit("tile", tile=done, tiles=total)

    def done(self, item: str, **fields: Any) -> None:
        """Record that ``item`` finished (``fields`` e.g. ``status="ok", ms=12.3``)."""
        self.count += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, item="")
        self._emit("progress", item=item, **fields)

    def warn(self, message: str) -> None:
        """A warning, once however often it comes: a yellow line, or a ``warning`` event in ``jsonl`` mode."""
        if message in self._warned:
            return
        self._warned.add(message)
        if self.mode == "jsonl":
            self._emit("warning", message=message)
        else:
            warning_line(message)

    def end(self, **fields: Any) -> None:
        """Record that the batch is over (``jsonl`` mode: the ``end`` event, with ``fields``)."""
        self._emit("end", **fields)

    def _emit(self, event: str, **fields: Any) -> None:
        """Write one JSON line on stderr in ``jsonl`` mode: the event, the counts, the current item, ``fields``."""
        if self.mode == "jsonl":
            emit_jsonl({"event": event, "done": self.count, "total": self.total, "item": self.item, **fields})


@contextmanager
def progress(mode: str, total: int, label: str) -> Iterator[Reporter]:
    """A :class:`Reporter` for ``total`` items; ``auto`` means a rich bar on a terminal, nothing otherwise.

    Example:
        >>> with progress("none", total=2, label="denoise") as report:
        ...     report.done("a.png", status="ok")
    """
    mode = str(getattr(mode, "value", mode))
    if mode == "auto":
        mode = "rich" if console.is_terminal else "none"
    reporter = Reporter(mode, total, label)
    if reporter._bar is None:
        yield reporter
        return
    with reporter._bar:
        yield reporter
