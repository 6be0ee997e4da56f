"""`restorekit bench scale-out`: a batch through `restore_files` (local and Ray) and a small training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from restorekit.cli._console import handle_errors
from restorekit.cli._options import Json, Verbose
from restorekit.cli.bench import _options as opt
from restorekit.cli.bench._common import Results


@handle_errors
def scale_out(
    ctx: typer.Context,
    images: Annotated[int, typer.Option("--images", min=1, help="Noisy PNGs in the batch.")] = 200,
    size: Annotated[int, typer.Option("--size", min=16, max=300, help="Their side, in pixels.")] = 128,
    actors: Annotated[int, typer.Option("--actors", min=1, help="Ray actors (--ray-actors).")] = 2,
    sigma: Annotated[float, typer.Option("--sigma", min=0, max=255, help="AWGN level σ (0–255).")] = 25.0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps per run.")] = 30,
    skip_train: Annotated[bool, typer.Option("--skip-train", help="Measure the batch only.")] = False,
    skip_ray: Annotated[bool, typer.Option("--skip-ray", help="Leave out the Ray runs.")] = False,
    machine: opt.Machine = None,
    save: Annotated[list[Path] | None, typer.Option("--save", help="Write results: .json, .csv or .md.")] = None,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """A batch of seeded noisy crops of scikit-image's colour samples through the library's restore_files (local
    engine, local with 1 thread, Ray) and a small MalleNet-S training run (1 process × 2 threads, 1 × 1, torchrun
    2 × 1, each a subprocess of the installed CLI); see restorekit/bench/scale_out.py."""
    from restorekit.bench import scale_out as bench_scale_out

    rows, config, skipped = bench_scale_out.run(images, size, actors, sigma, steps, skip_train, skip_ray)
    table = ("scale-out (wall_s: whole batch; median_ms: per file)", rows)
    Results(machine, save or [], json).publish(ctx, "scale_out", rows, config, table, skipped=skipped)
