"""`restorekit bench scale-out`: a batch on the local engine and on Ray, and training with 1 and 2 processes.

The batch runs through the library, as a Python user would run it (:func:`restorekit.restore_files`), and
training as subprocesses of the installed CLI, on inputs made here from scikit-image's colour samples (seeded),
in a temporary folder:

* **Batch.** ``images`` PNGs of ``size``² cut at seeded places from :data:`SAMPLES`, with seeded AWGN σ, clipped
  to 8 bits; ``restore_files(IN, Restoration(sigma=σ), output=OUT)`` on the local engine (default threads), on
  the local engine with one thread, and on ``Engine("ray", actors=N)``; then a one-file run through each engine,
  whose difference estimates Ray's start-up. Rows ``kind=batch``: ``engine, threads, files, wall_s`` (the whole
  call, the model's loading included), ``median_ms`` (the summary's per-file ``ms``) and ``outputs_identical``
  (every output's SHA-256 equals the first local run's).
* **Training.** A small MalleNet-S colour recipe (:func:`train_recipe`) on the full-size samples, run as one
  process with 2 threads, one with 1 thread, and ``torchrun --standalone --nproc-per-node=2`` with 1 thread
  each. Rows ``kind=train``: ``processes, threads, s_per_step`` (from ``elapsed_s`` in ``log.jsonl`` between
  step 10 and the last), ``steps_per_s`` and ``loss_max_diff`` (the largest difference of the logged losses
  from the first run's).

The batches go through a ``batcher`` (:func:`denoise_folder`) and the subprocesses through a ``runner``
(:func:`run_command`), which tests replace.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from restorekit.batch import Engine, restore_files
from restorekit.errors import RestoreKitError
from restorekit.inference.api import Restoration

SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
MAX_SIZE = 300  # the smallest sample (chelsea) is 300 pixels high
WARM_STEP = 10  # training steps left out of the timing (start-up, first allocations)
SEED = 0

Runner = Callable[[list[str], dict[str, str]], str]
"""Run ``argv`` with extra environment variables; returns its stdout or raises :class:`RestoreKitError`."""
Batcher = Callable[[Path, Path, float, int | None, int | None], dict[str, Any]]
"""Denoise the folder ``source`` into ``out`` at σ with ``threads`` (``None``: as set) on the local engine, or on
Ray with ``actors``; the summary as a dict (:meth:`restorekit.batch.Summary.as_dict`)."""


def run_command(argv: list[str], env: dict[str, str]) -> str:
    """Run ``argv`` as a subprocess with ``env`` added to this process's environment; its stdout."""
    done = subprocess.run(argv, env=os.environ | env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RestoreKitError(f"bench scale-out: `{' '.join(argv)}` failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _samples() -> list[np.ndarray]:
    import skimage.data

    return [np.asarray(getattr(skimage.data, name)(), dtype=np.uint8) for name in SAMPLES]


def _save_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path)


def write_inputs(folder: Path, count: int, size: int, sigma: float, seed: int = SEED) -> list[Path]:
    """``count`` noisy ``size``² crops of the samples (seeded sample, place and noise), as 8-bit PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = _samples()
    paths = []
    for index in range(count):
        image = samples[rng.integers(len(samples))]
        top, left = (int(rng.integers(image.shape[axis] - size + 1)) for axis in (0, 1))
        crop = image[top : top + size, left : left + size].astype(np.float32)
        noisy = crop + rng.standard_normal(crop.shape, dtype=np.float32) * sigma
        path = folder / f"{index:04d}.png"
        _save_png(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), path)
        paths.append(path)
    return paths


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def denoise_folder(source: Path, out: Path, sigma: float, threads: int | None, actors: int | None) -> dict[str, Any]:
    """One batch through the library (:func:`restorekit.restore_files`); see :data:`Batcher`."""
    import torch

    engine = Engine("ray", actors=actors) if actors else Engine()
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or saved)
    try:
        summary = restore_files(source, Restoration(sigma=sigma), output=out, engine=engine)
    finally:
        torch.set_num_threads(saved)
    if summary.error is not None:
        raise summary.error
    return summary.as_dict()


def _denoise(batcher: Batcher, source: Path, out: Path, sigma: float, threads: int | None, ray: int | None) -> dict:
    """One denoising batch: wall time, the median per-file ms, the output hashes."""
    start = time.perf_counter()
    summary = batcher(source, out, sigma, threads, ray)
    wall = time.perf_counter() - start
    files = summary.get("files", [])
    bad = [f for f in files if f.get("status") != "ok"]
    if bad or not files:
        raise RestoreKitError(f"bench scale-out: denoise did not run every file: {bad[:1] or 'no files'}")
    return {
        "wall_s": round(wall, 2),
        "median_ms": round(statistics.median(f["ms"] for f in files), 1),
        "model": files[0].get("model"),
        "hashes": _hashes(out),
    }


def ray_available() -> bool:
    """Whether Ray Data can be imported here (the subprocesses use the same Python)."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def batch_rows(
    folder: Path, images: int, size: int, sigma: float, actors: int, use_ray: bool, batcher: Batcher
) -> list[dict[str, Any]]:
    """The batch part: local (default threads), local with 1 thread, Ray; then one file through each engine."""
    import torch

    inputs = write_inputs(folder / "in", images, size, sigma)
    one = folder / "one"
    one.mkdir()
    shutil.copy(inputs[0], one / inputs[0].name)
    cores = os.cpu_count() or 1
    runs = [("local", torch.get_num_threads(), None, None), ("local", 1, 1, None)]
    if use_ray:
        runs.append(("ray", max(1, cores // actors), None, actors))
    rows, reference = [], None
    for index, (engine, threads, setting, ray) in enumerate(runs):
        measured = _denoise(batcher, folder / "in", folder / f"out{index}", sigma, setting, ray)
        reference = reference or measured["hashes"]
        rows.append(_batch_row(engine, threads, images, measured, measured["hashes"] == reference, ray))
    singles = [_denoise(batcher, one, folder / f"one_{engine}", sigma, None, ray) for engine, _, _, ray in runs[::2]]
    rows.append(_batch_row("local", runs[0][1], 1, singles[0], None, None))
    if use_ray:
        ray_row = _batch_row("ray", runs[2][1], 1, singles[1], None, actors)
        rows.append(ray_row | {"startup_s": round(singles[1]["wall_s"] - singles[0]["wall_s"], 2)})
    return rows


def _batch_row(
    engine: str, threads: int, files: int, measured: dict, identical: bool | None, actors: int | None
) -> dict[str, Any]:
    return {
        "kind": "batch",
        "engine": engine,
        "actors": actors,
        "threads": threads,
        "files": files,
        "wall_s": measured["wall_s"],
        "median_ms": measured["median_ms"],
        "outputs_identical": identical,
        "model": measured["model"],
    }


def train_recipe(data: Path, steps: int) -> dict[str, Any]:
    """The training recipe: MalleNet-S colour, 16 crops of 64², ``steps`` iterations on the CPU."""
    return {
        "model": {"architecture": "mallenet_s", "name": "mallenet_s.scale_out_bench", "options": {"in_channels": 3}},
        "data": {"train": [str(data)], "patch": 64, "batch": 16, "holdout": 2, "val_crop": 128},
        "optim": {"iterations": steps, "lr": 0.002, "warmup": 5},
        "run": {
            "device": "cpu",
            "log_every": min(WARM_STEP, steps),
            "checkpoint_every": 100000,
            "validate_every": 100000,
        },
    }


def _timing(records: list[dict[str, Any]]) -> tuple[float, str]:
    """Seconds per step between the record at step 10 (or the first) and the last; from 0 if only one."""
    timed = [r for r in records if "elapsed_s" in r]
    if not timed:
        raise RestoreKitError("bench scale-out: the training log has no timed records")
    last = timed[-1]
    first = next((r for r in timed[:-1] if r["step"] >= min(WARM_STEP, last["step"])), None)
    if first is None:
        return last["elapsed_s"] / last["step"], f"0–{last['step']}"
    return (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"]), f"{first['step']}–{last['step']}"


def train_rows(folder: Path, steps: int, runner: Runner) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The training part: 1 process × 2 threads, 1 × 1, torchrun 2 × 1; rows and the recipe (minus paths)."""
    data = folder / "clean"
    data.mkdir(parents=True)
    for name, pixels in zip(SAMPLES, _samples(), strict=True):
        _save_png(pixels, data / f"{name}.png")
    recipe = train_recipe(data, steps)
    path = folder / "train.yaml"
    path.write_text(json.dumps(recipe, indent=2) + "\n")  # JSON is YAML
    module = [sys.executable, "-m", "restorekit", "train", str(path)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    runs = [(1, 2, {}, module), (1, 1, {"OMP_NUM_THREADS": "1"}, module), (2, 1, {}, torchrun + module[2:])]
    rows, losses = [], []
    for index, (processes, threads, env, argv) in enumerate(runs):
        out = folder / f"train{index}"
        runner([*argv, "--set", f"run.out={out}", "--set", f"run.threads={threads}", "--progress", "none"], env)
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
        losses.append({r["step"]: r["loss"] for r in records if "loss" in r})
        seconds, span = _timing(records)
        common = losses[0].keys() & losses[-1].keys()
        rows.append(
            {
                "kind": "train",
                "processes": processes,
                "threads": threads,
                "steps_timed": span,
                "s_per_step": round(seconds, 3),
                "steps_per_s": round(1 / seconds, 2) if seconds > 0 else None,
                "loss_max_diff": max((abs(losses[0][s] - losses[-1][s]) for s in common), default=None),
            }
        )
    recipe["data"]["train"] = ["<the samples, full size>"]
    return rows, recipe


def run(
    images: int = 200,
    size: int = 128,
    actors: int = 2,
    sigma: float = 25.0,
    steps: int = 30,
    skip_train: bool = False,
    skip_ray: bool = False,
    runner: Runner | None = None,
    batcher: Batcher | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, str]]]:
    """Both parts in a temporary folder; ``(rows, config, skipped)``. ``runner``: :func:`run_command`;
    ``batcher``: :func:`denoise_folder`."""
    runner, batcher = runner or run_command, batcher or denoise_folder
    use_ray = not skip_ray and ray_available()
    skipped = [] if skip_ray or use_ray else [{"method": "ray", "reason": "Ray Data is not installed"}]
    rows: list[dict[str, Any]] = []
    recipe = None
    with tempfile.TemporaryDirectory(prefix="restorekit-scale-out-") as work:
        rows += batch_rows(Path(work) / "batch", images, size, sigma, actors, use_ray, batcher)
        if skipped:
            rows.append({"kind": "batch", "engine": "ray", "note": "skipped: Ray Data is not installed"})
        if not skip_train:
            train, recipe = train_rows(Path(work) / "train", steps, runner)
            rows += train
    config = {
        "images": images,
        "size": size,
        "sigma": sigma,
        "seed": SEED,
        "samples": list(SAMPLES),
        "actors": actors if use_ray else None,
        "ray": use_ray,
        "steps": None if skip_train else steps,
        "recipe": recipe,
    }
    return rows, config, skipped
