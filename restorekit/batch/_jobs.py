"""One file of a batch: the per-file work a :class:`~restorekit.inference.api.Restoration` describes, and the
run of one job around it (exists check, output claim, stale-part cleanup, errors that fail this file only).

Both engines run every file through :func:`run_one` with the function :meth:`Work.build` returns, so a file's
outcome does not depend on the engine. :class:`Work` is plain, picklable settings: a Ray actor rebuilds the same
function from it (and loads the model once).

Testing hook: ``RESTOREKIT_TEST_DELAY_S`` (seconds, float) sleeps after each file, so that tests can
interrupt a batch deterministically between files (on the Ray engine, on the actors). It is not a user option.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restorekit._checks import check
from restorekit.batch import _claims, _signals
from restorekit.batch._plan import Job
from restorekit.errors import DeviceError, InputError, OutputError, RestoreKitError
from restorekit.inference import runtime, sweep, tiling
from restorekit.inference.api import CameraNoiseWarning, Restoration, RunInfo, restore
from restorekit.inference.io import Image, load_image, resized, save_image, temp_pattern

DELAY_ENV = "RESTOREKIT_TEST_DELAY_S"
STATUSES = ("ok", "exists", "claimed", "failed")

# The per-file function: ``process(source, target)`` writes the output and returns the run information.
Process = Callable[[Path, Path], dict[str, Any]]


@dataclass
class Result:
    """What happened to one job; ``fields`` holds the run information (σ, model, device, …)."""

    job: Job
    status: str  # ok | exists | claimed | failed
    message: str | None = None
    code: int = 0
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record: ``input``, ``output``, ``status`` and ``error``."""
        return {
            "input": str(self.job.source),
            "output": None if self.job.target is None else str(self.job.target),
            "status": self.status,
            "error": self.message if self.status == "failed" else None,
        }


@dataclass(frozen=True, kw_only=True)
class Work:
    """What a batch does to one file, as plain settings.

    Attributes:
        spec: The restoration.
        bit_depth: Output bit depth (8, 16 or 32); ``None``: the input's.
        quality: JPEG, lossy WebP and HEIC output quality; ``None``: the input's (estimated), else 95.
        max_pixels: The decode limit (decompression-bomb guard).
        overwrite: Replace existing outputs.
        sweep: ``tune`` or ``sr``: write a contact sheet of this many settings instead of one output.
        reference: ``tune``: a clean image (or a folder of them, matched by name) to score each output against.
    """

    spec: Restoration
    bit_depth: int | None = None
    quality: int | None = None
    max_pixels: int | None = None
    overwrite: bool = False
    sweep: int | None = None
    reference: Path | None = None

    def info_keys(self) -> list[str]:
        """The run-information keys of each file's record (``sweep`` too for ``tune`` and a sweep)."""
        swept = self.spec.task == "tune" or self.sweep is not None
        return [f.name for f in dataclasses.fields(RunInfo)] + (["sweep"] if swept else [])

    def build(self) -> Process:
        """The per-file function: read, restore (or sweep), score against the reference if any, write."""

        def process(source: Path, destination: Path) -> dict[str, Any]:
            image = load_image(source, max_pixels=self.max_pixels)
            clean = self._clean_for(source)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CameraNoiseWarning)  # the file's notes carry the hint
                if self.sweep is not None:
                    return self._sweep(image, clean, destination)
                pixels, info = restore(image.pixels, self.spec)
            fields = info.as_dict() | {"notes": [*image.notes, *info.notes]}
            if clean is not None:
                check(clean.shape == pixels.shape, "reference", f"an image of shape {pixels.shape}", clean.shape)
                nu = sweep.retention_nu(self.spec.resolved(pixels.shape[2]).net)
                fields["sweep"] = [{"w": list(info.w), **sweep.scores(pixels, image.pixels, clean, info.w, nu)}]
            same_size = pixels.shape[:2] == image.pixels.shape[:2]
            out = dataclasses.replace(image, pixels=pixels, notes=()) if same_size else resized(image, pixels)
            save_image(out, destination, self.bit_depth, self.quality, overwrite=self.overwrite)
            return fields

        return process

    def _sweep(self, image: Image, clean: Any, destination: Path) -> dict[str, Any]:
        """A labelled contact sheet of :attr:`sweep` settings (8-bit RGB), and its records."""
        sheet, records, info = sweep.sweep_restoration(image.pixels, self.sweep, self.spec, clean)
        fields = {**info.as_dict(), "w": None, "sweep": records}
        fields["notes"] = [*image.notes, *fields["notes"]]
        sheet_image = Image(sheet, None, 8, "RGB", image.format, image.icc_profile, None)
        save_image(sheet_image, destination, 8, self.quality, overwrite=self.overwrite)
        return fields

    def _clean_for(self, source: Path) -> Any:
        """The reference image for ``source`` (a file, or a folder matched by name), or ``None``."""
        if self.reference is None:
            return None
        path = self.reference / source.name if self.reference.is_dir() else self.reference
        return load_image(path, max_pixels=self.max_pixels).pixels


def settled(job: Job, overwrite: bool) -> Result | None:
    """The result of a job that must not run (refused while planning, or its output exists), else ``None``."""
    if job.error is not None or job.target is None:
        return _failed(job, job.error or InputError(f"{job.source}: nothing to do"))
    if job.target.exists() and not overwrite:
        return Result(job, "exists", f"{job.target}: already exists (use `overwrite=True`)")
    return None


def run_one(job: Job, process: Process | None, overwrite: bool) -> Result:
    """Run one job: skip it if :func:`settled` or claimed by another run, clear a killed run's temp files, run
    ``process``, catch its error.

    This is the whole per-file work of both engines (the Ray engine runs it on its actors). The output is
    claimed for the time the file runs (:mod:`restorekit.batch._claims`), and the claim released whatever
    happens.
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
        with _signals.interruptible():
            fields = process(job.source, job.target)
        return Result(job, "ok", fields=fields)
    except RestoreKitError as exc:
        result = _failed(job, exc)
    except Exception as exc:  # MemoryError, and the allocators' RuntimeErrors
        if not tiling.is_out_of_memory(exc):
            raise
        message = f"{job.source}: out of memory (try a smaller `tile`, or close other programs)"
        result = Result(job, "failed", message, DeviceError.exit_code)
    if result.code == DeviceError.exit_code:
        runtime.release_freed_memory()
    return result


def _failed(job: Job, error: RestoreKitError) -> Result:
    """A failed result whose message names the file (the library's messages about an image or a model may not)."""
    message = str(error)
    if not any(str(path) in message for path in (job.source, job.target) if path is not None):
        message = f"{job.source}: {message}"
    return Result(job, "failed", message, error.exit_code)


def _remove_stale_parts(target: Path) -> None:
    """Remove hidden temp files a hard-killed run left for ``target`` (:func:`~restorekit.inference.io.temp_path`).

    Called while this run holds ``target``'s claim, so no live run is writing them.
    """
    pattern = temp_pattern(target)
    with contextlib.suppress(OSError):
        for leftover in target.parent.iterdir():
            if pattern.fullmatch(leftover.name):
                leftover.unlink(missing_ok=True)


def batch_exit_code(results: Sequence[Result]) -> int:
    """0 when nothing failed; when some failed, 1, or the code of their one kind of error when every file failed
    with it (so a single-file run with a bad model exits 3)."""
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return 0
    codes = {r.code for r in failed}
    if len(failed) == len(results) and len(codes) == 1:
        return codes.pop()
    return 1
