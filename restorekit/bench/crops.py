"""Visual comparisons: the same crop of the clean, noisy and each method's output, side by side, with PSNR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from restorekit.bench.methods import Method
from restorekit.bench.noise import add_noise
from restorekit.inference.io import load_image


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def comparison_strip(
    clean_path: Path, methods: list[Method], sigma: float, protocol: str, box: tuple[int, int, int], zoom: int = 2
) -> tuple[np.ndarray, list[tuple[str, float | None]]]:
    """A uint8 RGB strip: clean | noisy | each method, cropped to ``box`` = (top, left, size) and zoomed.

    Every method sees the benchmark's noisy input for this image and σ (the quality protocol's seed), and the
    PSNR under each tile is computed on the whole image.

    Returns:
        The strip (H, W, 3) and the ``(label, psnr)`` of each tile.
    """
    clean = load_image(clean_path).pixels
    noisy = add_noise(clean, clean_path.name, sigma, protocol)
    tiles = [("clean", None, clean), ("noisy", _psnr(np.clip(noisy, 0, 1), clean), noisy)]
    for method in methods:
        given = np.round(np.clip(noisy, 0, 1) * 255) / 255 if method.input == "uint8" else noisy
        out = np.clip(method.run(given.astype(np.float32), sigma), 0, 1)
        tiles.append((method.name, _psnr(out, clean), out))
    top, left, size = box
    label_height = 18
    strip = []
    for label, psnr, image in tiles:
        crop = np.clip(image[top : top + size, left : left + size], 0, 1)
        crop = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
        crop = np.broadcast_to(crop, (*crop.shape[:2], 3)) if crop.shape[2] == 1 else crop
        tile = PILImage.new("RGB", (crop.shape[1], crop.shape[0] + label_height), "white")
        tile.paste(PILImage.fromarray(np.round(crop * 255).astype(np.uint8)), (0, label_height))
        text = label if psnr is None else f"{label} {psnr:.2f} dB"
        ImageDraw.Draw(tile).text((3, 3), text, fill="black")
        strip.append(np.asarray(tile))
    return np.concatenate(strip, axis=1), [(label, psnr) for label, psnr, _ in tiles]
