"""Batches of image files: expand the inputs, name the outputs, run each file, report and summarize.

Inputs are files, folders or glob patterns. A folder contributes its image files (by suffix), sorted; with
``recursive`` its whole tree, mirrored under the output folder. Hidden and system files (dotfiles,
``Thumbs.db``, ``desktop.ini``, anything under ``__MACOSX``) are ignored; a file named explicitly is always
taken, so a bad file gets its own error line instead of silence.

What a folder or a glob holds besides images is passed over and counted (:data:`NOT_AN_IMAGE`, :data:`CAMERA_RAW`,
with the hint for RAW files once), and so is what restorekit made: the output folder of the run when it lies
inside an input folder, and a file named like an output (``<stem>_denoised``, ``_tuned``, ``_sweep``, ``_x2``,
``_x3``, ``_x4`` or ``--suffix``) beside the file it was made from (:data:`OWN_OUTPUT`). So a rerun never takes
its own outputs for inputs.

An input that yields no image — a missing file, a folder without images, a pattern that matches none — fails
on its own line (exit 1 for that input) while the rest of the batch runs, like any other file that cannot be
used.

Inputs that are not regular files (symlink loops, named pipes, sockets, devices) are never opened: each gets
its one-line error while the batch plans, and the rest of the batch runs.

Safety: an existing output is never replaced without ``--overwrite`` (the file is skipped with status
``exists``); an output that resolves to an input is refused even with ``--overwrite``. Before a file runs, its
output is claimed (:mod:`restorekit.cli._claims`), so two runs on one output folder share the work: a file
another run has claimed is skipped with status ``claimed``, and is never written nor reported ``ok`` by both.
Outputs are written through a hidden temp file and moved into place (:func:`restorekit.inference.io.save_image`),
so an interrupted run leaves no partial outputs. A hard kill can leave a hidden ``.<name>.<hex>.part`` beside an
output; the next run removes the ones belonging to the outputs it writes.

Notes the tiling engine leaves while a file runs (:func:`restorekit.inference.tiling.collect_notes`: a tile
that makes the run several times slower) join that file's ``notes``; its warnings (a ``--tile`` below the
smallest useful tile) are printed once per batch.

The batch carries on past a failed file, past a file that runs out of memory (exit 4 for that file) and past a
stop signal only to report: on Ctrl-C, SIGTERM or SIGHUP the file in progress is abandoned, and the summary of
the files finished is printed (``"interrupted": true`` in JSON). Exit code: 0 when nothing failed (skipped files
are not failures); when some failed, 1 — or, when every file failed with the same kind of error, that error's
code (so a single-file run with a bad model exits 3, as documented); 130 (129 after SIGHUP) when stopped.

Engines. The batch is planned here (:func:`plan_jobs`), run by an engine, and reported here. The local engine
runs the jobs one after another in this process; the Ray engine (:mod:`restorekit.cli._ray`) streams them
through a pool of Ray actors. Each engine runs the same per-file function, :func:`run_one`, with the
command's :class:`Task` (plain settings that build the per-file function), and both feed the same reporting
(:func:`run_batch`), so outputs, messages, the ``--json`` summary and the exit code do not depend on the engine.

Testing hook: ``RESTOREKIT_TEST_DELAY_S`` (seconds, float) sleeps after each file, so that tests can
interrupt a batch deterministically between files (on the Ray engine, on the actors). It is not a user option.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from restorekit._checks import check, fail
from restorekit.cli import _claims, _signals
from restorekit.cli._console import (
    ExitCode,
    Reporter,
    console,
    describe,
    error_line,
    exit_code,
    print_json,
    progress,
)
from restorekit.errors import InputError, OutputError, RestoreKitError, UsageError
from restorekit.inference import runtime, tiling
from restorekit.inference.io import (
    RAW_SUFFIXES,
    SUPPORTED_SUFFIXES,
    _sniff_format,
    check_input_file,
    format_suffix,
    raw_error,
    temp_pattern,
)

SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
GLOB_CHARS = re.compile(r"[*?\[]")
DELAY_ENV = "RESTOREKIT_TEST_DELAY_S"
# The output suffixes of every command (denoise, tune --w, tune --sweep, sr --scale 2/3/4).
OUTPUT_SUFFIXES = ("_denoised", "_tuned", "_sweep", "_x2", "_x3", "_x4")
# Why a file met in a folder or a glob is not an input (the keys of the summary's ``skipped``).
NOT_AN_IMAGE = "not an image"
CAMERA_RAW = "camera RAW"
OWN_OUTPUT = "output of restorekit"
REASONS = (NOT_AN_IMAGE, CAMERA_RAW, OWN_OUTPUT)
STATUSES = ("ok", "exists", "claimed", "failed")

# A command's per-file function: ``process(source, target)`` writes the output and returns the run information.
Process = Callable[[Path, Path], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """One input and where its output goes (``None`` for an input that names no file); ``error`` is set when it
    must not run."""

    source: Path
    target: Path | None
    error: RestoreKitError | None = None


@dataclass(frozen=True)
class Plan(Sequence[Job]):
    """The jobs of a batch, and the files its folders and globs held that are not inputs, by reason."""

    jobs: tuple[Job, ...]
    skipped: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    def __getitem__(self, index: int) -> Job:  # type: ignore[override]
        return self.jobs[index]

    def __len__(self) -> int:
        return len(self.jobs)


@dataclass
class Result:
    """What happened to one job; ``fields`` holds the run information (σ, model, device, …)."""

    job: Job
    status: str  # ok | exists | claimed | failed
    message: str | None = None
    code: int = ExitCode.OK
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record for the ``--json`` summary."""
        return {
            "input": str(self.job.source),
            "output": None if self.job.target is None else str(self.job.target),
            "status": self.status,
            "error": self.message if self.status == "failed" else None,
        }


