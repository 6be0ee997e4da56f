"""Denoising quality on folders of clean images: PSNR/SSIM of every method on the same noisy inputs.

For each image, σ and protocol, the noisy input comes from :func:`restorekit.bench.noise.add_noise`; every
method denoises that same array. With ``sigma_mode="true"`` a method that needs σ is told the σ of the added
noise; with ``"estimate"`` every method is told the same estimate, made once per noisy input with
:func:`restorekit.inference.noise.estimate_sigma`.

Metrics compare against the clean image in [0, 1] over all pixels and channels: outputs are clipped to
[0, 1] first; the ``noisy`` row is the input exactly as the methods got it (unclipped under the float
protocol). PSNR is :func:`restorekit.inference.metrics.psnr` (in float64); SSIM is
``structural_similarity(data_range=1)`` with the settings of Wang et al. (Gaussian window σ = 1.5,
population covariance), averaged over channels. The summary averages PSNR, SSIM and the σ used over the
images of a dataset; its ``seconds`` is the median time per image (robust to a method's first-call set-up).

Lens shading (``degradation="shading"``): every image is taken as a whole frame and gets noise added before a
seeded shading gain (:func:`restorekit.bench.noise.add_shading`), so the noise grows toward the corners. Every
method denoises the same noisy input: blind models as they are, σ-conditioned ones told one estimate (what
``--sigma auto`` does), and each σ-conditioned restorekit model once more given the exact per-pixel noise map,
as ``<model>+oracle`` (kind ``oracle``; the map clipped to the model's σ range, which at σ = 25 the strongest
corners exceed for MalleNet's 75). Rows are :func:`evaluate`'s with ``protocol`` ``shading`` (float) or
``shading_file``.

Real noise (:func:`evaluate_pairs`): the rows also say what the noise is and how much of it each method removed,
in a luma/chroma basis (the opponent basis of the camera-noise synthesis, orthonormal: luma (R + G + B)/√3, two
chroma axes). The ``noisy`` row gives the noise ``n = noisy − clean``: ``noise_std`` (0–255 scale) and
``noise_corr`` (its correlation with itself 1, 2 and 4 pixels to the right), each as ``{"luma": …, "chroma": …}``;
a method's row gives ``removed`` = ⟨noisy − output, n⟩ / ⟨n, n⟩ per part, the share of the noise it took out
(1: all of it; 0: none; what a reference's own error or misalignment puts into n, no denoiser removes).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from restorekit._checks import check, check_choice
from restorekit.bench.baselines import peers
from restorekit.bench.methods import Method, denoisers, model_method
from restorekit.bench.noise import PROTOCOLS, add_noise, add_shading
from restorekit.errors import InputError
from restorekit.inference.api import resolve_device
from restorekit.inference.io import load_image
from restorekit.inference.metrics import psnr
from restorekit.inference.noise import estimate_sigma
from restorekit.models import list_models
from restorekit.train import camera_noise

SIGMA_MODES = ("true", "estimate")
DEGRADATIONS = ("awgn", "shading")
# The σ-conditioned model that lens-shading comparisons add, run with an estimated σ and with the oracle map.
SHADING_REFERENCE = "mallenet_s.awgn_color"
SHADING_PROTOCOLS = {"float": "shading", "file": "shading_file"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Keys that identify a summary group; the others are averaged.
GROUP_KEYS = ("dataset", "channels", "sigma", "protocol", "sigma_mode", "method", "kind")
# Luma and two chroma axes, orthonormal: the camera-noise synthesis's opponent basis.
OPPONENT = np.array(camera_noise.OPPONENT)
CORRELATION_LAGS = (1, 2, 4)


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    check(folder.is_dir(), "--data", "a folder of clean images", str(folder), error=InputError)
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    check(bool(images), f"--data {folder}", f"image files ({', '.join(IMAGE_SUFFIXES)})", "none", error=InputError)
    return images


def ssim(clean: np.ndarray, image: np.ndarray) -> float:
    """SSIM of ``image`` against ``clean`` (both (H, W, C), [0, 1] scale), averaged over channels."""
    return float(
        structural_similarity(
            clean.astype(np.float64),
            image.astype(np.float64),
            data_range=1,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def evaluate(
    images: Sequence[tuple[str, Path]],
    methods: Sequence[Method],
    sigmas: Sequence[float],
    protocols: Sequence[str] = ("float",),
    sigma_mode: str = "true",
    progress: Callable[[str], None] | None = None,
    degradation: str = "awgn",
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Denoise every image at every σ and protocol with every method, and measure the results.

    Args:
        images: ``(dataset, path)`` pairs of clean images.
        methods: What to run; a method is skipped on images whose channel count it does not take.
        sigmas: Noise levels on the 0–255 scale (before the gain, for ``shading``).
        protocols: ``float`` and/or ``file`` (see :mod:`restorekit.bench.noise`).
        sigma_mode: ``true`` or ``estimate``; ``shading`` always tells the estimate.
        progress: Called with a label after each noisy input is done.
        degradation: ``awgn``, or ``shading``: the lens-shading protocol of the module docstring, whose rows
            have ``protocol`` ``shading`` (float) or ``shading_file`` and add ``<model>+oracle`` rows.

    Returns:
        ``(rows, skipped)``: one row per image, σ, protocol and method (plus the ``noisy`` input), and a
        skip record per method and channel count it could not run on.
    """
    check_choice(sigma_mode, SIGMA_MODES, "sigma mode")
    check_choice(degradation, DEGRADATIONS, "degradation")
    for protocol in protocols:
        check_choice(protocol, PROTOCOLS, "protocol")
    shading = degradation == "shading"
    rows: list[dict[str, Any]] = []
    skipped: dict[tuple[str, int], dict[str, str]] = {}
    for dataset, path in images:
        clean = load_image(path).pixels
        height, width, channels = clean.shape
        for sigma in sigmas:
            for protocol in protocols:
                if shading:
                    noisy, level = add_shading(clean, path.name, sigma, protocol)
                    told = float(estimate_sigma(noisy))
                else:
                    noisy, level = add_noise(clean, path.name, sigma, protocol), None
                    told = _sigma_told(noisy, sigma, sigma_mode)
                base = {
                    "dataset": dataset,
                    "image": path.name,
                    "channels": channels,
                    "height": height,
                    "width": width,
                    "sigma": sigma,
                    "protocol": SHADING_PROTOCOLS[protocol] if shading else protocol,
                    "sigma_mode": "estimate" if shading else sigma_mode,
                }
                rows += _run_methods(base, clean, noisy, told, methods, skipped)
                if level is not None:
                    rows += _run_oracles(base, clean, noisy, level, methods)
                if progress is not None:
                    progress(f"{dataset}/{path.name} σ={sigma:g} {base['protocol']}")
    return rows, list(skipped.values())


