"""`restorekit denoise`: remove real camera noise (no σ) or Gaussian noise from image files, folders or globs."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from restorekit._checks import check_choice, fail
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
    PhotoSigma,
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
from restorekit.errors import WeightsError
from restorekit.inference import api
from restorekit.inference.io import _max_pixels_from_env, load_image, save_image

if TYPE_CHECKING:
    import torch

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


def _check_sigma_range(level: float | str | None, model: str | None, target: torch.device) -> None:
    """Refuse a σ outside the model's range once, before the batch, rather than once per file.

    Without ``--model`` each shipped default (colour, gray) is checked when σ is given, since either may serve
    a file; a named model is loaded in any case, so that a bad name or weights file stops the command at once.
    """
    if model is None and not isinstance(level, float):
        return
    for channels in (3, 1) if model is None else (3,):
        try:
            net = api.get_model(model, channels, target)
        except WeightsError:
            if model is not None:
                raise
            continue  # no default for these channels ships: such files fail on their own
        low, high = net.requirements.sigma_range or (0.0, float("inf"))
        if isinstance(level, float) and not low <= level <= high:
            name = model or net.name
            fail("--sigma", f"a noise level in [{low:g}, {high:g}] for {name}", level)


@dataclass(frozen=True, kw_only=True)
class DenoiseTask(Task):
    """What `denoise` does to one file, as plain settings (see :class:`~restorekit.cli._batch.Task`)."""

    level: float | str | None
    ensemble: bool

    def build(self) -> Process:
        """Read, denoise (the model loads on first use, once per process) and write one file."""
        target = api.resolve_device(self.device)
        warnings.filterwarnings("ignore", category=api.CameraNoiseWarning)  # the file's notes carry the hint

        def process(source: Path, destination: Path) -> dict:
            image = load_image(source, max_pixels=self.max_pixels)
            pixels, info = api.denoise_image(
                image.pixels, self.level, self.model, target, self.tile, self.precision, self.ensemble
            )
            info = dataclasses.replace(info, notes=(*image.notes, *info.notes))
            image = dataclasses.replace(image, pixels=pixels, notes=())
            save_image(image, destination, self.bit_depth, self.quality, overwrite=self.overwrite)
            return info.as_dict()

        return process


@handle_errors
def denoise(
    inputs: Inputs,
    sigma: PhotoSigma = None,
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
    """Denoise images: real camera noise (no --sigma), or Gaussian noise of level --sigma (a number or auto).

    Without --model: with no --sigma, the shipped real-noise model for the image's channels where one ships
    (otherwise the Gaussian model with σ estimated); with --sigma, the best shipped Gaussian denoiser.

    Layout-aware models (names starting with tv_, e.g. tv_acdanet_s.*) correct noise that depends on the place
    in the camera's frame (lens shading): give them whole, uncropped frames; a cropped image breaks the
    assumption that a pixel's place in the image is its place in the frame.
    """
    runner = batch_engine(engine, ray_address, ray_actors, verbose)
    level = parse_sigma(sigma) if sigma is not None else None
    if bit_depth is not None:
        check_choice(bit_depth, BIT_DEPTHS, "--bit-depth")
    target = api.resolve_device(device)
    _check_sigma_range(level, model, target)
    jobs = plan_jobs(inputs, output, recursive, suffix, default_suffix="_denoised")
    limit = _max_pixels_from_env() if max_pixels is None else max_pixels
    task = DenoiseTask(
        level=level, ensemble=ensemble, model=model, device=device, tile=tile, precision=dtype.value,
        bit_depth=bit_depth, max_pixels=limit, overwrite=overwrite, quality=quality,
    )  # fmt: skip
    run_batch(
        jobs,
        task,
        command="denoise",
        info_keys=[f.name for f in dataclasses.fields(api.RunInfo)],
        overwrite=overwrite,
        progress_mode=progress.value,
        json_output=json,
        engine=runner,
    )