@dataclass
class Expansion:
    """What the inputs expand to, in order: ``(file, path relative to its input)`` pairs, or for an input that
    yields no image, ``(input, its one-line error)``; and the files passed over, by reason."""

    entries: list[tuple[Path, Path | InputError]] = field(default_factory=list)
    skipped: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def pairs(self) -> list[tuple[Path, Path]]:
        """The ``(file, relative path)`` pairs."""
        return [(path, relative) for path, relative in self.entries if isinstance(relative, Path)]


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


def _not_an_input(path: Path) -> str | None:
    """Why a file met in a folder or a glob is passed over (:data:`NOT_AN_IMAGE`, :data:`CAMERA_RAW`), or
    ``None`` for an image."""
    suffix = path.suffix.lower()
    if suffix in SUPPORTED_SUFFIXES:
        return None
    return CAMERA_RAW if suffix in RAW_SUFFIXES else NOT_AN_IMAGE


def _folder_files(folder: Path, recursive: bool, excluded: Path | None) -> list[Path]:
    """Files of ``folder`` (its tree with ``recursive``), hidden/system entries and the folder ``excluded`` (the
    run's output folder, resolved) pruned, sorted."""
    found: list[Path] = []
    for root, folders, files in os.walk(folder):
        kept = (d for d in folders if not _ignored(Path(d)) and _resolved(Path(root, d)) != excluded)
        folders[:] = sorted(kept) if recursive else []
        found += [Path(root, f) for f in files if not _ignored(Path(f))]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def expand_inputs(
    inputs: Sequence[Path], recursive: bool, output: Path | None = None, suffixes: Sequence[str] = OUTPUT_SUFFIXES
) -> Expansion:
    """Expand files, folders and globs into ``(file, path relative to its input)`` pairs, duplicates dropped.

    An explicit file is always taken (a missing one fails on its own, "no such file"). In folders and globs,
    files that are not images and restorekit's own outputs are passed over (see the module docstring): the
    output folder ``output`` (when it is inside an input folder) is not entered, and an image named like an
    output (its stem ending in one of ``suffixes``) beside the image it was made from is skipped. A folder or
    glob that yields no image comes back in its place in ``entries`` with its one-line error.
    """
    expansion = Expansion()
    excluded = _resolved(output) if output is not None and output.is_dir() else None
    found: list[tuple[Path, Path]] = []  # from folders and globs, where the own-output rule applies
    for spec in inputs:
        if spec.is_dir():
            candidates = [(p, p.relative_to(spec)) for p in _folder_files(spec, recursive, excluded)]
            nothing = f"{spec}: no images found (looked for {', '.join(SUPPORTED_SUFFIXES)})"
        elif not spec.exists() and GLOB_CHARS.search(str(spec)):
            matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=recursive))
            candidates = [(m, Path(m.name)) for m in matches if m.is_file() and not _ignored(m)]
            candidates = [(m, r) for m, r in candidates if excluded is None or excluded not in _resolved(m).parents]
            for folder in (m for m in matches if m.is_dir() and not _ignored(m) and _resolved(m) != excluded):
                candidates += [(p, p.relative_to(folder)) for p in _folder_files(folder, recursive, excluded)]
            nothing = f"{spec}: the pattern matches no image files"
        else:
            expansion.entries.append((spec, Path(spec.name)))
            continue
        images, passed = [], Counter()
        for path, relative in candidates:
            reason = _not_an_input(path)
            if reason is None:
                images.append((path, relative))
            else:
                expansion.skipped.setdefault(reason, []).append(path)
                passed[reason] += 1
        if not images:
            detail = ", ".join(f"{passed[reason]} {reason}" for reason in REASONS if passed[reason])
            expansion.entries.append((spec, InputError(nothing + (f"; skipped {detail}" if detail else ""))))
        found += images
        expansion.entries += images
    own = set(_own_outputs([path for path, _ in found], suffixes))
    if own:
        expansion.skipped[OWN_OUTPUT] = sorted(own)
    expansion.skipped = {reason: expansion.skipped[reason] for reason in REASONS if reason in expansion.skipped}
    seen: set[Path] = set()
    unique: list[tuple[Path, Path | InputError]] = []
    for path, relative in expansion.entries:
        key = _resolved(path)
        if isinstance(relative, InputError) or (path not in own and key not in seen):
            seen.add(key)
            unique.append((path, relative))
    expansion.entries = unique
    return expansion