def _run_oracles(
    base: dict[str, Any], clean: np.ndarray, noisy: np.ndarray, level: np.ndarray, methods: Sequence[Method]
) -> list[dict[str, Any]]:
    """One ``<name>+oracle`` row per method that takes a σ map and the image's channels, given the exact noise
    map ``level (H, W)`` clipped to its σ range."""
    rows = []
    for method in (m for m in methods if m.takes_map and base["channels"] in m.channels):
        low, high = method.sigma_range or (0.0, float("inf"))
        told = np.clip(level, low, high)
        start = time.perf_counter()
        output = np.clip(method.run(noisy, told), 0, 1)
        seconds = time.perf_counter() - start
        rows.append(base | _measure(clean, output, f"{method.name}+oracle", "oracle", float(told.mean()), seconds))
    return rows


REAL = "real"  # the σ and protocol of rows measured on real noisy/clean pairs


def list_pairs(folder: str | Path, noisy_tag: str = "_real", clean_tag: str = "_mean") -> list[tuple[Path, Path]]:
    """``(noisy, clean)`` image pairs in ``folder``, matched by name: ``<stem><noisy_tag>.<ext>`` with
    ``<stem><clean_tag>.<ext>`` (e.g. real_cc15's ``…_real.png`` / ``…_mean.png``), sorted by name."""
    folder = Path(folder)
    check(folder.is_dir(), "--pairs", "a folder of noisy/clean pairs", str(folder), error=InputError)
    pairs = []
    for noisy in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        if noisy.stem.endswith(noisy_tag):
            clean = noisy.with_name(noisy.stem[: -len(noisy_tag)] + clean_tag + noisy.suffix)
            if clean.is_file():
                pairs.append((noisy, clean))
    check(bool(pairs), f"--pairs {folder}", f"pairs named *{noisy_tag}.* / *{clean_tag}.*", "none", error=InputError)
    return pairs


