"""Batches of image files: expand the inputs, name the outputs, run each file, report and summarize.

Inputs are files, folders or glob patterns. A folder contributes its image files (by suffix), sorted; with
``recursive`` its whole tree, mirrored under the output folder. Hidden and system files (dotfiles,
``Thumbs.db``, ``desktop.ini``, anything under ``__MACOSX``) are ignored; a file named explicitly is always
taken, so a bad file gets its own error line instead of silence.

Inputs that are not regular files (symlink loops, named pipes, sockets, devices) are never opened: each gets
its one-line error while the batch plans, and the rest of the batch runs.

Safety: an existing output is never replaced without ``--overwrite`` (the file is skipped with status
``exists``); an output that resolves to an input is refused even with ``--overwrite``. Outputs are written
through a hidden temp file and renamed (:func:`restorekit.inference.io.save_image`), so an interrupted run
leaves no partial outputs. A hard kill can leave a hidden ``.<name>.<hex>.part`` beside an output; the next
run removes the ones belonging to the outputs it writes.

Notes the tiling engine leaves while a file runs (:func:`restorekit.inference.tiling.collect_notes`: a tile
that makes the run several times slower) join that file's ``notes``.

The batch carries on past a failed file. Exit code: 0 when nothing failed (skipped files are not failures);
when some failed, 1 — or, when every file failed with the same kind of error, that error's code (so a
single-file run with a bad model exits 3, as documented).

Engines. The batch is planned here (:func:`plan_jobs`), run by an engine, and reported here. The local engine
runs the jobs one after another in this process; the Ray engine (:mod:`restorekit.cli._ray`) streams them
through a pool of Ray actors. Each engine runs the same per-file function, :func:`run_one`, with the
command's :class:`Task` (plain settings that build the per-file function), and both feed the same reporting
(:func:`run_batch`), so outputs, messages, the ``--json`` summary and the exit code do not depend on the engine.

Testing hook: ``RESTOREKIT_TEST_DELAY_S`` (seconds, float) sleeps after each file, so that tests can
interrupt a batch deterministically between files (on the Ray engine, on the actors). It is not a user option.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from restorekit._checks import check, fail
from restorekit.cli._console import ExitCode, console, describe, error_line, exit_code, print_json, progress
from restorekit.errors import InputError, OutputError, RestoreKitError, UsageError
from restorekit.inference import tiling
from restorekit.inference.io import SUPPORTED_SUFFIXES, check_input_file

SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
GLOB_CHARS = re.compile(r"[*?\[]")
DELAY_ENV = "RESTOREKIT_TEST_DELAY_S"

# A command's per-file function: ``process(source, target)`` writes the output and returns the run information.
Process = Callable[[Path, Path], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes; ``error`` is set when it must not run."""

    source: Path
    target: Path
    error: RestoreKitError | None = None


@dataclass
class Result:
    """What happened to one job; ``fields`` holds the run information (σ, model, device, …)."""

    job: Job
    status: str  # ok | exists | failed
    message: str | None = None
    code: int = ExitCode.OK
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record for the ``--json`` summary."""
        return {
            "input": str(self.job.source),
            "output": str(self.job.target),
            "status": self.status,
            "error": self.message if self.status == "failed" else None,
        }


def _resolved(path: Path) -> Path:
    """``path`` made absolute with its symlinks resolved; a symlink loop or an unreadable link stays as it is."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return Path(os.path.abspath(path))


def _ignored(path: Path) -> bool:
    """Hidden or system file or folder."""
    name = path.name.lower()
    return name.startswith(".") or name in SYSTEM_FILES or name in SYSTEM_FOLDERS


def _folder_images(folder: Path, recursive: bool) -> list[Path]:
    """Image files of ``folder`` (its tree with ``recursive``), hidden/system entries pruned, sorted."""
    found: list[Path] = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(d for d in folders if not _ignored(Path(d))) if recursive else []
        found += [
            Path(root, f) for f in files if not _ignored(Path(f)) and Path(f).suffix.lower() in SUPPORTED_SUFFIXES
        ]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def expand_inputs(inputs: Sequence[Path], recursive: bool) -> list[tuple[Path, Path]]:
    """Expand files, folders and globs into ``(file, path relative to its input)`` pairs, duplicates dropped.

    A missing explicit file comes back as itself (its job then fails with "no such file"); a glob or folder
    that matches no image raises :class:`UsageError`.
    """
    pairs: list[tuple[Path, Path]] = []
    for spec in inputs:
        if spec.is_dir():
            found = [(p, p.relative_to(spec)) for p in _folder_images(spec, recursive)]
            if not found:
                raise UsageError(f"{spec}: no images found (looked for {', '.join(SUPPORTED_SUFFIXES)})")
            pairs += found
        elif not spec.exists() and GLOB_CHARS.search(str(spec)):
            matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=recursive))
            found = [
                (m, Path(m.name))
                for m in matches
                if m.is_file() and not _ignored(m) and m.suffix.lower() in SUPPORTED_SUFFIXES
            ]
            for folder in (m for m in matches if m.is_dir() and not _ignored(m)):
                found += [(p, p.relative_to(folder)) for p in _folder_images(folder, recursive)]
            if not found:
                raise UsageError(f"{spec}: the pattern matches no image files")
            pairs += found
        else:
            pairs.append((spec, Path(spec.name)))
    seen: set[Path] = set()
    unique = []
    for path, relative in pairs:
        key = _resolved(path)
        if key not in seen:
            seen.add(key)
            unique.append((path, relative))
    return unique


