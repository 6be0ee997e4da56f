"""What every ``bench`` subcommand does alike: read list options, record its command line, show and save results."""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer

from restorekit._checks import check, fail
from restorekit.bench import report
from restorekit.bench.baselines import PEERS
from restorekit.bench.env import environment
from restorekit.cli._console import Reporter, console, print_json, progress, results, warning_line
from restorekit.cli._options import Json, Progress, ProgressMode, Verbose
from restorekit.cli.bench._options import Machine, Save

F = TypeVar("F", bound=Callable[..., Any])


def split(text: str) -> list[str]:
    """The items of a comma-separated option."""
    return [item.strip() for item in text.split(",") if item.strip()]


def peer_names(text: str) -> list[str]:
    """``--peers``: ``all``, ``none`` or names."""
    choice = text.strip().lower()
    return list(PEERS) if choice == "all" else [] if choice == "none" else split(text)


def numbers(text: str, option: str) -> list[float]:
    """Comma-separated numbers; whole numbers stay ``int`` (``σ=25``, not ``25.0``)."""
    try:
        values = [int(item) if item.isdigit() else float(item) for item in split(text)]
    except ValueError:
        fail(option, "comma-separated numbers", text)
    check(bool(values), option, "at least one value", text)
    return values


def command_line(context: typer.Context) -> str:
    """The running ``restorekit bench …`` command with the options given on the command line."""
    words = ["restorekit", "bench", context.info_name or ""]
    for param in context.command.params:
        value = context.params.get(param.name)
        source = context.get_parameter_source(param.name)
        if value is None or getattr(source, "name", "") != "COMMANDLINE":
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            item = getattr(item, "value", item)
            if param.param_type_name == "argument":
                words.append(str(item))
            elif getattr(param, "is_flag", False):
                words.append(param.opts[-1])
            else:
                words += [param.opts[-1], str(item)]
    return shlex.join(words)


def pick(rows: list[dict[str, Any]], shown: tuple[str, ...]) -> list[dict[str, Any]]:
    """The ``shown`` columns of each row, for the table."""
    return [{key: row[key] for key in shown} for row in rows]


@dataclass(frozen=True)
class Results:
    """Where a measuring subcommand's results go, from the options :func:`with_results` gives it."""

    machine: str | None
    save: list[Path]
    json: bool
    progress_mode: ProgressMode = ProgressMode.auto

    def progress(self, total: int, label: str) -> AbstractContextManager[Reporter]:
        """The progress display of ``--progress`` over ``total`` steps."""
        return progress(self.progress_mode, total, label)

    def publish(
        self,
        context: typer.Context,
        command: str,
        rows: list[dict[str, Any]],
        config: dict[str, Any],
        table: tuple[str, list[dict[str, Any]]],
        **sections: list[dict[str, Any]],
    ) -> None:
        """Make the results document of a run (:func:`restorekit.bench.report.payload`, recording this machine
        and the command line) and :func:`emit` it with the ``table`` = (title, rows)."""
        document = report.payload(command, rows, environment(self.machine), config, command_line(context), **sections)
        emit(document, table[1], table[0], self.json, self.save)


def with_results(progress: bool = True) -> Callable[[F], F]:
    """Give a subcommand, after its own options, ``--machine``, ``--save``, ``--progress`` (unless ``progress`` is
    false), ``--json`` and ``--verbose``, declared here once; it takes them as one keyword argument ``out``, a
    :class:`Results` (``--verbose`` is read by :func:`~restorekit.cli._console.handle_errors` alone).

    Example:
        >>> @with_results(progress=False)
        ... def command(size: int = 1, *, out: Results) -> None: ...
        >>> list(inspect.signature(command).parameters)
        ['size', 'machine', 'save', 'json', 'verbose']
    """
    shared = [("machine", Machine, None), ("save", Save, None), ("progress_mode", Progress, ProgressMode.auto)]
    shared += [("json", Json, False), ("verbose", Verbose, False)]
    shared = [option for option in shared if progress or option[0] != "progress_mode"]

    def decorate(command: F) -> F:
        own = inspect.signature(command, eval_str=True)
        options = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for name, a, d in shared
        ]

        @functools.wraps(command)
        def run(*args: Any, verbose: bool = False, **kwargs: Any) -> Any:
            del verbose  # handle_errors has read it
            chosen = {name: kwargs.pop(name) for name, _, _ in shared if name in kwargs}
            chosen["save"] = chosen.get("save") or []
            return command(*args, **kwargs, out=Results(**chosen))

        kept = [parameter for name, parameter in own.parameters.items() if name != "out"]
        run.__signature__ = own.replace(parameters=[*kept, *options])  # type: ignore[attr-defined]
        return run  # type: ignore[return-value]

    return decorate


def emit(document: dict[str, Any], table_rows: list[dict[str, Any]], title: str, json: bool, save: list[Path]) -> None:
    """Save the results where asked, then print them: JSON on stdout, or a table."""
    for path in save:
        report.save(document, path)
        console.print(f"wrote {path}")
    for message in dict.fromkeys(f"skipped {s['method']}: {s['reason']}" for s in document["skipped"]):
        warning_line(message)
    if not document["rows"]:
        warning_line("nothing was measured")
    if json:
        print_json(document)
    elif table_rows:
        columns = [c for c in report.columns_of(table_rows) if any(row.get(c) is not None for row in table_rows)]
        results.print(report.table(table_rows, title=title, columns=columns))
