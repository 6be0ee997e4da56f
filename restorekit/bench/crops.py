"""Visual comparisons: the same crop of the clean, noisy and each method's output, side by side, with PSNR."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from restorekit._checks import check, check_choice
from restorekit.bench.baselines import peers
from restorekit.bench.methods import Method, denoisers, model_method
from restorekit.bench.noise import add_noise
from restorekit.inference.io import load_image
from restorekit.inference.metrics import psnr
from restorekit.models import create_model


def strip(
    image: Path,
    box: tuple[int, int, int],
    task: str = "denoise",
    models: Sequence[str] | None = None,
    peer_names: Sequence[str] = (),
    noise: str = "awgn",
    sigma: float = 25.0,
    protocol: str = "float",
    seed: int = 0,
    scale: int = 2,
    warn: Callable[[str], None] | None = None,
    degradation: str = "bicubic",
    chain: Sequence[str] = (),
    w1: Sequence[float] = (),
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """What ``bench crops`` draws: for ``task`` ``sr``, :func:`sr_strip` of bicubic, Lanczos, the SR models
    (default: every shipped one of factor ``scale``; a tunable one at each setting ω1 of ``w1``), then the photo
    denoiser followed by each model of ``chain``, on the LR input ``degradation`` makes (``bicubic`` or the
    seeded ``real``-world degradation of ``bench quality --task sr``); else the models (default: every shipped
    plain denoiser, ``warn`` told when there is none) that take the image's channel count and the installed
    peers, on seeded AWGN (:func:`comparison_strip`) or, with ``noise`` ``camera``, on the camera-noise synthesis
    (:func:`camera_noise_strip`)."""
    check_choice(noise, ("awgn", "camera"), "--noise")
    if task == "sr":
        from restorekit.bench.sr import interpolation_method, model_methods, upscalers

        check_choice(scale, (2, 3, 4), "--scale")
        check_choice(degradation, ("bicubic", "real"), "--degradation")
        upscaling = [interpolation_method("cubic"), interpolation_method("lanczos3")]
        methods = upscaling + model_methods(upscalers(models, scale), w1, chain)
        return sr_strip(image, methods, scale, box, degradation)
    given = [name for name, value in (("--chain", chain), ("--degradation real", degradation == "real")) if value]
    check(not given, "--task denoise", "no --chain or --degradation real (they go with --task sr)", ", ".join(given))
    channels = 1 if load_image(image).pixels.shape[2] == 1 else 3
    names = [n for n in denoisers(models, warn) if create_model(n).requirements.in_channels == channels]
    available, _ = peers(list(peer_names))
    methods = [model_method(name) for name in names] + available
    if noise == "camera":
        return camera_noise_strip(image, methods, seed, box)
    return comparison_strip(image, methods, sigma, protocol, box)


def comparison_strip(
    clean_path: Path, methods: list[Method], sigma: float, protocol: str, box: tuple[int, int, int], zoom: int = 2
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A uint8 RGB strip: clean | noisy | each method, cropped to ``box`` = (top, left, size) and zoomed.

    Every method sees the benchmark's noisy input for this image and σ (the quality protocol's seed), and the
    PSNR under each tile is computed on the whole image.

    Returns:
        The strip (H, W, 3) and a row per tile: ``method`` (its label) and ``psnr`` (``None`` for the clean one).
    """
    clean = load_image(clean_path).pixels
    noisy = add_noise(clean, clean_path.name, sigma, protocol)
    tiles = [("clean", None, clean), ("noisy", psnr(np.clip(noisy, 0, 1), clean), noisy)]
    for method in methods:
        given = np.round(np.clip(noisy, 0, 1) * 255) / 255 if method.input == "uint8" else noisy
        out = np.clip(method.run(given.astype(np.float32), sigma), 0, 1)
        tiles.append((method.name, psnr(out, clean), out))
    return render(tiles, box, zoom), _rows(tiles)


def camera_noise_strip(
    clean_path: Path, methods: list[Method], seed: int, box: tuple[int, int, int], zoom: int = 2
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """As :func:`comparison_strip`, with realistic camera noise instead of AWGN: the clean image through the
    camera-noise synthesis of the training data (:mod:`restorekit.train.camera_noise`, fixed ``seed``),
    compared with the synthetic camera's clean rendering. Methods that take σ are told the estimate."""
    from restorekit.inference.noise import estimate_sigma

    noisy, clean = camera_noisy(clean_path, seed)
    told = float(estimate_sigma(noisy))
    tiles = [("clean", None, clean), ("noisy", psnr(noisy, clean), noisy)]
    for method in methods:
        out = np.clip(method.run(noisy, told if method.needs_sigma else None), 0, 1)
        tiles.append((method.name, psnr(out, clean), out))
    return render(tiles, box, zoom), _rows(tiles)


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
    hr_path: Path,
    methods: list,
    scale: int,
    box: tuple[int, int, int],
    degradation: str = "bicubic",
    zoom: int = 2,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Super-resolution crops: the HR image, then each method's upscaling of its ×``scale`` LR input, made by
    ``degradation`` as ``bench quality --task sr`` makes it (:func:`restorekit.bench.sr.load_pair`: a bicubic
    downscale, or the real-world degradation seeded by the file name and factor), labelled with the whole image's
    Y-channel PSNR; ``box`` is in HR pixels and ``methods`` are :class:`restorekit.bench.sr.SRMethod`. Rows
    as :func:`comparison_strip`'s, with the ``detail`` statistic of ``bench quality --task sr``
    (:func:`restorekit.bench.sr.detail_ratio`, 1 for the HR image)."""
    from restorekit.bench.sr import detail_ratio, load_pair, y_psnr_ssim

    hr, lr = load_pair(hr_path, None, scale, degradation)
    tiles = [("HR", None, hr)]
    rows: list[dict[str, Any]] = [{"method": "HR", "psnr": None, "detail": 1.0}]
    for method in methods:
        out = np.clip(method.run(lr, scale), 0, 1)
        tiles.append((method.name, y_psnr_ssim(hr, out, scale)[0], out))
        rows.append({"method": method.name, "psnr": tiles[-1][1], "detail": detail_ratio(hr, out, scale)})
    return render(tiles, box, zoom), rows


_ASCII = str.maketrans({"→": "->", "ω": "w"})  # label glyphs that Pillow's default font cannot draw


def _rows(tiles: list[tuple[str, float | None, np.ndarray]]) -> list[dict[str, Any]]:
    """A results row per tile: its label and PSNR."""
    return [{"method": label, "psnr": score} for label, score, _ in tiles]


def render(tiles: list[tuple[str, float | None, np.ndarray]], box: tuple[int, int, int], zoom: int) -> np.ndarray:
    """The labelled tiles side by side: each image cropped to ``box`` = (top, left, size), zoomed ``zoom``×.

    A label breaks after each ``+`` (an average of models, a self-ensemble), so that it fits its tile, and is
    drawn with ASCII for the glyphs Pillow's default font lacks (``denoise -> …``, ``@w1=0``)."""
    top, left, size = box
    texts = [(label if score is None else f"{label} {score:.2f} dB").replace("+", "+\n") for label, score, _ in tiles]
    texts = [text.translate(_ASCII) for text in texts]
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
