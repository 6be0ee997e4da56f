"""Options shared by the commands, declared once as ``Annotated`` aliases, and the restoring commands' option set.

A command takes an option as ``device: Device = "auto"``; the default lives in the signature, the help text
here. Choice options are ``str`` enums, so a value compares equal to its plain string (``ProgressMode.jsonl
== "jsonl"``).

The restoring commands (``denoise``, ``sr``, ``tune``) share one option set, :data:`RESTORING`
(:func:`restorekit.cli._batch.restoring` gives it to them).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from restorekit._checks import fail


class ProgressMode(str, Enum):
    """How a batch reports progress: ``auto`` is a rich bar on a terminal and nothing otherwise."""

    auto = "auto"
    rich = "rich"
    jsonl = "jsonl"
    none = "none"


class EngineChoice(str, Enum):
    """Where a batch runs: ``local`` (this process) or ``ray`` (a pool of actors on a Ray cluster)."""

    local = "local"
    ray = "ray"


class DtypeChoice(str, Enum):
    """Inference precision; ``auto`` is fp32 (half precision only when asked and the model allows it)."""

    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


Inputs = Annotated[
    list[Path],
    typer.Argument(help="Image files, folders or glob patterns.", show_default=False),
]
Output = Annotated[
    Path | None,
    typer.Option(
        "-o",
        "--output",
        help="Output file (one input) or folder. Default: next to each input, named with --suffix.",
        show_default=False,
    ),
]
Recursive = Annotated[
    bool,
    typer.Option("-r", "--recursive", help="Descend into sub-folders; the tree is mirrored under --output."),
]
Suffix = Annotated[
    str | None,
    typer.Option(
        "--suffix",
        help="Appended to output stems. Default: _denoised (denoise), _x2, _x3 or _x4 (sr, by --scale), _tuned or "
        "_sweep (tune --w; tune or sr --sweep); '' when --output is a folder.",
        show_default=False,
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never an input).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[
    DtypeChoice,
    typer.Option(
        "--dtype",
        help="Precision; auto is bf16 on a CPU with bf16 in hardware, else fp32 (half only where the model allows it).",
    ),
]
Tile = Annotated[
    int | None,
    typer.Option(
        "--tile",
        min=0,
        help="Tile size in pixels; 0 disables tiling; below the model's smallest useful tile it is raised to it "
        "(with a warning). Default: chosen from the memory free to this process.",
        show_default=False,
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "-m",
        "--model",
        help="Model name (see `restorekit models`) or a .safetensors path. Default: best shipped model.",
        show_default=False,
    ),
]
Ensemble = Annotated[
    bool,
    typer.Option(
        "--ensemble", help="Average the model over the image's 8 flips and rotations: 8× the time, higher PSNR."
    ),
]
Sigma = Annotated[
    str | None,
    typer.Option(
        "-s",
        "--sigma",
        help="Gaussian noise level σ on the 0–255 scale, or 'auto' to estimate it per image. Omit it for photos: "
        "the real-camera-noise model runs where one ships (else σ is estimated).",
        show_default=False,
    ),
]
Progress = Annotated[ProgressMode, typer.Option("--progress", help="Progress display (jsonl goes to stderr).")]
Json = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
Verbose = Annotated[bool, typer.Option("-v", "--verbose", help="Show tracebacks and more detail.")]
BitDepth = Annotated[
    int | None,
    typer.Option(
        "--bit-depth", help="Output bit depth: 8, 16 or 32 (float). Default: the input's.", show_default=False
    ),
]
Quality = Annotated[
    int | None,
    typer.Option(
        "--quality",
        min=1,
        max=100,
        help="JPEG, lossy WebP and HEIC output quality, 1–100. Default: the input's, estimated from its JPEG "
        "quantisation tables; 95 for other inputs.",
        show_default=False,
    ),
]
MaxPixels = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        min=1,
        help="Refuse images larger than this many pixels (decompression-bomb guard).",
        show_default=False,
    ),
]
BatchEngine = Annotated[
    EngineChoice,
    typer.Option(
        "--engine",
        help="Run the batch here (local) or on a Ray cluster (ray; needs pip install 'restorekit\\[ray]').",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to join (--engine ray): auto, or the head node's HOST:PORT. Default: $RAY_ADDRESS, "
        "else a Ray started on this machine for the batch.",
        show_default=False,
    ),
]
RayActors = Annotated[
    int | None,
    typer.Option(
        "--ray-actors",
        min=1,
        help="Actors, each loading the model once (--engine ray). Default: one per GPU, else one per 4 CPUs.",
        show_default=False,
    ),
]


def parse_sigma(text: str | None) -> float | str | None:
    """``--sigma`` as the library takes it: ``None``, ``auto`` or a number on the 0–255 scale.

    Example:
        >>> parse_sigma("25"), parse_sigma("auto"), parse_sigma(None)
        (25.0, 'auto', None)
    """
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return float(text)
    except ValueError:
        fail("sigma", "a number on the 0–255 scale or 'auto'", text)


# The options every restoring command takes, after its own: (name, type with its option, default).
RESTORING: tuple[tuple[str, Any, Any], ...] = (
    ("output", Output, None),
    ("recursive", Recursive, False),
    ("suffix", Suffix, None),
    ("overwrite", Overwrite, False),
    ("model", Model, None),
    ("device", Device, "auto"),
    ("dtype", Dtype, DtypeChoice.auto),
    ("tile", Tile, None),
    ("ensemble", Ensemble, False),
    ("bit_depth", BitDepth, None),
    ("quality", Quality, None),
    ("max_pixels", MaxPixels, None),
    ("progress", Progress, ProgressMode.auto),
    ("json", Json, False),
    ("engine", BatchEngine, EngineChoice.local),
    ("ray_address", RayAddress, None),
    ("ray_actors", RayActors, None),
    ("verbose", Verbose, False),
)
