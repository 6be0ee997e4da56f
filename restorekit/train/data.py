"""Training data: clean images in memory, random patches with flips/rotations, and the degradations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from restorekit.errors import UsageError
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.ops.resize import imresize
from restorekit.train.camera_noise import CameraNoiseConfig, synthesize

TRAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_clean_images(folders: tuple[str, ...], channels: int, min_size: int) -> list[np.ndarray]:
    """Load every image under ``folders`` as uint8 ``H×W×channels`` (sorted by path, so runs repeat).

    Training sets are plain 8-bit images, decoded with Pillow; colour becomes gray by Pillow's BT.601 luma
    when ``channels`` is 1. Images smaller than ``min_size`` are skipped.
    """
    paths = sorted(p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in TRAIN_SUFFIXES)
    if not paths:
        raise UsageError(f"no training images under {', '.join(folders)}")
    images = []
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
        if min(pixels.shape[:2]) >= min_size:
            images.append(pixels.reshape(*pixels.shape[:2], channels))
    return images


def sample_patches(
    images: list[np.ndarray],
    count: int,
    patch: int,
    rng: np.random.Generator,
    rescale: tuple[float, float] = (1.0, 1.0),
    channel_shuffle: bool = False,
) -> torch.Tensor:
    """Random ``patch``² crops with random flips and 90° rotations, as ``(count, C, patch, patch)`` in [0, 1].

    Args:
        images: Clean uint8 ``H×W×C`` images.
        count: Crops to draw.
        patch: Side of each crop.
        rng: Source of every random choice (so a resumed run draws the same crops).
        rescale: Range of a random scale factor per crop: a region of side ``patch / scale`` is cut and
            resized to ``patch`` (antialiased bilinear), which varies the scale of textures and shrinks the
            compression artefacts of JPEG training images. ``(1, 1)`` cuts at the native scale.
        channel_shuffle: Permute the colour channels of each crop at random, for hues the training set lacks
            (AWGN is independent per channel, so the task is unchanged).
    """
    crops = []
    for index in rng.integers(len(images), size=count):
        image = images[index]
        scale = rng.uniform(*rescale) if rescale != (1.0, 1.0) else 1.0
        side = min(round(patch / scale), *image.shape[:2])
        crop, _, _ = _cut(image, side, patch, rng)
        crops.append(_shuffled(_turned(crop, rng), rng, channel_shuffle))
    return torch.stack(crops)


def sample_frame_patches(
    images: list[np.ndarray],
    count: int,
    patch: int,
    rng: np.random.Generator,
    frame_side: tuple[float, float],
    channel_shuffle: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``patch``² crops of whole frames, with the frame coordinates of their pixels.

    Each image is a frame: a crop covers ``patch / L`` of it, where the frame's long side is scaled to ``L``
    pixels, uniform in ``frame_side`` (the region is cut at the image's own resolution and resized to
    ``patch``). The coordinates turn and flip with the pixels, so every pixel keeps its place in the frame.

    Args:
        images, count, patch, rng, channel_shuffle: As for :func:`sample_patches`.
        frame_side: Range of the long side the frames are scaled to; the crop side, ``patch`` at the largest,
            is at most the frame's short side.

    Returns:
        ``crops (count, C, patch, patch)`` in [0, 1], ``coords (count, 2, patch, patch)`` (see
        :func:`restorekit.layers.tv_conv.frame_coordinates`) and ``frame_size (count, 2)``, each image's height
        and width.
    """
    crops, coords, sizes = [], [], []
    for index in rng.integers(len(images), size=count):
        image = images[index]
        height, width = image.shape[:2]
        long_side = rng.uniform(*frame_side)
        side = min(round(patch * max(height, width) / long_side), height, width)
        crop, top, left = _cut(image, side, patch, rng)
        centres = (torch.arange(patch) + 0.5) * (side / patch) - 0.5  # in the frame's pixels, from the crop's origin
        where = frame_coordinates(height, width, top + centres, left + centres)[0]
        both = _turned(torch.cat([crop, where]), rng)
        crops.append(_shuffled(both[: crop.shape[0]], rng, channel_shuffle))
        coords.append(both[crop.shape[0] :])
        sizes.append((height, width))
    return torch.stack(crops), torch.stack(coords), torch.tensor(sizes, dtype=torch.float32)


def _cut(image: np.ndarray, side: int, patch: int, rng: np.random.Generator) -> tuple[torch.Tensor, int, int]:
    """A random ``side``² region of ``image`` resized to ``patch``² (antialiased bilinear), in [0, 1], and its
    top and left."""
    top = int(rng.integers(image.shape[0] - side + 1))
    left = int(rng.integers(image.shape[1] - side + 1))
    crop = torch.from_numpy(np.ascontiguousarray(image[top : top + side, left : left + side]))
    crop = crop.permute(2, 0, 1).float().div_(255)
    if side != patch:
        crop = F.interpolate(crop[None], size=(patch, patch), mode="bilinear", antialias=True)[0].clamp_(0, 1)
    return crop, top, left


