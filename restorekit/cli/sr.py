"""`restorekit sr`: upscale image files, folders or globs ×2, ×3 or ×4 (super-resolution)."""

from __future__ import annotations

from typing import Annotated

import typer

from restorekit._checks import check
from restorekit.cli._batch import Restoring, restoring
from restorekit.cli._console import handle_errors
from restorekit.cli.tune import parse_omega

Scale = Annotated[int, typer.Option("--scale", help="Upscaling factor: 2, 3 or 4.")]
Knob = Annotated[
    str | None,
    typer.Option(
        "--w",
        help="Fidelity ↔ detail, ω1,ω2 in [0, 1] summing to 1: runs the tunable real-world ×4 model at that "
        "setting. 1,0: faithful (as the default model); 0,1: most generated detail and texture.",
        show_default=False,
    ),
]
Sheet = Annotated[
    int | None,
    typer.Option(
        "--sweep",
        min=2,
        help="Write a labelled contact sheet of the tunable ×4 model at N settings from 0,1 to 1,0 per input.",
        show_default=False,
    ),
]


@handle_errors
@restoring
def sr(options: Restoring, scale: Scale = 2, w: Knob = None, sweep_count: Sheet = None) -> None:
    """Upscale images ×2/×3/×4 (super-resolution).

    Which model. The default at every factor, the real-world model (acdasr_s.real_x2/x3/x4), is right
    for images as they come: camera and phone photos, JPEGs, downloaded or scanned pictures, anything with some
    blur, noise or compression, which it removes while upscaling. --model acdasr_s.x2/x3/x4 (trained on clean
    bicubic downscales) is right only for clean sources: renders, screenshots, line art, and images made smaller
    by a clean resize, such as the SR test sets. On those it is far sharper (Set5 ×4: 31.14 dB against the real-world
    model's 26.92, below plain bicubic's 28.43), but on a noisy or compressed photo it sharpens the grain and
    JPEG artefacts along with the edges.

    --w ω1,ω2 or --sweep N (×4): the fidelity ↔ detail knob of the tunable real-world model. There is no
    --reference (tune's PSNRη measures noise retention, which SR has not).

    Alpha is upscaled separately (bicubic), ICC/EXIF kept, DPI scaled with the pixels.
    """
    check(w is None or sweep_count is None, "sr", "at most one of --w ω1,ω2 or --sweep N", "both")
    options.run("sr", None, sweep_count, scale=scale, w=parse_omega(w) if w is not None else None)
