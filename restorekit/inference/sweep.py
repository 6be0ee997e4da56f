"""Sweeps of a tunable model's setting: the outputs at N settings of ω on one labelled contact sheet.

For a two-objective model on the simplex the settings run from ω = (0, 1) to (1, 0). A ``tune`` sweep runs a
tunable denoiser, an ``sr`` sweep the tunable super-resolution model of its scale (fidelity ↔ detail). With the
clean image a denoising sweep also measures each setting: PSNR against the clean image and PSNRη against the
noise-retention target ``y_η = y + ω2·ν·(z − y)`` of that setting (the tunable-convolution paper's two metrics).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image as PILImage
from PIL import ImageDraw
from torch import nn

from restorekit._checks import check
from restorekit.inference import api
from restorekit.inference.metrics import psnr

LABEL_HEIGHT = 18
DEFAULT_NU = 0.9


def sweep_settings(count: int) -> list[tuple[float, float]]:
    """``count`` ≥ 2 evenly spaced settings ω = (ω1, 1 − ω1) from (0, 1) to (1, 0).

    Example:
        >>> sweep_settings(3)
        [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    """
    check(isinstance(count, int) and count >= 2, "sweep", "a number of settings ≥ 2", count)
    return [(i / (count - 1), 1.0 - i / (count - 1)) for i in range(count)]


def retention_nu(model: nn.Module) -> float:
    """ν of a trained tunable model (the fraction of noise its ω = (0, 1) keeps), from its recipe; else 0.9."""
    recipe = model.metadata.get("recipe")
    tune = (yaml.safe_load(recipe) or {}).get("tune") if recipe else None
    return float(tune["nu"]) if tune and "nu" in tune else DEFAULT_NU


def scores(output: np.ndarray, noisy: np.ndarray, clean: np.ndarray, w: tuple[float, ...], nu: float) -> dict:
    """PSNR against ``clean`` and PSNRη against ``y_η = y + ω2·ν·(z − y)``, all ``(H, W, C)`` in [0, 1]."""
    target = np.clip(clean + w[1] * nu * (noisy - clean), 0, 1)
    return {"psnr": round(psnr(output, clean), 3), "psnr_eta": round(psnr(output, target), 3)}


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """A uint8 RGB tile: ``image`` ``(H, W, C)`` in [0, 1] under a white strip with ``text``."""
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    tile = PILImage.new("RGB", (pixels.shape[1], pixels.shape[0] + LABEL_HEIGHT), "white")
    tile.paste(PILImage.fromarray(pixels), (0, LABEL_HEIGHT))
    ImageDraw.Draw(tile).text((3, 3), text, fill="black")
    return np.asarray(tile)


def contact_sheet(tiles: list[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Equal-sized uint8 tiles on a grid (``columns`` per row; default about square), white between."""
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    height, width = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    gap = 4
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        top, left = divmod(index, columns)
        sheet[
            top * (height + gap) : top * (height + gap) + height, left * (width + gap) : left * (width + gap) + width
        ] = tile
    return sheet


def sweep_image(
    pixels: np.ndarray,
    count: int,
    sigma: float | str | np.ndarray | None = None,
    model: str | Path | nn.Module | None = None,
    device: str | torch.device = "auto",
    tile: int | None = None,
    dtype: str | None = None,
    clean: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict], api.RunInfo]:
    """Run a tunable model at ``count`` settings from (0, 1) to (1, 0) and lay the outputs on a sheet.

    Args:
        pixels: Noisy image ``(H, W, C)`` in [0, 1].
        count: Number of settings (≥ 2).
        sigma, model, device, tile, dtype: As for :func:`restorekit.tune`.
        clean: The clean reference ``(H, W, C)``; when given, each setting is scored (PSNR, PSNRη).

    Returns:
        The sheet ``(H', W', 3)`` float32 in [0, 1], one record per setting (``w``, ``ms`` and, with
        ``clean``, ``psnr`` and ``psnr_eta``), and the run information of the last setting.
    """
    spec = api.Restoration(task="tune", sigma=sigma, model=model, device=device, tile=tile, dtype=dtype)
    return sweep_restoration(pixels, count, spec, clean)


def swept(spec: api.Restoration) -> api.Restoration:
    """The restoration a sweep of ``spec`` runs: an ``sr`` spec without ω gets one, which makes it run the
    tunable model of its scale (the sweep sets its own ω).

    Example:
        >>> swept(api.Restoration(task="sr", scale=4)).w
        (1.0, 0.0)
    """
    return dataclasses.replace(spec, w=sweep_settings(2)[-1]) if spec.task == "sr" and spec.w is None else spec


def sweep_restoration(
    pixels: np.ndarray, count: int, spec: api.Restoration, clean: np.ndarray | None = None
) -> tuple[np.ndarray, list[dict], api.RunInfo]:
    """:func:`sweep_image` for a ``tune`` or ``sr`` :class:`~restorekit.inference.api.Restoration` (its ``w``
    unused; see :func:`swept`). ``clean`` scores a ``tune`` sweep only."""
    check(clean is None or spec.task == "tune", "reference", "task='tune' with it", f"task={spec.task!r}")
    spec = swept(spec)
    if clean is not None:
        check(clean.shape == pixels.shape, "reference", f"an image of the input's shape {pixels.shape}", clean.shape)
    tiles, records, info = [], [], None
    nu = retention_nu(spec.resolved(pixels.shape[2]).net)
    for w in sweep_settings(count):
        out, info = api.restore(pixels, spec.at(w))
        record: dict = {"w": list(w), "ms": info.ms}
        label = f"w = ({w[0]:.2f}, {w[1]:.2f})"
        if clean is not None:
            record |= scores(out, pixels, clean, w, nu)
            label += f"  {record['psnr']:.2f} / {record['psnr_eta']:.2f} dB"
        tiles.append(labelled(out, label))
        records.append(record)
    sheet = contact_sheet(tiles, columns=min(count, 6))
    return sheet.astype(np.float32) / 255, records, info
