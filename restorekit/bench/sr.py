"""Super-resolution quality: Y-channel PSNR/SSIM of models, bicubic and Lanczos on the same low-resolution inputs.

Pairs. A folder laid out as the usual SR test sets (``image_SRF_<s>/<name>_HR.png`` with ``<name>_LR.png``,
e.g. ``sr_set5``) gives its own LR files; any other folder of images gives high-resolution images, cropped to
a multiple of the scale and downscaled here with MATLAB's antialiased bicubic (``ops.resize.imresize``),
rounded to 8 bits. With ``degradation="real"`` every LR input is made here from the HR image by the real-world
degradation the blind SR models train on (:mod:`restorekit.train.degradations`: blur, resize, noise, JPEG,
twice, then the final resize), seeded per image from its name and the factor, so the test set repeats exactly.

Protocol (the SR literature's, as in EDSR/CARN evaluation code). Every output is rounded to 8 bits, as a file
would be; both images go to BT.601 luma ``Y = 16 + 65.481·R + 128.553·G + 24.966·B`` (RGB in [0, 1], Y on the
0–255 scale; a gray image counts as R = G = B), ``scale`` pixels are shaved from each border, and PSNR uses a
peak of 255. SSIM is Wang et al.'s (Gaussian window σ = 1.5, population covariance, data range 255), as
MATLAB's ``ssim`` computes it. ``seconds`` is the wall time of the method on one image.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from restorekit._checks import check, check_choice
from restorekit.bench.methods import chain_method
from restorekit.bench.quality import list_images
from restorekit.errors import InputError
from restorekit.inference.api import DTYPES, auto_precision, fold_tunable, resolve_device, super_resolve
from restorekit.inference.io import load_image
from restorekit.inference.metrics import psnr
from restorekit.models import create_model, list_models
from restorekit.ops.resize import imresize

# Published Y-channel PSNR / SSIM, bicubic degradation: (set, scale) → label → (PSNR, SSIM). Ahn et al.,
# "Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual Network" (ECCV 2018), Table 2.
_PUBLISHED_ROWS = {  # (set, scale): bicubic, FSRCNN (12K parameters), CARN-M (412K), each (PSNR, SSIM)
    ("set5", 2): ((33.66, 0.9299), (37.00, 0.9558), (37.53, 0.9583)),
    ("set5", 3): ((30.39, 0.8682), (33.16, 0.9140), (33.99, 0.9236)),
    ("set5", 4): ((28.42, 0.8104), (30.71, 0.8657), (31.92, 0.8903)),
    ("set14", 2): ((30.24, 0.8688), (32.63, 0.9088), (33.26, 0.9141)),
    ("set14", 3): ((27.55, 0.7742), (29.43, 0.8242), (30.08, 0.8367)),
    ("set14", 4): ((26.00, 0.7027), (27.59, 0.7535), (28.42, 0.7762)),
}
PUBLISHED_LABELS = ("bicubic, published", "FSRCNN, 12K (floor)", "CARN-M, 412K (target)")
PUBLISHED: dict[tuple[str, int], dict[str, tuple[float, float]]] = {
    key: dict(zip(PUBLISHED_LABELS, values, strict=True)) for key, values in _PUBLISHED_ROWS.items()
}


@dataclass(frozen=True)
class SRMethod:
    """An upscaler under benchmark: ``run(lr (h, w, C) in [0, 1], scale) → (h·scale, w·scale, C)``.

    Attributes:
        name: Row label (a model name, ``bicubic`` or ``lanczos``).
        kind: ``restorekit`` or ``baseline``.
        scales: Factors it upscales by.
        settings: How it is configured, in words.
        license: Licence of the weights or implementation.
        parameters: Learned parameters (models only).
        model: The loaded model (models only).
    """

    name: str
    kind: str
    scales: tuple[int, ...]
    settings: str
    license: str
    run: Callable[[np.ndarray, int], np.ndarray]
    parameters: int | None = None
    model: nn.Module | None = None

    def describe(self) -> dict[str, Any]:
        """The JSON-able declaration of this method (the ``methods`` list of a report)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "scales": list(self.scales),
            "settings": self.settings,
            "license": self.license,
            "parameters": self.parameters,
        }


def interpolation_method(kernel: str) -> SRMethod:
    """MATLAB-style ``imresize`` upscaling (``cubic`` → ``bicubic``, ``lanczos3`` → ``lanczos``)."""

    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float64)).permute(2, 0, 1)
        return imresize(x, scale, kernel=kernel).permute(1, 2, 0).numpy().astype(np.float32)

    name = {"cubic": "bicubic", "lanczos3": "lanczos"}[kernel]
    settings = f"MATLAB imresize {kernel} (restorekit.ops.resize), float64"
    return SRMethod(name, "baseline", (2, 3, 4), settings, "Apache-2.0 (restorekit)", run)


