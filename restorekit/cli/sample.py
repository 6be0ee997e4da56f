"""`restorekit sample`: write a noisy copy of an image bundled with scikit-image, for demos and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from restorekit._checks import check, check_choice
from restorekit.cli._console import console, handle_errors
from restorekit.cli._options import Overwrite, Verbose
from restorekit.inference.io import Image, save_image

SAMPLES = ("astronaut", "camera", "coffee", "chelsea", "rocket")


@handle_errors
def sample(
    output: Annotated[Path, typer.Argument(help="Where to write the noisy sample (PNG, 8-bit).")] = Path("noisy.png"),
    name: Annotated[str, typer.Option("--name", help=f"scikit-image sample: {', '.join(SAMPLES)}.")] = "astronaut",
    sigma: Annotated[float, typer.Option("--sigma", help="AWGN level σ on the 0–255 scale.")] = 25.0,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed.")] = 0,
    overwrite: Overwrite = False,
    verbose: Verbose = False,
) -> None:
    """Add white Gaussian noise to a bundled sample and save it clipped to 8 bits, as a noisy file would be."""
    import skimage.data

    check_choice(name, SAMPLES, "--name")
    check(0 <= sigma <= 255, "--sigma", "a noise level in [0, 255]", sigma)
    clean = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255
    clean = clean.reshape(*clean.shape[:2], -1)
    noise = np.random.default_rng(seed).standard_normal(clean.shape, dtype=np.float32) * (sigma / 255)
    noisy = np.clip(clean + noise, 0, 1)
    mode = "L" if clean.shape[2] == 1 else "RGB"
    save_image(Image(noisy, None, 8, mode, "PNG", None, None), output, overwrite=overwrite)
    console.print(
        f"wrote {output}: scikit-image '{name}' + AWGN σ={sigma:g} (seed {seed}), clipped to 8 bits", soft_wrap=True
    )