def plan_jobs(
    inputs: Sequence[Path], output: Path | None, recursive: bool, suffix: str | None, default_suffix: str
) -> list[Job]:
    """Expand the inputs and name each output.

    Args:
        inputs: Files, folders or glob patterns.
        output: An output file (a single input file), an output folder, or ``None`` (beside each input).
        recursive: Descend into sub-folders; the tree is mirrored under ``output``.
        suffix: Appended to each output stem; ``None`` means ``default_suffix``, or nothing when
            ``output`` is a folder.
        default_suffix: The command's suffix, e.g. ``_denoised``.
    """
    pairs = expand_inputs(inputs, recursive)
    single_file = len(inputs) == 1 and len(pairs) == 1 and not inputs[0].is_dir() and inputs[0] == pairs[0][0]
    to_file = output is not None and single_file and not output.is_dir() and bool(output.suffix)
    if to_file and output.suffix.lower() not in SUPPORTED_SUFFIXES:
        fail("-o", "an output image file with a supported suffix, or a folder", str(output), valid=SUPPORTED_SUFFIXES)
    if output is not None and not to_file and output.is_file():
        raise UsageError(f"-o {output}: expected a folder for several inputs (or one image file), got a file")
    if suffix is None:
        suffix = "" if output is not None and not to_file else default_suffix
    sources = {_resolved(path) for path, _ in pairs}
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for path, relative in pairs:
        if to_file:
            target = output
        else:
            folder = path.parent if output is None else output / relative.parent
            target = folder / f"{relative.stem}{suffix}{path.suffix}"
        resolved = _resolved(target)
        jobs.append(Job(path, target, _job_error(path, target, resolved, sources, claimed)))
        claimed.setdefault(resolved, path)
    return jobs


def _job_error(
    path: Path, target: Path, resolved: Path, sources: set[Path], claimed: dict[Path, Path]
) -> RestoreKitError | None:
    """Why a job must not run: its input is not a regular file, or its output is an input or another's output."""
    try:
        check_input_file(path)  # only looks: opening a named pipe would wait for a writer
    except InputError as exc:
        return exc
    if resolved in sources:
        return OutputError(f"{target}: is an input; refusing to write over it (choose -o or --suffix)")
    if resolved in claimed:
        return OutputError(f"{target}: also the output of {claimed[resolved]}; use -r or rename")
    return None


