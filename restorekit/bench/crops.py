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
    return render(tiles, box, zoom), [(label, psnr) for label, psnr, _ in tiles]


def camera_noise_strip(
    clean_path: Path, methods: list[Method], seed: int, box: tuple[int, int, int], zoom: int = 2
) -> tuple[np.ndarray, list[tuple[str, float | None]]]:
    """As :func:`comparison_strip`, with realistic camera noise instead of AWGN: the clean image through the
    camera-noise synthesis of the training data (:mod:`restorekit.train.camera_noise`, fixed ``seed``),
    compared with the synthetic camera's clean rendering. Methods that take σ are told the estimate."""
    from restorekit.inference.noise import estimate_sigma

    noisy, clean = camera_noisy(clean_path, seed)
    told = float(estimate_sigma(noisy))
    tiles = [("clean", None, clean), ("noisy", _psnr(noisy, clean), noisy)]
    for method in methods:
        out = np.clip(method.run(noisy, told if method.needs_sigma else None), 0, 1)
        tiles.append((method.name, _psnr(out, clean), out))
    return render(tiles, box, zoom), [(label, psnr) for label, psnr, _ in tiles]


def camera_noisy(clean_path: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A clean image through the training data's camera-noise synthesis (fixed ``seed``), cropped to even sides.

    Returns:
        ``(noisy, clean)`` ``(H, W, 3)`` float32: the synthetic camera's noisy photo and its clean rendering.
    """
    import torch

    from restorekit.train.camera_noise import synthesize

    pixels = load_image(clean_path).pixels
    height, width = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    batch = torch.from_numpy(np.ascontiguousarray(pixels[:height, :width])).permute(2, 0, 1)[None]
    noisy, clean = synthesize(batch, torch.Generator().manual_seed(seed))
    noisy, clean = (t[0].permute(1, 2, 0).numpy().astype(np.float32) for t in (noisy, clean))
    return noisy, clean


def sr_strip(
    hr_path: Path, methods: list, scale: int, box: tuple[int, int, int], zoom: int = 2
) -> tuple[np.ndarray, list[tuple[str, float | None]]]:
    """Super-resolution crops: the HR image, then each method's upscaling of its ×``scale`` bicubic downscale
    (:func:`restorekit.bench.sr.load_pair`), labelled with the whole image's Y-channel PSNR; ``box`` is in HR
    pixels and ``methods`` are :class:`restorekit.bench.sr.SRMethod`."""
    from restorekit.bench.sr import load_pair, y_psnr_ssim

    hr, lr = load_pair(hr_path, None, scale)
    tiles = [("HR", None, hr)]
    for method in methods:
        out = np.clip(method.run(lr, scale), 0, 1)
        tiles.append((method.name, y_psnr_ssim(hr, out, scale)[0], out))
    return render(tiles, box, zoom), [(label, psnr) for label, psnr, _ in tiles]


def render(tiles: list[tuple[str, float | None, np.ndarray]], box: tuple[int, int, int], zoom: int) -> np.ndarray:
    """The labelled tiles side by side: each image cropped to ``box`` = (top, left, size), zoomed ``zoom``×.

    A label breaks after each ``+`` (an average of models, a self-ensemble), so that it fits its tile."""
    top, left, size = box
    texts = [(label if psnr is None else f"{label} {psnr:.2f} dB").replace("+", "+\n") for label, psnr, _ in tiles]
    label_height = 6 + 12 * max(text.count("\n") + 1 for text in texts)
    strip = []
    for text, (_, _, image) in zip(texts, tiles, strict=True):
        crop = np.clip(image[top : top + size, left : left + size], 0, 1)
        crop = np.repeat(np.repeat(crop, zoom, axis=0), zoom, axis=1)
        crop = np.broadcast_to(crop, (*crop.shape[:2], 3)) if crop.shape[2] == 1 else crop
        tile = PILImage.new("RGB", (crop.shape[1], crop.shape[0] + label_height), "white")
        tile.paste(PILImage.fromarray(np.round(crop * 255).astype(np.uint8)), (0, label_height))
        ImageDraw.Draw(tile).multiline_text((3, 3), text, fill="black", spacing=2)
        strip.append(np.asarray(tile))
    return np.concatenate(strip, axis=1)
