"""The ``restorekit`` command: one Typer app, one thin module per command."""

from __future__ import annotations

import signal

import typer

from restorekit.cli import bench, train
from restorekit.cli._console import ExitCode
from restorekit.cli.denoise import denoise
from restorekit.cli.models import models
from restorekit.cli.sample import sample
from restorekit.cli.sr import sr
from restorekit.cli.tune import tune
from restorekit.inference.runtime import keep_freed_memory

app = typer.Typer(
    name="restorekit",
    help="Image denoising and restoration with trained models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("denoise")(denoise)
app.command("sr")(sr)
app.command("tune")(tune)
app.command("models")(models)
app.command("train")(train.train)
app.command("sample")(sample)
app.add_typer(bench.app, name="bench")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point (``restorekit``); ``python -m restorekit`` calls it too.

    SIGTERM (``kill``, a job scheduler, a container stopping) stops a command the way Ctrl-C does: the file in
    progress is abandoned without a partial output, finished outputs stay, and the exit code is 130.
    """
    keep_freed_memory()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except KeyboardInterrupt:  # an interrupt outside a command (while starting up)
        raise SystemExit(ExitCode.INTERRUPTED) from None