def _own_outputs(images: Sequence[Path], suffixes: Sequence[str]) -> Iterator[Path]:
    """The images named like an output of one of the others: ``<stem><suffix>…`` beside ``<stem>`` (any image
    suffix), each ``suffix`` one of ``suffixes`` (``a_denoised_x2.png`` beside ``a.png``)."""
    stems = {(path.parent, path.stem) for path in images}
    suffixes = [suffix for suffix in suffixes if suffix]
    for path in images:
        stem = path.stem
        while (suffix := next((s for s in suffixes if stem.endswith(s) and len(stem) > len(s)), None)) is not None:
            stem = stem[: -len(suffix)]
            if (path.parent, stem) in stems:
                yield path
                break


def plan_jobs(
    inputs: Sequence[Path], output: Path | None, recursive: bool, suffix: str | None, default_suffix: str
) -> Plan:
    """Expand the inputs and name each output.

    Args:
        inputs: Files, folders or glob patterns.
        output: An output file (a single input file), an output folder, or ``None`` (beside each input).
        recursive: Descend into sub-folders; the tree is mirrored under ``output``.
        suffix: Appended to each output stem; ``None`` means ``default_suffix``, or nothing when
            ``output`` is a folder.
        default_suffix: The command's suffix, e.g. ``_denoised``.

    An output name keeps its input's suffix; an input without an image suffix (a file named explicitly, whose
    format is read from its content) gets the suffix of its format appended (``scan`` → ``scan_denoised.png``).

    Raises:
        UsageError: ``-o`` lies under an existing file, names a file for several inputs, or an output file with
            an unsupported suffix.
    """
    if output is not None:
        _check_output_path(output)
    own_suffixes = (*OUTPUT_SUFFIXES, default_suffix if suffix is None else suffix)
    expansion = expand_inputs(inputs, recursive, output, own_suffixes)
    pairs = expansion.pairs
    single_file = len(expansion.entries) == 1 == len(pairs) == len(inputs) and inputs[0] == pairs[0][0]
    single_file = single_file and not inputs[0].is_dir()
    to_file = output is not None and single_file and not output.is_dir() and bool(output.suffix)
    if to_file and output.suffix.lower() not in SUPPORTED_SUFFIXES:
        fail("-o", "an output image file with a supported suffix, or a folder", str(output), valid=SUPPORTED_SUFFIXES)
    if output is not None and not to_file and output.is_file():
        raise UsageError(f"-o {output}: expected a folder for several inputs (or one image file), got a file")
    if suffix is None:
        suffix = "" if output is not None and not to_file else default_suffix
    sources = {_resolved(path) for path, _ in pairs}
    jobs = []
    claimed: dict[Path, Path] = {}
    for path, relative in expansion.entries:
        if isinstance(relative, InputError):
            jobs.append(Job(path, None, relative))
            continue
        if to_file:
            target = output
        else:
            folder = path.parent if output is None else output / relative.parent
            target = folder / _output_name(path, relative, suffix)
        resolved = _resolved(target)
        jobs.append(Job(path, target, _job_error(path, target, resolved, sources, claimed)))
        claimed.setdefault(resolved, path)
    skipped = {reason: tuple(paths) for reason, paths in expansion.skipped.items()}
    return Plan(tuple(jobs), skipped)