def _remove_stale_parts(target: Path) -> None:
    """Remove hidden temp files a hard-killed run left for ``target`` (``.<name>.<8 hex>.part``)."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{8}}\.part")
    if target.parent.is_dir():
        for leftover in target.parent.iterdir():
            if pattern.fullmatch(leftover.name):
                leftover.unlink(missing_ok=True)


@dataclass(frozen=True, kw_only=True)
class Task:
    """What a command does to one file, described by plain settings (a frozen dataclass in each command).

    Both engines run a command through its task: :meth:`build` returns the per-file function (loading what it
    needs once), and the settings are picklable, so a Ray actor rebuilds the same function from them. So the
    two engines cannot drift apart. The settings every model-running command shares live here; ``device`` is
    ``--device`` as typed (resolved where the model runs), ``precision`` the ``--dtype`` value, ``max_pixels``
    the decode limit.
    """

    model: str | None
    device: str
    tile: int | None
    precision: str
    bit_depth: int | None
    max_pixels: int
    overwrite: bool

    def build(self) -> Process:
        """The per-file function ``process(source, target) -> run information`` (see :func:`run_batch`)."""
        raise NotImplementedError

    def show(self, source: Path, fields: dict[str, Any]) -> None:
        """Print what a finished file adds to its line on stdout (without ``--json``); nothing by default."""


@dataclass(frozen=True)
class Engine:
    """Where a batch runs: ``local`` (this process, one file after another) or ``ray`` (a pool of Ray actors).

    ``address`` is the Ray cluster to join (``None``: start a local one, or use the session already started in
    this process); ``actors`` the size of the actor pool (``None``: one per GPU, else one per 4 CPUs).
    """

    kind: str = "local"
    address: str | None = None
    actors: int | None = None
    verbose: bool = False


def batch_engine(kind: str, address: str | None, actors: int | None, verbose: bool) -> Engine:
    """Check the engine options of a command (``--engine``, ``--ray-address``, ``--ray-actors``).

    Raises:
        UsageError: A Ray option without ``--engine ray``, or ``--engine ray`` without Ray installed.
    """
    kind = str(getattr(kind, "value", kind))
    if kind == "ray":
        from restorekit.cli import _ray

        _ray.require()
    else:
        for option, value in (("--ray-address", address), ("--ray-actors", actors)):
            check(value is None, option, "--engine ray with it", f"--engine {kind}")
    return Engine(kind, address, actors, verbose)


def run_batch(
    jobs: Sequence[Job],
    task: Task,
    *,
    command: str,
    info_keys: Sequence[str],
    overwrite: bool,
    progress_mode: str,
    json_output: bool,
    engine: Engine = Engine(),
) -> None:
    """Run ``task`` on each job, on ``engine``; report progress and results, and exit.

    The task's per-file function returns the run information to report (σ, model, device, dtype, tile, ms, …)
    or raises a :class:`RestoreKitError`, which fails that file only. In the ``--json`` summary every file
    record has ``input``, ``output``, ``status``, ``error`` and each of ``info_keys`` (``null`` where it did not
    run), in the order of ``jobs`` whatever order the results came in. Raises ``typer.Exit`` with the batch's
    exit code.
    """
    results: dict[int, Result] = {}
    with progress(progress_mode, total=len(jobs), label=command) as report, tiling.report_tiles(report.tiles):
        if engine.kind == "ray":
            from restorekit.cli import _ray

            outcomes = _ray.execute(jobs, task, overwrite, engine)
        else:
            outcomes = _execute_local(jobs, task, overwrite, lambda job: report.start(str(job.source)))
        for index, result in outcomes:
            results[index] = result
            if result.status == "failed":
                error_line(result.message or "failed")
            elif not json_output:
                if result.status == "ok":
                    task.show(result.job.source, result.fields)
                _print_result(result)
            report.done(str(result.job.source), status=result.status, **result.fields)
    _finish([results[index] for index in sorted(results)], command, info_keys, json_output)


def _execute_local(
    jobs: Sequence[Job], task: Task, overwrite: bool, started: Callable[[Job], None]
) -> Iterator[tuple[int, Result]]:
    """The local engine: each job in turn, in this process; yields ``(index in jobs, result)``."""
    process = task.build()
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    for index, job in enumerate(jobs):
        started(job)
        yield index, run_one(job, process, overwrite)
        if delay:
            time.sleep(delay)


def _finish(results: Sequence[Result], command: str, info_keys: Sequence[str], json_output: bool) -> None:
    """The ``--json`` summary, the closing lines and the batch's exit code (raised as ``typer.Exit``)."""
    code = _batch_exit_code(results)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "exists", "failed")}
    if json_output:
        files = [{**r.as_dict(), **{key: r.fields.get(key) for key in info_keys}} for r in results]
        print_json({"command": command, **counts, "exit_code": int(code), "files": files})
    if len(results) > 1 or counts["failed"]:
        _print_summary(results, counts)
    raise typer.Exit(int(code))


def settled(job: Job, overwrite: bool) -> Result | None:
    """The result of a job that must not run (refused while planning, or its output exists), else ``None``."""
    if job.error is not None:
        return Result(job, "failed", describe(job.error), exit_code(job.error))
    if job.target.exists() and not overwrite:
        return Result(job, "exists", f"{job.target}: already exists (use --overwrite)")
    return None


def run_one(job: Job, process: Process, overwrite: bool) -> Result:
    """Run one job: skip it if :func:`settled`, clear a killed run's temp files, run ``process``, catch its error.

    This is the whole per-file work of both engines (the Ray engine runs it on its actors).
    """
    done = settled(job, overwrite)
    if done is not None:
        return done
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(job.target)
    except OSError as exc:
        error = OutputError(f"{job.target.parent}: cannot create the output folder ({exc.strerror or exc})")
        return Result(job, "failed", str(error), exit_code(error))
    try:
        with tiling.collect_notes([]) as notes:
            fields = process(job.source, job.target)
        return Result(job, "ok", fields=_with_notes(fields, notes))
    except RestoreKitError as exc:
        return Result(job, "failed", describe(exc), exit_code(exc))
    except MemoryError:
        return Result(job, "failed", f"{job.source}: out of memory", ExitCode.DEVICE)


def _with_notes(fields: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """``fields`` with the engine's tiling notes added to its ``notes`` (those not already there)."""
    known = list(fields.get("notes") or ())
    extra = [note for note in notes if note not in known]
    return {**fields, "notes": known + extra} if extra else fields


def _batch_exit_code(results: Sequence[Result]) -> int:
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return ExitCode.OK
    codes = {r.code for r in failed}
    if len(failed) == len(results) and len(codes) == 1:
        return codes.pop()
    return ExitCode.FAILED


def _print_result(result: Result) -> None:
    """One line per file: ``in → out`` and the run information, or why it was skipped."""
    if result.status == "exists":
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


def _print_summary(results: Sequence[Result], counts: dict[str, int]) -> None:
    """A closing line with the counts, and the failed files listed again."""
    console.print(
        f"[bold]{counts['ok']} done[/], {counts['exists']} skipped (output exists), "
        f"[{'red' if counts['failed'] else 'bold'}]{counts['failed']} failed[/]"
    )
    for result in results:
        if result.status == "failed":
            console.print(f"  [red]✗[/] {escape(str(result.job.source))}", soft_wrap=True)
