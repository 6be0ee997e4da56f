"""Planning a batch: expand the inputs into image files and name each output.

Inputs are files, folders or glob patterns. A folder contributes its image files (by suffix), sorted; with
``recursive`` its whole tree, mirrored under the output folder. Hidden and system files (dotfiles,
``Thumbs.db``, ``desktop.ini``, anything under ``__MACOSX``) are ignored; a file named explicitly is always
taken, so a bad file gets its own error line instead of silence.

What a folder or a glob holds besides images is passed over and counted (:data:`NOT_AN_IMAGE`, :data:`CAMERA_RAW`),
and so is what restorekit made: the output folder of the run when it lies inside an input folder, and a file
named like an output (``<stem>_denoised``, ``_tuned``, ``_sweep``, ``_x2``, ``_x3``, ``_x4`` or the run's suffix)
beside the file it was made from (:data:`OWN_OUTPUT`). So a rerun never takes its own outputs for inputs.

An input that yields no image — a missing file, a folder without images, a pattern that matches none — becomes a
job that fails on its own, and so does an input that is not a regular file (symlink loops, named pipes,
sockets, devices: never opened), an output that resolves to an input, or one output named for two inputs.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from restorekit._checks import fail
from restorekit.errors import InputError, OutputError, RestoreKitError, UsageError
from restorekit.inference.io import (
    RAW_SUFFIXES,
    SUPPORTED_SUFFIXES,
    _sniff_format,
    check_input_file,
    format_suffix,
)

SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
GLOB_CHARS = re.compile(r"[*?\[]")
# The output suffixes of every command (denoise, tune --w, tune --sweep, sr --scale 2/3/4).
OUTPUT_SUFFIXES = ("_denoised", "_tuned", "_sweep", "_x2", "_x3", "_x4")
# Why a file met in a folder or a glob is not an input (the keys of the summary's ``skipped``).
NOT_AN_IMAGE = "not an image"
CAMERA_RAW = "camera RAW"
OWN_OUTPUT = "output of restorekit"
REASONS = (NOT_AN_IMAGE, CAMERA_RAW, OWN_OUTPUT)


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
        expected = "an output image file with a supported suffix, or a folder"
        fail("output", expected, str(output), valid=SUPPORTED_SUFFIXES)
    if output is not None and not to_file and output.is_file():
        raise UsageError(
            f"output {output}: expected a folder for several inputs (or one image file), got a file", parameter="output"
        )
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
    """Refuse an ``output`` under an existing file (``photo.png/out.png``), naming that file."""
    for parent in output.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UsageError(f"output {output}: {parent} is a file, not a folder", parameter="output")
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
        return OutputError(f"{target}: is an input; refusing to write over it (choose `output` or `suffix`)")
    if resolved in claimed:
        return OutputError(f"{target}: also the output of {claimed[resolved]}; use `recursive=True` or rename")
    return None