def sr_model_method(
    model: str | Path, device: str = "auto", dtype: str | None = None, tile: int | None = None
) -> SRMethod:
    """A restorekit super-resolution model as an :class:`SRMethod`, loaded once; runs through the public
    :func:`restorekit.inference.api.super_resolve`, as ``restorekit sr`` does."""
    module = create_model(str(model))
    requirements = module.requirements
    check(requirements.task == "sr", "--model", "a super-resolution model", f"{model} ({requirements.task})")

    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        return super_resolve(lr, scale, model=module, device=device, tile=tile, dtype=dtype)

    precision = dtype if dtype in DTYPES else f"auto: {auto_precision(requirements, resolve_device(device), module)}"
    return SRMethod(
        name=module.name,
        kind="restorekit",
        scales=(requirements.scale,),
        settings=f"device {device}, dtype {precision}, tile {'auto' if tile is None else tile}",
        license=module.metadata.get("license", "unspecified"),
        run=run,
        parameters=sum(p.numel() for p in module.parameters()),
        model=module,
    )


def tuned_methods(
    model: SRMethod, w1s: Sequence[float], device: str = "auto", dtype: str | None = None, tile: int | None = None
) -> list[SRMethod]:
    """A tunable SR model at each setting ω = (ω1, 1 − ω1): one method per ω1, named ``model@ω1=…``; the model is
    folded at that ω (as ``restorekit tune`` runs it), so each costs what a plain model does."""
    check(bool(model.model.requirements.tune_parameters), "--w1", "a tunable super-resolution model", model.name)
    methods = []
    for w1 in w1s:
        check(0 <= w1 <= 1, "--w1", "settings in [0, 1]", w1)
        plain = fold_tunable(model.model, (w1, 1 - w1))
        plain.metadata = model.model.metadata

        def run(lr: np.ndarray, scale: int, plain: nn.Module = plain) -> np.ndarray:
            return super_resolve(lr, scale, model=plain, device=device, tile=tile, dtype=dtype)

        methods.append(dataclasses.replace(model, name=f"{model.name}@ω1={w1:g}", run=run, model=plain))
    return methods


def model_methods(
    names: Sequence[str | Path],
    w1s: Sequence[float] = (),
    chain: Sequence[str | Path] = (),
    device: str = "auto",
    dtype: str | None = None,
    tile: int | None = None,
) -> list[SRMethod]:
    """The SR models ``names`` as methods, a tunable one at each setting ω1 of ``w1s`` (default ω1 = 1; see
    :func:`tuned_methods`), then each model of ``chain`` after the photo denoiser (:func:`chain_method`): what
    ``bench quality --task sr`` and ``bench crops --task sr`` run besides bicubic and Lanczos."""
    methods = []
    for name in names:
        method = sr_model_method(name, device, dtype, tile)
        tunable = bool(method.model.requirements.tune_parameters)
        methods += tuned_methods(method, w1s or (1.0,), device, dtype, tile) if tunable else [method]
    return methods + [chain_method(sr_model_method(name, device, dtype, tile), device, dtype, tile) for name in chain]


def list_pairs(folder: str | Path, scale: int) -> list[tuple[Path, Path | None]]:
    """``(HR, LR or None)`` per image: the ``image_SRF_<scale>`` pairs when the folder has them, else its images."""
    folder = Path(folder)
    check(folder.is_dir(), "--data", "a folder of images", str(folder), error=InputError)
    paired = folder / f"image_SRF_{scale}"
    if not paired.is_dir():
        return [(path, None) for path in list_images(folder)]
    pairs = []
    for hr in sorted(paired.glob("*_HR.*")):
        lr = hr.with_name(hr.name.replace("_HR.", "_LR."))
        check(lr.is_file(), f"{hr.name}", f"its low-resolution file {lr.name}", "none", error=InputError)
        pairs.append((hr, lr))
    check(bool(pairs), f"--data {paired}", "files named *_HR.* with *_LR.*", "none", error=InputError)
    return pairs


