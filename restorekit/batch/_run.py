"""Run a batch: plan it, run each file on an engine, tell what happens, and sum it up.

The batch is planned (:func:`~restorekit.batch._plan.plan_jobs`), run by an engine and summed up here. The
local engine runs the jobs one after another in this process; the Ray engine (:mod:`restorekit.batch._ray`)
streams them through a pool of Ray actors. Both run each file through the same function,
:func:`~restorekit.batch._jobs.run_one`, so outputs, messages, the summary and its exit code do not depend on
the engine.

The batch carries on past a failed file, past a file that runs out of memory (code 4 for that file) and past a
stop signal only to sum up: on a stop (:mod:`restorekit.batch._signals`) the file in progress is abandoned and the
summary holds the files finished (``interrupted``). Claims on outputs are released however the batch ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restorekit._checks import check, check_choice
from restorekit.batch import _claims, _ray, _signals
from restorekit.batch._engine import Engine
from restorekit.batch._jobs import DELAY_ENV, STATUSES, Process, Result, Work, batch_exit_code, run_one, settled
from restorekit.batch._plan import CAMERA_RAW, Job, Plan, plan_jobs
from restorekit.inference import tiling
from restorekit.inference.api import Restoration, check_restoration
from restorekit.inference.io import _max_pixels_from_env, raw_error
from restorekit.inference.sweep import swept

BIT_DEPTHS = (8, 16, 32)


class Events:
    """What a batch tells as it goes; each method does nothing here (override what you want to hear)."""

    def planned(self, count: int) -> None:
        """The batch holds ``count`` jobs (told first)."""

    def start(self, source: Path) -> None:
        """The file ``source`` begins (local engine)."""

    def tiles(self, done: int, total: int) -> None:
        """``done`` of the ``total`` tiles of the current pass over the current file are finished."""

    def warn(self, message: str) -> None:
        """A warning for the whole batch (a camera RAW input passed over, a tile below the smallest useful one)."""

    def finished(self, result: Result) -> None:
        """A file is done: written (``ok``), skipped (``exists``, ``claimed``) or ``failed``."""


@dataclass
class Summary:
    """What a batch did: one :class:`~restorekit.batch._jobs.Result` per job, in the order of the inputs.

    Attributes:
        results: The results, in the order of the jobs whatever order they came in.
        skipped: What the inputs held that was not taken, by reason (``not an image``, ``camera RAW``,
            ``output of restorekit``).
        interrupted: A stop signal ended the batch (the results are the files finished before it).
        error: An error that broke the batch itself (not a file's), or ``None``.
        info_keys: The run-information keys of each file's record.
    """

    results: list[Result]
    skipped: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    interrupted: bool = False
    error: BaseException | None = None
    info_keys: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """How many files ended in each status (``ok``, ``exists``, ``claimed``, ``failed``)."""
        return {status: sum(r.status == status for r in self.results) for status in STATUSES}

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (skipped files are not failures); when some failed, 1, or the code of their one
        kind of error when every file failed with it; 130 (129 after SIGHUP) when stopped; a batch-breaking
        error's code."""
        if self.interrupted:
            return _signals.exit_code()
        if self.error is not None:
            return int(getattr(self.error, "exit_code", 1))
        return batch_exit_code(self.results)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: the counts, ``skipped`` (counts by reason), ``interrupted``, ``exit_code`` and ``files``
        (each with ``input``, ``output``, ``status``, ``error`` and the run information)."""
        files = [{**r.as_dict(), **{key: r.fields.get(key) for key in self.info_keys}} for r in self.results]
        passed = {reason: len(paths) for reason, paths in self.skipped.items() if paths}
        return {**self.counts, "skipped": passed, "interrupted": self.interrupted, "exit_code": self.exit_code,
                "files": files}  # fmt: skip


def restore_files(
    inputs: str | Path | Sequence[str | Path],
    spec: Restoration,
    output: str | Path | None = None,
    *,
    recursive: bool = False,
    suffix: str | None = None,
    overwrite: bool = False,
    bit_depth: int | None = None,
    quality: int | None = None,
    max_pixels: int | None = None,
    engine: Engine | str = "local",
    sweep: int | None = None,
    reference: str | Path | None = None,
    events: Events | None = None,
) -> Summary:
    """Restore image files, folders or globs as ``spec`` says, and write each output atomically.

    The model loads once (once per actor on Ray). An existing output is never replaced without ``overwrite``,
    an output that would replace an input never; each output is claimed while its file runs, so two runs on one
    folder share the work. A file that fails (unreadable, too large, out of memory) fails alone.

    Args:
        inputs: Image files, folders or glob patterns.
        spec: What to do to each image (:class:`~restorekit.inference.api.Restoration`).
        output: An output file (one input), a folder, or ``None`` (beside each input).
        recursive: Descend into sub-folders; the tree is mirrored under ``output``.
        suffix: Appended to output stems; ``None``: ``_denoised``, ``_x2``/``_x3``/``_x4`` or ``_tuned``, and
            ``_sweep`` for a sweep (``""`` when ``output`` is a folder).
        overwrite: Replace existing outputs (never an input).
        bit_depth: 8, 16 or 32 (float); ``None``: the input's.
        quality: JPEG, lossy WebP and HEIC quality 1–100; ``None``: the input's, else 95.
        max_pixels: Refuse larger images; ``None``: ``$RESTOREKIT_MAX_PIXELS``, else 200 megapixels.
        engine: ``"local"``, ``"ray"`` or an :class:`Engine`.
        sweep: ``tune`` or ``sr`` (×4: its tunable model): a labelled contact sheet of this many settings per input
            instead of one output.
        reference: ``tune`` only: a clean image, or a folder of them matched by name; each output is scored.
        events: Told of each file as it starts and finishes (:class:`Events`).

    Returns:
        The :class:`Summary`; ``summary.exit_code`` is what the command line exits with.

    Raises:
        UsageError: Bad settings, or an output path that cannot be (``output`` under a file, a file for several
            inputs).
        WeightsError: The model cannot be loaded (checked once, before any file).

    Example:
        >>> import restorekit
        >>> spec = restorekit.Restoration(sigma=25, device="cpu")
        >>> summary = restorekit.restore_files("noisy/", spec, output="clean/")  # doctest: +SKIP
        >>> summary.counts["ok"], summary.exit_code  # doctest: +SKIP
        (12, 0)
    """
    engine = engine if isinstance(engine, Engine) else Engine(str(engine))
    events = events or Events()
    if bit_depth is not None:
        check_choice(bit_depth, BIT_DEPTHS, "bit_depth")
    check(sweep is None or spec.task in ("tune", "sr"), "sweep", "task='tune' or 'sr' with it", f"task={spec.task!r}")
    spec = swept(spec) if sweep is not None else spec
    check(reference is None or spec.task == "tune", "reference", "task='tune' with it", f"task={spec.task!r}")
    check_restoration(spec)  # a bad model or setting stops the batch here, once
    sources = [Path(inputs)] if isinstance(inputs, str | Path) else [Path(p) for p in inputs]
    plan = plan_jobs(sources, None if output is None else Path(output), recursive, suffix, _default_suffix(spec, sweep))
    limit = _max_pixels_from_env() if max_pixels is None else max_pixels
    work = Work(
        spec=spec, bit_depth=bit_depth, quality=quality, max_pixels=limit, overwrite=overwrite, sweep=sweep,
        reference=None if reference is None else Path(reference),
    )  # fmt: skip
    return run_plan(plan, work, engine, events)


def _default_suffix(spec: Restoration, sweep: int | None) -> str:
    """``_sweep``, ``_denoised``, ``_x2``/``_x3``/``_x4`` or ``_tuned``."""
    if sweep is not None:
        return "_sweep"
    if spec.task == "sr":
        return f"_x{spec.scale}"
    return "_denoised" if spec.task == "denoise" else "_tuned"


def run_plan(jobs: Sequence[Job], work: Work, engine: Engine | None = None, events: Events | None = None) -> Summary:
    """Run ``work`` on each job on ``engine``, telling ``events``; the :class:`Summary`.

    A stop signal (where the program takes them, :mod:`restorekit.batch._signals`) or an error that breaks the
    batch ends it early; the summary says so (``interrupted``, ``error``) and holds the files finished.
    """
    engine, events = engine or Engine(), events or Events()
    results: dict[int, Result] = {}
    skipped = jobs.skipped if isinstance(jobs, Plan) else {}
    stop: BaseException | None = None
    events.planned(len(jobs))
    # a stop signal stops a file's work (interruptible), never the bookkeeping
    with _signals.deferred(), tiling.report_tiles(events.tiles), tiling.report_warnings(events.warn):
        if CAMERA_RAW in skipped:
            count, first = len(skipped[CAMERA_RAW]), skipped[CAMERA_RAW][0]
            events.warn(f"{raw_error(first)} ({count} camera RAW file{'s' * (count > 1)} skipped)")
        try:
            if engine.kind == "ray":
                outcomes = _interruptible(_ray.execute(jobs, work, work.overwrite, engine))
            else:
                outcomes = _execute_local(jobs, work.build, work.overwrite, events.start)
            for index, result in outcomes:
                results[index] = result
                events.finished(result)
        except (KeyboardInterrupt, Exception) as exc:  # the summary of what finished comes first
            stop = exc
        finally:
            _claims.release_all()  # none is left however the batch ended
        _signals.finish()  # the outcome is settled: a later signal changes nothing
    interrupted = isinstance(stop, KeyboardInterrupt) or (stop is None and _signals.received() is not None)
    error = None if interrupted else stop
    ordered = [results[i] for i in sorted(results)]
    return Summary(ordered, skipped, interrupted, error, work.info_keys())


def _interruptible(outcomes: Iterator[tuple[int, Result]]) -> Iterator[tuple[int, Result]]:
    """``outcomes``, with a stop signal let through while the next one is awaited (the Ray engine's wait)."""
    while True:
        with _signals.interruptible():
            outcome = next(outcomes, None)
        if outcome is None:
            return
        yield outcome


def _execute_local(
    jobs: Sequence[Job], build: Callable[[], Process], overwrite: bool, started: Callable[[Path], None]
) -> Iterator[tuple[int, Result]]:
    """The local engine: each job in turn, in this process; yields ``(index in jobs, result)``."""
    process = None
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    for index, job in enumerate(jobs):
        with _signals.interruptible():  # a signal that came between files stops the batch here
            started(job.source)
        done = settled(job, overwrite)
        if done is None and process is None:
            with _signals.interruptible():
                process = build()  # the model loads once, and only when a file needs it
        yield index, done or run_one(job, process, overwrite)
        if delay:
            with _signals.interruptible():
                time.sleep(delay)
