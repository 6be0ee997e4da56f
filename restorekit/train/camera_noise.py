"""Realistic camera noise for training a real-photo denoiser: unprocess sRGB to raw, add noise, process back.

After Brooks et al. 2019, "Unprocessing Images for Learned Raw Denoising" (google-research ``unprocessing``):
a clean sRGB crop is turned into plausible linear RGGB raw data of a random camera, gets Poisson–Gaussian
sensor noise, and is rendered back to sRGB by a small camera pipeline. The clean target is rendered by the
same pipeline with the same camera, without noise, so noisy and target differ only by the noise (and the
JPEG compression of the noisy image).

Where this departs from the reference, and why:

- ``process`` re-applies the brightening gain and the tone curve (the reference renders with white balance,
  demosaicking, colour correction and gamma only), so that ``process`` inverts ``unprocess`` and the
  target looks like the clean photo it came from rather than a darker, flatter version of it.
- Demosaicking is Malvar–He–Cutler 2004 (gradient-corrected linear interpolation), not bilinear, so the
  demosaicked noise has the structure a camera's would.
- Unsharp-mask sharpening and JPEG compression (both random, each with a probability) follow the gamma and
  tone curve. Sharpening is part of the rendering and is applied to noisy and target alike; JPEG is applied
  to the noisy image only, so the denoiser learns to remove compression artefacts as well.
- The brightening factor ``1 / rgb_gain ~ N(0.8, 0.1)`` is clamped to at least 0.1 (an 8σ event), so that a
  negative draw can never flip the image.

The raw layout is the reference's packed RGGB ``(B, 4, H/2, W/2)``, channels (R, G at red rows, G at blue
rows, B); :func:`demosaic_malvar` interleaves it into the full-resolution Bayer plane it filters.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from restorekit._checks import check, check_shape

# XYZ → camera matrices of four cameras, from the reference; each synthetic camera is a random mixture.
XYZ_TO_CAMS = (
    ((1.0234, -0.2969, -0.2266), (-0.5625, 1.6328, -0.0469), (-0.0703, 0.2188, 0.6406)),
    ((0.4913, -0.0541, -0.0202), (-0.6130, 1.3513, 0.2906), (-0.1564, 0.2151, 0.7183)),
    ((0.8380, -0.2630, -0.0639), (-0.2887, 1.0725, 0.2496), (-0.0627, 0.1427, 0.5438)),
    ((0.6596, -0.2079, -0.0562), (-0.4782, 1.3016, 0.1933), (-0.0970, 0.1581, 0.5181)),
)
# Linear sRGB → XYZ (D65).
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
GAMMA = 2.2
GAMMA_EPS = 1e-8  # floor before the power, as in the reference (keeps gradients finite at 0)
HIGHLIGHT_INFLECTION = 0.9  # gray level above which inverse gains fade out, so highlights stay saturated


@dataclass(frozen=True)
class CameraNoiseConfig:
    """Ranges of the random camera, noise and rendering.

    Shot and read noise are variances on the [0, 1] raw scale: ``log shot ~ U(log lo, log hi)`` and
    ``log read = read_slope · log shot + read_intercept + N(0, read_std²)`` (the reference's fit to real
    cameras). Each image is sharpened with probability ``sharpen_probability`` by an unsharp mask of amount
    uniform in ``sharpen_amount``, and JPEG-compressed with probability ``jpeg_probability`` at a quality
    uniform over the integers in ``jpeg_quality``. With probability ``nr_probability`` an image also goes
    through a model of in-camera noise reduction before the JPEG step (:func:`in_camera_nr`): its rendered noise
    is low-passed, the chroma (Gaussian σ uniform in ``nr_chroma_sigma`` pixels) more than the luma (σ uniform
    in ``nr_luma_sigma``), leaving the coarse, blotchy noise of camera JPEGs, and the low-passed chroma and luma are
    scaled by gains uniform in ``nr_chroma_gain`` and ``nr_luma_gain``: cameras leave more low-frequency noise than a
    low-pass of this pipeline's noise has (their demosaicking, colour matrices and chroma processing) — correlated
    noise about as strong as the white noise it came from. The default probability 0 draws nothing, and the default
    gains (1, 1) draw no gain, so earlier recipes reproduce exactly.
    """

    shot_range: tuple[float, float] = (1e-4, 0.012)
    read_slope: float = 2.18
    read_intercept: float = 1.20
    read_std: float = 0.26
    sharpen_probability: float = 0.5
    sharpen_amount: tuple[float, float] = (0.2, 0.8)
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)
    nr_probability: float = 0.0
    nr_luma_sigma: tuple[float, float] = (0.0, 1.0)
    nr_chroma_sigma: tuple[float, float] = (1.0, 3.0)
    nr_chroma_gain: tuple[float, float] = (1.0, 1.0)
    nr_luma_gain: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        low, high = self.shot_range
        check(0 < low <= high, "shot_range", "0 < low <= high", self.shot_range)
        check(self.read_std >= 0, "read_std", "a standard deviation >= 0", self.read_std)
        low, high = self.sharpen_amount
        check(0 <= low <= high, "sharpen_amount", "0 <= low <= high", self.sharpen_amount)
        low, high = self.jpeg_quality
        check(1 <= low <= high <= 100, "jpeg_quality", "integers 1 <= low <= high <= 100", self.jpeg_quality)
        for name in ("nr_luma_sigma", "nr_chroma_sigma"):
            low, high = getattr(self, name)
            check(0 <= low <= high, name, "0 <= low <= high (pixels)", getattr(self, name))
        for name in ("nr_chroma_gain", "nr_luma_gain"):
            low, high = getattr(self, name)
            check(0 < low <= high, name, "0 < low <= high", getattr(self, name))
        for name in ("sharpen_probability", "jpeg_probability", "nr_probability"):
            check(0 <= getattr(self, name) <= 1, name, "a probability in [0, 1]", getattr(self, name))


@dataclass(frozen=True)
class CameraParams:
    """One random camera per image: what :func:`unprocess` undoes and :func:`process` applies.

    Attributes:
        rgb2cam: ``(B, 3, 3)`` linear sRGB → camera RGB, rows summing to 1.
        rgb_gain: ``(B,)`` brightening gain.
        red_gain: ``(B,)`` white-balance gain of the red channel.
        blue_gain: ``(B,)`` white-balance gain of the blue channel.
        sharpen: ``(B,)`` unsharp-mask amount; 0 leaves the image unsharpened.
    """

    rgb2cam: torch.Tensor
    rgb_gain: torch.Tensor
    red_gain: torch.Tensor
    blue_gain: torch.Tensor
    sharpen: torch.Tensor

    def to(self, device: torch.device | str) -> CameraParams:
        """The same camera with every tensor on ``device``."""
        return CameraParams(*(getattr(self, f.name).to(device) for f in fields(self)))


def _uniform(batch: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, generator=generator, device=generator.device)


def _gains(batch: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Gains uniform in ``bounds``; for the default (1, 1) ones, drawing nothing, so earlier recipes reproduce."""
    return torch.ones(batch) if tuple(bounds) == (1.0, 1.0) else _uniform(batch, *bounds, generator)


