"""Training recipes: YAML files loaded into frozen dataclasses (never mutated; overrides make new ones)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from restorekit._checks import check, check_choice
from restorekit.errors import UsageError
from restorekit.train.camera_noise import CameraNoiseConfig
from restorekit.train.shading import AXIS_OFFSET, CORNER_GAIN

DEGRADATIONS = ("awgn", "camera", "bicubic", "real_sr", "shading")
SR_DEGRADATIONS = ("bicubic", "real_sr")  # super-resolution: the degradation downscales by data.scale


@dataclass(frozen=True)
class ModelConfig:
    """Which architecture to train: a registered ``arch_variant`` and overrides of its builder."""

    architecture: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # weights file (same architecture) a fresh run starts from, e.g. to fine-tune


@dataclass(frozen=True)
class DataConfig:
    """Clean training images, crops and the AWGN degradation.

    ``file_fraction`` of each batch is clipped to [0, 1] and rounded to 8 bits after the noise is added,
    the way noisy files on disk are; the rest keeps unclipped float noise (the papers' protocol).
    ``rescale`` and ``channel_shuffle`` augment the crops (see :func:`restorekit.train.data.sample_patches`).
    ``degradation: camera`` (for blind real-noise models) degrades ``camera_fraction`` of each batch with the
    camera-noise synthesis (:mod:`restorekit.train.camera_noise`), leaves ``clean_fraction`` clean (8-bit),
    and gives the rest AWGN with σ in ``sigma``; ``awgn`` gives every image AWGN. ``camera_nr`` is the share of
    camera-noise images that also go through in-camera noise reduction
    (:func:`restorekit.train.camera_noise.in_camera_nr`), with Gaussian low-passes of ``camera_nr_luma`` and
    ``camera_nr_chroma`` pixels and gains in ``camera_nr_luma_gain`` and ``camera_nr_chroma_gain`` (ranges;
    :meth:`camera_noise`).
    ``degradation: bicubic`` (for super-resolution models) gives the model each crop downscaled by ``scale``
    with MATLAB's antialiased bicubic and rounded to 8 bits, and the crop itself as the target (``patch`` is the
    high-resolution side).
    ``degradation: real_sr`` (for blind real-world super-resolution models) gives it each crop through the
    second-order Real-ESRGAN degradation (blur, resize, noise, JPEG, twice, then down to ``1/scale`` with a sinc
    filter; :func:`restorekit.train.degradations.degrade_real`), 8-bit; its validation inputs are the held-out
    crops through the same degradation with fixed seeds.
    ``degradation: shading`` (for layout-aware models and their twins) treats every training image as a whole
    camera frame: crops come from frames whose long side is scaled to ``frame_side`` (a range, so that a crop
    covers a good share of its frame and corners come often), with their frame coordinates
    (:func:`restorekit.train.data.sample_frame_patches`), and get AWGN with σ in ``sigma`` added before a random
    lens-shading gain (corner gain in ``corner_gain``, optical axis within ``axis_offset`` of the centre;
    :mod:`restorekit.train.shading`), ``file_fraction`` of them clipped and rounded to 8 bits; ``rescale`` is
    not used. Its validation crops are the held-out images scaled to a short side of ``val_crop``, centre crops
    of that side, shaded with σ = ``val_sigma``.
    """

    train: tuple[str, ...]
    channels: int = 3
    patch: int = 64
    batch: int = 16
    sigma: tuple[float, float] = (0.0, 75.0)
    file_fraction: float = 0.5
    holdout: int = 8
    val_sigma: float = 25.0
    val_crop: int = 128
    rescale: tuple[float, float] = (1.0, 1.0)
    channel_shuffle: bool = False
    degradation: str = "awgn"
    camera_fraction: float = 0.0
    clean_fraction: float = 0.0
    camera_nr: float = 0.0
    camera_nr_luma: tuple[float, float] = CameraNoiseConfig.nr_luma_sigma
    camera_nr_chroma: tuple[float, float] = CameraNoiseConfig.nr_chroma_sigma
    camera_nr_chroma_gain: tuple[float, float] = CameraNoiseConfig.nr_chroma_gain
    camera_nr_luma_gain: tuple[float, float] = CameraNoiseConfig.nr_luma_gain
    scale: int = 1
    frame_side: tuple[float, float] | None = None
    corner_gain: tuple[float, float] = CORNER_GAIN
    axis_offset: float = AXIS_OFFSET

    def camera_noise(self) -> CameraNoiseConfig:
        """The ranges of the camera-noise synthesis that ``degradation: camera`` draws from."""
        return CameraNoiseConfig(
            nr_probability=self.camera_nr,
            nr_luma_sigma=self.camera_nr_luma,
            nr_chroma_sigma=self.camera_nr_chroma,
            nr_chroma_gain=self.camera_nr_chroma_gain,
            nr_luma_gain=self.camera_nr_luma_gain,
        )


@dataclass(frozen=True)
class OptimConfig:
    """Adam with cosine decay to ``min_lr``, Charbonnier or L1 loss, EMA of the weights."""

    iterations: int = 10000
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup: int = 200
    loss: str = "charbonnier"
    ema: float = 0.999
    grad_clip: float = 1.0


@dataclass(frozen=True)
class TuneConfig:
    """The parametric multi-loss of tunable convolutions (Maggioni et al., §4.1.1), for two objectives.

    Each image gets ω = (ω1, 1 − ω1) and the loss ``ω1·L(ŷ, y) + ω2·L(ŷ, t)``. The second target ``t`` is set
    by ``objective``: ``noise``, the noise-retention target ``y_η = y + ω2·ν·(z − y)``; ``detail``, the
    unsharp-masked clean image ``y + detail_amount·(y − G_detail_sigma * y)`` (fidelity ↔ detail, e.g. for
    super-resolution, where z is smaller than y); ``texture``, no target but the loss
    :func:`~restorekit.train.losses.texture_loss` (low-pass fidelity plus ``texture_weight`` times a match of the
    local gradient energy at scale ``detail_sigma``), which rewards the HR image's amount of detail where an L1 fit
    to a sharpened target regresses to a smooth mean. ω1 is uniform in [0, 1] except for ``endpoints``, the fraction
    of images put at ω1 = 0 or 1 (half each). ``fixed_w1`` trains every image at that one setting instead
    (0 gives the second objective's network of the DNI baseline; the model need not be tunable then).
    """

    nu: float = 0.9
    endpoints: float = 0.0
    fixed_w1: float | None = None
    objective: str = "noise"
    detail_sigma: float = 1.5
    detail_amount: float = 1.0
    texture_weight: float = 1.0


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation: the loss ``weight·L(ŷ, teacher(z)) + (1 − weight)·L(ŷ, y)``.

    ``teacher`` is a model name (an average ``"a+b"`` too) or a ``.safetensors`` path of a denoiser that takes the
    student's input; it runs without gradients on every training batch, in bfloat16 where ``dtype`` says so. With a
    ``tune`` section (``weight`` 1, objective ``noise``) the teacher's output stands for y in the multi-loss, the
    noise-retention target then ``y_η = t + ω2·ν·(z − t)`` (t the teacher's output): a tunable student of the
    teacher.
    """

    teacher: str
    weight: float = 1.0
    dtype: str = "bf16"


@dataclass(frozen=True)
class RunConfig:
    """Where and how the run goes: output folder, seeds, cadence, device, threads."""

    out: str = "runs/default"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    channels_last: bool = False
    checkpoint_every: int = 200
    validate_every: int = 500
    log_every: int = 20


@dataclass(frozen=True)
class Recipe:
    """A whole training recipe."""

    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()
    tune: TuneConfig | None = None
    distill: DistillConfig | None = None


_SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "run": RunConfig,
    "tune": TuneConfig,
    "distill": DistillConfig,
}
_OPTIONAL = ("tune", "distill")


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Load a YAML recipe; ``overrides`` maps ``section.key`` to a value (e.g. ``{"optim.iterations": 10}``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.yaml"
        >>> _ = p.write_text("model: {architecture: mallenet_s, name: mallenet_s.x}\\ndata: {train: [a]}\\n")
        >>> load_recipe(p, {"optim.iterations": 5}).optim.iterations
        5
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"recipe {path}: {exc}") from None
    check(isinstance(raw, dict), f"recipe {path}", "a mapping of sections", type(raw).__name__)
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = value
    return recipe_from_dict(raw, str(path))


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from plain data, checking every section and key."""
    for section in raw:
        check_choice(section, tuple(_SECTIONS), f"{source} section")
    sections = {}
    for section, cls in _SECTIONS.items():
        if section in _OPTIONAL and raw.get(section) is None:
            continue
        values = dict(raw.get(section) or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in values:
            check_choice(key, tuple(known), f"{source} key in '{section}'")
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
        sections[section] = cls(**values)
    check_choice(sections["optim"].loss, ("charbonnier", "l1"), f"{source} optim.loss")
    if "tune" in sections:
        tune = sections["tune"]
        check_choice(tune.objective, ("noise", "detail", "texture"), f"{source} tune.objective")
        check(tune.detail_sigma > 0 and tune.detail_amount >= 0 and tune.texture_weight >= 0,
              f"{source} tune.detail_*", "σ > 0, amount ≥ 0, texture_weight ≥ 0",
              (tune.detail_sigma, tune.detail_amount, tune.texture_weight))  # fmt: skip
    if "distill" in sections:
        distill = sections["distill"]
        check(0 <= distill.weight <= 1, f"{source} distill.weight", "in [0, 1]", distill.weight)
        check_choice(distill.dtype, ("fp32", "bf16"), f"{source} distill.dtype")
        if "tune" in sections:  # the teacher's output is then the multi-loss's y: no second clean term
            check(
                distill.weight == 1 and sections["tune"].objective == "noise",
                f"{source} distill with tune",
                "distill.weight 1 and tune.objective noise (the teacher's output is y)",
                (distill.weight, sections["tune"].objective),
            )
    data = sections["data"]
    check_choice(data.degradation, DEGRADATIONS, f"{source} data.degradation")
    if data.degradation == "shading":
        frame = data.frame_side
        check(
            frame is not None and len(frame) == 2 and data.patch <= frame[0] <= frame[1],
            f"{source} data.frame_side",
            f"[low, high] with patch ({data.patch}) ≤ low ≤ high, for degradation shading",
            frame,
        )
    if data.degradation == "camera":
        data.camera_noise()  # checks the synthesis ranges
    sr = data.degradation in SR_DEGRADATIONS
    scale = data.scale if isinstance(data.scale, int) and not isinstance(data.scale, bool) else str(data.scale)
    check_choice(scale, (2, 3, 4) if sr else (1,), f"{source} data.scale ({data.degradation})")
    if sr:
        for key in ("patch", "val_crop"):
            size = getattr(data, key)
            check(size % data.scale == 0, f"{source} data.{key}", f"a multiple of the scale {data.scale}", size)
    return Recipe(**sections)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain-data form of a recipe (tuples as lists), for YAML and the weights metadata."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {
        name: plain(dataclasses.asdict(getattr(recipe, name)))
        for name in _SECTIONS
        if getattr(recipe, name) is not None
    }


def recipe_to_yaml(recipe: Recipe) -> str:
    """YAML text of a recipe."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