def _turned(crop: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``crop (C, H, W)`` turned by a random multiple of 90° and mirrored left-right with probability 1/2."""
    crop = torch.rot90(crop, k=int(rng.integers(4)), dims=(1, 2))
    return crop.flip(2) if rng.integers(2) else crop


def _shuffled(crop: torch.Tensor, rng: np.random.Generator, channel_shuffle: bool) -> torch.Tensor:
    """``crop (C, H, W)`` with its colour channels permuted at random when ``channel_shuffle``."""
    if channel_shuffle and crop.shape[0] > 1:
        return crop[torch.from_numpy(rng.permutation(crop.shape[0]))]
    return crop


def add_awgn(
    clean: torch.Tensor, sigma: torch.Tensor, as_file: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add white Gaussian noise of level ``sigma`` (0–255 scale, one per image).

    Args:
        clean: ``(B, C, H, W)`` in [0, 1].
        sigma: ``(B,)`` noise levels on the 0–255 scale.
        as_file: ``(B,)`` booleans; those images are clipped to [0, 1] and rounded to 8 bits afterwards.
        generator: Source of the noise.

    Returns:
        ``(B, C, H, W)`` noisy images.
    """
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    noisy = clean + noise * (sigma / 255).view(-1, 1, 1, 1)
    quantized = noisy.clamp(0, 1).mul(255).round().div(255)
    return torch.where(as_file.view(-1, 1, 1, 1), quantized, noisy)


def draw_degradation(
    batch: int, sigma_range: tuple[float, float], file_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image σ uniform in ``sigma_range`` and which images are degraded as 8-bit files."""
    low, high = sigma_range
    sigma = low + (high - low) * torch.rand(batch, generator=generator)
    as_file = torch.rand(batch, generator=generator) < file_fraction
    return sigma, as_file


def draw_omega(batch: int, endpoints: float, fixed_w1: float | None, generator: torch.Generator) -> torch.Tensor:
    """Per-image ω = (ω1, 1 − ω1) for the multi-loss, ``(batch, 2)``.

    ω1 is ``fixed_w1`` when given; otherwise uniform in [0, 1], except that a fraction ``endpoints`` of the
    images (in expectation) sits exactly at ω1 = 0 or ω1 = 1, half each.
    """
    if fixed_w1 is not None:
        w1 = torch.full((batch,), float(fixed_w1))
    else:
        w1 = torch.rand(batch, generator=generator)
        pick = torch.rand(batch, generator=generator)
        w1 = torch.where(pick < endpoints / 2, 0.0, torch.where(pick < endpoints, 1.0, w1))
    return torch.stack([w1, 1 - w1], dim=1)


def degrade_mixture(
    clean: torch.Tensor,
    camera_fraction: float,
    clean_fraction: float,
    sigma_range: tuple[float, float],
    generator: torch.Generator,
    camera: CameraNoiseConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Degrade a batch for a blind real-noise denoiser: camera noise, AWGN and clean images mixed.

    The first ``round(B·camera_fraction)`` images get the camera-noise synthesis (their targets are the clean
    images rendered by the same synthetic camera), the last ``round(B·clean_fraction)`` stay clean, rounded to
    8 bits like a file (so the model learns to leave clean images alone), and the rest get AWGN with σ uniform
    in ``sigma_range``, clipped and rounded to 8 bits.

    Args:
        clean: ``(B, 3, H, W)`` in [0, 1], H and W even.
        camera_fraction, clean_fraction: Shares of the batch.
        sigma_range: σ range of the AWGN share (0–255 scale).
        generator: Source of every random choice.
        camera: Ranges of the camera-noise synthesis (its in-camera noise reduction among them); ``None``: the
            defaults.

    Returns:
        ``(noisy, target)``, both ``(B, 3, H, W)``.
    """
    batch = clean.shape[0]
    cameras = round(batch * camera_fraction)
    untouched = min(round(batch * clean_fraction), batch - cameras)
    gaussian = batch - cameras - untouched
    noisy, target = clean.clone(), clean.clone()
    if cameras:
        noisy[:cameras], target[:cameras] = synthesize(clean[:cameras], generator, camera or CameraNoiseConfig())
    if gaussian:
        part = slice(cameras, cameras + gaussian)
        sigma, _ = draw_degradation(gaussian, sigma_range, 0.0, generator)
        noisy[part] = add_awgn(clean[part], sigma, torch.ones(gaussian, dtype=torch.bool), generator)
    if untouched:
        noisy[batch - untouched :] = target[batch - untouched :] = clean[batch - untouched :].mul(255).round().div(255)
    return noisy, target


def downscale(clean: torch.Tensor, scale: int) -> torch.Tensor:
    """The low-resolution input of a super-resolution pair: MATLAB's antialiased bicubic by ``1/scale``, 8-bit.

    Args:
        clean: ``(B, C, H, W)`` in [0, 1], H and W multiples of ``scale``.

    Returns:
        ``(B, C, H/scale, W/scale)``, clipped and rounded to 8 bits as the LR file of a benchmark set is.
    """
    return imresize(clean, 1 / scale).clamp_(0, 1).mul_(255).round_().div_(255)
