"""What the CLI and the public API call: choose device, model and precision, settle σ, then run the tiler.

Data flow: ``pixels (H, W, C)`` → :func:`~restorekit.inference.io.image_to_tensor` → tiles on the device →
model ``(x, σ-map)`` → blended on the CPU → :func:`~restorekit.inference.io.tensor_to_pixels`.

Channel policy: a gray model on a colour image denoises each channel as a gray image (right for noise
that is independent per channel, as AWGN is); a colour model on a gray image is refused, because replicated
channels carry perfectly correlated noise that colour models are not trained on.

CPU path: the model runs in channels_last as its inference twin (:func:`restorekit.layers.fuse`: the inverted
bottlenecks' activations inside their filters' passes), equal to the model to float rounding;
``RESTOREKIT_INFERENCE=eager`` runs the model as it is.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import time
import warnings
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restorekit._checks import check, check_choice, fail
from restorekit.errors import DeviceError, WeightsError
from restorekit.inference import runtime, tiling
from restorekit.inference.io import image_to_tensor, tensor_to_pixels
from restorekit.inference.noise import camera_noise_hint, estimate_sigma
from restorekit.layers import fuse
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.models import Model, Requirements, create_model, default_model

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
# Loaded models kept per (name or path, device); a few, since each may hold GPU memory.
MODEL_CACHE_SIZE = 4

_bytes_per_pixel: weakref.WeakKeyDictionary[nn.Module, float] = weakref.WeakKeyDictionary()
# CPU inference: the fused twin of each model (see _prepared), and the variable that chooses the path.
_fused: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
INFERENCE_ENV = "RESTOREKIT_INFERENCE"
INFERENCE_PATHS = ("fused", "eager")


@dataclass(frozen=True)
class RunInfo:
    """How an image was processed (the CLI's ``--json`` summary carries these fields).

    Attributes:
        sigma: σ used on the 0–255 scale (the mean of a noise map); ``None`` for a blind model.
        sigma_source: ``given``, ``estimated``, ``map``, or ``blind`` (the model takes no σ).
        model: Model name (``arch_variant.tag``, or the class name of an unnamed module).
        device: Device it ran on, e.g. ``cpu`` or ``cuda:0``.
        dtype: Precision that produced the output (``fp32`` after a NaN/Inf retry).
        tile: Tile side in pixels, or ``None`` when the image ran in one piece.
        ms: Wall time of the inference in milliseconds (model loading excluded).
        notes: Anything the user should know (fallbacks, clamping, retries).
        ensemble: Whether the output averages the 8 flips and rotations of the image (self-ensemble).
        w: The interactive parameters ω a tunable model ran at (``None`` for a plain model).
        scale: Output/input size ratio (1 for denoising).
    """

    sigma: float | None
    sigma_source: str
    model: str
    device: str
    dtype: str
    tile: int | None
    ms: float
    notes: tuple[str, ...] = ()
    ensemble: bool = False
    w: tuple[float, ...] | None = None
    scale: int = 1

    def as_dict(self) -> dict:
        """The fields as a JSON-able dict."""
        return {**asdict(self), "notes": list(self.notes), "w": None if self.w is None else list(self.w)}


class CameraNoiseWarning(UserWarning):
    """``sigma="auto"`` on an image whose noise a white-noise estimate cannot see (camera noise, or none)."""


# What runs when no σ and no model are given: the photo model of each kind, with the note that says so.
PHOTO_KINDS = {"denoise": "real", "tune": "tune_real"}
PHOTO_NOTE = "no σ given: the real-camera-noise model ran"
NO_PHOTO_NOTE = "no σ given and no {what} ships for these channels: Gaussian model, σ estimated"


def photo_model(
    model: str | Path | nn.Module | None, sigma: object, channels: int, kind: str = "denoise"
) -> tuple[str | Path | nn.Module | None, str | None]:
    """What a call with ``model`` and ``sigma`` runs, and the note that says so.

    No σ and no model means a real photo: the shipped real-camera-noise model of ``kind`` (``denoise`` or
    ``tune``) for ``channels``-channel images where one ships (else the Gaussian model, σ estimated). ``"auto"``,
    a number or a σ map keep the Gaussian path; a given model is used as it is.

    Returns:
        ``(model, note)``: the model to load (a name, or ``model`` itself) and a note, or ``None``.

    Example:
        >>> photo_model("mallenet_s.awgn_color", None, 3)
        ('mallenet_s.awgn_color', None)
    """
    if model is not None or sigma is not None:
        return model, None
    try:
        return default_model(channels, PHOTO_KINDS[kind]), PHOTO_NOTE
    except WeightsError:
        return None, NO_PHOTO_NOTE.format(
            what={"denoise": "real-noise model", "tune": "tunable real-noise model"}[kind]
        )


class _NonFinite(Exception):
    """A half-precision pass produced NaN or Inf (caught here; triggers the fp32 retry)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Parse ``auto|cpu|cuda|cuda:N``; ``auto`` is CUDA when available, else the CPU.

    Raises:
        UsageError: Not a device spelling.
        DeviceError: CUDA asked for but not available, or no such CUDA device.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    spelled = str(device)
    if not DEVICE_PATTERN.fullmatch(spelled):
        fail("device", "a device", spelled, valid=("auto", "cpu", "cuda", "cuda:N"))
    if spelled == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(spelled)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spelled!r}: CUDA is not available on this machine (use `device='cpu'`)")
        index = resolved.index or 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {spelled!r}: no such CUDA device; this machine has {count}")
    return resolved


