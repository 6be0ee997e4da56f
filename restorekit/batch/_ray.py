"""The Ray engine of a batch (``--engine ray``): Ray Data streams the jobs through a pool of actors.

The driver (this process) plans and reports as the local engine does (:mod:`restorekit.batch._run`); only the
running moves. Jobs that need no work (refused while planning, or whose output exists) are settled here and
never shipped, so a rerun sends the cluster only what is left. The others become rows ``(index, source,
target)`` of a Ray Dataset; :meth:`ray.data.Dataset.map_batches` runs :class:`Restorer`, a callable class, on a
fixed pool of actors (``compute=ray.data.ActorPoolStrategy(size=N)``, ``num_gpus=1`` per actor on a cluster
with GPUs). Each actor rebuilds the command's per-file function from its :class:`~restorekit.batch._jobs.Work`
once (so the model loads once per actor) and runs :func:`~restorekit.batch._jobs.run_one` on each file: the
same exists check, output claim (so a Ray batch and a local run on one folder share the work), stale-part
cleanup, atomic write and error handling as the local engine. Results come back
as JSON rows, streamed (:meth:`ray.data.Dataset.iter_rows`), so progress moves as files finish.

A killed actor. Ray Data starts actor pools with ``max_restarts=-1`` and ``max_task_retries=-1`` (Ray
2.60, ``ActorPoolMapOperator``): the actor is restarted and the task it held is run again. Outputs are written
to a hidden temp file and renamed, so the dead actor left no partial output (its ``.part`` file is removed
when the file runs again); a file it had finished is found on the retry and reported ``exists``. A retried
task therefore redoes at most the file that was running. The dead actor's claim on that file is stale (its
process is gone) and taken over when the retry lands on the same node; on another node it cannot be checked,
and the file is reported ``claimed`` (a rerun after :data:`restorekit.batch._claims.FOREIGN_STALE_S`, or with the
claim file removed, does it). Stopping the driver (Ctrl-C) stops the batch; a rerun does the rest.

Paths travel as typed: each actor works in the driver's working directory (where that folder exists on its
node), so relative paths, messages and the ``--json`` summary read the same as with the local engine. On a
cluster the inputs, outputs and weights files must be on a file system that every node mounts at the same
path.

Ray's own output stays out of the way: stdout is kept for results (``--json``) even with ``--verbose``, and
unless ``--verbose`` the driver's Ray loggers report errors only, actor output is not forwarded
(``log_to_driver=False``), and what Ray writes past Python (its native log, its worker-died messages) goes to a
file in the temp folder, removed after a normal run and kept after an error (:func:`_ray_output`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from restorekit.batch._engine import Engine
from restorekit.batch._jobs import DELAY_ENV, Result, Work, run_one, settled
from restorekit.batch._plan import Job
from restorekit.errors import DeviceError, RestoreKitError

FILES_PER_TASK = 64  # at most, so that progress moves and a retried task redoes little
TASKS_PER_ACTOR = 8  # at least, where there are files enough: work is balanced over the pool
CPUS_PER_ACTOR = 4  # without --ray-actors on a cluster without GPUs


class Restorer:
    """The callable class of :meth:`~ray.data.Dataset.map_batches`: one per actor, built once.

    Args:
        work: The per-file work, as plain settings; built here, so the model loads once per actor.
        overwrite: Replace existing outputs.
        cwd: The driver's working directory (used where it exists on this node).
        env: The driver's ``RESTOREKIT_*`` variables.
    """

    def __init__(self, work: Work, overwrite: bool, cwd: str, env: dict[str, str]):
        from restorekit.inference.runtime import keep_freed_memory

        os.environ.update(env)
        if os.path.isdir(cwd):
            os.chdir(cwd)
        keep_freed_memory()
        self.process = work.build()
        self.overwrite = overwrite
        self.delay = float(os.environ.get(DELAY_ENV, "0") or 0)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run each file of ``batch`` (columns ``index``, ``source``, ``target``); results as JSON strings."""
        records = []
        for source, target in zip(batch["source"], batch["target"], strict=True):
            result = run_one(Job(Path(source), Path(target)), self.process, self.overwrite)
            records.append(json.dumps(_record(result)))
            if self.delay:
                time.sleep(self.delay)
        return {"index": batch["index"], "result": np.array(records, dtype=object)}


