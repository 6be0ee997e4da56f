"""The ``restorekit`` command: one Typer app, one thin module per command."""

from __future__ import annotations

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


def main() -> None:
    """Console-script entry point (``restorekit``); ``python -m restorekit`` calls it too."""
    keep_freed_memory()
    try:
        app()
    except KeyboardInterrupt:  # an interrupt outside a command (while starting up)
        raise SystemExit(ExitCode.INTERRUPTED) from None
