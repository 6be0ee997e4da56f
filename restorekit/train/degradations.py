"""Realistic degradations for blind super-resolution: the second-order model of Real-ESRGAN.

After Wang et al. 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data" (ICCVW),
as xinntao/Real-ESRGAN implements it: the pipeline of ``realesrgan/models/realesrnet_model.py`` (``feed_data``), the
kernel draws of ``realesrgan/data/realesrgan_dataset.py`` and the kernels and noise of BasicSR's
``basicsr/data/degradations.py``; the default ranges are those of ``options/train_realesrnet_x4plus.yml``. A
high-resolution crop goes through two rounds of the classical model,

    blur → random resize → noise → JPEG,

where the second round's JPEG is the last step: the image is resized to the low-resolution grid and filtered by a 2-D
sinc (ringing, overshoot) either before or after it, at random (the reference's two orders; others make twisted
lines, its authors found). The result is clipped and rounded to 8 bits. Every choice is drawn from one
``torch.Generator``, so a seed fixes the degradation.

Where this departs from the reference, and why:

- Every random choice is per image. The reference draws the resize factor, the interpolation and the noise family once
  per batch (one ``F.interpolate`` on the GPU) and mixes batches through a pool of 180 pairs; with no pool, per-image
  draws give a batch the variety.
- The noise stage can instead run this project's camera-noise synthesis
  (:func:`restorekit.train.camera_noise.synthesize`: unprocess to raw, Poisson–Gaussian sensor noise, Malvar
  demosaicking, the camera rendering), with probability ``camera_probability`` (0.2 in the first round, the sensor's,
  none in the second); its own JPEG step is off, since the round's JPEG follows.
- Poisson noise counts 256 photons at white: the count BasicSR derives for any image with more than 128 distinct 8-bit
  values (the number of distinct values rounded up to a power of two), without the far stronger noise that rule gives
  flat or tiny images.
- The shape β of the generalized-Gaussian and plateau kernels is uniform in its range, below or above 1 with
  probability ½ each when the range straddles 1 (BasicSR's draw, exact for the generalized kernels' [0.5, 4]). BasicSR
  splits the plateau range [1, 2] at 1 as well, which puts half of those kernels at β = 1 exactly.
- JPEG is libjpeg's through Pillow (:func:`restorekit.train.camera_noise.jpeg_roundtrip`, 4:2:0) at an integer
  quality, where the reference uses a differentiable JPEG at a real-valued one.
- The reference also sharpens the high-resolution targets (``gt_usm``); that is about targets, not this degradation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from restorekit._checks import check, check_choice, check_shape
from restorekit.train.camera_noise import CameraNoiseConfig, jpeg_roundtrip, synthesize

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
SINC_CUTOFF = (math.pi / 3, math.pi)  # cutoff (radians) of the round sinc kernels below 13 pixels, and the final one
SINC_CUTOFF_LARGE = (math.pi / 5, math.pi)  # cutoff of the round sinc kernels of 13 pixels and more
POISSON_PHOTONS = 256  # photon count at white of the Poisson noise
KERNEL_FLOOR = 1e-12  # weights below this fraction of the peak are zeroed: as float32 denormals they slow convolutions
CAMERA_NOISE = CameraNoiseConfig(jpeg_probability=0.0)  # the camera-noise option: a JPEG step follows it anyway
LUMA = (0.299, 0.587, 0.114)  # gray Poisson noise is drawn on this luma (torchvision's rgb_to_grayscale, BasicSR's)


_PROBABILITIES = (
    "blur_probability",
    "sinc_probability",
    "camera_probability",
    "gaussian_probability",
    "gray_probability",
)


@dataclass(frozen=True)
class DegradationRound:
    """Ranges and probabilities of one round; the defaults are Real-ESRGAN's first round.

    Blur, with probability ``blur_probability``: a kernel of odd size uniform in ``kernel_size``, a 2-D sinc with
    probability ``sinc_probability`` (cutoff uniform in :data:`SINC_CUTOFF` below 13 pixels, in
    :data:`SINC_CUTOFF_LARGE` from 13 on), else one of :data:`KERNEL_TYPES` with probabilities
    ``kernel_probabilities``: standard deviations uniform in ``sigma`` (one per axis for the anisotropic ones, then a
    rotation uniform in [−π, π]) and, for the generalized and plateau ones, a shape β in ``generalized_beta`` or
    ``plateau_beta`` (:func:`shaped_kernel`).

    Resize: up, down or keep, with probabilities ``resize_probabilities``, by a factor uniform in
    [1, ``resize_range[1]``] or [``resize_range[0]``, 1], with an interpolation uniform over :data:`RESIZE_MODES`. The
    first round scales the high-resolution size, the second the low-resolution one, as the reference does.

    Noise: the camera-noise synthesis with probability ``camera_probability`` (3-channel images), else Gaussian with
    probability ``gaussian_probability`` (σ uniform in ``noise_sigma``, 0–255 scale), else Poisson (times a factor
    uniform in ``poisson_scale``); the Gaussian or Poisson noise is gray (one field for every channel) with
    probability ``gray_probability``. Clipped to [0, 1].

    JPEG: quality uniform over the integers in ``jpeg_quality``.
    """

    blur_probability: float = 1.0
    kernel_size: tuple[int, int] = (7, 21)
    kernel_probabilities: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_probability: float = 0.1
    sigma: tuple[float, float] = (0.2, 3.0)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    resize_probabilities: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    camera_probability: float = 0.0
    gaussian_probability: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_probability: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self) -> None:
        for name in _PROBABILITIES:
            check(0 <= getattr(self, name) <= 1, name, "a probability in [0, 1]", getattr(self, name))
        low, high = self.kernel_size
        check(3 <= low <= high and low % 2 == high % 2 == 1, "kernel_size", "odd 3 <= low <= high", self.kernel_size)
        for name, count in (("kernel_probabilities", len(KERNEL_TYPES)), ("resize_probabilities", 3)):
            weights = getattr(self, name)
            ok = len(weights) == count and min(weights) >= 0 and abs(sum(weights) - 1) < 1e-6
            check(ok, name, f"{count} probabilities summing to 1", weights)
        for name in ("sigma", "generalized_beta", "plateau_beta"):
            low, high = getattr(self, name)
            check(0 < low <= high, name, "0 < low <= high", getattr(self, name))
        low, high = self.resize_range
        check(0 < low <= 1 <= high, "resize_range", "0 < low <= 1 <= high", self.resize_range)
        for name in ("noise_sigma", "poisson_scale"):
            low, high = getattr(self, name)
            check(0 <= low <= high, name, "0 <= low <= high", getattr(self, name))
        low, high = self.jpeg_quality
        check(1 <= low <= high <= 100, "jpeg_quality", "integers 1 <= low <= high <= 100", self.jpeg_quality)


@dataclass(frozen=True)
class RealDegradationConfig:
    """The whole degradation: two rounds, the final sinc filter and the camera-noise option.

    The defaults are Real-ESRGAN's (``options/train_realesrnet_x4plus.yml``, also its ×2 recipe): the first round as
    :class:`DegradationRound`'s defaults plus camera noise 1 time in 5 (this project's addition); the second weaker,
    blurred 4 times in 5 with σ in [0.2, 1.5], resized up/down/keep 0.3/0.4/0.3 within [0.3, 1.2] of the
    low-resolution size, Gaussian σ in [1, 25], Poisson scale in [0.05, 2.5]. Its JPEG is the final one, and the
    final sinc filter (size as the rounds' kernels, cutoff uniform in :data:`SINC_CUTOFF`) comes with probability
    ``final_sinc_probability``. ``camera`` is the camera-noise synthesis the rounds draw from.
    """

    first: DegradationRound = DegradationRound(camera_probability=0.2)
    second: DegradationRound = DegradationRound(
        blur_probability=0.8,
        sigma=(0.2, 1.5),
        resize_probabilities=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_sigma=(1.0, 25.0),
        poisson_scale=(0.05, 2.5),
    )
    final_sinc_probability: float = 0.8
    camera: CameraNoiseConfig = CAMERA_NOISE

    def __post_init__(self) -> None:
        probability = self.final_sinc_probability
        check(0 <= probability <= 1, "final_sinc_probability", "a probability in [0, 1]", probability)


def shaped_kernel(
    size: int, sigma_x: float, sigma_y: float, theta: float = 0.0, beta: float = 1.0, plateau: bool = False
) -> torch.Tensor:
    """A blur kernel of the Gaussian family, normalised to sum 1 (BasicSR's ``bivariate_*`` kernels).

    With ``q = pᵀ Σ⁻¹ p`` at the offset ``p = (x, y)`` from the centre and ``Σ = R(θ) diag(σx², σy²) R(θ)ᵀ``, the
    kernel is ``exp(−q^β / 2)`` (β = 1: Gaussian; else generalized Gaussian, flatter-topped for β > 1) or, with
    ``plateau``, ``1 / (1 + q^β)`` (a flat top and heavy tails). ``sigma_y = sigma_x`` makes it isotropic.

    Args:
        size: Odd side of the kernel.
        sigma_x, sigma_y: Standard deviations along the kernel's own axes, in pixels.
        theta: Rotation of those axes from x (columns) towards y (rows), in radians.
        beta: Shape.
        plateau: The plateau shape instead of the (generalized) Gaussian one.

    Returns:
        ``(size, size)`` float32, rows along y.

    Example:
        >>> kernel = shaped_kernel(7, 1.5, 0.5, theta=0.3, beta=2.0)
        >>> kernel.shape, round(float(kernel.sum()), 6)
        (torch.Size([7, 7]), 1.0)
    """
    half = size // 2
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    along = (math.cos(theta) * x + math.sin(theta) * y) / sigma_x
    across = (-math.sin(theta) * x + math.cos(theta) * y) / sigma_y
    q = (along**2 + across**2) ** beta
    kernel = 1 / (1 + q) if plateau else torch.exp(-0.5 * q)  # 1 at the centre
    kernel = torch.where(kernel < KERNEL_FLOOR, 0.0, kernel)
    return (kernel / kernel.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """The circular low-pass filter of cutoff ``cutoff`` radians (π: none), truncated to ``size``² and normalised.

    ``ω J1(ω r) / (2π r)`` at the distance ``r`` from the centre, ``ω² / 4π`` at the centre (BasicSR's
    ``circular_lowpass_kernel``): the truncated ideal low-pass, whose side lobes make ringing and overshoot.

    Returns:
        ``(size, size)`` float32, summing to 1.

    Example:
        >>> kernel = sinc_kernel(9, math.pi / 2)
        >>> bool(kernel.min() < 0), round(float(kernel.sum()), 6)
        (True, 1.0)
    """
    half = size // 2
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    radius = torch.hypot(*torch.meshgrid(axis, axis, indexing="ij"))
    safe = radius.clamp(min=1e-12)
    kernel = torch.where(
        radius > 0, cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe), cutoff**2 / (4 * math.pi)
    )
    return (kernel / kernel.sum()).float()


def random_kernel(stage: DegradationRound, generator: torch.Generator) -> torch.Tensor:
    """A blur kernel drawn as ``stage`` says (size, sinc or one of :data:`KERNEL_TYPES`, its parameters).

    Returns:
        ``(K, K)`` float32 summing to 1, ``K`` odd in ``stage.kernel_size``.

    Example:
        >>> random_kernel(DegradationRound(kernel_size=(9, 9)), torch.Generator().manual_seed(0)).shape
        torch.Size([9, 9])
    """
    size = _odd_size(stage, generator)
    if _chance(stage.sinc_probability, generator):
        return sinc_kernel(size, _uniform(SINC_CUTOFF if size < 13 else SINC_CUTOFF_LARGE, generator))
    kind = KERNEL_TYPES[_pick(stage.kernel_probabilities, generator)]
    sigma_x = _uniform(stage.sigma, generator)
    sigma_y, theta = sigma_x, 0.0
    if kind.endswith("aniso"):
        sigma_y, theta = _uniform(stage.sigma, generator), _uniform((-math.pi, math.pi), generator)
    beta, plateau = 1.0, kind.startswith("plateau")
    if kind.startswith(("generalized", "plateau")):
        beta = _beta(stage.plateau_beta if plateau else stage.generalized_beta, generator)
    return shaped_kernel(size, sigma_x, sigma_y, theta, beta, plateau)


def blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image with its own kernel, the whole batch in one grouped convolution, reflect padding.

    Args:
        images: ``(B, C, H, W)``.
        kernels: ``(B, K, K)``, ``K`` odd; smaller kernels are zero-padded to one size (:func:`stack_kernels`).

    Returns:
        ``(B, C, H, W)``; images smaller than the kernel are padded by replication instead.

    Example:
        >>> flat = torch.full((2, 3, 8, 8), 0.5)
        >>> torch.allclose(blur(flat, torch.stack([shaped_kernel(5, 1.0, 1.0)] * 2)), flat)
        True
    """
    sizes = check_shape(images, "B C H W", "images")
    check_shape(kernels, f"{sizes['B']} K K", "kernels")
    batch, channels, height, width = images.shape
    radius = kernels.shape[-1] // 2
    mode = "reflect" if radius < min(height, width) else "replicate"
    padded = F.pad(images.reshape(1, batch * channels, height, width), (radius,) * 4, mode=mode)
    weight = kernels.flip(-2, -1).to(images.dtype).repeat_interleave(channels, dim=0)[:, None]
    return F.conv2d(padded, weight, groups=batch * channels).view(batch, channels, height, width)


def stack_kernels(kernels: list[torch.Tensor]) -> torch.Tensor:
    """Odd square kernels of several sizes, zero-padded around to the largest and stacked, ``(B, K, K)``."""
    size = max(kernel.shape[-1] for kernel in kernels)
    return torch.stack([F.pad(kernel, ((size - kernel.shape[-1]) // 2,) * 4) for kernel in kernels])


def add_gaussian_noise(images: torch.Tensor, sigma: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise of level ``sigma`` (0–255 scale), the same field on every channel when ``gray``.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``, clipped to [0, 1].

    Example:
        >>> noisy = add_gaussian_noise(torch.full((1, 3, 64, 64), 0.5), 10.0, True, torch.Generator().manual_seed(0))
        >>> bool((noisy[:, 0] == noisy[:, 2]).all()), round(float(noisy.std() * 255))
        (True, 10)
    """
    shape = (images.shape[0], 1, *images.shape[2:]) if gray else images.shape
    noise = torch.randn(shape, generator=generator, dtype=images.dtype)
    return (images + noise * (sigma / 255)).clamp(0, 1)


def add_poisson_noise(images: torch.Tensor, scale: float, gray: bool, generator: torch.Generator) -> torch.Tensor:
    """Add shot noise: the 8-bit image as :data:`POISSON_PHOTONS` photons at white, Poisson-drawn, the difference
    times ``scale`` (BasicSR's ``add_poisson_noise_pt``); when ``gray``, drawn on the luma for every channel.

    Shape:
        ``(B, C, H, W)`` → ``(B, C, H, W)``, clipped to [0, 1].

    Example:
        >>> noisy = add_poisson_noise(torch.full((1, 3, 64, 64), 0.5), 1.0, False, torch.Generator().manual_seed(0))
        >>> round(float(noisy.std() * POISSON_PHOTONS**0.5 / 0.5**0.5), 1)  # std = √(x / photons)
        1.0
    """
    quantized = images.clamp(0, 1).mul(255).round().div(255)
    if gray and images.shape[1] == 3:
        luma = torch.tensor(LUMA, dtype=images.dtype).view(1, 3, 1, 1)
        quantized = (quantized * luma).sum(dim=1, keepdim=True).mul(255).round().div(255)
    counts = torch.poisson(quantized * POISSON_PHOTONS, generator=generator)
    return (images + (counts / POISSON_PHOTONS - quantized) * scale).clamp(0, 1)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress each image at ``quality`` (Pillow, 4:2:0; gray images as gray JPEGs).

    Shape:
        ``(B, C, H, W)``, C 1 or 3, → ``(B, C, H, W)`` in [0, 1], 8-bit values.

    Example:
        >>> jpeg(torch.rand(2, 1, 16, 16), 50).shape
        torch.Size([2, 1, 16, 16])
    """
    colour = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images  # R = G = B: no chroma to lose
    out = jpeg_roundtrip(colour, torch.full((images.shape[0],), quality))
    return out[:, : images.shape[1]]


def degrade_real(
    hr: torch.Tensor, scale: int, generator: torch.Generator, config: RealDegradationConfig = RealDegradationConfig()
) -> torch.Tensor:
    """The low-resolution input of a blind super-resolution pair: ``hr`` through the Real-ESRGAN degradation.

    Draws from ``generator``, in this order: the first round's kernels (one each), then per image the rest of its
    degradation (see the module docstring).

    Args:
        hr: ``(B, C, H, W)`` in [0, 1], C 1 or 3, H and W multiples of ``scale``.
        scale: Super-resolution factor.
        generator: Source of every random choice (CPU).
        config: The ranges and probabilities.

    Returns:
        ``(B, C, H/scale, W/scale)`` float32 in [0, 1], 8-bit values, on ``hr``'s device.

    Example:
        >>> low = degrade_real(torch.rand(2, 3, 48, 48), 4, torch.Generator().manual_seed(0))
        >>> low.shape, torch.equal((low * 255).round() / 255, low)
        (torch.Size([2, 3, 12, 12]), True)
    """
    sizes = check_shape(hr, "B C H W", "hr")
    check_choice(sizes["C"], (1, 3), "hr channels")
    _check_scale(scale)
    height, width = sizes["H"], sizes["W"]
    whole = height % scale == width % scale == 0 and min(height, width) >= scale
    check(whole, "hr", f"H and W positive multiples of {scale}", tuple(hr.shape))
    images = hr.detach().to("cpu", torch.float32)
    first = [_maybe_kernel(config.first, generator) for _ in range(sizes["B"])]
    blurred = blur(images, stack_kernels(first))
    low = (height // scale, width // scale)
    out = torch.cat([_degrade_rest(blurred[index : index + 1], low, generator, config) for index in range(len(first))])
    return out.clamp(0, 1).mul(255).round().div(255).to(hr.device)


def degraded_pairs(
    images: list[np.ndarray], scale: int, seed: int, config: RealDegradationConfig = RealDegradationConfig()
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed set of degraded evaluation pairs: each image cropped to a multiple of ``scale`` and degraded.

    Image ``i`` is degraded by :func:`degrade_real` with its own generator, seeded ``seed + i``: a pair does not
    depend on the other images or the order they are processed in, and repeats exactly.

    Args:
        images: ``H×W×C`` float arrays in [0, 1], C 1 or 3.
        scale: Super-resolution factor.
        seed: Seed of the first image's degradation.
        config: The ranges and probabilities.

    Returns:
        ``(hr, lr)`` per image: ``hr (C, H', W')`` the image's top-left crop with H', W' the largest multiples of
        ``scale``, ``lr (C, H'/scale, W'/scale)``, float32.

    Example:
        >>> pairs = degraded_pairs([np.random.rand(50, 41, 3).astype(np.float32)], 4, seed=7)
        >>> pairs[0][0].shape, pairs[0][1].shape
        (torch.Size([3, 48, 40]), torch.Size([3, 12, 10]))
    """
    _check_scale(scale)
    pairs = []
    for index, image in enumerate(images):
        image = np.asarray(image)
        what = (image.shape, str(image.dtype))
        check(image.ndim == 3 and image.dtype.kind == "f", f"images[{index}]", "an H×W×C float array", what)
        height, width = image.shape[0] // scale * scale, image.shape[1] // scale * scale
        hr = torch.from_numpy(np.ascontiguousarray(image[:height, :width], dtype=np.float32)).permute(2, 0, 1)
        generator = torch.Generator().manual_seed(seed + index)
        pairs.append((hr, degrade_real(hr[None], scale, generator, config)[0]))
    return pairs


def _check_scale(scale: int) -> None:
    check(isinstance(scale, int) and not isinstance(scale, bool) and scale >= 1, "scale", "a positive integer", scale)


def _degrade_rest(
    image: torch.Tensor, low: tuple[int, int], generator: torch.Generator, config: RealDegradationConfig
) -> torch.Tensor:
    """One blurred ``(1, C, H, W)`` image through the rest: the first round's resize, noise and JPEG, the second
    round, and the final resize, sinc and JPEG; ``(1, C, *low)``."""
    first, second = config.first, config.second
    image = _random_resize(image, image.shape[-2:], first, generator)
    image = _random_noise(image, first, config.camera, generator)
    image = jpeg(image, _quality(first, generator))
    kernel = _maybe_kernel(second, generator)
    if kernel.shape[-1] > 1:
        image = blur(image, kernel[None])
    image = _random_resize(image, low, second, generator)
    image = _random_noise(image, second, config.camera, generator)
    size, cutoff = _odd_size(second, generator), _uniform(SINC_CUTOFF, generator)
    sinc = sinc_kernel(size, cutoff) if _chance(config.final_sinc_probability, generator) else None
    mode, quality = RESIZE_MODES[_pick((1, 1, 1), generator)], _quality(second, generator)

    def resize_and_filter(x: torch.Tensor) -> torch.Tensor:
        x = _resize(x, low, mode)
        return x if sinc is None else blur(x, sinc[None])

    if _chance(0.5, generator):
        return jpeg(resize_and_filter(image), quality)
    return resize_and_filter(jpeg(image, quality))


def _maybe_kernel(stage: DegradationRound, generator: torch.Generator) -> torch.Tensor:
    """A kernel of ``stage`` with probability ``stage.blur_probability``, else the identity ``(1, 1)``."""
    kernel = random_kernel(stage, generator)
    return kernel if _chance(stage.blur_probability, generator) else torch.ones(1, 1)


def _random_resize(
    image: torch.Tensor, reference: tuple[int, int], stage: DegradationRound, generator: torch.Generator
) -> torch.Tensor:
    """``image`` resized to ``reference`` times a factor drawn as ``stage`` says, by a random interpolation."""
    direction = _pick(stage.resize_probabilities, generator)  # up, down, keep
    low, high = stage.resize_range
    factor = _uniform(((1.0, high), (low, 1.0), (1.0, 1.0))[direction], generator)
    mode = RESIZE_MODES[_pick((1, 1, 1), generator)]
    return _resize(image, tuple(max(1, int(side * factor)) for side in reference), mode)


def _resize(image: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode=mode, align_corners=None if mode == "area" else False)


def _random_noise(
    image: torch.Tensor, stage: DegradationRound, camera: CameraNoiseConfig, generator: torch.Generator
) -> torch.Tensor:
    """``image (1, C, H, W)`` with the noise of ``stage``: camera noise, or Gaussian or Poisson, colour or gray."""
    if _chance(stage.camera_probability, generator) and image.shape[1] == 3:
        height, width = image.shape[-2:]
        grid = F.pad(image, (0, _bayer(width) - width, 0, _bayer(height) - height), mode="replicate")
        noisy, _ = synthesize(grid, generator, camera)
        return noisy[..., :height, :width]
    gaussian, gray = _chance(stage.gaussian_probability, generator), _chance(stage.gray_probability, generator)
    if gaussian:
        return add_gaussian_noise(image, _uniform(stage.noise_sigma, generator), gray, generator)
    return add_poisson_noise(image, _uniform(stage.poisson_scale, generator), gray, generator)


def _bayer(side: int) -> int:
    """The side an image is padded to for the camera-noise synthesis: even, 4 at least (its filters reflect)."""
    return max(4, side + side % 2)


def _quality(stage: DegradationRound, generator: torch.Generator) -> int:
    low, high = stage.jpeg_quality
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _odd_size(stage: DegradationRound, generator: torch.Generator) -> int:
    low, high = stage.kernel_size
    return low + 2 * int(torch.randint((high - low) // 2 + 1, (1,), generator=generator))


def _beta(bounds: tuple[float, float], generator: torch.Generator) -> float:
    """β uniform in ``bounds``, below or above 1 with probability ½ each when the range straddles 1."""
    low, high = bounds
    if low < 1 < high:
        return _uniform((low, 1.0) if _chance(0.5, generator) else (1.0, high), generator)
    return _uniform(bounds, generator)


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand(1, generator=generator))


def _chance(probability: float, generator: torch.Generator) -> bool:
    """One draw, true with ``probability`` (drawn even at 0 and 1, so the stream does not depend on it)."""
    return float(torch.rand(1, generator=generator)) < probability


def _pick(weights: tuple[float, ...], generator: torch.Generator) -> int:
    """An index drawn with probabilities proportional to ``weights``."""
    edges = np.cumsum(weights) / sum(weights)
    return min(int(np.searchsorted(edges, float(torch.rand(1, generator=generator)), side="right")), len(weights) - 1)