def _record(result: Result) -> dict[str, Any]:
    """What travels back from an actor: the result less its job (which the driver holds)."""
    return {"status": result.status, "message": result.message, "code": int(result.code), "fields": result.fields}


def execute(jobs: Sequence[Job], work: Work, overwrite: bool, engine: Engine) -> Iterator[tuple[int, Result]]:
    """Run ``jobs`` on a Ray actor pool; yields ``(index in jobs, result)`` as results arrive.

    Jobs settled without work come first, then the others in the order they finish.
    """
    import ray
    import ray.data

    pending = []
    for index, job in enumerate(jobs):
        result = settled(job, overwrite)
        if result is None:
            pending.append(index)
        else:
            yield index, result
    if not pending:
        return
    with _session(engine):
        actors, resources = _pool(engine, str(work.spec.device))
        per_task = max(1, min(FILES_PER_TASK, len(pending) // (actors * TASKS_PER_ACTOR)))
        rows = [{"index": i, "source": str(jobs[i].source), "target": str(jobs[i].target)} for i in pending]
        env = {key: value for key, value in os.environ.items() if key.startswith("RESTOREKIT_")}
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / per_task)).map_batches(
            Restorer,
            fn_constructor_args=(work, overwrite, os.getcwd(), env),
            batch_size=per_task,
            compute=ray.data.ActorPoolStrategy(size=actors),
            **resources,
        )
        try:
            for row in dataset.iter_rows():
                index = int(row["index"])
                yield index, Result(jobs[index], **json.loads(row["result"]))
        except Exception as exc:
            raise _unwrapped(exc) from None


