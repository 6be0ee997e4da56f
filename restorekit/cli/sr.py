"""`restorekit sr`: upscale image files, folders or globs ×2, ×3 or ×4 (super-resolution)."""

from __future__ import annotations

from typing import Annotated

import typer

from restorekit.cli._batch import Restoring, restoring
from restorekit.cli._console import handle_errors

Scale = Annotated[int, typer.Option("--scale", help="Upscaling factor: 2, 3 or 4.")]


@handle_errors
@restoring
def sr(options: Restoring, scale: Scale = 2) -> None:
    """Upscale images ×2/×3/×4 (super-resolution).

    Alpha is upscaled separately (bicubic), ICC/EXIF kept, DPI scaled with the pixels. The shipped models are
    trained on bicubic downscaling: they sharpen clean images, and would sharpen the noise and JPEG blocks of a
    poor photo too (denoise it first).
    """
    options.run("sr", scale=scale)