def _check_output_path(output: Path) -> None:
    """Refuse an ``-o`` under an existing file (``-o photo.png/out.png``), naming that file."""
    for parent in output.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UsageError(f"-o {output}: {parent} is a file, not a folder")
            return


def _output_name(path: Path, relative: Path, suffix: str) -> str:
    """``<stem><suffix><ext>`` for an input with an image suffix, else ``<name><suffix>`` and its format's
    suffix (read from its first bytes; left as it is where they name no image, whose read then fails)."""
    if path.suffix.lower() in SUPPORTED_SUFFIXES or path.suffix.lower() in RAW_SUFFIXES:
        return f"{relative.stem}{suffix}{path.suffix}"
    try:
        check_input_file(path)  # never open a pipe or a device
        with open(path, "rb") as fh:
            extension = format_suffix(_sniff_format(fh.read(16), path))
    except (OSError, RestoreKitError, StopIteration):
        extension = path.suffix
    return f"{relative.name}{suffix}{extension}"


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
    """Remove hidden temp files a hard-killed run left for ``target`` (:func:`~restorekit.inference.io.temp_path`).

    Called while this run holds ``target``'s claim, so no live run is writing them.
    """
    pattern = temp_pattern(target)
    with contextlib.suppress(OSError):
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
    the decode limit, ``quality`` the ``--quality`` of JPEG/WebP/HEIC outputs (``None``: the source's).
    """

    model: str | None
    device: str
    tile: int | None
    precision: str
    bit_depth: int | None
    max_pixels: int
    overwrite: bool
    quality: int | None = None

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
    or raises a :class:`RestoreKitError`, which fails that file only (as does running out of memory). In the
    ``--json`` summary every file record has ``input``, ``output``, ``status``, ``error`` and each of
    ``info_keys`` (``null`` where it did not run), in the order of ``jobs`` whatever order the results came in;
    the summary also counts what the inputs held that was not taken (``skipped``, from a :class:`Plan`) and says
    whether a stop signal ended the batch (``interrupted``, with the files finished before it). Raises
    ``typer.Exit`` with the batch's exit code.
    """
    results: dict[int, Result] = {}
    skipped = jobs.skipped if isinstance(jobs, Plan) else {}
    stop: BaseException | None = None
    with _signals.deferred():  # a stop signal stops a file's work (interruptible), never the bookkeeping
        with (
            progress(progress_mode, total=len(jobs), label=command) as report,
            tiling.report_tiles(report.tiles),
            tiling.report_warnings(report.warn),
            _python_warnings_to(report),
        ):
            if CAMERA_RAW in skipped:
                count, first = len(skipped[CAMERA_RAW]), skipped[CAMERA_RAW][0]
                report.warn(f"{raw_error(first)} ({count} camera RAW file{'s' * (count > 1)} skipped)")
            try:
                if engine.kind == "ray":
                    from restorekit.cli import _ray

                    outcomes = _interruptible(_ray.execute(jobs, task, overwrite, engine))
                else:
                    outcomes = _execute_local(jobs, task, overwrite, lambda job: report.start(str(job.source)))
                for index, result in outcomes:
                    results[index] = result
                    _report(result, task, report, json_output)
            except (KeyboardInterrupt, Exception) as exc:  # the summary of what finished comes first
                stop = exc
            finally:
                _claims.release_all()  # none is left however the batch ended
        _finish([results[i] for i in sorted(results)], command, info_keys, json_output, report, skipped, stop)


def _interruptible(outcomes: Iterator[tuple[int, Result]]) -> Iterator[tuple[int, Result]]:
    """``outcomes``, with a stop signal let through while the next one is awaited (the Ray engine's wait)."""
    while True:
        with _signals.interruptible():
            outcome = next(outcomes, None)
        if outcome is None:
            return
        yield outcome


def _report(result: Result, task: Task, report: Reporter, json_output: bool) -> None:
    """What a finished file shows: its line (or error line) on stderr, the task's own lines, its progress record."""
    jsonl = report.mode == "jsonl"
    if result.status == "failed":
        if not jsonl:
            error_line(result.message or "failed")
    elif not json_output:
        if result.status == "ok":
            task.show(result.job.source, result.fields)
        if not jsonl:
            _print_result(result)
    extra = {"error": result.message} if result.status == "failed" else {}
    report.done(str(result.job.source), status=result.status, **result.fields, **extra)


@contextlib.contextmanager
def _python_warnings_to(report: Reporter) -> Iterator[None]:
    """With JSON-line progress, Python warnings (a decoder's about a damaged tag) become ``warning`` records."""
    if report.mode != "jsonl":
        yield
        return
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, category, *_, **__: report.warn(f"{category.__name__}: {message}")
        yield


def _execute_local(
    jobs: Sequence[Job], task: Task, overwrite: bool, started: Callable[[Job], None]
) -> Iterator[tuple[int, Result]]:
    """The local engine: each job in turn, in this process; yields ``(index in jobs, result)``."""
    process = None
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    for index, job in enumerate(jobs):
        with _signals.interruptible():  # a signal that came between files stops the batch here
            started(job)
        done = settled(job, overwrite)
        if done is None and process is None:
            with _signals.interruptible():
                process = task.build()  # the model loads once, and only when a file needs it
        yield index, done or run_one(job, process, overwrite)
        if delay:
            with _signals.interruptible():
                time.sleep(delay)


def _finish(
    results: Sequence[Result],
    command: str,
    info_keys: Sequence[str],
    json_output: bool,
    report: Reporter,
    skipped: dict[str, tuple[Path, ...]],
    stop: BaseException | None,
) -> None:
    """The ``--json`` summary, the closing lines and the batch's exit code (raised as ``typer.Exit``).

    A stop signal received before the summary gives the summary of the files finished before it,
    ``interrupted`` and 130 (129 after SIGHUP); an error that broke the batch itself is re-raised after the
    summary (the command's error boundary reports it, :func:`~restorekit.cli._console.handle_errors`).
    """
    _signals.finish()
    interrupted = isinstance(stop, KeyboardInterrupt) or (stop is None and _signals.received() is not None)
    error = None if interrupted else stop
    if interrupted:
        code = _signals.exit_code()
    elif error is not None:
        code = exit_code(error) if isinstance(error, RestoreKitError) else int(ExitCode.FAILED)
    else:
        code = _batch_exit_code(results)
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    passed = {reason: len(paths) for reason, paths in skipped.items() if paths}
    outcome = {**counts, "skipped": passed, "interrupted": interrupted}
    if json_output:
        files = [{**r.as_dict(), **{key: r.fields.get(key) for key in info_keys}} for r in results]
        extra = {} if error is None else {"error": describe(error)}
        print_json({"command": command, **outcome, **extra, "exit_code": int(code), "files": files})
    if error is not None:
        raise error
    if report.mode == "jsonl":
        report.end(**outcome, exit_code=int(code))
    else:
        if interrupted:
            console.print("[yellow]interrupted[/]")
        if len(results) > 1 or passed or interrupted:
            _print_summary(results, counts, passed)
    raise typer.Exit(int(code))


def settled(job: Job, overwrite: bool) -> Result | None:
    """The result of a job that must not run (refused while planning, or its output exists), else ``None``."""
    if job.error is not None or job.target is None:
        return _failed(job, job.error or InputError(f"{job.source}: nothing to do"))
    if job.target.exists() and not overwrite:
        return Result(job, "exists", f"{job.target}: already exists (use --overwrite)")
    return None


def run_one(job: Job, process: Process | None, overwrite: bool) -> Result:
    """Run one job: skip it if :func:`settled` or claimed by another run, clear a killed run's temp files, run
    ``process``, catch its error.

    This is the whole per-file work of both engines (the Ray engine runs it on its actors). The output is
    claimed for the time the file runs (:mod:`restorekit.cli._claims`), and the claim released whatever happens.
    """
    done = settled(job, overwrite)
    if done is not None or process is None or job.target is None:
        return done or _failed(job, InputError(f"{job.source}: nothing to do"))
    target = job.target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _failed(job, OutputError(f"{target.parent}: cannot create the output folder ({exc.strerror or exc})"))
    claim = None
    try:
        try:
            with _signals.deferred():  # a stop signal waits until the claim is known, so that it is released
                claim = _claims.acquire(target)
        except OSError as exc:  # a read-only folder, a full disk
            return _failed(job, OutputError(f"{target}: cannot write ({exc.strerror or exc})"))
        if claim is None:
            return Result(job, "claimed", f"{target}: in progress elsewhere (another restorekit run has claimed it)")
        return settled(job, overwrite) or _run_claimed(job, process)  # it may have been finished meanwhile
    finally:
        if claim is not None:
            _claims.release(claim)


def _run_claimed(job: Job, process: Process) -> Result:
    """Run ``process`` on a claimed job; its errors, and running out of memory, fail this file only.

    After a file that ran out of memory, the memory it held goes back to the system (so that the next file
    has the room an address-space limit allows).
    """
    _remove_stale_parts(job.target)
    try:
        with tiling.collect_notes([]) as notes, _signals.interruptible():
            fields = process(job.source, job.target)
        return Result(job, "ok", fields=_with_notes(fields, notes))
    except RestoreKitError as exc:
        result = _failed(job, exc)
    except Exception as exc:  # MemoryError, and the allocators' RuntimeErrors
        if not tiling.is_out_of_memory(exc):
            raise
        message = f"{job.source}: out of memory (try a smaller --tile, or close other programs)"
        result = Result(job, "failed", message, ExitCode.DEVICE)
    if result.code == ExitCode.DEVICE:
        runtime.release_freed_memory()
    return result


def _failed(job: Job, error: RestoreKitError) -> Result:
    """A failed result whose message names the file (the library's messages about an image or a model may not)."""
    message = describe(error)
    if not any(str(path) in message for path in (job.source, job.target) if path is not None):
        message = f"{job.source}: {message}"
    return Result(job, "failed", message, exit_code(error))


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
