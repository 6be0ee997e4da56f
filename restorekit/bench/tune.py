"""Tunable models against network interpolation (DNI) and the fixed model: the tunable-convolution protocol.

Maggioni et al. (CVPR 2023), Table 1: for each clean image and σ, one noisy input (the benchmark's seeded
AWGN, :mod:`restorekit.bench.noise`); each method restores it at ω = (ω1, 1 − ω1) for every ω1 asked, and is
scored by

* PSNR against the clean image ``y`` (noise removal), and
* PSNRη against the noise-retention target ``y_η = y + ω2·ν·(z − y)`` of that setting (``z`` the noisy
  input, clipped to [0, 1] like the outputs): how well the setting keeps the fraction of noise it promises.

Methods, all on identical inputs:

* the tunable model at each ω (through :func:`restorekit.inference.api.tune`, as users run it);
* DNI (Wang et al., "Deep Network Interpolation", CVPR 2019; Real-ESRGAN's ``-dn``): the weights of the
  fixed denoiser and of the same network fine-tuned for noise retention alone, mixed
  ``θ = ω1·θ_fixed + ω2·θ_retain``;
* the fixed denoiser, whose output does not depend on ω (its PSNRη still does, through the target).

Summary rows average over images (``image`` = ``mean``) per σ, and over σ too (``sigma`` = ``mean``), which
is how the paper's Table 1 reports PSNR and PSNRη.

Real noise (:func:`pair_cases`): the noisy photo of each real pair is ``z`` and its clean reference ``y``; the
methods run blind (no σ), and the rows carry ``sigma`` = ``protocol`` = ``"real"``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from restorekit._checks import check
from restorekit.bench.crops import camera_noisy
from restorekit.bench.noise import add_noise
from restorekit.bench.quality import Inputs, list_inputs
from restorekit.inference.api import denoise, resolve_device, tune
from restorekit.inference.io import load_image
from restorekit.inference.metrics import psnr
from restorekit.inference.sweep import contact_sheet, labelled, retention_nu
from restorekit.models import create_model

# run(noisy (H, W, C) in [0, 1], σ on the 0–255 scale (None: blind, real noise), ω) → restored (H, W, C)
TuneFn = Callable[[np.ndarray, float | None, tuple[float, float]], np.ndarray]


@dataclass(frozen=True)
class Case:
    """One noisy input to score: its clean image ``(H, W, C)``, the noisy one, and how it was made."""

    dataset: str
    image: str
    sigma: float | str  # σ of the AWGN, or "real"
    protocol: str  # float, file or real
    clean: np.ndarray
    noisy: np.ndarray

    @property
    def told(self) -> float | None:
        """The σ the methods are told: the AWGN's, or ``None`` for real noise (blind)."""
        return None if isinstance(self.sigma, str) else self.sigma


def awgn_cases(images: Sequence[tuple[str, Path]], sigmas: Sequence[float], protocol: str = "float") -> Iterator[Case]:
    """Each clean image with the benchmark's seeded AWGN at each σ."""
    for dataset, path in images:
        clean = load_image(path).pixels
        for sigma in sigmas:
            yield Case(dataset, path.name, sigma, protocol, clean, add_noise(clean, path.name, sigma, protocol))


def pair_cases(pairs: Sequence[tuple[str, Path, Path]]) -> Iterator[Case]:
    """Real noisy/clean pairs ``(dataset, noisy path, clean path)``, as ``bench quality --pairs`` lists them."""
    for dataset, noisy, clean in pairs:
        yield Case(dataset, noisy.name, "real", "real", load_image(clean).pixels, load_image(noisy).pixels)


@dataclass(frozen=True)
class Contender:
    """A method under the tunable protocol: ``name``, ``kind`` (tunable, dni, fixed), and how it runs."""

    name: str
    kind: str
    run: TuneFn
    uses_w: bool = True


def interpolate(fixed: nn.Module, retain: nn.Module, w1: float) -> nn.Module:
    """DNI: a copy of ``fixed`` with weights ``w1·θ_fixed + (1 − w1)·θ_retain`` (same architecture)."""
    state = {k: w1 * v + (1 - w1) * retain.state_dict()[k] for k, v in fixed.state_dict().items()}
    model = type(fixed)(**fixed.hyperparameters)
    model.load_state_dict(state)
    model.name = f"dni({fixed.name}, {retain.name})"
    return model.eval()