@functools.lru_cache(maxsize=MODEL_CACHE_SIZE)
def _load(name: str, device: str, stamp: int) -> nn.Module:
    """Build (and cache) a model by name or path on ``device``; ``stamp`` invalidates a rewritten file."""
    del stamp  # part of the cache key only
    try:
        return create_model(name, device=device)
    except Exception as exc:
        if tiling.is_out_of_memory(exc):
            raise DeviceError(f"model {name} does not fit in memory on {device}") from None
        raise


def get_model(
    model: str | Path | nn.Module | None, channels: int, device: torch.device, kind: str = "denoise"
) -> nn.Module:
    """The model to run, in eval mode on ``device``.

    Args:
        model: ``None`` (the best shipped model of ``kind`` for ``channels``), a model name, a path to a
            ``.safetensors`` file, or an ``nn.Module`` that carries ``requirements`` (moved to ``device``).
        channels: Channels of the image (1 or 3), used to pick the default.
        device: Where the model runs.
        kind: ``denoise``, ``tune``, ``real`` or ``sr2``/``sr3``/``sr4``: which default to pick when ``model`` is
            ``None``.

    Raises:
        WeightsError: Unknown name, or a missing, corrupted or mismatched weights file.
        UsageError: A module without ``requirements``.
    """
    if isinstance(model, nn.Module):
        check(
            isinstance(getattr(model, "requirements", None), Requirements),
            "model",
            "an nn.Module with a `requirements` attribute (restorekit.models.Requirements)",
            type(model).__name__,
        )
        if not isinstance(model, Model):  # a caller's own module: named after its class, no metadata (as a Model)
            if not hasattr(model, "name"):
                model.name = type(model).__name__
            if not hasattr(model, "metadata"):
                model.metadata = {}
        return model.to(device).eval()
    name = str(model) if model is not None else default_model(channels, kind)
    path = Path(name)
    stamp = path.stat().st_mtime_ns if name.endswith(".safetensors") and path.is_file() else 0
    if name.endswith(".safetensors"):
        name = str(path.resolve())
    return _load(name, str(device), stamp)


def _settle_sigma(
    sigma: float | str | np.ndarray | None,
    pixels: np.ndarray,
    requirements: Requirements,
    name: str,
    notes: list[str],
) -> tuple[float | torch.Tensor, float, str]:
    """Validate or estimate σ. Returns σ/255 (a float or a ``(1, 1, H, W)`` map), σ on 0–255, and its source."""
    low, high = requirements.sigma_range or (0.0, float("inf"))
    if isinstance(sigma, np.ndarray):
        height, width = pixels.shape[:2]
        check(
            sigma.shape in ((height, width), (height, width, 1)),
            "sigma",
            f"a noise map of shape ({height}, {width})",
            sigma.shape,
        )
        sigma_map = np.asarray(sigma, dtype=np.float32).reshape(height, width)
        check(
            bool(np.isfinite(sigma_map).all()) and low <= sigma_map.min() and sigma_map.max() <= high,
            "sigma",
            f"noise-map values in [{low:g}, {high:g}] for {name}",
            (float(np.nanmin(sigma_map)), float(np.nanmax(sigma_map))),
        )
        return torch.from_numpy(sigma_map / 255.0)[None, None], float(sigma_map.mean()), "map"
    if sigma is None or (isinstance(sigma, str) and sigma == "auto"):
        estimate = estimate_sigma(pixels)
        used = min(max(estimate, low), high)
        if used != estimate:
            notes.append(f"estimated σ {estimate:.1f} is outside {name}'s range [{low:g}, {high:g}]; used {used:g}")
        hint = camera_noise_hint(pixels, estimate)
        if hint is not None:
            notes.append(hint)
            warnings.warn(hint, CameraNoiseWarning, stacklevel=4)
        return used / 255.0, used, "estimated"
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)):
        fail("sigma", "a number on the 0–255 scale, 'auto', None or an H×W noise map", sigma)
    check(
        bool(np.isfinite(sigma)) and low <= sigma <= high,
        "sigma",
        f"a noise level in [{low:g}, {high:g}] for {name}",
        sigma,
    )
    return float(sigma) / 255.0, float(sigma), "given"


