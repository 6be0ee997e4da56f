"""The benchmark's AWGN protocol: the same noisy input for every method, reproducible from the file name.

For a clean image ``x`` (H, W, C) in [0, 1] named ``name`` (the file name, without folders) and a noise
level σ on the 0–255 scale:

* ``seed = zlib.crc32(f"{name}|{σ:g}".encode())`` (so ``kodim01.png`` at σ = 25 is seeded with
  ``crc32(b"kodim01.png|25")``);
* ``noise = numpy.random.default_rng(seed).standard_normal((H, W, C), dtype=float32) · float32(σ / 255)``;
* ``float`` protocol (the papers'): ``y = x + noise``, neither clipped nor quantized;
* ``file`` protocol (what a user has on disk): ``y = round(clip(x + noise, 0, 1) · 255) / 255``.

Both protocols use the same noise draw, so they differ only by the clipping and 8-bit rounding.
"""

from __future__ import annotations

import zlib

import numpy as np

from restorekit._checks import check, check_choice

PROTOCOLS = ("float", "file")


def seed_for(name: str, sigma: float) -> int:
    """The noise seed of image ``name`` (a file name) at noise level ``sigma`` (0–255 scale).

    Example:
        >>> seed_for("kodim01.png", 25) == seed_for("kodim01.png", 25.0)
        True
    """
    return zlib.crc32(f"{name}|{sigma:g}".encode())


def add_noise(clean: np.ndarray, name: str, sigma: float, protocol: str) -> np.ndarray:
    """The noisy version of ``clean`` under the benchmark protocol.

    Args:
        clean: Image (H, W, C) in [0, 1].
        name: The image's file name; with ``sigma`` it fixes the seed.
        sigma: Noise standard deviation on the 0–255 scale.
        protocol: ``float`` (unclipped) or ``file`` (clipped and rounded to 8 bits).

    Returns:
        float32 array (H, W, C).

    Example:
        >>> clean = np.full((4, 4, 1), 0.5, dtype=np.float32)
        >>> bool(np.array_equal(add_noise(clean, "a.png", 25, "float"), add_noise(clean, "a.png", 25, "float")))
        True
    """
    check_choice(protocol, PROTOCOLS, "protocol")
    check(sigma >= 0, "sigma", "a noise level ≥ 0 (0–255 scale)", sigma)
    rng = np.random.default_rng(seed_for(name, sigma))
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255)
    noisy = clean.astype(np.float32) + noise
    if protocol == "file":
        noisy = np.round(np.clip(noisy, 0, 1) * 255) / np.float32(255)
    return noisy.astype(np.float32)
