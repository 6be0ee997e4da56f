"""How a restoring command runs and shows a batch: its shared options (:func:`restoring`) become a
:class:`~restorekit.inference.api.Restoration`, and the batch shows progress, a line per file, the ``--json``
summary and the exit code.

The batch itself is the library's (:func:`restorekit.batch.restore_files`): planning, claims, engines, the
summary. This module only listens (:class:`Shown`, the batch's :class:`~restorekit.batch.Events`) and reports:
a rich bar or JSON lines on stderr (``--progress``), a line per file on stderr (``in → out`` and how it ran, or
why not), each failed file's red line, a closing line with the counts, and with ``--json`` the summary on
stdout. Every message goes through :func:`~restorekit.cli._console.describe`, so it names the command line's
options. With ``--progress jsonl``, Python warnings become ``warning`` records.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from restorekit.batch import Engine, Events, Result, Summary, restore_files
from restorekit.cli._console import Reporter, console, describe, error_line, print_json, progress
from restorekit.cli._options import RESTORING, DtypeChoice, EngineChoice, Inputs, ProgressMode
from restorekit.inference.api import Restoration

# What a command adds to a finished file's line (``tune --reference``: its scores), given the file's fields.
Show = Callable[[Path, dict[str, Any]], None]


class Shown(Events):
    """The batch's events, shown: progress on ``report``, a line per file (unless ``json_output``)."""

    def __init__(self, report: Reporter, json_output: bool, show: Show | None = None):
        self.report, self.json_output, self.show = report, json_output, show

    def planned(self, count: int) -> None:
        self.report.set_total(count)

    def start(self, source: Path) -> None:
        self.report.start(str(source))

    def tiles(self, done: int, total: int) -> None:
        self.report.tiles(done, total)

    def warn(self, message: str) -> None:
        self.report.warn(describe(message))

    def finished(self, result: Result) -> None:
        result.message = None if result.message is None else describe(result.message)
        if "notes" in result.fields:
            result.fields["notes"] = [describe(note) for note in result.fields["notes"]]
        jsonl = self.report.mode == "jsonl"
        if result.status == "failed":
            if not jsonl:
                error_line(result.message or "failed")
        elif not self.json_output:
            if result.status == "ok" and self.show is not None:
                self.show(result.job.source, result.fields)
            if not jsonl:
                _print_result(result)
        extra = {"error": result.message} if result.status == "failed" else {}
        self.report.done(str(result.job.source), status=result.status, **result.fields, **extra)


@dataclass(frozen=True)
class Restoring:
    """The shared options of a restoring command, as given (see :data:`~restorekit.cli._options.RESTORING`)."""

    inputs: list[Path]
    output: Path | None
    recursive: bool
    suffix: str | None
    overwrite: bool
    model: str | None
    device: str
    dtype: DtypeChoice
    tile: int | None
    ensemble: bool
    bit_depth: int | None
    quality: int | None
    max_pixels: int | None
    progress: ProgressMode
    json: bool
    engine: EngineChoice
    ray_address: str | None
    ray_actors: int | None
    verbose: bool

    def run(
        self, task: str, show: Show | None = None, sweep: int | None = None, reference: Path | None = None, **spec: Any
    ) -> None:
        """Restore the inputs as ``task`` with these options and the command's own ``spec`` settings (σ, ω,
        scale), show the batch and exit with its code (``sweep``, ``reference``: ``tune``'s)."""
        engine = Engine(self.engine.value, self.ray_address, self.ray_actors, self.verbose)
        restoration = Restoration(
            task=task, model=self.model, device=self.device, tile=self.tile, dtype=self.dtype.value,
            ensemble=self.ensemble, **spec,
        )  # fmt: skip
        run(
            task, self.inputs, progress_mode=self.progress.value, json_output=self.json, show=show, spec=restoration,
            output=self.output, recursive=self.recursive, suffix=self.suffix, overwrite=self.overwrite,
            bit_depth=self.bit_depth, quality=self.quality, max_pixels=self.max_pixels, engine=engine, sweep=sweep,
            reference=reference,
        )  # fmt: skip