def _tile_fn(model: nn.Module, device: torch.device, dtype: torch.dtype) -> tiling.TileFn:
    """The model call on one tile, under autocast for half precision, refusing non-finite half output.

    On the CPU the tile goes in channels_last (the model's weights are converted once by the caller): oneDNN's
    depthwise and 1×1 convolutions run 2.7× faster that way than in NCHW (docs/benchmarks.md). A layout-aware
    model gets the conditioning's channels after the σ map as ``frame`` (see :func:`_run`).
    """
    half = dtype != torch.float32
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    layout = model.requirements.layout_aware

    def run(x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast(device.type, dtype=dtype) if half else nullcontext()
        with torch.inference_mode(), autocast:
            x = x.to(device, memory_format=memory_format)
            condition = condition.to(device)
            extra = {"frame": condition[:, 1:]} if layout else {}
            out = model(x, condition[:, :1] if layout else condition, **extra).float()
        if half and not all_finite(out):
            raise _NonFinite
        return out

    return run


def all_finite(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is finite: its sum first (NaN and Inf reach the sum), the element-wise test
    only where the sum is not finite (then also for finite values so large that their sum overflows). The sum reads
    the map once; ``torch.isfinite(x).all()`` writes a mask of it first and took several times as long on a 24 MP
    output, a tenth of a fast model's time there.

    Example:
        >>> all_finite(torch.ones(3)), all_finite(torch.tensor([1.0, float("nan")])), all_finite(torch.full((2,), 3e38))
        (True, False, True)
    """
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


# The 8 symmetries of the square as (quarter turns, mirror): the self-ensemble's views of an image.
DIHEDRAL = tuple((turns, mirror) for turns in range(4) for mirror in (False, True))


def _view(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    """``x (…, H, W)`` mirrored left-right (if asked), then turned ``turns`` quarter turns."""
    if not turns and not mirror:
        return x
    return torch.rot90(x.flip(-1) if mirror else x, turns, dims=(-2, -1)).contiguous()


def _unview(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    """The inverse of :func:`_view`."""
    if not turns and not mirror:
        return x
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if mirror else x


AUTO_DTYPE_ENV = "RESTOREKIT_AUTO_DTYPE"


def auto_precision(requirements: Requirements, device: torch.device, net: Model | None = None) -> str:
    """What ``dtype="auto"`` runs in: fp32 but on the CPU for a half-safe model, where bf16 may be faster.

    There, for a trained model (one loaded from a weights file, whose metadata names it; not a tunable one, which
    runs folded), the faster of fp32 and bf16 as measured on this CPU: once per CPU (and ISA cap) and model, a few
    runs on a 512² image (256² for super-resolution), remembered in the cache folder and shared by every process on
    the machine (:func:`~restorekit.inference.runtime.measured_precision`; bf16 must be 5% faster). Otherwise, or
    with ``RESTOREKIT_AUTO_DTYPE=rule``: bf16 where the CPU computes it in hardware (AVX512-BF16 or AMX), else
    fp32. bf16 costs 0.01–0.02 dB PSNR (docs/benchmarks.md); CUDA stays in fp32 until its
    half-precision quality has been measured.
    """
    if device.type != "cpu" or not requirements.half_safe:
        return "fp32"
    metadata = net.metadata if net is not None else None
    measure = os.environ.get(AUTO_DTYPE_ENV, "measure") != "rule"
    if not measure or not metadata or "name" not in metadata or requirements.tune_parameters:
        return "bf16" if runtime.cpu_has_native_bf16() else "fp32"
    # A probe nearer a photo's tiles than 256², where per-call fixed costs weigh more; the key names its side.
    side = 256 if requirements.task == "sr" else 512
    sigma = 25 / 255 if requirements.sigma_range is not None else 0.0

    def run(precision: str) -> None:  # only when the answer is not cached: the probe is made here
        probe = np.random.default_rng(0).random((side, side, requirements.in_channels), dtype=np.float32)
        _run(net, probe, sigma, device, None, precision, False, [])

    key = f"{metadata['name']} {metadata.get('hyperparameters', '')} @{side}"
    return runtime.measured_precision(key, run)


def _checked(pixels: np.ndarray) -> np.ndarray:
    """Validate the image every restoration takes; the pixels as contiguous float32."""
    check(
        isinstance(pixels, np.ndarray) and pixels.ndim == 3 and pixels.shape[2] in (1, 3) and pixels.size > 0,
        "image",
        "an H×W×C array with C = 1 or 3",
        getattr(pixels, "shape", type(pixels).__name__),
    )
    check(np.issubdtype(pixels.dtype, np.floating), "image", "float pixels in [0, 1]", str(pixels.dtype))
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    check(bool(np.isfinite(pixels).all()), "image", "finite pixel values", "NaN or Inf")
    return pixels


def inference_path() -> str:
    """How CPU inference runs models: ``fused`` (the default: their layers' inference twins,
    :func:`restorekit.layers.fuse`) or ``eager`` (the model as it is), from ``$RESTOREKIT_INFERENCE``.

    Raises:
        UsageError: Any other value.
    """
    path = os.environ.get(INFERENCE_ENV, "fused") or "fused"
    check_choice(path, INFERENCE_PATHS, f"${INFERENCE_ENV}")
    return path


def _prepared(net: nn.Module, target: torch.device) -> nn.Module:
    """The model as its device runs it fastest. On the CPU: channels_last (see :func:`_tile_fn`) and, on the
    ``fused`` :func:`inference_path`, its inference twin (built once per model; parameters shared, so a model
    changed in place is never served stale)."""
    if target.type != "cpu":
        return net
    net = net.to(memory_format=torch.channels_last)
    if inference_path() == "eager":
        return net
    twin = _fused.get(net)
    if twin is None:
        twin = fuse(net)
        if twin is not net:  # a twin that is the model itself would keep its own weak key alive
            _fused[net] = twin
    return twin


def _run(
    net: nn.Module,
    pixels: np.ndarray,
    sigma_value: float | torch.Tensor,
    target: torch.device,
    tile: int | None,
    precision: str,
    ensemble: bool,
    notes: list[str],
) -> tuple[torch.Tensor, str, int | None]:
    """Run a model over an image: tiled, per view of the self-ensemble, per plane for a gray model on colour.

    A colour image through a gray model runs one channel at a time; a gray image through a colour model (only
    allowed for super-resolution) runs as three equal channels, and the channel mean comes back. Half precision
    that produces NaN/Inf reruns in fp32; NaN/Inf in fp32 is a :class:`WeightsError` (never clamped into an
    output). A layout-aware model gets the frame coordinates of the image as given after the σ map, in the one
    conditioning map the tiler windows (and the self-ensemble turns with the image), so every pixel keeps its
    place in the frame in every tile and view.

    Returns:
        The output ``(1, C, H·scale, W·scale)`` on the CPU, the precision that produced it and the tile used.
    """
    req: Requirements = net.requirements
    channels = pixels.shape[2]
    if req.layout_aware:
        name = net.name
        notes.append(f"{name} is layout-aware: it takes the image for the whole, uncropped frame")
        height, width = pixels.shape[:2]
        level = sigma_value if isinstance(sigma_value, torch.Tensor) else torch.full((1, 1, height, width), sigma_value)
        sigma_value = torch.cat([level, frame_coordinates(height, width)], dim=1)
    if tile is None:
        if net not in _bytes_per_pixel:
            _bytes_per_pixel[net] = tiling.bytes_per_pixel(net, req, target)
        tile = tiling.auto_tile(_bytes_per_pixel[net], req, target, pixels.shape[:2])
    x = image_to_tensor(pixels)  # the image's one conversion; a gray model's planes are slices of it
    if channels > req.in_channels:
        planes = [x[:, c : c + 1] for c in range(channels)]
    else:
        planes = [x.expand(-1, req.in_channels, -1, -1).contiguous()]

    def run(precision: str) -> tuple[torch.Tensor, int | None]:
        fn = _tile_fn(net, target, DTYPES[precision])
        views = DIHEDRAL if ensemble else DIHEDRAL[:1]
        outs, used_tile = [], None
        for plane in planes:
            total = None
            for turns, mirror in views:
                level = _view(sigma_value, turns, mirror) if isinstance(sigma_value, torch.Tensor) else sigma_value
                out, used_tile = tiling.run_with_retry(fn, _view(plane, turns, mirror), level, req, tile, target)
                out = _unview(out, turns, mirror)
                total = out if total is None else total + out
            outs.append(total / len(views) if ensemble else total)
        out = torch.cat(outs, dim=1)
        return (out.mean(dim=1, keepdim=True) if channels < req.in_channels else out), used_tile

    with tiling.collect_notes(notes):  # a costly tile size is noted once
        try:
            out, used_tile = run(precision)
        except _NonFinite:
            notes.append(f"{precision} produced NaN/Inf; reran in fp32")
            precision = "fp32"
            out, used_tile = run(precision)
    if not all_finite(out):  # never clamped into a plausible-looking output
        name = net.name
        raise WeightsError(
            f"model {name} produced NaN or Inf values even in fp32 (corrupt weights, or pixel values far outside "
            "[0, 1]); no output"
        )
    return out, precision, used_tile


def _with_info(restoring: Callable[..., np.ndarray], task: str) -> Callable[..., tuple[np.ndarray, RunInfo]]:
    """The ``_image`` variant of a public function (what the CLI called before :func:`restore`): the same
    arguments, and the restored image with its :class:`RunInfo`."""
    signature = inspect.signature(restoring)

    @functools.wraps(restoring)
    def with_info(*args: Any, **kwargs: Any) -> tuple[np.ndarray, RunInfo]:
        settings = signature.bind(*args, **kwargs).arguments
        pixels = settings.pop("image")
        return restore(pixels, Restoration(task=task, **settings))

    with_info.__name__ = with_info.__qualname__ = f"{restoring.__name__}_image"
    with_info.__doc__ = (
        f"Run :func:`{restoring.__name__}` and say how: the restored image and a :class:`RunInfo`.\n\n"
        f"    Args and Raises: as for :func:`{restoring.__name__}`."
    )
    with_info.__signature__ = signature.replace(return_annotation=tuple[np.ndarray, RunInfo])  # type: ignore[attr-defined]
    del with_info.__wrapped__  # type: ignore[attr-defined]
    return with_info


def denoise(
    image: np.ndarray,
    sigma: float | str | np.ndarray | None = None,
    model: str | Path | nn.Module | None = None,
    device: str | torch.device = "auto",
    tile: int | None = None,
    dtype: str | None = None,
    ensemble: bool = False,
) -> np.ndarray:
    """Remove noise from an image: real camera noise (no σ), or Gaussian noise of level σ.

    With neither ``sigma`` nor ``model`` this is what ``restorekit denoise photo.jpg`` runs: the shipped
    real-camera-noise model for the image's channels (where none ships, gray, the Gaussian model with σ
    estimated), so the API and the CLI return the same pixels for the same image. ``sigma="auto"``, a number
    or a σ map run the Gaussian (σ-conditioned) model.

    Args:
        image: Noisy image ``(H, W, C)`` float32 in [0, 1] (C = 1 or 3, no alpha), e.g.
            ``load_image(path).pixels``.
        sigma: ``None`` (the photo model above; with a σ-conditioned ``model``, σ estimated), a Gaussian noise
            level σ on the 0–255 scale, ``"auto"`` to estimate it (a :class:`CameraNoiseWarning` when the
            estimate looks like camera noise or none, which a white-noise estimate cannot see), or an ``(H, W)``
            array, a per-pixel noise map. Must lie in the model's ``sigma_range``.
        model: ``None`` for the shipped model chosen by ``sigma`` (above), a model name (see
            ``restorekit models``), a ``.safetensors`` path, or an ``nn.Module`` with ``requirements``
            called as ``model(x (B, C, H, W), sigma (B, 1, H, W))``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        tile: Tile side in pixels; ``None`` chooses from available memory, ``0`` disables tiling.
        dtype: ``None``/``"auto"``/``"fp32"``, ``"fp16"`` or ``"bf16"`` (half precision only where the model
            declares it safe; an output with NaN/Inf is recomputed in fp32).
        ensemble: Average the outputs for the 8 flips and rotations of the image (each mapped back), the
            "self-ensemble" of the restoration literature: 8× the time for a higher PSNR (+0.10 to +0.14 dB
            for MalleNet-S on Kodak24 and McMaster, docs/benchmarks.md). AWGN looks the same in every
            orientation, so each view is an equally valid input.

    Returns:
        The denoised image ``(H, W, C)`` float32, clipped to [0, 1].

    Raises:
        UsageError: Bad arguments (shape, σ out of range, device or dtype spelling, channel mismatch).
        WeightsError: Unknown model or bad weights file.
        DeviceError: CUDA unavailable, or out of memory even at the smallest tile.

    Example:
        >>> from restorekit.models import Requirements
        >>> class Identity(torch.nn.Module):
        ...     requirements = Requirements(task="denoise", in_channels=1, out_channels=1, sigma_range=(0, 75))
        ...     def forward(self, x, sigma):
        ...         return x
        >>> denoise(np.full((24, 40, 1), 0.5, np.float32), sigma=15, model=Identity(), device="cpu").shape
        (24, 40, 1)
    """
    return restore(
        image, Restoration(sigma=sigma, model=model, device=device, tile=tile, dtype=dtype, ensemble=ensemble)
    )[0]


denoise_image = _with_info(denoise, "denoise")


# The last folded plain model per tunable model, keyed on ω and the parameters' identity and version, so a
# batch at one ω folds once and a model trained or reloaded since can never be served stale.
_folded: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]] = weakref.WeakKeyDictionary()


def check_omega(w: object, requirements: Requirements, name: str, what: str = "w") -> tuple[float, ...]:
    """Validate interactive parameters ω against a tunable model's domain; returns them as floats.

    Raises:
        UsageError: Not a tunable model, a wrong count, a value outside [0, 1], or off the simplex; the
            message names ``what`` (``w`` in the API, ``--w`` in the CLI) and the valid domain.

    Example:
        >>> req = Requirements("denoise", 3, 3, tune_parameters=("a", "b"), tune_domain="simplex")
        >>> check_omega([0.3, 0.7], req, "m")
        (0.3, 0.7)
    """
    count = len(requirements.tune_parameters)
    check(count > 0, "model", "a tunable model (see `restorekit models`)", name)
    domain = (
        f"{count} values in [0, 1] that sum to 1 ({', '.join(requirements.tune_parameters)})"
        if requirements.tune_domain == "simplex"
        else f"{count} values in [0, 1] ({', '.join(requirements.tune_parameters)})"
    )
    try:
        values = tuple(float(v) for v in w)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        fail(what, domain, w)
    ok = len(values) == count and all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    if ok and requirements.tune_domain == "simplex":
        ok = abs(sum(values) - 1.0) <= 1e-6
    check(ok, what, domain, w if not isinstance(w, tuple | list) else list(w))
    return values


def fold_tunable(net: nn.Module, w: tuple[float, ...]) -> nn.Module:
    """The plain model ``net.fold(w)`` computes, cached for the last ω (and invalidated by any weight change)."""
    key = (w, tuple((p.data_ptr(), p._version) for p in net.parameters()), net.training)
    cached = _folded.get(net)
    if cached is None or cached[0] != key:
        plain = net.fold(w)
        plain.requirements = dataclasses.replace(net.requirements, tune_parameters=(), tune_domain=None)
        cached = (key, plain)
        _folded[net] = cached
    return cached[1]


def tunable_model(
    model: str | Path | nn.Module | None, sigma: object, channels: int, device: torch.device
) -> tuple[nn.Module, str | None]:
    """The tunable model a :func:`tune` call with ``model`` and ``sigma`` runs (see :func:`photo_model`), loaded
    once, and the note that says which was chosen (``None`` when the caller named it)."""
    chosen, note = photo_model(model, sigma, channels, kind="tune")
    return get_model(chosen, channels, device, kind="tune"), note


TASKS = ("denoise", "sr", "tune")
SCALES = (2, 3, 4)
# What each task's notes say it did to the channels of an image its model does not take as they are.
_CHANNEL_NOTES = {
    "denoise": ("{} is a gray model; denoised each colour channel separately", ""),
    "tune": ("{} is a gray model; denoised each colour channel separately", ""),
    "sr": (
        "{} is a gray model; upscaled each colour channel separately",
        "{} is a colour model; upscaled the gray image as three equal channels",
    ),
}


@dataclass(frozen=True)
class _Resolved:
    """A spec's model for images of some channel count: as it runs, its name, and the note that says why."""

    net: nn.Module  # prepared for the device (a tunable model: as loaded, folded per ω)
    name: str
    target: torch.device
    note: str | None


@dataclass(frozen=True, kw_only=True, eq=False)
class Restoration:
    """One restoration as plain settings: what :func:`restore`, every API function and every command run.

    The model is resolved (chosen, loaded, checked, prepared for the device) once per spec and image channel
    count, on the first :func:`restore` that needs it, and kept on the spec: a batch of files with one spec
    loads and checks its model once. A spec pickles without its resolved models, so a Ray actor rebuilds the
    same work from it.

    Attributes:
        task: ``denoise``, ``sr`` (super-resolution) or ``tune`` (a tunable model at ``w``).
        model: ``None`` (the shipped default for the task, σ and the image's channels), a model name, a
            ``.safetensors`` path, or an ``nn.Module`` with ``requirements``.
        sigma: ``denoise`` and ``tune``: ``None`` (a photo: the real-noise model where one ships), a σ on the
            0–255 scale, ``"auto"``, or an ``(H, W)`` noise map (see :func:`denoise`).
        w: ``tune``: the interactive parameters ω. ``sr``: ``None`` (the plain model), or ω = (fidelity, detail)
            for the shipped tunable model of that scale (×4), folded at ω.
        scale: ``sr``: the upscaling factor, 2, 3 or 4.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        tile: Tile side in pixels; ``None`` chooses from available memory, ``0`` disables tiling.
        dtype: ``None``/``"auto"``, ``"fp32"``, ``"fp16"`` or ``"bf16"``.
        ensemble: Average the outputs for the 8 flips and rotations of the image.

    Raises:
        UsageError: An unknown task, scale, dtype, or a bad tile or ensemble value.

    Example:
        >>> Restoration(task="sr", scale=4, device="cpu").scale
        4
    """

    task: str = "denoise"
    model: str | Path | nn.Module | None = None
    sigma: float | str | np.ndarray | None = None
    w: tuple[float, ...] | list[float] | None = None
    scale: int = 2
    device: str | torch.device = "auto"
    tile: int | None = None
    dtype: str | None = None
    ensemble: bool = False
    _resolved: dict[int, _Resolved] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice(self.task, TASKS, "task")
        if self.task == "sr" and (
            not isinstance(self.scale, int | np.integer) or isinstance(self.scale, bool) or self.scale not in SCALES
        ):
            fail("scale", "an upscaling factor", self.scale, valid=SCALES)
        tile = self.tile
        check(tile is None or (isinstance(tile, int) and tile >= 0), "tile", "None, 0 or a positive integer", tile)
        if self.dtype not in (None, "auto", *DTYPES):
            fail("dtype", "a precision", self.dtype, valid=("auto", *DTYPES))
        check(isinstance(self.ensemble, bool), "ensemble", "True or False", self.ensemble)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_resolved": {}}  # the loaded models stay in this process

    def at(self, w: tuple[float, ...] | list[float]) -> Restoration:
        """The same restoration at another ω, sharing the resolved model where ω does not choose another one (it
        does for ``sr``: ω or none, the tunable or the plain model)."""
        other = dataclasses.replace(self, w=w)
        if other.kind == self.kind:
            object.__setattr__(other, "_resolved", self._resolved)
        return other

    @property
    def tunable(self) -> bool:
        """Whether a tunable model runs, folded at :attr:`w`: always for ``tune``, for ``sr`` when ω is given."""
        return self.task == "tune" or (self.task == "sr" and self.w is not None)

    @property
    def kind(self) -> str:
        """Which shipped default serves the task: ``denoise``, ``tune``, ``sr2``/``sr3``/``sr4`` or, with ω,
        ``tune_sr2``/…"""
        if self.task == "sr":
            return f"tune_sr{self.scale}" if self.w is not None else f"sr{self.scale}"
        return self.task

    def resolved(self, channels: int) -> _Resolved:
        """The model for ``channels``-channel images, resolved on first use (see the class docstring).

        Raises:
            WeightsError: Unknown model or bad weights file.
            UsageError: A model for another task, scale or channel count.
            DeviceError: The device is not available.
        """
        if channels not in self._resolved:
            self._resolved[channels] = _resolve(self, channels)
        return self._resolved[channels]


def _resolve(spec: Restoration, channels: int) -> _Resolved:
    """Choose, load, check and prepare the model of ``spec`` for ``channels``-channel images."""
    target = resolve_device(spec.device)
    if spec.task == "tune":
        net, note = tunable_model(spec.model, spec.sigma, channels, target)
        return _Resolved(net, net.name, target, note)
    chosen, note = photo_model(spec.model, spec.sigma, channels) if spec.task == "denoise" else (spec.model, None)
    net = get_model(chosen, channels, target, kind=spec.kind)
    net = net if spec.tunable else _prepared(net, target)  # a tunable model is prepared once folded
    req: Requirements = net.requirements
    name = net.name
    if spec.task == "sr":
        check(req.task == "sr", "model", "a super-resolution model", f"{name} ({req.task})")
        check(req.scale == spec.scale, "model", f"a ×{spec.scale} model", f"{name} (×{req.scale})")
    else:
        check(req.task == "denoise", "model", "a denoising model", f"{name} ({req.task})")
        if channels != req.in_channels and req.in_channels != 1:
            fail("model", f"a model for {channels}-channel images", f"{name} ({req.in_channels}-channel)")
    return _Resolved(net, name, target, note)


def check_restoration(spec: Restoration) -> None:
    """Refuse once, before a batch, what would fail every file: the device, a bad model name or weights file, a
    model for another task or scale, ω off the model's domain, or σ outside the model's range.

    Without a model, each shipped default (colour, gray) that a numeric σ would run is checked, and a default
    that does not ship for some channels is left to the files that need it; a photo (no σ) loads nothing here.

    Raises:
        UsageError, WeightsError, DeviceError: As :func:`restore` would for every file.
    """
    resolve_device(spec.device)
    numeric = isinstance(spec.sigma, int | float) and not isinstance(spec.sigma, bool)
    if (spec.task == "denoise" and spec.model is None and not numeric) or (spec.task == "tune" and spec.w is None):
        return  # a photo's model is chosen per file (by its channels); a sweep's ω are the sweep's own
    for channels in (3, 1) if spec.model is None and spec.task == "denoise" else (3,):
        try:
            resolved = spec.resolved(channels)
        except WeightsError:
            if spec.model is not None or spec.task != "denoise":
                raise
            continue  # no default for these channels ships: such files fail on their own
        req = resolved.net.requirements
        if spec.tunable and spec.w is not None:
            check_omega(spec.w, req, resolved.name)
        low, high = req.sigma_range or (0.0, float("inf"))
        if numeric and spec.task != "sr" and not low <= spec.sigma <= high:
            fail("sigma", f"a noise level in [{low:g}, {high:g}] for {spec.model or resolved.name}", spec.sigma)


def restore(pixels: np.ndarray, spec: Restoration) -> tuple[np.ndarray, RunInfo]:
    """Restore one image as ``spec`` says, and say how: the one path of :func:`denoise`, :func:`super_resolve`,
    :func:`tune` and every command.

    Args:
        pixels: Image ``(H, W, C)`` float32 in [0, 1] (C = 1 or 3, no alpha), e.g. ``load_image(path).pixels``.
        spec: What to do (:class:`Restoration`).

    Returns:
        The restored image ``(H·s, W·s, C)`` float32 in [0, 1] (``s`` the scale, 1 but for ``sr``), and the run
        information.

    Raises:
        UsageError: Bad arguments (shape, σ or ω out of range, channel mismatch).
        WeightsError: Unknown model or bad weights file.
        DeviceError: CUDA unavailable, or out of memory even at the smallest tile.

    Example:
        >>> class Identity(torch.nn.Module):
        ...     requirements = Requirements(task="denoise", in_channels=3, out_channels=3, sigma_range=(0, 75))
        ...     def forward(self, x, sigma):
        ...         return x
        >>> spec = Restoration(sigma=25, model=Identity(), device="cpu", dtype="fp32")
        >>> out, info = restore(np.zeros((24, 40, 3), np.float32), spec)
        >>> out.shape, info.sigma, info.dtype
        ((24, 40, 3), 25.0, 'fp32')
    """
    pixels = _checked(pixels)
    channels = pixels.shape[2]
    resolved = spec.resolved(channels)
    net, target, w = resolved.net, resolved.target, None
    if spec.tunable:
        w = check_omega(spec.w, net.requirements, resolved.name)
        net = _prepared(get_model(fold_tunable(net, w), channels, target), target)
    req: Requirements = net.requirements
    name = net.name
    precision = spec.dtype if spec.dtype in DTYPES else auto_precision(req, target, net)

    started = time.perf_counter()
    notes: list[str] = [resolved.note] if resolved.note else []
    if precision != "fp32" and not req.half_safe:
        notes.append(f"{name} is not half-precision safe; ran in fp32")
        precision = "fp32"
    more, fewer = _CHANNEL_NOTES[spec.task]
    if channels != req.in_channels:
        notes.append((more if channels > req.in_channels else fewer).format(name))
    if spec.task == "sr":
        sigma_value, sigma_used, source = 0.0, None, "blind"
    elif req.sigma_range is None:  # a blind model: no σ to settle (and none to estimate)
        if not (spec.sigma is None or (isinstance(spec.sigma, str) and spec.sigma == "auto")):
            notes.append(f"{name} is blind (it estimates the noise itself); the given σ was not used")
        sigma_value, sigma_used, source = 0.0, None, "blind"
    else:
        sigma_value, sigma_used, source = _settle_sigma(spec.sigma, pixels, req, name, notes)
    out, precision, used_tile = _run(net, pixels, sigma_value, target, spec.tile, precision, spec.ensemble, notes)
    result = tensor_to_pixels(out.clamp_(0.0, 1.0))
    ms = round((time.perf_counter() - started) * 1000.0, 1)
    scale = int(spec.scale) if spec.task == "sr" else 1
    info = RunInfo(
        sigma_used, source, name, str(target), precision, used_tile, ms, tuple(notes), spec.ensemble, w, scale
    )
    return result, info


def tune(
    image: np.ndarray,
    w: tuple[float, ...] | list[float],
    sigma: float | str | np.ndarray | None = None,
    model: str | Path | nn.Module | None = None,
    device: str | torch.device = "auto",
    tile: int | None = None,
    dtype: str | None = None,
) -> np.ndarray:
    """Restore an image with a tunable model at the trade-off ``w`` chosen at run time.

    The shipped tunable denoisers take ω = (ω1, ω2) with ω1 + ω2 = 1: ω1 removes noise, ω2 keeps grain and
    fine detail; (1, 0) is a full-strength denoiser, (0, 1) keeps 90% of the noise. The model runs at the
    speed of its fixed twin: its kernels are mixed once for the chosen ω. As for :func:`denoise`, no ``sigma``
    and no ``model`` runs the blind tunable photo model (real camera noise; what ``restorekit tune photo.jpg``
    runs), and ``sigma="auto"``, a number or a σ map the Gaussian tunable model.

    Args:
        image: Noisy image ``(H, W, C)`` float32 in [0, 1] (C = 1 or 3).
        w: The interactive parameters, one per objective of the model (``restorekit models`` lists them).
        sigma, device, tile, dtype: As for :func:`denoise`.
        model: ``None`` for the shipped tunable model chosen by ``sigma`` (above), a tunable model's name, a
            ``.safetensors`` path, or a tunable ``nn.Module`` (with ``requirements`` and ``fold(w)``).

    Returns:
        The restored image ``(H, W, C)`` float32, clipped to [0, 1].

    Raises:
        UsageError: ω off the model's domain, or bad arguments as for :func:`denoise`.
        WeightsError: Unknown model or bad weights file.
        DeviceError: CUDA unavailable, or out of memory even at the smallest tile.

    Example:
        >>> from restorekit.models.tunable_mallenet import TunableMalleNet
        >>> net = TunableMalleNet(in_channels=1)
        >>> tune(np.full((24, 40, 1), 0.5, np.float32), (0.3, 0.7), sigma=15, model=net, device="cpu").shape
        (24, 40, 1)
    """
    return restore(
        image, Restoration(task="tune", w=w, sigma=sigma, model=model, device=device, tile=tile, dtype=dtype)
    )[0]


tune_image = _with_info(tune, "tune")


def super_resolve(
    image: np.ndarray,
    scale: int = 2,
    model: str | Path | nn.Module | None = None,
    device: str | torch.device = "auto",
    tile: int | None = None,
    dtype: str | None = None,
    ensemble: bool = False,
    w: tuple[float, ...] | list[float] | None = None,
) -> np.ndarray:
    """Upscale an image ×2, ×3 or ×4 with a super-resolution model.

    With no ``model`` the shipped default of the factor runs: at ×2 and ×4 the real-world model (trained on
    blur, noise, resizing and JPEG: right for camera photos and JPEGs, it removes them while upscaling), at ×3
    the bicubic-trained one. For clean renders and images that were downscaled cleanly, name the
    bicubic-trained model (``acdasr_s.x2``/``x3``/``x4``): on such inputs it scores far higher (Set5 ×4: 31.14
    against 26.92 dB, ``docs/results/quality_sr_real_x4_on_bicubic.json``).

    The image is cut into overlapping tiles when memory asks for it (the overlap is the model's context,
    scaled by the factor in the output); tiled and untiled outputs agree within 1/255. Alpha is not the
    network's business: upscale it separately (the CLI uses :func:`restorekit.inference.io.resized`).

    Args:
        image: Image ``(H, W, C)`` float32 in [0, 1] (C = 1 or 3, no alpha). A gray image runs through a colour
            model as three equal channels.
        scale: 2, 3 or 4.
        model: ``None`` for the shipped model of that factor, a model name (``restorekit models``), a
            ``.safetensors`` path, or an ``nn.Module`` whose ``requirements`` declare ``task="sr"`` and the
            scale, called as ``model(x (B, C, H, W), sigma (B, 1, H, W)) → (B, C, H·scale, W·scale)``.
        device, tile, dtype: As for :func:`denoise`.
        ensemble: Average the outputs for the 8 flips and rotations of the image (8× the time).
        w: ``None``, or ω = (ω1 fidelity, ω2 detail) in [0, 1] summing to 1: run the shipped tunable real-world
            model of the factor (×4 only) folded at ω, at the speed of a plain model.

    Returns:
        The upscaled image ``(H·scale, W·scale, C)`` float32, clipped to [0, 1].

    Raises:
        UsageError: Bad arguments, or a model that is not a ×``scale`` super-resolution model.
        WeightsError: Unknown model, no shipped model for that factor (or, with ``w``, no tunable one), or bad
            weights file.
        DeviceError: CUDA unavailable, or out of memory even at the smallest tile.

    Example:
        >>> import torch.nn.functional as F
        >>> class Nearest(torch.nn.Module):
        ...     requirements = Requirements(task="sr", in_channels=3, out_channels=3, scale=2)
        ...     def forward(self, x, sigma):
        ...         return F.interpolate(x, scale_factor=2, mode="nearest")
        >>> super_resolve(np.zeros((24, 40, 3), np.float32), scale=2, model=Nearest(), device="cpu").shape
        (48, 80, 3)
    """
    spec = Restoration(
        task="sr", scale=scale, model=model, device=device, tile=tile, dtype=dtype, ensemble=ensemble, w=w
    )
    return restore(image, spec)[0]


super_resolve_image = _with_info(super_resolve, "sr")