def load_pair(
    hr_path: Path, lr_path: Path | None, scale: int, degradation: str = "bicubic"
) -> tuple[np.ndarray, np.ndarray]:
    """The HR image cropped to a multiple of ``scale`` and its LR input: read, downscaled and rounded
    (``bicubic``), or made by the seeded real-world degradation (``real``; ``lr_path`` is then not used)."""
    hr = load_image(hr_path).pixels
    height, width = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    hr = hr[:height, :width]
    if degradation == "real":
        from restorekit.train.degradations import degrade_real

        generator = torch.Generator().manual_seed(zlib.crc32(hr_path.name.encode()) + scale)
        batch = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)[None]
        lr = degrade_real(batch, scale, generator)[0].permute(1, 2, 0).numpy()
    elif lr_path is not None:
        lr = load_image(lr_path).pixels
    else:
        x = torch.from_numpy(hr.astype(np.float64)).permute(2, 0, 1)
        lr = imresize(x, 1 / scale).clamp(0, 1).mul(255).round().div(255).permute(1, 2, 0).numpy()
    check(
        lr.shape == (height // scale, width // scale, hr.shape[2]),
        f"{hr_path.name}",
        f"a low-resolution image of {width // scale}×{height // scale}",
        f"{lr.shape[1]}×{lr.shape[0]}",
        error=InputError,
    )
    return hr, lr.astype(np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 Y on the 0–255 scale of ``(H, W, 1|3)`` pixels in [0, 1] (gray counts as R = G = B).

    Example:
        >>> float(luma(np.ones((1, 1, 3)))[0, 0])
        235.0
    """
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
    return 16.0 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966])


def y_psnr_ssim(hr: np.ndarray, sr: np.ndarray, shave: int) -> tuple[float, float]:
    """PSNR and SSIM on the Y channel with ``shave`` pixels cut from each border; ``sr`` is rounded to 8 bits."""
    sr = np.round(np.clip(sr, 0, 1) * 255) / 255
    crop = (slice(shave, -shave), slice(shave, -shave)) if shave else (slice(None), slice(None))
    y_hr, y_sr = luma(hr)[crop], luma(sr)[crop]
    value = psnr(y_sr, y_hr, data_range=255)
    ssim = structural_similarity(
        y_hr, y_sr, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    return value, float(ssim)


def gradient_rms(rgb: np.ndarray, shave: int) -> float:
    """Root mean square of the Y channel's finite-difference gradient (Y on 0–255, ``shave`` pixels cut from each
    border, the image rounded to 8 bits as a file is): how much fine detail, real or rendered, an image holds.
    An SR output's over its HR image's is the ``detail`` column: 1 matches the HR image's amount of detail,
    below 1 is smoother.

    Example:
        >>> gradient_rms(np.full((8, 8, 3), 0.5, np.float32), 2)
        0.0
    """
    y = luma(np.round(np.clip(rgb, 0, 1) * 255) / 255).astype(np.float64)
    if shave:
        y = y[shave:-shave, shave:-shave]
    dx, dy = np.diff(y, axis=1)[:-1], np.diff(y, axis=0)[:, :-1]
    return float(np.sqrt(np.mean(dx * dx + dy * dy)))


def detail_ratio(hr: np.ndarray, sr: np.ndarray, shave: int) -> float:
    """The ``detail`` statistic: :func:`gradient_rms` of an upscale ``sr`` over its HR image's (both
    ``(H, W, C)`` in [0, 1]).

    Example:
        >>> hr = np.indices((8, 8)).sum(0)[..., None].repeat(3, 2) % 2 * 0.5
        >>> detail_ratio(hr, hr, 2), detail_ratio(hr, np.full_like(hr, 0.25), 2)
        (1.0, 0.0)
    """
    return gradient_rms(sr, shave) / max(gradient_rms(hr, shave), 1e-12)


def evaluate(
    images: Sequence[tuple[str, Path, Path | None]],
    methods: Sequence[SRMethod],
    scale: int,
    progress: Callable[[str], None] | None = None,
    degradation: str = "bicubic",
) -> list[dict[str, Any]]:
    """Upscale every image's LR input by ``scale`` with every method that has that factor, and measure it.

    Args:
        images: ``(dataset, HR path, LR path or None)``.
        methods: What to run; a method runs only at its own scales.
        scale: The factor.
        progress: Called with a label after each image.
        degradation: How the LR inputs are made (:func:`load_pair`).

    Returns:
        One row per image and method: ``dataset, image, scale, height, width, method, kind, psnr, ssim, detail,
        seconds`` (``detail``: :func:`gradient_rms` of the output over the HR image's).
    """
    rows = []
    for dataset, hr_path, lr_path in images:
        hr, lr = load_pair(hr_path, lr_path, scale, degradation)
        for method in methods:
            if scale not in method.scales:
                continue
            start = time.perf_counter()
            sr = method.run(lr, scale)
            seconds = time.perf_counter() - start
            check(sr.shape == hr.shape, method.name, f"an output of shape {hr.shape}", sr.shape)
            psnr, ssim = y_psnr_ssim(hr, sr, scale)
            detail = detail_ratio(hr, sr, scale)
            rows.append(
                {
                    "dataset": dataset,
                    "image": hr_path.name,
                    "scale": scale,
                    "height": hr.shape[0],
                    "width": hr.shape[1],
                    "method": method.name,
                    "kind": method.kind,
                    "psnr": psnr,
                    "ssim": ssim,
                    "detail": detail,
                    "seconds": seconds,
                }
            )
        if progress is not None:
            progress(f"{dataset}/{hr_path.name} ×{scale}")
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean PSNR/SSIM and median seconds per dataset, scale and method (``image`` = ``mean``)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["scale"], row["method"], row["kind"]), []).append(row)
    return [
        {
            "dataset": dataset,
            "image": "mean",
            "scale": scale,
            "method": method,
            "kind": kind,
            "psnr": statistics.fmean(m["psnr"] for m in members),
            "ssim": statistics.fmean(m["ssim"] for m in members),
            "detail": statistics.fmean(m["detail"] for m in members),
            "seconds": statistics.median(m["seconds"] for m in members),
            "images": len(members),
        }
        for (dataset, scale, method, kind), members in groups.items()
    ]


def upscalers(chosen: Sequence[str] | None, scale: int | None = None) -> list[str]:
    """``chosen``, or every shipped super-resolution model (those of factor ``scale`` when it is given)."""
    if chosen:
        return list(chosen)
    return [n for n in list_models() if (r := create_model(n).requirements).task == "sr" and scale in (None, r.scale)]


@dataclass(frozen=True)
class Plan:
    """A ``bench quality --task sr`` run laid out: the images per factor, the methods and the settings recorded."""

    scales: list[int]
    images: dict[int, list[tuple[str, Path, Path | None]]]
    methods: list[SRMethod]
    degradation: str
    config: dict[str, Any]

    command = "sr_quality"

    @property
    def total(self) -> int:
        """Progress steps: one per image and factor."""
        return sum(len(images) for images in self.images.values())

    def run(self, progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict], list[dict]]:
        """Measure it, factor by factor: ``(rows, summary, skipped)`` (nothing is skipped)."""
        rows: list[dict[str, Any]] = []
        for scale in self.scales:
            rows += evaluate(self.images[scale], self.methods, scale, progress, self.degradation)
        return rows, summarize(rows), []


def plan(
    data: Sequence[Path],
    pairs: Sequence[Path],
    models: Sequence[str] | None,
    scales: Sequence[int],
    limit: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    tile: int | None = None,
    degradation: str = "bicubic",
    chain: Sequence[str] = (),
    warn: Callable[[str], None] | None = None,
    w1: Sequence[float] = (),
) -> Plan:
    """Lay out an SR quality run: every model (default: every shipped SR model; ``warn`` is told when there is
    none) at its own factor, ``chain`` models after the photo denoiser, and bicubic and Lanczos at every factor
    of ``scales``, on the first ``limit`` pairs of each folder of ``data`` (:func:`list_pairs`; no real ``pairs``).

    Args:
        degradation: How the LR inputs are made: ``bicubic`` or ``real`` (:func:`load_pair`).
        w1: Settings ω1 at which every tunable model runs (:func:`tuned_methods`; a tunable model needs them).
    """
    check(bool(data) and not pairs, "bench quality --task sr", "--data folders (and no --pairs)", "none")
    check(degradation != "shading", "--degradation", "awgn (bicubic) or real with --task sr", "shading")
    degradation = "bicubic" if degradation == "awgn" else degradation
    for value in scales:
        check_choice(value, (2, 3, 4), "--scale")
    device = str(resolve_device(device))
    names = upscalers(models)
    if not names and warn is not None:
        warn("no super-resolution model ships with this install and none was given (--model)")
    methods = model_methods(names, w1, chain, device, dtype, tile)
    methods += [interpolation_method("cubic"), interpolation_method("lanczos3")]
    images = {s: [(f.name, hr, lr) for f in data for hr, lr in list_pairs(f, s)[:limit]] for s in scales}
    config = {
        "data": [str(f) for f in data],
        "degradation": degradation,
        "chain": list(chain),
        "w1": list(w1),
        "scales": list(scales),
        "limit": limit,
        "device": device,
        "dtype": dtype,
        "tile": tile,
    }
    return Plan(list(scales), images, methods, degradation, config)
