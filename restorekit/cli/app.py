"""The ``restorekit`` command: one Typer app, one thin module per command.

Commands load lazily. :data:`COMMANDS` names each command's function (or sub-app) and its one-line summary,
so ``restorekit --help`` lists them without importing any command module, or PyTorch (0.2 s instead of about
3 s); a command's module is imported when that command runs or shows its own help. The summaries repeat the
first paragraph of each command's docstring, and a test keeps them equal.
"""

from __future__ import annotations

import importlib
import signal
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

from restorekit.cli._console import ExitCode

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
        return get_group_from_info(TyperInfo(target, name=name), suggest_commands=app.suggest_commands, **settings)
    return get_command_from_info(CommandInfo(name=name, callback=target), **settings)


app = typer.Typer(
    name="restorekit",
    help="Image denoising and restoration with trained models.",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _group() -> None:  # makes ``app`` a group while its commands are still unregistered summaries
    pass


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point (``restorekit``); ``python -m restorekit`` calls it too.

    SIGTERM (``kill``, a job scheduler, a container stopping) stops a command the way Ctrl-C does: the file in
    progress is abandoned without a partial output, finished outputs stay, and the exit code is 130. Before a
    command runs, the process keeps freed memory for reuse (:func:`restorekit.inference.runtime.keep_freed_memory`).
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        app(obj=PROCESS)
    except KeyboardInterrupt:  # an interrupt outside a command (while starting up)
        raise SystemExit(ExitCode.INTERRUPTED) from None