def random_ccm(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Random linear sRGB → camera matrices, ``(batch, 3, 3)``, each row summing to 1.

    A random convex combination of the four XYZ → camera matrices (weights uniform, then normalised, as in
    the reference) times sRGB → XYZ.
    """
    weights = torch.rand(batch, len(XYZ_TO_CAMS), generator=generator, device=generator.device)
    weights = weights / weights.sum(1, keepdim=True)
    xyz2cam = torch.einsum("bk,kij->bij", weights, torch.tensor(XYZ_TO_CAMS, device=weights.device))
    rgb2cam = xyz2cam @ torch.tensor(RGB_TO_XYZ, device=weights.device)
    return rgb2cam / rgb2cam.sum(-1, keepdim=True)


def random_camera(
    batch: int, generator: torch.Generator, config: CameraNoiseConfig = CameraNoiseConfig()
) -> CameraParams:
    """Draw a random camera per image: colour matrix, gains (as the reference) and sharpening amount.

    ``rgb_gain = 1 / N(0.8, 0.1)``, ``red_gain ~ U(1.9, 2.4)``, ``blue_gain ~ U(1.5, 1.9)``.

    Example:
        >>> random_camera(2, torch.Generator().manual_seed(0)).rgb2cam.shape
        torch.Size([2, 3, 3])
    """
    rgb2cam = random_ccm(batch, generator)
    dimming = 0.8 + 0.1 * torch.randn(batch, generator=generator, device=generator.device)
    red_gain = _uniform(batch, 1.9, 2.4, generator)
    blue_gain = _uniform(batch, 1.5, 1.9, generator)
    sharpened = torch.rand(batch, generator=generator, device=generator.device) < config.sharpen_probability
    amount = _uniform(batch, *config.sharpen_amount, generator)
    return CameraParams(rgb2cam, 1 / dimming.clamp(min=0.1), red_gain, blue_gain, amount * sharpened)


def random_noise_levels(
    batch: int, generator: torch.Generator, config: CameraNoiseConfig = CameraNoiseConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image shot and read noise variances, each ``(batch,)``, from the reference's log-log model.

    Example:
        >>> shot, read = random_noise_levels(3, torch.Generator().manual_seed(0))
        >>> bool(((shot >= 1e-4) & (shot <= 0.012)).all())
        True
    """
    low, high = np.log(config.shot_range[0]), np.log(config.shot_range[1])
    log_shot = _uniform(batch, low, high, generator)
    jitter = config.read_std * torch.randn(batch, generator=generator, device=generator.device)
    log_read = config.read_slope * log_shot + config.read_intercept + jitter
    return log_shot.exp(), log_read.exp()


def smoothstep(image: torch.Tensor) -> torch.Tensor:
    """The global tone curve ``3x² − 2x³`` (on values clamped to [0, 1])."""
    image = image.clamp(0, 1)
    return image * image * (3 - 2 * image)


def inverse_smoothstep(image: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`smoothstep` on [0, 1]: ``1/2 − sin(asin(1 − 2y) / 3)``."""
    return 0.5 - torch.sin(torch.asin(1 - 2 * image.clamp(0, 1)) / 3)


def _apply_ccm(image: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` colours times per-image ``(B, 3, 3)`` matrices."""
    return torch.einsum("bij,bjhw->bihw", ccm, image)


def _channel_gains(params: CameraParams) -> torch.Tensor:
    """``(B, 3)`` gains (red, green, blue) of white balance times brightening."""
    ones = torch.ones_like(params.red_gain)
    return torch.stack([params.red_gain, ones, params.blue_gain], 1) * params.rgb_gain[:, None]


def mosaic(image: torch.Tensor) -> torch.Tensor:
    """Sample an RGB image ``(B, 3, H, W)`` (H, W even) on an RGGB Bayer pattern: ``(B, 4, H/2, W/2)``.

    Channels are R (even rows, even columns), G (even rows, odd columns), G (odd rows, even columns) and
    B (odd rows, odd columns).
    """
    return torch.stack(
        [image[:, 0, 0::2, 0::2], image[:, 1, 0::2, 1::2], image[:, 1, 1::2, 0::2], image[:, 2, 1::2, 1::2]], 1
    )


def unprocess(image: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Turn sRGB images into linear RGGB raw data of the cameras ``params``.

    Inverse tone curve, inverse gamma, sRGB → camera colours, inverse gains (faded out towards white so that
    saturated highlights stay saturated, as the reference), clip to [0, 1], mosaic.

    Args:
        image: ``(B, 3, H, W)`` sRGB in [0, 1], H and W even.
        params: The camera of each image.

    Returns:
        ``(B, 4, H/2, W/2)`` packed RGGB raw in [0, 1].

    Example:
        >>> image = torch.full((1, 3, 4, 4), 0.5)
        >>> unprocess(image, random_camera(1, torch.Generator().manual_seed(0))).shape
        torch.Size([1, 4, 2, 2])
    """
    sizes = check_shape(image, "B 3 H W", "image")
    check(sizes["H"] % 2 == 0 and sizes["W"] % 2 == 0, "image", "even height and width", tuple(image.shape))
    linear = inverse_smoothstep(image).clamp(min=GAMMA_EPS) ** GAMMA
    camera = _apply_ccm(linear, params.rgb2cam)
    inverse_gains = (1 / _channel_gains(params))[:, :, None, None]
    gray = camera.mean(1, keepdim=True)
    fade = ((gray - HIGHLIGHT_INFLECTION).clamp(min=0) / (1 - HIGHLIGHT_INFLECTION)) ** 2
    safe_gains = torch.maximum(fade + (1 - fade) * inverse_gains, inverse_gains)
    return mosaic((camera * safe_gains).clamp(0, 1))


def add_noise(raw: torch.Tensor, shot: torch.Tensor, read: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Add heteroscedastic Gaussian noise of variance ``read + shot · x`` (Gaussian approximation of Poisson).

    As the reference, the result is not clipped: :func:`process` clips after white balance, the way a sensor
    saturates, and the raw-domain noise statistics stay exact here.

    Args:
        raw: ``(B, 4, h, w)`` clean packed raw in [0, 1].
        shot: ``(B,)`` shot-noise variance per unit of signal.
        read: ``(B,)`` read-noise variance.
        generator: Source of the noise.

    Returns:
        ``(B, 4, h, w)`` noisy raw.

    Example:
        >>> raw = torch.full((1, 4, 2, 2), 0.5)
        >>> zero = torch.zeros(1)
        >>> torch.equal(add_noise(raw, zero, zero, torch.Generator()), raw)
        True
    """
    check_shape(raw, "B 4 h w", "raw")
    variance = read.view(-1, 1, 1, 1) + shot.view(-1, 1, 1, 1) * raw
    noise = torch.randn(raw.shape, generator=generator, device=generator.device, dtype=raw.dtype).to(raw.device)
    return raw + noise * variance.sqrt()


# Malvar–He–Cutler's 5×5 kernels (to be divided by 8): green at a red or blue site; the colour found in the
# site's row (transposed: in its column); the colour at the site's diagonals (red at blue, blue at red).
_GREEN_AT_RB = ((0, 0, -1, 0, 0), (0, 0, 2, 0, 0), (-1, 2, 4, 2, -1), (0, 0, 2, 0, 0), (0, 0, -1, 0, 0))
_IN_ROW = ((0, 0, 0.5, 0, 0), (0, -1, 0, -1, 0), (-1, 4, 5, 4, -1), (0, -1, 0, -1, 0), (0, 0, 0.5, 0, 0))
_IN_COLUMN = tuple(zip(*_IN_ROW, strict=True))
_AT_DIAGONALS = ((0, 0, -1.5, 0, 0), (0, 2, 0, 2, 0), (-1.5, 0, 6, 0, -1.5), (0, 2, 0, 2, 0), (0, 0, -1.5, 0, 0))
_SAMPLE = ((0, 0, 0, 0, 0), (0, 0, 0, 0, 0), (0, 0, 8, 0, 0), (0, 0, 0, 0, 0), (0, 0, 0, 0, 0))
_SITES = ((0, 0), (0, 1), (1, 0), (1, 1))  # R, G in red rows, G in blue rows, B: offsets in the 2×2 cell
_RECIPE = (  # the kernel giving each colour (rows) at each site (columns)
    (_SAMPLE, _IN_ROW, _IN_COLUMN, _AT_DIAGONALS),
    (_GREEN_AT_RB, _SAMPLE, _SAMPLE, _GREEN_AT_RB),
    (_AT_DIAGONALS, _IN_COLUMN, _IN_ROW, _SAMPLE),
)


@cache
def malvar_packed_kernels() -> torch.Tensor:
    """The Malvar–He–Cutler filters rewritten on packed raw: ``(12, 4, 3, 3)``, output ``4·colour + site``.

    Output (colour, site) at packed position (i, j) is the full-resolution 5×5 kernel centred on pixel
    (2i + dy, 2j + dx) of the site; each tap lands on one of the 4 packed planes at a packed offset in
    {-1, 0, 1}. So one 3×3 convolution of the packed planes, then a 2×2 pixel shuffle, demosaics.
    """
    weights = np.zeros((3, 4, 4, 3, 3))
    for colour, kernels in enumerate(_RECIPE):
        for site, ((dy, dx), kernel) in enumerate(zip(_SITES, kernels, strict=True)):
            for ky, kx in np.ndindex(5, 5):
                y, x = dy + ky - 2, dx + kx - 2
                weights[colour, site, 2 * (y % 2) + x % 2, y // 2 + 1, x // 2 + 1] += kernel[ky][kx] / 8
    return torch.from_numpy(weights.reshape(12, 4, 3, 3)).float()


def demosaic_malvar(raw: torch.Tensor) -> torch.Tensor:
    """Demosaic packed RGGB raw by Malvar–He–Cutler 2004 (gradient-corrected linear interpolation).

    The paper's 5×5 kernels are applied as one 3×3 convolution of the packed planes
    (:func:`malvar_packed_kernels`) and a pixel shuffle. Borders are reflected at full resolution, which
    keeps the Bayer phase. Exact for constant colours and, away from the 2-pixel border, for colours that
    vary linearly.

    Args:
        raw: ``(B, 4, h, w)`` packed RGGB raw, h and w at least 2.

    Returns:
        ``(B, 3, 2h, 2w)`` linear RGB (not clipped: the kernels' negative lobes can overshoot).

    Example:
        >>> raw = torch.tensor([0.2, 0.5, 0.5, 0.7]).view(1, 4, 1, 1).expand(1, 4, 3, 3)
        >>> demosaic_malvar(raw)[0, :, 2, 3]
        tensor([0.2000, 0.5000, 0.7000])
    """
    sizes = check_shape(raw, "B 4 h w", "raw")
    check(min(sizes["h"], sizes["w"]) >= 2, "raw", "planes of at least 2×2 (the 5×5 filters reflect)", tuple(raw.shape))
    padded = F.pixel_unshuffle(F.pad(F.pixel_shuffle(raw, 2), (2, 2, 2, 2), mode="reflect"), 2)
    return F.pixel_shuffle(F.conv2d(padded, malvar_packed_kernels().to(raw.device, raw.dtype)), 2)


def binomial_blur(image: torch.Tensor) -> torch.Tensor:
    """Blur ``(B, C, H, W)`` by the separable 5-tap binomial filter (1, 4, 6, 4, 1)/16 (variance 1 pixel²),
    with reflected borders."""
    padded = F.pad(image, (2, 2, 2, 2), mode="reflect")
    rows = padded[..., :-4] + padded[..., 4:] + 4 * (padded[..., 1:-3] + padded[..., 3:-1]) + 6 * padded[..., 2:-2]
    both = rows[..., :-4, :] + rows[..., 4:, :] + 4 * (rows[..., 1:-3, :] + rows[..., 3:-1, :]) + 6 * rows[..., 2:-2, :]
    return both / 256


def unsharp_mask(image: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Sharpen ``image + amount · (image − blur(image))`` (:func:`binomial_blur`), clipped to [0, 1].

    Args:
        image: ``(B, C, H, W)`` in [0, 1].
        amount: ``(B,)`` strength per image; 0 leaves the image unchanged.
    """
    return (image + amount.view(-1, 1, 1, 1) * (image - binomial_blur(image))).clamp(0, 1)


def process(raw: torch.Tensor, params: CameraParams) -> torch.Tensor:
    """Render packed RGGB raw to sRGB with the cameras ``params``: the inverse of :func:`unprocess`.

    White balance and brightening, clip to [0, 1] (sensor saturation), Malvar demosaicking, camera →
    sRGB colours, clip, gamma 1/2.2, smoothstep tone curve, and unsharp masking where ``params.sharpen`` > 0.

    Args:
        raw: ``(B, 4, h, w)`` packed raw (noisy values outside [0, 1] allowed).
        params: The camera of each image.

    Returns:
        ``(B, 3, 2h, 2w)`` sRGB in [0, 1].

    Example:
        >>> camera = random_camera(1, torch.Generator().manual_seed(0))
        >>> image = torch.full((1, 3, 4, 4), 0.5)
        >>> bool((process(unprocess(image, camera), camera) - image).abs().max() < 1e-5)
        True
    """
    check_shape(raw, "B 4 h w", "raw")
    check(
        params.rgb2cam.shape[0] == raw.shape[0],
        "params",
        f"one camera per image ({raw.shape[0]})",
        params.rgb2cam.shape,
    )
    gains = _channel_gains(params)
    raw = (raw * gains[:, [0, 1, 1, 2], None, None]).clamp(0, 1)
    linear = _apply_ccm(demosaic_malvar(raw), torch.linalg.inv(params.rgb2cam)).clamp(0, 1)
    srgb = smoothstep(linear.clamp(min=GAMMA_EPS) ** (1 / GAMMA))
    return unsharp_mask(srgb, params.sharpen)


# sRGB → an orthonormal luma/chroma basis: rows (1, 1, 1)/√3, (1, 0, −1)/√2, (1, −2, 1)/√6.
OPPONENT = (
    (3**-0.5, 3**-0.5, 3**-0.5),
    (2**-0.5, 0.0, -(2**-0.5)),
    (6**-0.5, -2 * 6**-0.5, 6**-0.5),
)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with standard deviation ``sigma`` pixels (reflect padding)."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(image.shape[1], 1, 1, 1)
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(-1, 1, 1, 2 * radius + 1), groups=image.shape[1])
    return F.conv2d(rows, kernel.view(-1, 1, 2 * radius + 1, 1), groups=image.shape[1])


def in_camera_nr(
    noisy: torch.Tensor,
    target: torch.Tensor,
    luma: float,
    chroma: float,
    chroma_gain: float = 1.0,
    luma_gain: float = 1.0,
) -> torch.Tensor:
    """A model of in-camera noise reduction: the rendered noise ``noisy − target`` low-passed in a luma/chroma
    basis, the luma by a Gaussian of ``luma`` pixels and the chroma by one of ``chroma`` pixels, then scaled by
    ``luma_gain`` and ``chroma_gain``.

    Cameras denoise before they compress; what is left is spatially correlated, mostly in the chroma. The
    blur acts on the noise alone (the clean rendering is kept), so the target is unchanged.

    Shape:
        ``noisy``, ``target``: ``(B, 3, H, W)`` → ``(B, 3, H, W)``, clipped to [0, 1].
    """
    basis = torch.tensor(OPPONENT, dtype=noisy.dtype, device=noisy.device)
    residual = torch.einsum("ij,bjhw->bihw", basis, noisy - target)
    chroma_part = gaussian_blur(residual[:, 1:], chroma) * chroma_gain
    residual = torch.cat([gaussian_blur(residual[:, :1], luma) * luma_gain, chroma_part], dim=1)
    return (target + torch.einsum("ji,bjhw->bihw", basis, residual)).clamp(0, 1)


def jpeg_roundtrip(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Encode and decode each image as JPEG with Pillow (8-bit, default 4:2:0 chroma subsampling).

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        quality: ``(B,)`` integer JPEG qualities.

    Returns:
        ``(B, 3, H, W)`` decoded images in [0, 1], float32, on the device of ``images``.
    """
    pixels = images.detach().mul(255).round().clamp(0, 255).to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    decoded = []
    for image, q in zip(pixels, quality.tolist(), strict=True):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(q))
        with Image.open(buffer) as jpeg:
            decoded.append(np.asarray(jpeg.convert("RGB")))
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float().div_(255)
    return out.to(images.device)


def synthesize(
    clean: torch.Tensor, generator: torch.Generator, config: CameraNoiseConfig = CameraNoiseConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy camera image and its clean target for each clean sRGB crop.

    Draws, in this order from ``generator``: the cameras (:func:`random_camera`), the noise levels
    (:func:`random_noise_levels`), the noise, which images are JPEG-compressed and at what quality, and (when
    ``config.nr_probability`` > 0) which go through in-camera noise reduction and how strong.
    Noisy is ``process(add_noise(unprocess(clean)))``, then in-camera noise reduction and JPEG for some; target is
    ``process(unprocess(clean))`` with the same cameras, never JPEG-compressed.

    Args:
        clean: ``(B, 3, H, W)`` sRGB in [0, 1], H and W even.
        generator: Source of every random choice (a fixed seed gives a fixed degradation).
        config: Ranges of the random choices.

    Returns:
        ``(noisy, target)``, each ``(B, 3, H, W)`` float32 in [0, 1].

    Example:
        >>> noisy, target = synthesize(torch.rand(2, 3, 8, 8), torch.Generator().manual_seed(0))
        >>> noisy.shape, target.dtype
        (torch.Size([2, 3, 8, 8]), torch.float32)
    """
    sizes = check_shape(clean, "B 3 H W", "clean")
    check(sizes["H"] % 2 == 0 and sizes["W"] % 2 == 0, "clean", "even height and width", tuple(clean.shape))
    batch = sizes["B"]
    clean = clean.float()
    camera = random_camera(batch, generator, config).to(clean.device)
    shot, read = (level.to(clean.device) for level in random_noise_levels(batch, generator, config))
    raw = unprocess(clean, camera)
    noisy = process(add_noise(raw, shot, read, generator), camera)
    target = process(raw, camera)
    compressed = torch.rand(batch, generator=generator, device=generator.device) < config.jpeg_probability
    low, high = config.jpeg_quality
    quality = torch.randint(low, high + 1, (batch,), generator=generator, device=generator.device)
    if config.nr_probability > 0:  # drawn only when enabled, so that recipes without it reproduce exactly
        reduced = torch.rand(batch, generator=generator, device=generator.device) < config.nr_probability
        luma = _uniform(batch, *config.nr_luma_sigma, generator)
        chroma = _uniform(batch, *config.nr_chroma_sigma, generator)
        chroma_gain = _gains(batch, config.nr_chroma_gain, generator)
        luma_gain = _gains(batch, config.nr_luma_gain, generator)
        for index in torch.nonzero(reduced).flatten().tolist():
            part = slice(index, index + 1)
            levels = float(luma[index]), float(chroma[index]), float(chroma_gain[index]), float(luma_gain[index])
            noisy[part] = in_camera_nr(noisy[part], target[part], *levels)
    if compressed.any():
        chosen = compressed.to(noisy.device)
        noisy[chosen] = jpeg_roundtrip(noisy[chosen], quality[compressed].cpu())
    return noisy, target
