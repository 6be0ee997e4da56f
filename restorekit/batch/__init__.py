"""Batches of image files as a library: ``restore_files(inputs, spec, output=…)`` restores files, folders or
globs and returns a :class:`Summary`.

Modules, in the order a batch uses them: ``_plan`` (expand the inputs, name the outputs), ``_jobs`` (the per-file
work and the run of one file), ``_claims`` (claims on outputs, so runs share a folder), ``_signals`` (where a stop
signal may reach a batch), ``_engine`` and ``_ray`` (where it runs), ``_run`` (run it and sum it up). Each
imports only those before it.

The public names load on first use, as the package's own do (:mod:`restorekit`): the command line imports
``_signals`` at start-up, which must not import PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from restorekit._lazy import lazy_exports

if TYPE_CHECKING:
    from restorekit.batch._engine import Engine
    from restorekit.batch._jobs import Result, Work
    from restorekit.batch._run import Events, Summary, restore_files, run_plan

_EXPORTS = {
    "Engine": "restorekit.batch._engine",
    "Events": "restorekit.batch._run",
    "Result": "restorekit.batch._jobs",
    "Summary": "restorekit.batch._run",
    "Work": "restorekit.batch._jobs",
    "restore_files": "restorekit.batch._run",
    "run_plan": "restorekit.batch._run",
}
__all__ = ["Engine", "Events", "Result", "Summary", "Work", "restore_files", "run_plan"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