def contenders(
    tunable: str | Path,
    fixed: str | Path,
    retain: str | Path | None,
    device: str = "auto",
    dtype: str | None = None,
    tile: int | None = None,
) -> list[Contender]:
    """The tunable model, DNI between ``fixed`` and ``retain`` (when given) and the fixed model."""
    tunable_model, fixed_model = create_model(str(tunable)), create_model(str(fixed))
    options = {"device": device, "dtype": dtype, "tile": tile}
    methods = [
        Contender(
            tunable_model.name,
            "tunable",
            lambda noisy, sigma, w: tune(noisy, w, sigma=sigma, model=tunable_model, **options),
        )
    ]
    if retain is not None:
        retain_model = create_model(str(retain))
        mixed: dict[float, nn.Module] = {}

        def run_dni(noisy: np.ndarray, sigma: float, w: tuple[float, float]) -> np.ndarray:
            if w[0] not in mixed:
                mixed[w[0]] = interpolate(fixed_model, retain_model, w[0])
            return denoise(noisy, sigma=sigma, model=mixed[w[0]], **options)

        methods.append(Contender(interpolate(fixed_model, retain_model, 1.0).name, "dni", run_dni))
    methods.append(
        Contender(
            fixed_model.name,
            "fixed",
            lambda noisy, sigma, w: denoise(noisy, sigma=sigma, model=fixed_model, **options),
            uses_w=False,
        )
    )
    return methods


