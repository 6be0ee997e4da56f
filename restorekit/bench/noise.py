"""The benchmark's AWGN protocol: the same noisy input for every method, reproducible from the file name.

For a clean image ``x`` (H, W, C) in [0, 1] named ``name`` (the file name, without folders) and a noise
level σ on the 0–255 scale:

* ``seed = zlib.crc32(f"{name}|{σ:g}".encode())`` (so ``kodim01.png`` at σ = 25 is seeded with
  ``crc32(b"kodim01.png|25")``);
* ``noise = numpy.random.default_rng(seed).standard_normal((H, W, C), dtype=float32) · float32(σ / 255)``;
* ``float`` protocol (the papers'): ``y = x + noise``, neither clipped nor quantized;
* ``file`` protocol (what a user has on disk): ``y = round(clip(x + noise, 0, 1) · 255) / 255``.

Both protocols use the same noise draw, so they differ only by the clipping and 8-bit rounding.

Lens shading (:func:`add_shading`, ``bench quality --degradation shading``): the noise is added before a
shading-correction gain (:mod:`restorekit.train.shading`), so it grows toward the corners. With
``rng = numpy.random.default_rng(crc32(f"{name}|{σ:g}|shading"))`` the optical axis is
``rng.uniform(-1, 1, 2) · 2·AXIS_OFFSET`` (y, x in frame coordinates), the corner gain ``rng.uniform(*CORNER_GAIN)``,
then the noise ``rng.standard_normal((H, W, C), dtype=float32)``; ``y = x + noise · σ·g / 255``, ``float`` or
``file`` as above. The exact per-pixel level ``σ·g`` comes back with it (the oracle's noise map).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from restorekit._checks import check, check_choice
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.train.shading import AXIS_OFFSET, CORNER_GAIN, shading_gain

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


def add_shading(clean: np.ndarray, name: str, sigma: float, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """The noisy version of ``clean`` under the lens-shading protocol (see the module), and its noise map.

    Args:
        clean: Image (H, W, C) in [0, 1], taken as the whole frame.
        name: The image's file name; with ``sigma`` it fixes the seed.
        sigma: Noise standard deviation before the gain (0–255 scale).
        protocol: ``float`` (unclipped) or ``file`` (clipped and rounded to 8 bits).

    Returns:
        The noisy image (H, W, C) and the exact noise level of every pixel, ``σ·g`` (H, W), both float32.

    Example:
        >>> clean = np.full((8, 12, 3), 0.5, dtype=np.float32)
        >>> noisy, level = add_shading(clean, "a.png", 10, "float")
        >>> noisy.shape, level.shape, bool(level.min() >= 10)
        ((8, 12, 3), (8, 12), True)
    """
    check_choice(protocol, PROTOCOLS, "protocol")
    check(sigma >= 0, "sigma", "a noise level ≥ 0 (0–255 scale)", sigma)
    height, width = clean.shape[:2]
    rng = np.random.default_rng(zlib.crc32(f"{name}|{sigma:g}|shading".encode()))
    axis = rng.uniform(-1, 1, 2) * 2 * AXIS_OFFSET
    corner = rng.uniform(*CORNER_GAIN)
    gain = shading_gain(
        frame_coordinates(height, width),
        torch.tensor([[height, width]]),
        torch.tensor(axis[None], dtype=torch.float32),
        torch.tensor([corner], dtype=torch.float32),
    )
    level = gain[0, 0].numpy() * np.float32(sigma)
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * (level / np.float32(255))[..., None]
    noisy = clean.astype(np.float32) + noise
    if protocol == "file":
        noisy = np.round(np.clip(noisy, 0, 1) * 255) / np.float32(255)
    return noisy.astype(np.float32), level.astype(np.float32)
