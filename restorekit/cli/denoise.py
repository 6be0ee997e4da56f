"""`restorekit denoise`: remove real camera noise (no σ) or Gaussian noise from image files, folders or globs."""

from __future__ import annotations

from restorekit.cli._batch import Restoring, restoring
from restorekit.cli._console import handle_errors
from restorekit.cli._options import Sigma, parse_sigma


@handle_errors
@restoring
def denoise(options: Restoring, sigma: Sigma = None) -> None:
    """Denoise images: real camera noise (no --sigma), or Gaussian noise of level --sigma (a number or auto).

    Without --model: with no --sigma, the shipped real-noise model for the image's channels where one ships
    (otherwise the Gaussian model with σ estimated); with --sigma, the best shipped Gaussian denoiser.

    Layout-aware models (names starting with tv_, e.g. tv_acdanet_s.*) correct noise that depends on the place
    in the camera's frame (lens shading): give them whole, uncropped frames; a cropped image breaks the
    assumption that a pixel's place in the image is its place in the frame.
    """
    options.run("denoise", sigma=parse_sigma(sigma))
