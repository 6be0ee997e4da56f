"""`restorekit denoise`: remove Gaussian noise from image files, folders or globs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from restorekit._checks import check_choice, fail
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
    Sigma,
    Suffix,
    Tile,
    Verbose,
)
from restorekit.inference import api
from restorekit.inference.io import _max_pixels_from_env, load_image, save_image

BIT_DEPTHS = (8, 16, 32)


def parse_sigma(text: str) -> float | str:
    """``auto`` or a number on the 0–255 scale.

    Example:
        >>> parse_sigma("25"), parse_sigma("auto")
        (25.0, 'auto')
    """
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        fail("--sigma", "a number on the 0–255 scale or 'auto'", text)


@handle_errors
def denoise(
    inputs: Inputs,
    sigma: Sigma = "auto",
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
    """Denoise images (additive white Gaussian noise); reports the σ used for each file.

    Without --model, the best shipped model for each image's channels (colour or gray) is used.
    """
    level = parse_sigma(sigma)
    if bit_depth is not None:
        check_choice(bit_depth, BIT_DEPTHS, "--bit-depth")
    target = api.resolve_device(device)
    if model is not None:
        requirements = api.get_model(model, 3, target).requirements
        if isinstance(level, float):
            low, high = requirements.sigma_range or (0.0, float("inf"))
            if not low <= level <= high:
                fail("--sigma", f"a noise level in [{low:g}, {high:g}] for {model}", level)
    jobs = plan_jobs(inputs, output, recursive, suffix, default_suffix="_denoised")
    limit = _max_pixels_from_env() if max_pixels is None else max_pixels
    precision = dtype.value

    def process(source: Path, destination: Path) -> dict:
        image = load_image(source, max_pixels=limit)
        pixels, info = api.denoise_image(image.pixels, level, model, target, tile, precision, ensemble)
        save_image(dataclasses.replace(image, pixels=pixels), destination, bit_depth=bit_depth, overwrite=overwrite)
        return info.as_dict()

    run_batch(
        jobs,
        process,
        command="denoise",
        info_keys=[f.name for f in dataclasses.fields(api.RunInfo)],
        overwrite=overwrite,
        progress_mode=progress.value,
        json_output=json,
    )