def evaluate_pairs(
    pairs: Sequence[tuple[str, Path, Path]],
    methods: Sequence[Method],
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Measure every method on real noisy images against their clean references.

    Methods that need σ are all told the same estimate, made once per noisy image with
    :func:`restorekit.inference.noise.estimate_sigma` (what ``--sigma auto`` does); blind models are told
    nothing. Rows are those of :func:`evaluate` with ``sigma`` and ``protocol`` set to ``"real"`` and
    ``sigma_mode`` ``"estimate"``; the ``noisy`` row is the noisy image itself.

    Args:
        pairs: ``(dataset, noisy path, clean path)``.
        methods: What to run (a method is skipped on images whose channel count it does not take).
        progress: Called with a label after each pair.
    """
    rows: list[dict[str, Any]] = []
    skipped: dict[tuple[str, int], dict[str, str]] = {}
    for dataset, noisy_path, clean_path in pairs:
        noisy, clean = load_image(noisy_path).pixels, load_image(clean_path).pixels
        check(noisy.shape == clean.shape, f"{noisy_path.name}", f"the shape of {clean_path.name}", noisy.shape)
        height, width, channels = clean.shape
        told = float(estimate_sigma(noisy))
        base = {
            "dataset": dataset,
            "image": noisy_path.name,
            "channels": channels,
            "height": height,
            "width": width,
            "sigma": REAL,
            "protocol": REAL,
            "sigma_mode": "estimate",
        }
        rows += _run_methods(base, clean, noisy, told, methods, skipped, residuals=True)
        if progress is not None:
            progress(f"{dataset}/{noisy_path.name}")
    return rows, list(skipped.values())


def _parts(residual: np.ndarray) -> dict[str, np.ndarray]:
    """A residual ``(H, W, C)`` split into luma ``(H, W, 1)`` and chroma ``(H, W, 2)`` (colour) or luma alone."""
    if residual.shape[-1] != 3:
        return {"luma": residual}
    basis = residual @ OPPONENT.T
    return {"luma": basis[..., :1], "chroma": basis[..., 1:]}


def noise_profile(noisy: np.ndarray, clean: np.ndarray) -> dict[str, Any]:
    """The noise ``noisy − clean`` of a real pair: its standard deviation (0–255) and its correlation with itself
    ``CORRELATION_LAGS`` pixels to the right, for the luma and (colour) the chroma."""
    std, corr = {}, {}
    for name, part in _parts(noisy.astype(np.float64) - clean).items():
        part = part - part.mean(axis=(0, 1))
        power = float(np.mean(part**2))
        std[name] = 255 * power**0.5
        corr[name] = [float(np.mean(part[:, lag:] * part[:, :-lag])) / max(power, 1e-20) for lag in CORRELATION_LAGS]
    return {"noise_std": std, "noise_corr": corr}


def noise_removed(noisy: np.ndarray, clean: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """The share of the noise ``n = noisy − clean`` that ``output`` removed, per part: ⟨noisy − output, n⟩ / ⟨n, n⟩."""
    noise, removed = _parts(noisy.astype(np.float64) - clean), _parts(noisy.astype(np.float64) - output)
    return {name: float(np.sum(removed[name] * n) / max(np.sum(n * n), 1e-20)) for name, n in noise.items()}


def _run_methods(
    base: dict[str, Any],
    clean: np.ndarray,
    noisy: np.ndarray,
    told: float,
    methods: Sequence[Method],
    skipped: dict[tuple[str, int], dict[str, str]],
    residuals: bool = False,
) -> list[dict[str, Any]]:
    """The ``noisy`` row and one row per method that takes the image's channels (the others go to ``skipped``);
    methods that need σ are told ``told``. ``residuals``: real noise, whose profile and removed share the rows
    give (see the module)."""
    channels = base["channels"]
    rows = [base | _measure(clean, noisy, "noisy", "input", None, None)]
    if residuals:
        rows[0] |= noise_profile(noisy, clean)
    for method in methods:
        if channels not in method.channels:
            reason = f"takes {_channels_text(method.channels)} images, not {_channels_text((channels,))}"
            skipped[(method.name, channels)] = {"method": method.name, "reason": reason}
            continue
        sigma_used = told if method.needs_sigma else None
        start = time.perf_counter()
        output = np.clip(method.run(noisy, sigma_used), 0, 1)
        seconds = time.perf_counter() - start
        rows.append(base | _measure(clean, output, method.name, method.kind, sigma_used, seconds))
        if residuals:
            rows[-1]["removed"] = noise_removed(noisy, clean, output)
    return rows


def _sigma_told(noisy: np.ndarray, sigma: float, sigma_mode: str) -> float:
    return float(sigma) if sigma_mode == "true" else float(estimate_sigma(noisy))


def _channels_text(channels: Sequence[int]) -> str:
    return " or ".join({1: "gray", 3: "colour"}.get(c, f"{c}-channel") for c in channels)


def _measure(
    clean: np.ndarray, image: np.ndarray, method: str, kind: str, sigma_used: float | None, seconds: float | None
) -> dict[str, Any]:
    return {
        "method": method,
        "kind": kind,
        "sigma_used": sigma_used,
        "psnr": psnr(image, clean),
        "ssim": ssim(clean, image),
        "seconds": seconds,
    }


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean PSNR, SSIM and σ used, and median seconds, per dataset, σ, protocol and method.

    Args:
        rows: Rows from :func:`evaluate`.

    Returns:
        Rows with the same keys, ``image`` set to ``"mean"``, no ``height``/``width``, and ``images`` (count);
        real-noise rows also the mean share of the noise removed (``removed``).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in GROUP_KEYS), []).append(row)
    summary = []
    for key, members in groups.items():
        group = dict(zip(GROUP_KEYS, key, strict=True))
        used = [m["sigma_used"] for m in members if m["sigma_used"] is not None]
        times = [m["seconds"] for m in members if m["seconds"] is not None]
        summary.append(
            {
                "dataset": group["dataset"],
                "image": "mean",
                "channels": group["channels"],
                "sigma": group["sigma"],
                "protocol": group["protocol"],
                "sigma_mode": group["sigma_mode"],
                "method": group["method"],
                "kind": group["kind"],
                "sigma_used": statistics.fmean(used) if used else None,
                "psnr": statistics.fmean(m["psnr"] for m in members),
                "ssim": statistics.fmean(m["ssim"] for m in members),
                "seconds": statistics.median(times) if times else None,
                "images": len(members),
            }
        )
        if all("removed" in m for m in members):  # real noise: the mean share removed, per part
            parts = members[0]["removed"]
            summary[-1]["removed"] = {part: statistics.fmean(m["removed"][part] for m in members) for part in parts}
    return summary


@dataclass(frozen=True)
class Inputs:
    """What a run measures on: clean images ``(dataset, path)`` and real pairs ``(dataset, noisy, clean)``."""

    images: list[tuple[str, Path]]
    pairs: list[tuple[str, Path, Path]]


def list_inputs(data: Sequence[Path], pairs: Sequence[Path], limit: int | None = None) -> Inputs:
    """The first ``limit`` images of each folder of ``data`` (:func:`list_images`) and the first ``limit`` pairs of
    each folder of ``pairs`` (:func:`list_pairs`); each folder's name is its dataset's."""
    images = [(folder.name, path) for folder in data for path in list_images(folder)[:limit]]
    return Inputs(images, [(folder.name, n, c) for folder in pairs for n, c in list_pairs(folder)[:limit]])


@dataclass(frozen=True)
class Plan:
    """A ``bench quality`` run laid out: its inputs, its methods, and the settings its report records."""

    inputs: Inputs
    methods: list[Method]
    sigmas: list[float]
    protocols: list[str]
    sigma_mode: str
    degradation: str
    skipped: list[dict[str, str]]
    config: dict[str, Any]

    command = "quality"

    @property
    def total(self) -> int:
        """Progress steps: one per noisy input (image × σ × protocol) and one per real pair."""
        return len(self.inputs.images) * len(self.sigmas) * len(self.protocols) + len(self.inputs.pairs)

    def run(self, progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict], list[dict]]:
        """Measure it: ``(rows, summary, skipped)``, the seeded noisy inputs' rows before the real pairs', and
        the skipped peers followed by each method that could not run on some images."""
        images, pairs = self.inputs.images, self.inputs.pairs
        rows, unfit = evaluate(
            images, self.methods, self.sigmas, self.protocols, self.sigma_mode, progress, self.degradation
        )
        real_rows, real_unfit = evaluate_pairs(pairs, self.methods, progress)
        rows, unfit = rows + real_rows, unfit + [u for u in real_unfit if u not in unfit]
        return rows, summarize(rows), self.skipped + unfit


def plan(
    data: Sequence[Path],
    pairs: Sequence[Path],
    models: Sequence[str] | None,
    peer_names: Sequence[str],
    sigmas: Sequence[float],
    protocol: str = "float",
    sigma_mode: str = "true",
    degradation: str = "awgn",
    limit: int | None = None,
    ensemble: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    tile: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> Plan:
    """Lay out a quality run: the images of ``data`` and the real pairs of ``pairs`` (the first ``limit`` of each
    folder), every model (with its ``+x8`` self-ensemble when ``ensemble``) and every installed peer.

    Args:
        models: Model names or paths; ``None``: every shipped plain denoiser (``methods.denoisers``, which tells
            ``warn`` when there is none); the ``shading`` degradation adds :data:`SHADING_REFERENCE`.
        peer_names: Peers (keys of :data:`restorekit.bench.baselines.PEERS`); missing packages are skipped.
        protocol: ``float``, ``file`` or ``both``.
        device: Where models run (resolved here, recorded in the config).
        dtype: Model precision (``auto``, ``fp32``, ``fp16``, ``bf16``).
    """
    check(degradation != "real", "--degradation", "awgn or shading without --task sr", "real")
    check(bool(data or pairs), "bench quality", "--data or --pairs folders", "neither")
    if degradation == "shading":
        check(
            bool(data) and not pairs,
            "bench quality --degradation shading",
            "--data folders (and no --pairs)",
            "--pairs",
        )
    protocols = list(PROTOCOLS) if protocol == "both" else [protocol]
    inputs = list_inputs(data, pairs, limit)
    device = str(resolve_device(device))
    names = denoisers(models, warn)
    if degradation == "shading" and SHADING_REFERENCE not in names and SHADING_REFERENCE in list_models():
        names.append(SHADING_REFERENCE)
    methods = [model_method(name, device, dtype, tile) for name in names]
    if ensemble:
        methods += [model_method(m.name, device, dtype, tile, ensemble=True, module=m.model) for m in methods]
    available, skipped = peers(list(peer_names))
    config = {
        "data": [str(folder) for folder in data],
        "pairs": [str(folder) for folder in pairs],
        "sigmas": list(sigmas),
        "protocols": protocols,
        "sigma_mode": "estimate" if degradation == "shading" else sigma_mode,
        "degradation": degradation,
        "limit": limit,
        "device": device,
        "dtype": dtype,
        "tile": tile,
        "ensemble": ensemble,
    }
    methods += available
    return Plan(inputs, methods, list(sigmas), protocols, sigma_mode, degradation, skipped, config)
