"""`restorekit sr`: super-resolution (the command and its options exist; no model ships yet)."""

from __future__ import annotations

from typing import Annotated

import typer

from restorekit.cli._console import handle_errors
from restorekit.cli._options import (
    BitDepth,
    Device,
    Dtype,
    DtypeChoice,
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
from restorekit.errors import WeightsError

Scale = Annotated[int, typer.Option("--scale", min=2, max=4, help="Upscaling factor: 2, 3 or 4.")]


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
    bit_depth: BitDepth = None,
    max_pixels: MaxPixels = None,
    progress: Progress = ProgressMode.auto,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Upscale images ×2/×3/×4 (super-resolution)."""
    raise WeightsError("no super-resolution model ships yet; `restorekit models` lists what is available")