def restoring(command: Callable[..., None]) -> Callable[..., None]:
    """Give a restoring command the shared options: ``command(options: Restoring, <its own options>)``.

    Typer reads the returned function's signature: ``inputs``, the command's own options, then
    :data:`~restorekit.cli._options.RESTORING`.
    """
    own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    shared = [inspect.Parameter(name, kind, annotation=hint, default=default) for name, hint, default in RESTORING]
    parameters = [inspect.Parameter("inputs", kind, annotation=Inputs), *own, *shared]

    @functools.wraps(command)
    def wrapper(**given: Any) -> None:
        options = Restoring(**{name: given.pop(name) for name in ("inputs", *(p.name for p in shared))})
        return command(options, **given)

    wrapper.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    del wrapper.__wrapped__  # Typer reads the signature above, not the command's own
    return wrapper


def run(
    command: str, inputs: Sequence[Path], *, progress_mode: str, json_output: bool, show: Show | None = None,
    **settings: Any,
) -> None:  # fmt: skip
    """Run :func:`~restorekit.batch.restore_files` with ``settings``, show it, and exit with its code.

    Raises:
        typer.Exit: Always, with the batch's exit code; an error that broke the batch is re-raised after the
            summary (the command's error boundary reports it).
    """
    with progress(progress_mode, total=0, label=command) as report, _python_warnings_to(report):
        summary = restore_files(inputs, events=Shown(report, json_output, show), **settings)
    _finish(summary, command, json_output, report)


def _finish(summary: Summary, command: str, json_output: bool, report: Reporter) -> None:
    """The ``--json`` summary, the closing lines and the batch's exit code (raised as ``typer.Exit``)."""
    outcome = summary.as_dict()
    files = outcome.pop("files")
    code = outcome.pop("exit_code")
    if json_output:
        extra = {} if summary.error is None else {"error": describe(summary.error)}
        print_json({"command": command, **outcome, **extra, "exit_code": code, "files": files})
    if summary.error is not None:
        raise summary.error
    if report.mode == "jsonl":
        report.end(**outcome, exit_code=code)
    else:
        if summary.interrupted:
            console.print("[yellow]interrupted[/]")
        if len(summary.results) > 1 or outcome["skipped"] or summary.interrupted:
            _print_summary(summary.results, summary.counts, outcome["skipped"])
    raise typer.Exit(code)


@contextlib.contextmanager
def _python_warnings_to(report: Reporter) -> Iterator[None]:
    """With JSON-line progress, Python warnings (a decoder's about a damaged tag) become ``warning`` records."""
    if report.mode != "jsonl":
        yield
        return
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, category, *_, **__: report.warn(f"{category.__name__}: {message}")
        yield


def _print_result(result: Result) -> None:
    """One line per file: ``in → out`` and the run information, or why it was skipped."""
    if result.status in ("exists", "claimed"):
        console.print(f"[yellow]skipped[/] {escape(result.message or '')}", soft_wrap=True)
        return
    fields = result.fields
    detail = " · ".join(
        part
        for part in (
            f"σ {fields['sigma']:.1f} ({fields['sigma_source']})" if fields.get("sigma") is not None else "",
            str(fields.get("model", "")),
            f"{fields.get('device', '')} {fields.get('dtype', '')}".strip(),
            f"tile {fields['tile']}" if fields.get("tile") else "",
            f"{fields['ms']:.0f} ms" if "ms" in fields else "",
        )
        if part
    )
    where = escape(f"{result.job.source} → {result.job.target}")
    console.print(f"[green]✓[/] {where}  [dim]{escape(detail)}[/]", soft_wrap=True)
    for note in fields.get("notes", ()):
        console.print(f"  [yellow]note:[/] {escape(note)}", soft_wrap=True)


def _print_summary(results: Sequence[Result], counts: dict[str, int], passed: dict[str, int]) -> None:
    """A closing line with the counts (and the tile the files ran at, where they share one), what the inputs
    held that was not taken, and the failed files listed again."""
    tiles = {r.fields.get("tile") for r in results if r.status == "ok"}
    tile = f" (tile {tiles.pop()})" if len(tiles) == 1 and None not in tiles else ""
    line = f"[bold]{counts['ok']} done[/]{tile}, {counts['exists']} skipped (output exists), "
    if counts["claimed"]:
        line += f"{counts['claimed']} skipped (in progress elsewhere), "
    line += f"[{'red' if counts['failed'] else 'bold'}]{counts['failed']} failed[/]"
    if passed:
        line += "; not inputs: " + ", ".join(f"{n} {reason}" for reason, n in passed.items())
    console.print(line, soft_wrap=True)
    for result in results:
        if result.status == "failed":
            console.print(f"  [red]✗[/] {escape(str(result.job.source))}", soft_wrap=True)
