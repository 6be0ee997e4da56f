"""`restorekit sr`: upscale image files, folders or globs ×2, ×3 or ×4 (super-resolution)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from restorekit._checks import check, check_choice
from restorekit.cli._batch import Process, Task, batch_engine, plan_jobs, run_batch
from restorekit.cli._console import handle_errors
from restorekit.cli._options import (
    BatchEngine,
    BitDepth,
    Device,
    Dtype,
    DtypeChoice,
    EngineChoice,
    Ensemble,
    Inputs,
    Json,
    MaxPixels,
    Model,
    Output,
    Overwrite,
    Progress,
    ProgressMode,
    Quality,
    RayActors,
    RayAddress,
    Recursive,
    Suffix,
    Tile,
    Verbose,
)
from restorekit.cli.denoise import BIT_DEPTHS
from restorekit.inference import api
from restorekit.inference.io import _max_pixels_from_env, load_image, resized, save_image

Scale = Annotated[int, typer.Option("--scale", help="Upscaling factor: 2, 3 or 4.")]


@dataclass(frozen=True, kw_only=True)
class SRTask(Task):
    """What `sr` does to one file, as plain settings (see :class:`~restorekit.cli._batch.Task`)."""

    scale: int
    ensemble: bool

    def build(self) -> Process:
        """Load the model (once), then read, upscale and write one file."""
        target = api.resolve_device(self.device)
        net = api.get_model(self.model, 3, target, kind=f"sr{self.scale}")

        def process(source: Path, destination: Path) -> dict:
            image = load_image(source, max_pixels=self.max_pixels)
            pixels, info = api.super_resolve_image(
                image.pixels, self.scale, net, target, self.tile, self.precision, self.ensemble
            )
            save_image(resized(image, pixels), destination, self.bit_depth, self.quality, overwrite=self.overwrite)
            return info.as_dict() | {"notes": [*image.notes, *info.notes]}

        return process


@handle_errors
def sr(
    inputs: Inputs,
    scale: Scale = 2,
    output: Output = None,
    recursive: Recursive = False,
    suffix: Suffix = None,
    overwrite: Overwrite = False,
    model: Model = None,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    tile: Tile = None,
    ensemble: Ensemble = False,
    bit_depth: BitDepth = None,
    quality: Quality = None,
    max_pixels: MaxPixels = None,
    progress: Progress = ProgressMode.auto,
    json: Json = False,
    engine: BatchEngine = EngineChoice.local,
    ray_address: RayAddress = None,
    ray_actors: RayActors = None,
    verbose: Verbose = False,
) -> None:
    """Upscale images ×2/×3/×4 (super-resolution).

    Alpha is upscaled separately (bicubic), ICC/EXIF kept, DPI scaled with the pixels. The shipped models are
    trained on bicubic downscaling: they sharpen clean images, and would sharpen the noise and JPEG blocks of a
    poor photo too (denoise it first).
    """
    runner = batch_engine(engine, ray_address, ray_actors, verbose)
    check_choice(scale, api.SCALES, "--scale")
    if bit_depth is not None:
        check_choice(bit_depth, BIT_DEPTHS, "--bit-depth")
    target = api.resolve_device(device)
    net = api.get_model(model, 3, target, kind=f"sr{scale}")  # a bad name or a missing model stops here, once
    name, req = net.name, net.requirements
    check(req.task == "sr", "--model", "a super-resolution model", f"{name} ({req.task})")
    check(req.scale == scale, "--model", f"a ×{scale} model (--scale {scale})", f"{name} (×{req.scale})")
    jobs = plan_jobs(inputs, output, recursive, suffix, default_suffix=f"_x{scale}")
    limit = _max_pixels_from_env() if max_pixels is None else max_pixels
    task = SRTask(
        scale=scale, ensemble=ensemble, model=model, device=device, tile=tile, precision=dtype.value,
        bit_depth=bit_depth, max_pixels=limit, overwrite=overwrite, quality=quality,
    )  # fmt: skip
    run_batch(
        jobs,
        task,
        command="sr",
        info_keys=[f.name for f in dataclasses.fields(api.RunInfo)],
        overwrite=overwrite,
        progress_mode=progress.value,
        json_output=json,
        engine=runner,
    )