def evaluate(
    cases: Iterator[Case] | Sequence[Case],
    methods: Sequence[Contender],
    w1s: Sequence[float],
    nu: float,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """PSNR and PSNRη of every method at every ω1, per case (rows as the module docstring says)."""
    rows = []
    for case in cases:
        clean, noisy = case.clean, case.noisy
        for method in methods:
            fixed_output = method.run(noisy, case.told, (1.0, 0.0)) if not method.uses_w else None
            for w1 in w1s:
                w = (float(w1), 1.0 - float(w1))
                out = fixed_output if fixed_output is not None else method.run(noisy, case.told, w)
                target = np.clip(clean + w[1] * nu * (noisy - clean), 0, 1)
                rows.append(
                    {
                        "dataset": case.dataset,
                        "image": case.image,
                        "sigma": case.sigma,
                        "protocol": case.protocol,
                        "method": method.name,
                        "kind": method.kind,
                        "w1": w[0],
                        "w2": w[1],
                        "psnr": psnr(np.clip(out, 0, 1), clean),
                        "psnr_eta": psnr(np.clip(out, 0, 1), target),
                    }
                )
        if progress is not None:
            progress(f"{case.image} σ={case.sigma}")
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over images per (dataset, protocol, method, ω1, σ), then over σ as well (``sigma`` = ``mean``)."""
    keys = ("dataset", "protocol", "method", "kind", "w1", "w2")
    out = []
    for by_sigma in (True, False):
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for row in rows:
            key = tuple(row[k] for k in keys) + ((row["sigma"],) if by_sigma else ("mean",))
            groups.setdefault(key, []).append(row)
        for key, group in groups.items():
            out.append(
                dict(zip((*keys, "sigma"), key, strict=True))
                | {
                    "image": "mean",
                    "images": len({r["image"] for r in group}),
                    "psnr": statistics.fmean(r["psnr"] for r in group),
                    "psnr_eta": statistics.fmean(r["psnr_eta"] for r in group),
                }
            )
    return out


def sweep_strip(
    case: Case, methods: Sequence[Contender], w1s: Sequence[float], nu: float, box: tuple[int, int, int]
) -> np.ndarray:
    """A figure: one row per method that depends on ω (tunable, DNI), one column per ω1, over a crop.

    Every tile is the same ``box`` = (top, left, size) of the method's output for the ``case``'s noisy input,
    labelled with the setting and the whole image's PSNR / PSNRη.

    Returns:
        uint8 RGB ``(H, W, 3)``.
    """
    clean, noisy, sigma = case.clean, case.noisy, case.told
    top, left, size = box
    tiles = []
    rows = [m for m in methods if m.uses_w]
    for method in rows:
        for w1 in w1s:
            w = (float(w1), 1.0 - float(w1))
            out = np.clip(method.run(noisy, sigma, w), 0, 1)
            target = np.clip(clean + w[1] * nu * (noisy - clean), 0, 1)
            label = f"{method.kind} w1={w[0]:g}: {psnr(out, clean):.2f} / {psnr(out, target):.2f} dB"
            tiles.append(labelled(out[top : top + size, left : left + size], label))
    return contact_sheet(tiles, columns=len(w1s))


@dataclass(frozen=True)
class Plan:
    """A ``bench tune`` run laid out: its inputs, the contenders, the settings and what its report records."""

    inputs: Inputs
    methods: list[Contender]
    sigmas: list[float]
    w1s: list[float]
    nu: float
    protocol: str
    config: dict[str, Any]

    command = "tune"

    @property
    def total(self) -> int:
        """Progress steps: one per real pair, or per image and σ."""
        return len(self.inputs.pairs) or len(self.inputs.images) * len(self.sigmas)

    def run(self, progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict], list[dict]]:
        """Measure it: ``(rows, summary, skipped)`` (nothing is skipped)."""
        rows = evaluate(self.cases(), self.methods, self.w1s, self.nu, progress)
        return rows, summarize(rows), []

    def cases(self) -> Iterator[Case]:
        """The noisy inputs: the real pairs, or each image with the seeded AWGN at each σ."""
        images, pairs = self.inputs.images, self.inputs.pairs
        return pair_cases(pairs) if pairs else awgn_cases(images, self.sigmas, self.protocol)


def plan(
    data: Sequence[Path],
    pairs: Sequence[Path],
    tunable: str | Path,
    fixed: str | Path,
    retain: str | Path | None,
    sigmas: Sequence[float],
    w1s: Sequence[float],
    protocol: str = "float",
    limit: int | None = None,
    device: str = "auto",
    dtype: str = "auto",
    tile: int | None = None,
) -> Plan:
    """Lay out a tune run on the first ``limit`` images (or real pairs) of each folder: the :func:`contenders`
    (``retain`` ``None`` or ``"none"``: no DNI) on ``device`` (resolved here), ν from the tunable model's recipe.

    Args:
        data: Folders of clean images, which get the seeded AWGN at each of ``sigmas``; or
        pairs: folders of real noisy/clean pairs (one of the two).
        w1s: Settings ω1 in [0, 1] (ω2 = 1 − ω1).
        protocol: ``float`` or ``file`` (:mod:`restorekit.bench.noise`).
    """
    for value in w1s:
        check(0 <= value <= 1, "--w1", "settings in [0, 1]", value)
    check(protocol != "both", "--protocol", "float or file", "both")
    check(bool(data) != bool(pairs), "bench tune", "--data or --pairs folders (one of them)", "both or neither")
    inputs = list_inputs(data, pairs, limit)
    device = str(resolve_device(device))
    retain = None if retain is None or str(retain).lower() == "none" else retain
    methods = contenders(tunable, fixed, retain, device, dtype, tile)
    nu = retention_nu(create_model(str(tunable)))
    config = {
        "data": [str(folder) for folder in data],
        "pairs": [str(folder) for folder in pairs],
        "sigmas": list(sigmas),
        "w1": list(w1s),
        "nu": nu,
        "protocol": protocol,
        "limit": limit,
        "device": device,
        "dtype": dtype,
        "tile": tile,
    }
    return Plan(inputs, methods, list(sigmas), list(w1s), nu, protocol, config)


def plan_strip(plan: Plan, box: tuple[int, int, int], image: Path | None = None, seed: int = 0) -> np.ndarray:
    """The :func:`sweep_strip` of a plan: of its first image at its largest σ, or, for real pairs, of the clean
    ``image`` through the camera-noise synthesis seeded with ``seed``."""
    if plan.inputs.pairs:
        check(image is not None, "--strip", "--strip-image with --pairs", "none")
        noisy, clean = camera_noisy(image, seed=seed)
        case = Case("strip", image.name, "real", "real", clean, noisy)
    else:
        case = next(awgn_cases(plan.inputs.images[:1], [max(plan.sigmas)], plan.protocol))
    return sweep_strip(case, plan.methods, plan.w1s, plan.nu, box)
