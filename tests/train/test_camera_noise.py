"""Camera-noise synthesis: unprocess/process round trip, Malvar demosaicking, noise statistics, determinism."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from restorekit.errors import UsageError
from restorekit.inference.metrics import psnr
from restorekit.train.camera_noise import (
    CameraNoiseConfig,
    add_noise,
    demosaic_malvar,
    inverse_smoothstep,
    jpeg_roundtrip,
    mosaic,
    process,
    random_camera,
    random_noise_levels,
    smoothstep,
    synthesize,
    unprocess,
    unsharp_mask,
)

NO_SHARPENING = CameraNoiseConfig(sharpen_probability=0.0)
EVERYTHING = CameraNoiseConfig(sharpen_probability=1.0, jpeg_probability=1.0)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(batch: int, size: int, period: float, seed: int = 0) -> torch.Tensor:
    """Natural-like smooth images: a sinusoidal luminance of ``period`` pixels in a random direction times a
    random colour, plus a slower chroma wave; values within [0.02, 0.9] (no clipping anywhere)."""
    generator = seeded(seed)
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    images = []
    for _ in range(batch):
        angle, phase = (torch.rand(2, generator=generator) * 2 * math.pi).tolist()
        colour = 0.4 + 0.5 * torch.rand(3, 1, 1, generator=generator)
        luminance = 0.55 + 0.35 * torch.sin(2 * math.pi / period * (x * math.cos(angle) + y * math.sin(angle)) + phase)
        chroma = 0.1 * torch.sin(2 * math.pi / (3 * period) * (x + y)) * torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1)
        images.append((colour * luminance + chroma).clamp(0.02, 0.9))
    return torch.stack(images)


def constant_colours(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return (0.05 + 0.8 * torch.rand(batch, 3, 1, 1, generator=seeded(seed))).expand(batch, 3, size, size)


# Malvar, He, Cutler 2004, Fig. 2 (×8), written out independently of the module for the naive oracle.
PAPER = {
    "G at R/B": [[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]],
    "row": [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]],
    "column": [[0, 0, -1, 0, 0], [0, -1, 4, -1, 0], [0.5, 0, 5, 0, 0.5], [0, -1, 4, -1, 0], [0, 0, -1, 0, 0]],
    "diagonal": [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]],
}


def naive_malvar(bayer: np.ndarray) -> np.ndarray:
    """Pixel-by-pixel Malvar on a full-resolution RGGB plane ``(H, W)`` → ``(3, H, W)``."""
    height, width = bayer.shape
    padded = np.pad(bayer, 2, mode="reflect")
    out = np.zeros((3, height, width))
    for i, j in np.ndindex(height, width):
        window = padded[i : i + 5, j : j + 5]
        apply = {name: float((window * np.array(k)).sum() / 8) for name, k in PAPER.items()}
        site = ("R", "Gr", "Gb", "B")[2 * (i % 2) + j % 2]
        out[:, i, j] = {
            "R": (bayer[i, j], apply["G at R/B"], apply["diagonal"]),
            "Gr": (apply["row"], bayer[i, j], apply["column"]),
            "Gb": (apply["column"], bayer[i, j], apply["row"]),
            "B": (apply["diagonal"], apply["G at R/B"], bayer[i, j]),
        }[site]
    return out


def bilinear_demosaic(raw: torch.Tensor) -> torch.Tensor:
    """Plain bilinear demosaicking of packed RGGB, the baseline Malvar must beat."""
    bayer = F.pixel_shuffle(raw, 2)
    masks = torch.zeros(3, *bayer.shape[-2:])
    masks[0, 0::2, 0::2] = masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = masks[2, 1::2, 1::2] = 1
    green = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    red_blue = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    kernels = torch.stack([red_blue, green, red_blue])[:, None].float()
    return F.conv2d(F.pad(bayer * masks, (1, 1, 1, 1), mode="reflect"), kernels, groups=3)


# (a) round trip without noise


def test_round_trip_of_constant_colours_is_exact():
    # Without demosaicking error (constant colours) the colour pipeline inverts to float precision.
    clean = constant_colours(6, 16)
    camera = random_camera(6, seeded(), NO_SHARPENING)
    assert (process(unprocess(clean, camera), camera) - clean).abs().max() < 1e-5


def test_round_trip_of_smooth_images_is_close():
    # The only approximation left is Malvar's interpolation, exact for linear colour variation: its error
    # grows with curvature (period 48 px here) and is amplified by the gamma and tone curves in the darks.
    # Measured: interior max ≈ 0.005, mean ≈ 5e-4; the 2-pixel border (reflected, so not linear) is worse.
    clean = smooth_images(8, 64, period=48)
    camera = random_camera(8, seeded(), NO_SHARPENING)
    error = (process(unprocess(clean, camera), camera) - clean).abs()
    interior = error[..., 2:-2, 2:-2]
    assert interior.max() < 0.01  # ≈ 2.5/255
    assert interior.mean() < 1e-3
    assert error.mean() < 2e-3


def test_saturated_white_stays_white():
    # The highlight-preserving inverse gains leave white saturated, so it renders back to exactly white.
    white = torch.ones(4, 3, 8, 8)
    camera = random_camera(4, seeded(), NO_SHARPENING)
    raw = unprocess(white, camera)
    assert torch.equal(raw, torch.ones_like(raw))
    assert (process(raw, camera) - 1).abs().max() < 1e-5


def test_tone_curve_inverts():
    y = torch.linspace(0, 1, 101)
    assert (smoothstep(inverse_smoothstep(y)) - y).abs().max() < 1e-6


# (b) demosaicking


def test_demosaic_of_constant_colours_is_exact():
    clean = constant_colours(4, 10)
    assert (demosaic_malvar(mosaic(clean)) - clean).abs().max() < 1e-6


def test_demosaic_of_linear_ramps_is_exact_in_the_interior():
    y, x = torch.meshgrid(torch.arange(20).float(), torch.arange(24).float(), indexing="ij")
    ramps = torch.stack([0.1 + 0.01 * x + 0.005 * y, 0.3 - 0.004 * x + 0.01 * y, 0.2 + 0.003 * x + 0.002 * y])[None]
    assert (demosaic_malvar(mosaic(ramps)) - ramps)[..., 2:-2, 2:-2].abs().max() < 1e-6


def test_demosaic_matches_the_papers_filters_pixel_by_pixel():
    raw = torch.rand(2, 4, 5, 6, generator=seeded(), dtype=torch.float64)
    bayer = F.pixel_shuffle(raw, 2)[:, 0].numpy()
    expected = np.stack([naive_malvar(plane) for plane in bayer])
    np.testing.assert_allclose(demosaic_malvar(raw).numpy(), expected, atol=1e-12)


@pytest.mark.data
def test_malvar_beats_bilinear_on_photos(data_dir):
    for name in ("kodim01.png", "kodim05.png"):
        pixels = np.asarray(Image.open(data_dir / "eval" / "kodak24" / name).convert("RGB"))[:128, :128]
        srgb = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
        linear = inverse_smoothstep(srgb) ** 2.2
        raw = mosaic(linear)
        crop = (..., slice(2, -2), slice(2, -2))
        gain = psnr(demosaic_malvar(raw)[crop], linear[crop]) - psnr(bilinear_demosaic(raw)[crop], linear[crop])
        assert gain > 2.0  # the paper reports ≈ 5.5 dB over bilinear on Kodak


# (c) noise statistics


def test_noise_variance_is_read_plus_shot_times_signal():
    levels = torch.linspace(0, 1, 11)
    shot, read = random_noise_levels(4, seeded(3))
    raw = levels.view(1, 1, -1, 1).expand(4, 4, 11, 2048).contiguous()
    noise = add_noise(raw, shot, read, seeded(4)) - raw
    variance = noise.var(dim=(1, 3))  # (image, level), 8192 samples each: relative error ≈ 1.6 %
    assert noise.mean(dim=(1, 3)).abs().max() < 5 * (variance / 8192).sqrt().max()
    for measured, s, r in zip(variance, shot, read, strict=True):
        expected = r + s * levels
        # Weighted least squares (sample variances scatter in proportion to the variance itself).
        design = torch.stack([torch.ones_like(levels), levels], 1) / expected[:, None]
        intercept, slope = torch.linalg.lstsq(design, (measured / expected)[:, None]).solution[:, 0]
        assert abs(slope / s - 1) < 0.05
        assert abs(intercept / r - 1) < 0.08


def test_noise_levels_follow_the_log_log_model():
    config = CameraNoiseConfig()
    shot, read = random_noise_levels(4000, seeded(), config)
    assert shot.min() >= config.shot_range[0] and shot.max() <= config.shot_range[1]
    x, y = shot.log().double(), read.log().double()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    intercept = y.mean() - slope * x.mean()
    residual = (y - intercept - slope * x).std()
    assert abs(slope - 2.18) < 0.02 and abs(intercept - 1.20) < 0.15 and abs(residual - 0.26) < 0.02


def test_zero_noise_leaves_raw_unchanged():
    raw = torch.rand(2, 4, 6, 6, generator=seeded())
    zero = torch.zeros(2)
    assert torch.equal(add_noise(raw, zero, zero, seeded()), raw)


# (d) determinism


@pytest.mark.parametrize("config", [CameraNoiseConfig(), EVERYTHING], ids=["default", "sharpen+jpeg"])
def test_a_seed_fixes_the_degradation(config):
    clean = smooth_images(4, 32, period=12)
    first = synthesize(clean, seeded(7), config)
    again = synthesize(clean, seeded(7), config)
    other = synthesize(clean, seeded(8), config)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


# (e) shapes, dtypes, range, validation


def test_outputs_are_float32_images_in_unit_range():
    clean = torch.rand(3, 3, 16, 24, generator=seeded(), dtype=torch.float64)
    for config in (CameraNoiseConfig(), EVERYTHING):
        noisy, target = synthesize(clean, seeded(), config)
        for image in (noisy, target):
            assert image.shape == clean.shape and image.dtype == torch.float32
            assert image.min() >= 0 and image.max() <= 1


def test_jpeg_applies_to_the_noisy_image_only():
    clean = smooth_images(2, 32, period=12)
    noisy, target = synthesize(clean, seeded(), EVERYTHING)
    assert torch.equal((noisy * 255).round() / 255, noisy)  # decoded 8-bit JPEG
    assert not torch.equal((target * 255).round() / 255, target)
    assert (jpeg_roundtrip(clean, torch.tensor([95, 95])) - clean).abs().mean() < 0.01


def test_unsharp_mask_of_amount_zero_is_the_identity():
    image = torch.rand(2, 3, 8, 8, generator=seeded())
    assert torch.equal(unsharp_mask(image, torch.zeros(2)), image)
    assert not torch.equal(unsharp_mask(image, torch.ones(2)), image)


@pytest.mark.parametrize("shape", [(2, 3, 15, 16), (2, 3, 16, 9), (2, 1, 16, 16), (3, 16, 16)])
def test_bad_shapes_are_usage_errors(shape):
    with pytest.raises(UsageError):
        synthesize(torch.rand(shape), seeded())


@pytest.mark.parametrize(
    "bad",
    [{"shot_range": (0.0, 0.01)}, {"jpeg_quality": (50, 101)}, {"sharpen_probability": 1.5}, {"read_std": -1.0}],
)
def test_bad_configs_are_usage_errors(bad):
    with pytest.raises(UsageError):
        CameraNoiseConfig(**bad)


# (f) the target is the same pipeline without noise


def test_target_is_process_of_unprocess_with_the_drawn_camera():
    clean = smooth_images(4, 32, period=12)
    _, target = synthesize(clean, seeded(5), EVERYTHING)
    camera = random_camera(4, seeded(5), EVERYTHING)  # synthesize draws the cameras first
    assert torch.equal(target, process(unprocess(clean, camera), camera))


def test_noisy_and_target_differ_only_by_the_noise():
    silent = CameraNoiseConfig(
        shot_range=(1e-30, 1e-30), read_intercept=-200.0, sharpen_probability=1.0, jpeg_probability=0.0
    )
    clean = smooth_images(4, 32, period=12)
    noisy, target = synthesize(clean, seeded(), silent)
    assert (noisy - target).abs().max() < 1e-5


def test_mixture_splits_the_batch_into_camera_awgn_and_clean():
    from restorekit.train.data import degrade_mixture

    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(8, 3, 16, 16)
    noisy, target = degrade_mixture(clean, 0.75, 0.125, (10.0, 20.0), generator)
    assert noisy.shape == target.shape == clean.shape
    # the AWGN image (index 6) keeps the clean target and is 8-bit; the clean image (7) is its own target
    assert torch.equal(target[6], clean[6]) and torch.equal(noisy[6], noisy[6].mul(255).round().div(255))
    assert torch.equal(noisy[7], target[7]) and torch.equal(target[7], clean[7].mul(255).round().div(255))
    assert not torch.equal(target[0], clean[0])  # camera images: the target is the clean crop, rendered
    again = degrade_mixture(clean, 0.75, 0.125, (10.0, 20.0), torch.Generator().manual_seed(0))
    assert torch.equal(again[0], noisy) and torch.equal(again[1], target)


# (g) in-camera noise reduction


def _lag_correlation(residual: torch.Tensor) -> float:
    """Correlation of the residual with itself one pixel to the right, over the whole batch."""
    a, b = residual[..., :, :-1].flatten(), residual[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_in_camera_nr_correlates_the_noise_and_keeps_the_target():
    clean = smooth_images(4, 48, period=16)
    config = CameraNoiseConfig(sharpen_probability=0.0, jpeg_probability=0.0, shot_range=(0.005, 0.01))
    plain_noisy, plain_target = synthesize(clean, seeded(3), config)
    reduced = CameraNoiseConfig(**{**config.__dict__, "nr_probability": 1.0})
    noisy, target = synthesize(clean, seeded(3), reduced)
    assert torch.equal(target, plain_target)
    before, after = plain_noisy - plain_target, noisy - target
    assert after.square().mean() < before.square().mean()  # noise removed …
    chroma_before, chroma_after = before[:, 0] - before[:, 2], after[:, 0] - after[:, 2]
    assert _lag_correlation(chroma_after) > _lag_correlation(chroma_before) + 0.2  # … what is left is coarse
    assert _lag_correlation(after) > _lag_correlation(before)


def test_in_camera_nr_smooths_chroma_more_than_luma():
    from restorekit.train.camera_noise import in_camera_nr

    target = torch.full((1, 3, 40, 40), 0.5)
    noisy = target + 0.05 * torch.randn(1, 3, 40, 40, generator=seeded())
    out = in_camera_nr(noisy, target, luma=0.0, chroma=2.0) - target
    luma, chroma = out.mean(1), out[:, 0] - out[:, 2]
    assert torch.allclose(luma, (noisy - target).mean(1), atol=1e-6)  # σ 0: the luma noise is untouched
    assert chroma.std() < 0.5 * ((noisy - target)[:, 0] - (noisy - target)[:, 2]).std()


def test_without_nr_nothing_more_is_drawn():
    clean = smooth_images(2, 32, period=12)
    generator, reference = seeded(4), seeded(4)
    synthesize(clean, generator, CameraNoiseConfig(nr_probability=0.0))
    synthesize(clean, reference)
    assert torch.equal(generator.get_state(), reference.get_state())


def test_chroma_gain_scales_the_low_passed_chroma_alone():
    from restorekit.train.camera_noise import in_camera_nr

    target = torch.full((1, 3, 40, 40), 0.5)
    noisy = target + 0.02 * torch.randn(1, 3, 40, 40, generator=seeded())
    plain = in_camera_nr(noisy, target, luma=0.5, chroma=2.0) - target
    scaled = in_camera_nr(noisy, target, luma=0.5, chroma=2.0, chroma_gain=2.5) - target
    torch.testing.assert_close(scaled.mean(1), plain.mean(1), atol=1e-6, rtol=0)  # the luma is untouched
    torch.testing.assert_close(scaled[:, 0] - scaled[:, 2], 2.5 * (plain[:, 0] - plain[:, 2]), atol=1e-6, rtol=0)


def test_the_default_chroma_gain_draws_nothing_and_a_range_does():
    clean = smooth_images(2, 32, period=12)
    base = CameraNoiseConfig(nr_probability=1.0)
    generator, reference = seeded(5), seeded(5)
    synthesize(clean, generator, base)
    synthesize(clean, reference, CameraNoiseConfig(nr_probability=1.0, nr_chroma_gain=(1.0, 1.0)))
    assert torch.equal(generator.get_state(), reference.get_state())
    with pytest.raises(UsageError):
        CameraNoiseConfig(nr_chroma_gain=(0.0, 2.0))
    noisy, target = synthesize(clean, seeded(5), CameraNoiseConfig(nr_probability=1.0, nr_chroma_gain=(3.0, 3.0)))
    plain, plain_target = synthesize(clean, seeded(5), base)
    assert torch.equal(target, plain_target)
    chroma = ((noisy - target)[:, 0] - (noisy - target)[:, 2]).std()
    assert chroma > 1.5 * ((plain - plain_target)[:, 0] - (plain - plain_target)[:, 2]).std()


def test_recipes_carry_the_nr_ranges_into_the_synthesis():
    from restorekit.train.config import recipe_from_dict

    data = {"train": ["x"], "degradation": "camera", "camera_fraction": 1.0, "camera_nr": 0.5}
    ranges = {"camera_nr_luma": [0.3, 1.2], "camera_nr_chroma": [1.5, 4.0], "camera_nr_chroma_gain": [1.0, 3.0]}
    recipe = recipe_from_dict({"model": {"architecture": "a", "name": "a.b"}, "data": data | ranges})
    config = recipe.data.camera_noise()
    assert (config.nr_probability, config.nr_luma_sigma, config.nr_chroma_gain) == (0.5, (0.3, 1.2), (1.0, 3.0))
    with pytest.raises(UsageError):
        recipe_from_dict({"model": {"architecture": "a", "name": "a.b"}, "data": data | {"camera_nr_chroma": [3, 1]}})


def test_luma_gain_scales_the_low_passed_luma_alone_and_draws_only_when_set():
    from restorekit.train.camera_noise import in_camera_nr

    target = torch.full((1, 3, 40, 40), 0.5)
    noisy = target + 0.02 * torch.randn(1, 3, 40, 40, generator=seeded())
    plain = in_camera_nr(noisy, target, luma=1.0, chroma=2.0) - target
    scaled = in_camera_nr(noisy, target, luma=1.0, chroma=2.0, luma_gain=2.0) - target
    torch.testing.assert_close(scaled.mean(1), 2.0 * plain.mean(1), atol=1e-6, rtol=0)
    torch.testing.assert_close(scaled[:, 0] - scaled[:, 2], plain[:, 0] - plain[:, 2], atol=1e-6, rtol=0)
    clean = smooth_images(2, 32, period=12)
    generator, reference = seeded(6), seeded(6)
    synthesize(clean, generator, CameraNoiseConfig(nr_probability=1.0, nr_luma_gain=(1.0, 1.0)))
    synthesize(clean, reference, CameraNoiseConfig(nr_probability=1.0))
    assert torch.equal(generator.get_state(), reference.get_state())
    with pytest.raises(UsageError):
        CameraNoiseConfig(nr_luma_gain=(2.0, 1.0))