def _pool(engine: Engine, device: str) -> tuple[int, dict[str, float]]:
    """The number of actors and what each reserves: a GPU each where the cluster has GPUs, else a CPU share.

    More actors than GPUs (or CPUs) share them (fractional resources), so that the whole pool fits the
    cluster as it is instead of waiting for resources that may never come.
    """
    import ray

    cluster = ray.cluster_resources()
    gpus, cpus = int(cluster.get("GPU", 0)), max(1, int(cluster.get("CPU", 1)))
    if gpus and device != "cpu":
        actors = engine.actors or gpus
        return actors, {"num_gpus": min(1, gpus / actors), "num_cpus": min(1, cpus / actors)}  # one GPU each
    actors = engine.actors or max(1, cpus // CPUS_PER_ACTOR)
    return actors, {"num_cpus": cpus // actors or cpus / actors}


@contextlib.contextmanager
def _session(engine: Engine) -> Iterator[None]:
    """A Ray session for the batch: this process's own if it has one (left running), else a new one.

    A new one joins ``engine.address`` (or ``$RAY_ADDRESS``), or starts Ray on this machine, and is shut
    down afterwards; Ray's messages are kept off stdout, and unless ``engine.verbose`` off the terminal.
    """
    import ray
    import ray.data

    if ray.is_initialized():
        yield
        return
    with _ray_output(engine.verbose) as router:
        try:
            ray.init(
                address=engine.address,
                include_dashboard=False,
                log_to_driver=engine.verbose,
                logging_level=logging.INFO if engine.verbose else logging.ERROR,
            )
        except Exception as exc:
            where = f"at {engine.address}" if engine.address else "on this machine"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeviceError(f"`engine='ray'`: cannot start or join the Ray cluster {where} ({first})") from None
        ray.data.DataContext.get_current().enable_progress_bars = False  # the batch has its own
        if not engine.verbose:
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        try:
            yield
        finally:
            router.main_thread_done()  # Ray prints what it held back while it shuts down
            ray.shutdown()


@contextlib.contextmanager
def _ray_output(verbose: bool) -> Iterator[_ThreadRouted]:
    """Where Ray's own output goes while a session runs: stdout stays for results, the terminal for the batch.

    Ray writes past Python's streams: its native core logs to descriptor 2 (one line per actor it creates,
    among others; no setting turns that off without printing a line of its own), the processes it starts
    inherit descriptors 1 and 2, and it prints its error messages (a worker died, a task is retried) on
    stdout, from its threads and, while it shuts down, from the main thread. So descriptor 1, and unless
    ``verbose`` descriptor 2, are pointed elsewhere for the session, and Python's ``sys.stdout`` and
    ``sys.stderr`` are kept where they were: the main thread's writes to ``sys.stdout`` reach stdout until
    :meth:`_ThreadRouted.main_thread_done`, other threads' (Ray's) go with the rest. With ``verbose`` all of
    it goes to stderr; otherwise to ``$TMPDIR/restorekit-ray-*.log``, removed after a normal run, kept after an
    error.
    """
    stdout, stderr = sys.stdout, sys.stderr
    stdout.flush()
    stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    handle, path = tempfile.mkstemp(prefix="restorekit-ray-", suffix=".log")
    with contextlib.ExitStack() as opened:

        def stream_on(fd: int, mode: str, encoding: str = "utf-8") -> TextIO:
            return opened.enter_context(open(os.dup(fd), mode, 1, encoding, errors="backslashreplace"))

        def reopened(stream: TextIO, original: TextIO | None, fd: int) -> TextIO:
            """``stream``, or where it is the interpreter's own, a new stream on its saved descriptor (a test
            runner's buffer, or rich's proxy while a progress bar shows, is left as it is)."""
            return stream if stream is not original else stream_on(saved[fd], "w", stream.encoding or "utf-8")

        if verbose:
            os.dup2(2, 1)
            router = _ThreadRouted(reopened(stdout, sys.__stdout__, 1), stderr)
        else:
            os.dup2(handle, 1)
            os.dup2(handle, 2)
            sys.stderr = reopened(stderr, sys.__stderr__, 2)
            router = _ThreadRouted(reopened(stdout, sys.__stdout__, 1), stream_on(handle, "a"))
        os.close(handle)
        sys.stdout = router
        try:
            yield router
        except BaseException:
            if verbose:
                os.unlink(path)
            raise
        else:
            os.unlink(path)
        finally:
            router.close()  # whoever kept it (Ray's colorama does, for its exit) sees a closed stream
            sys.stdout, sys.stderr = stdout, stderr
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


class _ThreadRouted(io.TextIOBase):
    """A text stream that passes the main thread's writes to ``main`` and other threads' to ``other``."""

    def __init__(self, main: TextIO, other: TextIO):
        super().__init__()
        self._main, self._other = main, other
        self._main_open = True

    def main_thread_done(self) -> None:
        """From now on the main thread's writes go to ``other`` too."""
        self._main_open = False

    def _target(self) -> TextIO:
        main = self._main_open and threading.current_thread() is threading.main_thread()
        return self._main if main else self._other

    def write(self, text: str) -> int:
        """Write ``text`` to the stream of the calling thread."""
        return self._target().write(text)

    def flush(self) -> None:
        """Flush both streams."""
        self._main.flush()
        self._other.flush()

    def isatty(self) -> bool:
        """Whether the main stream is a terminal."""
        return self._main.isatty()

    def fileno(self) -> int:
        """The main stream's descriptor."""
        return self._main.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """The main stream's encoding."""
        return getattr(self._main, "encoding", None) or "utf-8"


def _unwrapped(error: BaseException) -> BaseException:
    """The error an actor raised, out of Ray's wrappers (task error, user-code error, cause).

    A :class:`RestoreKitError` keeps its message and exit code; another error is the innermost one.
    """
    chain = [error]
    while len(chain) < 10:  # Ray nests a few
        cause = getattr(chain[-1], "cause", None) or chain[-1].__cause__
        if not isinstance(cause, BaseException) or cause in chain:
            break
        chain.append(cause)
    return next((e for e in chain if isinstance(e, RestoreKitError)), chain[-1])
