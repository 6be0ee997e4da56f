"""`restorekit tune`: tunable restoration (the command and its options exist; no tunable model ships yet)."""

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
    Sigma,
    Suffix,
    Tile,
    Verbose,
)
from restorekit.errors import WeightsError

Strength = Annotated[
    float,
    typer.Option("--strength", min=0.0, max=1.0, help="Balance of the model's objectives, 0 (fidelity) to 1."),
]


@handle_errors
def tune(
    inputs: Inputs,
    strength: Strength = 0.5,
    sigma: Sigma = "auto",
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
    """Restore images with a tunable model, choosing the trade-off between its objectives at run time."""
    raise WeightsError("no tunable model ships yet; `restorekit models` lists what is available")
