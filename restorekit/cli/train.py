"""`restorekit train RECIPE.yaml`: train (or resume) a model from a recipe.

Under ``torchrun --nproc-per-node=N`` the same command trains data-parallel (:mod:`restorekit.train.loop`);
only rank 0 reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from restorekit.cli._console import console, handle_errors, print_json
from restorekit.cli._options import Json, Progress, ProgressMode, Verbose
from restorekit.errors import UsageError
from restorekit.train.config import load_recipe
from restorekit.train.loop import train as train_loop
from restorekit.train.loop import world_from_env


@handle_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Training recipe (YAML); see weights/recipes/.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe value: section.key=value (YAML value), repeatable."),
    ] = None,
    progress: Progress = ProgressMode.auto,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Train a model from a recipe; rerunning the same command resumes from the last checkpoint.

    Runs unchanged under torchrun (data-parallel over its processes; rank 0 reports).
    """
    overrides = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--set: expected section.key=value, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    config = load_recipe(recipe, overrides)
    mode = str(getattr(progress, "value", progress))
    if mode == "auto":
        mode = "rich" if console.is_terminal else "none"
    main = world_from_env().main
    weights = train_loop(config, progress=_progress_printer(mode) if main else None)
    if not main:
        return
    summary = {"weights": str(weights), "recipe": str(recipe), "iterations": config.optim.iterations}
    if json:
        print_json(summary)
    else:
        console.print(f"weights written to {weights}")


def _progress_printer(mode: str):
    """A progress callback: a line per logged step (rich) or a JSON line on stderr (jsonl)."""
    import json as json_module
    import sys

    def report(step: int, total: int, record: dict[str, Any]) -> None:
        if not record:
            return
        if mode == "jsonl":
            sys.stderr.write(json_module.dumps({"event": "progress", "step": step, "total": total, **record}) + "\n")
        elif mode == "rich":
            fields = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items())
            console.print(f"[bold]{step}/{total}[/]  {fields}")

    return report
