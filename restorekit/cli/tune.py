"""`restorekit tune`: restore with a tunable model at a trade-off chosen at run time, or sweep it."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from restorekit._checks import check, fail
from restorekit.cli._batch import Process, Task, batch_engine, plan_jobs, run_batch
from restorekit.cli._console import handle_errors, results
from restorekit.cli._options import (
    BatchEngine,
    BitDepth,
    Device,
    Dtype,
    DtypeChoice,
    EngineChoice,
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
from restorekit.cli.denoise import BIT_DEPTHS, parse_sigma
from restorekit.inference import api, sweep
from restorekit.inference.io import Image, _max_pixels_from_env, load_image, save_image

Omega = Annotated[
    str | None,
    typer.Option(
        "--w",
        help="The trade-off ω1,ω2 (each in [0, 1], summing to 1 for the shipped models). ω1: remove noise; "
        "ω2: keep grain and fine detail. 1,0 denoises fully; 0,1 keeps 90% of the noise.",
        show_default=False,
    ),
]
Sweep = Annotated[
    int | None,
    typer.Option(
        "--sweep",
        min=2,
        help="Instead of one setting, write a labelled contact sheet of N settings from 0,1 to 1,0 per input.",
        show_default=False,
    ),
]
Reference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="Clean image (or a folder of them, matched by file name): report PSNR and PSNRη per setting.",
        show_default=False,
    ),
]


def parse_omega(text: str) -> tuple[float, ...]:
    """``"0.3,0.7"`` → ``(0.3, 0.7)``; the model's domain is checked later (:func:`api.check_omega`).

    Example:
        >>> parse_omega("0.3, 0.7")
        (0.3, 0.7)
    """
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        fail("--w", "comma-separated numbers such as 0.3,0.7", text)


@dataclass(frozen=True, kw_only=True)
class TuneTask(Task):
    """What `tune` does to one file, as plain settings (see :class:`~restorekit.cli._batch.Task`)."""

    omega: tuple[float, ...] | None
    sweep_count: int | None
    reference: Path | None
    level: float | str | None

    def build(self) -> Process:
        """Read, restore at ω (or sweep it), score against the reference if any, and write one file."""
        target = api.resolve_device(self.device)
        model, tile, precision = self.model, self.tile, self.precision
        warnings.filterwarnings("ignore", category=api.CameraNoiseWarning)  # the file's notes carry the hint

        def process(source: Path, destination: Path) -> dict:
            image = load_image(source, max_pixels=self.max_pixels)
            clean = self._clean_for(source)
            if self.omega is not None:
                net, note = api.tunable_model(model, self.level, image.pixels.shape[2], target)
                pixels, info = api.tune_image(image.pixels, self.omega, self.level, net, target, tile, precision)
                fields = info.as_dict() | {"notes": [*image.notes, *([note] if note else []), *info.notes]}
                if clean is not None:
                    check(clean.shape == pixels.shape, "--reference", f"an image of shape {pixels.shape}", clean.shape)
                    scores = sweep.scores(pixels, image.pixels, clean, self.omega, sweep.retention_nu(net))
                    fields["sweep"] = [{"w": list(self.omega), **scores}]
                image = dataclasses.replace(image, pixels=pixels, notes=())
                save_image(image, destination, self.bit_depth, self.quality, overwrite=self.overwrite)
            else:
                sheet, records, info = sweep.sweep_image(
                    image.pixels, self.sweep_count, self.level, model, target, tile, precision, clean
                )
                fields = {**info.as_dict(), "w": None, "sweep": records}
                fields["notes"] = [*image.notes, *fields["notes"]]
                sheet_image = Image(sheet, None, 8, "RGB", image.format, image.icc_profile, None)
                save_image(sheet_image, destination, 8, self.quality, overwrite=self.overwrite)
            return fields

        return process

    def _clean_for(self, source: Path):
        """The reference image for ``source`` (``--reference``: a file, or a folder matched by name), or ``None``."""
        if self.reference is None:
            return None
        path = self.reference / source.name if self.reference.is_dir() else self.reference
        return load_image(path, max_pixels=self.max_pixels).pixels

    def show(self, source: Path, fields: dict) -> None:
        """With ``--reference``: each setting's PSNR and PSNRη."""
        if self.reference is not None:
            _print_scores(source, fields["sweep"])


@handle_errors
def tune(
    inputs: Inputs,
    w: Omega = None,
    sweep_count: Sweep = None,
    reference: Reference = None,
    sigma: PhotoSigma = None,
    output: Output = None,
    recursive: Recursive = False,
    suffix: Suffix = None,
    overwrite: Overwrite = False,
    model: Model = None,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    tile: Tile = None,
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
    """Denoise with a tunable model at the trade-off --w (ω1 remove noise, ω2 keep grain and fine detail).

    One trained network serves every setting: its kernels are mixed for the chosen ω, so any setting runs at
    the speed of a fixed denoiser. --sweep N writes a contact sheet of N settings instead. Without --sigma (and
    --model) the blind tunable photo model runs, for real camera noise; --sigma N|auto runs the Gaussian one.
    """
    runner = batch_engine(engine, ray_address, ray_actors, verbose)
    check((w is None) != (sweep_count is None), "tune", "exactly one of --w ω1,ω2 or --sweep N", "both or neither")
    level = parse_sigma(sigma) if sigma is not None else None
    if bit_depth is not None:
        check(bit_depth in BIT_DEPTHS, "--bit-depth", f"one of {BIT_DEPTHS}", bit_depth)
    target = api.resolve_device(device)
    omega = parse_omega(w) if w is not None else None
    if omega is not None:  # once here, not once per file (a shipped default's domain is the colour model's)
        net, _ = api.tunable_model(model, level, 3, target)
        api.check_omega(omega, net.requirements, net.name, what="--w")
    jobs = plan_jobs(inputs, output, recursive, suffix, default_suffix="_tuned" if omega else "_sweep")
    limit = _max_pixels_from_env() if max_pixels is None else max_pixels
    task = TuneTask(
        omega=omega, sweep_count=sweep_count, reference=reference, level=level, model=model, device=device,
        tile=tile, precision=dtype.value, bit_depth=bit_depth, max_pixels=limit, overwrite=overwrite,
        quality=quality,
    )  # fmt: skip
    run_batch(
        jobs,
        task,
        command="tune",
        info_keys=[f.name for f in dataclasses.fields(api.RunInfo)] + ["sweep"],
        overwrite=overwrite,
        progress_mode=progress.value,
        json_output=json,
        engine=runner,
    )


def _print_scores(source: Path, records: list[dict]) -> None:
    """A small table per input on stdout: each setting's PSNR and PSNRη against the reference."""
    results.print(f"{source}:  ω1    ω2    PSNR     PSNRη", soft_wrap=True)
    for record in records:
        w1, w2 = record["w"]
        results.print(f"  {w1:5.2f} {w2:5.2f}  {record['psnr']:6.2f}  {record['psnr_eta']:6.2f}", soft_wrap=True)
