"""`restorekit sr`: upscale image files, folders or globs ×2, ×3 or ×4 (super-resolution)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from restorekit._checks import check, check_choice
from restorekit.cli._batch import plan_jobs, run_batch
from restorekit.cli._console import handle_errors
from restorekit.cli._options import (
    BitDepth,
    Device,
    Dtype,
    DtypeChoice,
    Ensemble,
    Inputs,
    Json,
    MaxPixels,
    Model,
    Output,
    Overwrite,
    Progress,
    ProgressMode,
    Recursive,
    Suffix,
    Tile,
    Verbose,
)
from restorekit.cli.denoise import BIT_DEPTHS
from restorekit.inference import api
from restorekit.inference.io import _max_pixels_from_env, load_image, resized, save_image

Scale = Annotated[int, typer.Option("--scale", help="Upscaling factor: 2, 3 or 4.")]


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
    max_pixels: MaxPixels = None,
    progress: Progress = ProgressMode.auto,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Upscale images ×2/×3/×4 (super-resolution).

    Alpha is upscaled separately (bicubic), ICC/EXIF kept, DPI scaled with the pixels. The shipped models are
    trained on bicubic downscaling: they sharpen clean images, and would sharpen the noise and JPEG blocks of a
    poor photo too (denoise it first).
    """
    check_choice(scale, api.SCALES, "--scale")
    if bit_depth is not None:
        check_choice(bit_depth, BIT_DEPTHS, "--bit-depth")
    target = api.resolve_device(device)
    net = api.get_model(model, 3, target, kind=f"sr{scale}")  # a bad name or a missing model stops here, once
    name, req = getattr(net, "name", model), net.requirements
    check(req.task == "sr", "--model", "a super-resolution model", f"{name} ({req.task})")
    check(req.scale == scale, "--model", f"a ×{scale} model (--scale {scale})", f"{name} (×{req.scale})")
    jobs = plan_jobs(inputs, output, recursive, suffix, default_suffix=f"_x{scale}")
    limit = _max_pixels_from_env() if max_pixels is None else max_pixels
    precision = dtype.value

    def process(source: Path, destination: Path) -> dict:
        image = load_image(source, max_pixels=limit)
        pixels, info = api.super_resolve_image(image.pixels, scale, net, target, tile, precision, ensemble)
        save_image(resized(image, pixels), destination, bit_depth=bit_depth, overwrite=overwrite)
        return info.as_dict()

    run_batch(
        jobs,
        process,
        command="sr",
        info_keys=[f.name for f in dataclasses.fields(api.RunInfo)],
        overwrite=overwrite,
        progress_mode=progress.value,
        json_output=json,
    )
