"""The ``restorekit`` command: one Typer app, one thin module per command.

Commands load lazily. :data:`COMMANDS` names each command's function (or sub-app) and its one-line summary,
so ``restorekit --help`` lists them without importing any command module, or PyTorch (0.2 s instead of about
3 s); a command's module is imported when that command runs or shows its own help. The summaries repeat the
first paragraph of each command's docstring, and a test keeps them equal.

Help reads well at any width: each paragraph of a docstring flows as one text (the docstring's own line breaks
are not kept, so a narrow terminal does not show them as ragged lines), and flags show no ``<bool>``.

A command-line usage error (an unknown option, ``--tile -1``, ``--dtype bogus``) is answered like any other
error: with ``--json`` also ``{"error": …, "exit_code": 2}`` on stdout, and with ``--progress jsonl`` an ``end``
record on stderr instead of the usage panel.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

from restorekit import __version__
from restorekit.cli import _signals
from restorekit.cli._console import print_json

try:
    from typer._click.exceptions import ClickException  # Typer ≥ 0.25 bundles its own click
except ImportError:  # pragma: no cover (older Typer uses click itself)
    from click.exceptions import ClickException  # type: ignore[no-redef]

# Command → ("module:attribute" of its function or Typer sub-app, the summary ``restorekit --help`` shows).
COMMANDS: dict[str, tuple[str, str]] = {
    "denoise": (
        "restorekit.cli.denoise:denoise",
        "Denoise images: real camera noise (no --sigma), or Gaussian noise of level --sigma (a number or auto).",
    ),
    "sr": ("restorekit.cli.sr:sr", "Upscale images ×2/×3/×4 (super-resolution)."),
    "tune": (
        "restorekit.cli.tune:tune",
        "Denoise with a tunable model at the trade-off --w (ω1 remove noise, ω2 keep grain and fine detail).",
    ),
    "models": (
        "restorekit.cli.models:models",
        "List the trained models that ship with restorekit, with their metadata.",
    ),
    "train": (
        "restorekit.cli.train:train",
        "Train a model from a recipe; rerunning the same command resumes from the last checkpoint.",
    ),
    "sample": (
        "restorekit.cli.sample:sample",
        "Add white Gaussian noise to a bundled sample and save it clipped to 8 bits, as a noisy file would be.",
    ),
    "bench": (
        "restorekit.cli.bench:app",
        "Benchmarks: latency, quality and kernels; `report` regenerates docs/benchmarks.md.",
    ),
}
# ``ctx.obj`` of a run started by :func:`main` (a process of its own, whose allocator may be tuned).
PROCESS = "restorekit-process"


class _Summary(TyperCommand):
    """Stands in for a command that is not loaded yet: enough to list it in the group's help."""


class LazyGroup(TyperGroup):
    """The top-level group: lists :data:`COMMANDS` as summaries and loads a command only to run it."""

    def __init__(self, **attrs: Any):
        super().__init__(**attrs)
        for name, (_, summary) in COMMANDS.items():
            self.commands.setdefault(name, _Summary(name=name, help=summary))
        tidy_help(self)
        self.argv: list[str] = []

    def main(self, args: Sequence[str] | None = None, *rest: Any, **extra: Any) -> Any:
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().main(self.argv, *rest, **extra)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except ClickException as error:
            self._answer(error)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClickException as error:  # the command's own parse errors, an unknown command
            self._answer(error)

    def _answer(self, error: ClickException) -> NoReturn:
        """Answer a usage error in JSON where the command line asked for it, then let Typer show it."""
        message, code = error.format_message(), int(error.exit_code)
        if _signals.wants_json(self.argv):
            print_json({"error": message, "exit_code": code})
        if _signals.wants_jsonl(self.argv):
            sys.stderr.write(json.dumps({"event": "end", "error": message, "exit_code": code}) + "\n")
            raise typer.Exit(code)
        raise error

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, _Summary):
            command = self.commands[name] = load_command(name)
            if ctx.find_root().obj == PROCESS:
                from restorekit.inference.runtime import keep_freed_memory

                keep_freed_memory()
        return name, command, rest


def load_command(name: str) -> Any:
    """Import the command ``name`` of :data:`COMMANDS` and build its click command (a group for a sub-app)."""
    module, attribute = COMMANDS[name][0].split(":")
    target = getattr(importlib.import_module(module), attribute)
    settings = {"pretty_exceptions_short": app.pretty_exceptions_short, "rich_markup_mode": app.rich_markup_mode}
    if isinstance(target, typer.Typer):
        command = get_group_from_info(TyperInfo(target, name=name), suggest_commands=app.suggest_commands, **settings)
    else:
        command = get_command_from_info(CommandInfo(name=name, callback=target), **settings)
    return tidy_help(command)


def tidy_help(command: Any) -> Any:
    """``command`` (and its sub-commands) with help that reads well at any width; returns it.

    Each paragraph of the help flows as one text (Typer would keep the docstring's line breaks and wrap again
    between them), and flags (``--json``, ``--help``) show no ``<bool>`` type.
    """
    command.help = reflowed(command.help)
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        tidy_help(sub)
    return command


def reflowed(text: str | None) -> str | None:
    r"""Help text with each paragraph on one line (a paragraph that starts with ``\b`` is kept as it is).

    Example:
        >>> reflowed("First line\n    goes on.\n\n    Second.")
        'First line goes on.\n\nSecond.'
    """
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)


app = typer.Typer(
    name="restorekit",
    help="Image denoising and restoration with trained models.",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"restorekit {__version__}")
        raise typer.Exit()


@app.callback()
def _group(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:  # makes ``app`` a group while its commands are still unregistered summaries
    pass


def main() -> None:
    """Console-script entry point (``restorekit``); ``python -m restorekit`` calls it too.

    SIGINT, SIGTERM and SIGHUP stop a run cleanly at any moment (:mod:`restorekit.cli._signals`): exit code 130
    (129 for SIGHUP), no traceback, no temp file left, finished outputs kept. Before a command runs, the process
    keeps freed memory for reuse (:func:`restorekit.inference.runtime.keep_freed_memory`).
    """
    _signals.install()
    try:
        app(obj=PROCESS)
        code: int | str | None = 0
    except SystemExit as done:
        code = done.code
    except KeyboardInterrupt:  # a stop that reached past the command (Typer maps it to 130 itself)
        code = _signals.exit_code()
    _signals.finish()
    if code == _signals.INTERRUPTED and _signals.received() is not None:
        code = _signals.exit_code()  # 129 after SIGHUP, wherever the stop was turned into 130
    raise SystemExit(code)
