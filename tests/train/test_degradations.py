"""The Real-ESRGAN degradation: shapes and 8 bits, determinism, kernels, JPEG blocking, noise, pairs, recipes."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from restorekit.errors import UsageError
from restorekit.train.config import load_recipe, recipe_from_dict
from restorekit.train.degradations import (
    KERNEL_TYPES,
    POISSON_PHOTONS,
    DegradationRound,
    RealDegradationConfig,
    add_gaussian_noise,
    add_poisson_noise,
    blur,
    degrade_real,
    degraded_pairs,
    jpeg,
    random_kernel,
    shaped_kernel,
    sinc_kernel,
    stack_kernels,
)
from restorekit.train.loop import draw_batch, validation_set

RECIPES = Path(__file__).parents[2] / "weights" / "recipes"
KEEP = (0.0, 0.0, 1.0)  # resize probabilities: never up or down


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(batch: int, size: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Random images with natural-like smooth content: random 5² colour fields upsampled (bicubic), in [0, 1]."""
    coarse = torch.rand(batch, channels, 5, 5, generator=seeded(seed))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def is_8_bit(images: torch.Tensor) -> bool:
    return torch.equal((images * 255).round() / 255, images)


def only_noise(stage: DegradationRound, **noise) -> DegradationRound:
    """``stage`` without blur or resizing, JPEG at quality 95, and the given noise settings."""
    return DegradationRound(blur_probability=0.0, resize_probabilities=KEEP, jpeg_quality=(95, 95), **noise)


# ---------------------------------------------------------------------------------------------- the pipeline


@pytest.mark.parametrize(("scale", "channels", "size"), [(4, 3, 64), (2, 3, 48), (3, 1, 36), (4, 1, 32)])
def test_output_is_low_resolution_in_range_and_8_bit(scale, channels, size):
    hr = smooth_images(3, size, channels=channels)
    low = degrade_real(hr, scale, seeded())
    assert low.shape == (3, channels, size // scale, size // scale) and low.dtype == torch.float32
    assert low.min() >= 0 and low.max() <= 1 and is_8_bit(low)


def test_a_fixed_generator_repeats_and_seeds_differ():
    hr = smooth_images(4, 64)
    first, again = degrade_real(hr, 4, seeded(3)), degrade_real(hr, 4, seeded(3))
    assert torch.equal(first, again)
    other = degrade_real(hr, 4, seeded(4))
    assert all(not torch.equal(a, b) for a, b in zip(first, other, strict=True))  # every image degraded anew


def test_the_degraded_image_still_resembles_its_source():
    hr = smooth_images(6, 64)
    low = degrade_real(hr, 4, seeded())
    reference = F.interpolate(hr, size=(16, 16), mode="area")
    errors = (low - reference).abs().mean(dim=(1, 2, 3))
    assert errors.max() < 0.2 and errors.mean() > 0.003  # degraded, but the same picture


def test_bad_inputs_are_usage_errors():
    with pytest.raises(UsageError, match="multiples of 4"):
        degrade_real(torch.rand(1, 3, 0, 4), 4, seeded())
    with pytest.raises(UsageError, match="multiples of 4"):
        degrade_real(torch.rand(1, 3, 30, 32), 4, seeded())
    with pytest.raises(UsageError, match="hr channels"):
        degrade_real(torch.rand(1, 2, 32, 32), 4, seeded())
    with pytest.raises(UsageError, match="scale"):
        degrade_real(torch.rand(1, 3, 32, 32), 0, seeded())
    with pytest.raises(UsageError, match="hr"):
        degrade_real(torch.rand(3, 32, 32), 4, seeded())


@pytest.mark.parametrize(
    "bad",
    [
        {"blur_probability": 1.5},
        {"kernel_size": (8, 21)},
        {"kernel_probabilities": (0.5, 0.5)},
        {"resize_probabilities": (0.5, 0.2, 0.1)},
        {"resize_range": (1.2, 1.5)},
        {"sigma": (0.0, 3.0)},
        {"jpeg_quality": (30, 101)},
    ],
)
def test_bad_ranges_are_usage_errors(bad):
    with pytest.raises(UsageError, match=next(iter(bad))):
        DegradationRound(**bad)


def test_the_defaults_are_real_esrgans():
    config = RealDegradationConfig()
    first, second = config.first, config.second
    assert (first.sigma, second.sigma, first.blur_probability, second.blur_probability) == (
        (0.2, 3),
        (0.2, 1.5),
        1,
        0.8,
    )
    assert (first.resize_range, second.resize_range) == ((0.15, 1.5), (0.3, 1.2))
    assert (first.noise_sigma, second.noise_sigma, second.poisson_scale) == ((1, 30), (1, 25), (0.05, 2.5))
    assert config.final_sinc_probability == 0.8 and first.kernel_size == (7, 21) and second.jpeg_quality == (30, 95)
    assert config.camera.jpeg_probability == 0  # the round's own JPEG follows the camera noise


# ------------------------------------------------------------------------------------------------- the blur


@pytest.mark.parametrize("kind", [*KERNEL_TYPES, "sinc"])
@pytest.mark.parametrize("size", [7, 13, 21])
def test_every_kernel_type_sums_to_one_at_its_size(kind, size):
    sinc = kind == "sinc"
    weights = tuple(float(k == kind) for k in KERNEL_TYPES) if not sinc else DegradationRound().kernel_probabilities
    stage = DegradationRound(kernel_size=(size, size), kernel_probabilities=weights, sinc_probability=float(sinc))
    for seed in range(5):
        kernel = random_kernel(stage, seeded(seed))
        assert kernel.shape == (size, size) and kernel.dtype == torch.float32
        assert math.isclose(float(kernel.sum()), 1.0, abs_tol=1e-5)
        assert torch.allclose(kernel, kernel.flip(0, 1), atol=1e-7)  # point-symmetric: no shift of the image
        assert sinc == bool(kernel.min() < 0)  # only the sinc has negative lobes


def test_kernel_sizes_are_odd_and_span_the_range():
    sizes = {random_kernel(DegradationRound(), seeded(seed)).shape[-1] for seed in range(200)}
    assert sizes == set(range(7, 22, 2))


def test_a_gaussian_kernel_has_the_covariance_it_was_asked_for():
    sigma_x, sigma_y, theta = 3.0, 1.0, 0.6
    kernel = shaped_kernel(31, sigma_x, sigma_y, theta).double()
    axis = torch.arange(-15, 16, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    covariance = torch.tensor([[(kernel * a * b).sum() for b in (x, y)] for a in (x, y)])
    rotation = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]).double()
    expected = rotation @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2]).double()) @ rotation.T
    assert torch.allclose(covariance, expected, atol=2e-3)


def test_shapes_beyond_the_gaussian():
    gaussian, flat_top = shaped_kernel(21, 2.0, 2.0), shaped_kernel(21, 2.0, 2.0, beta=3.0)
    plateau = shaped_kernel(21, 2.0, 2.0, beta=1.0, plateau=True)
    assert flat_top[10, 11] / flat_top[10, 10] > gaussian[10, 11] / gaussian[10, 10]  # β > 1: flatter top
    assert plateau[10, 20] / plateau[10, 10] > 100 * gaussian[10, 20] / gaussian[10, 10]  # heavy tails
    narrow = shaped_kernel(21, 0.2, 0.2)
    assert narrow[narrow != 0].min() > 1e-30  # no float32 denormals (they slow the convolution tenfold)


def test_the_sinc_kernel_is_a_low_pass_at_its_cutoff():
    kernel = sinc_kernel(21, math.pi / 2)
    response = torch.fft.fft2(F.pad(kernel, (0, 43, 0, 43))).abs()  # 64 frequencies per axis
    assert math.isclose(float(response[0, 0]), 1.0, abs_tol=1e-5)
    assert response[0, 8] > 0.9 and response[0, 24] < 0.1 and response[0, 32] < 0.1  # π/4 passes, 3π/4 and π stop


def test_blur_applies_each_images_own_kernel():
    images = smooth_images(3, 32) + 0.1 * torch.rand(3, 3, 32, 32, generator=seeded(1))
    kernels = [shaped_kernel(5, 1.0, 1.0), sinc_kernel(9, 1.0), torch.ones(1, 1)]
    together = blur(images, stack_kernels(kernels))
    for index, kernel in enumerate(kernels):
        alone = blur(images[index : index + 1], kernel[None])
        assert torch.allclose(together[index : index + 1], alone, atol=1e-6)
    assert torch.equal(together[2], images[2])  # the identity
    reference = F.conv2d(F.pad(images[:1], (2,) * 4, mode="reflect"), kernels[0].expand(3, 1, 5, 5), groups=3)
    assert torch.allclose(together[:1], reference, atol=1e-6)


# --------------------------------------------------------------------------------------- the JPEG and noise


def blockiness(images: torch.Tensor) -> float:
    """Mean step across the 8×8 block boundaries over the mean step inside blocks (≈ 1 without blocking)."""
    steps = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    boundary = torch.arange(steps.numel()) % 8 == 7
    return float(steps[boundary].mean() / steps[~boundary].mean())


def test_jpeg_at_low_quality_makes_8x8_blocks():
    texture = 0.02 * torch.randn(4, 3, 64, 64, generator=seeded(1))
    images = (smooth_images(4, 64) * 0.8 + 0.1 + texture).clamp(0, 1)
    assert blockiness(images) < 1.1  # the source has no 8×8 structure
    low, high = jpeg(images, 30), jpeg(images, 95)
    assert is_8_bit(low) and low.shape == images.shape
    assert (low - images).abs().mean() > 1.3 * (high - images).abs().mean()
    assert blockiness(low) > 1.4 and blockiness(high) < 1.15
    gray = jpeg(images[:, :1], 30)
    assert gray.shape == (4, 1, 64, 64) and blockiness(gray) > 1.4


def test_gaussian_and_poisson_noise_have_their_levels_in_flat_regions():
    flat = torch.full((2, 3, 96, 96), 0.5)
    colour = add_gaussian_noise(flat, 12.0, False, seeded())
    assert math.isclose(float(colour.std()) * 255, 12.0, rel_tol=0.03)
    gray = add_gaussian_noise(flat, 12.0, True, seeded())
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    poisson = add_poisson_noise(flat, 2.0, False, seeded())
    assert math.isclose(float(poisson.std()), 2.0 * math.sqrt(0.5 / POISSON_PHOTONS), rel_tol=0.05)
    assert torch.equal(add_poisson_noise(flat, 0.0, False, seeded()), flat)


@pytest.mark.parametrize(
    "noise",
    [
        {"gaussian_probability": 1.0, "noise_sigma": (15.0, 15.0)},
        {"gaussian_probability": 0.0, "poisson_scale": (2.0, 2.0)},
        {"camera_probability": 1.0},
    ],
)
def test_the_noise_stage_raises_the_std_of_flat_regions(noise):
    quiet = {"gaussian_probability": 1.0, "noise_sigma": (0.0, 0.0)}
    flat = torch.full((2, 3, 64, 64), 0.45)

    def degraded(first: dict) -> torch.Tensor:
        config = RealDegradationConfig(
            only_noise(DegradationRound(), **first), only_noise(DegradationRound(), **quiet), 0.0
        )
        return degrade_real(flat, 1, seeded(), config)

    assert float(degraded(quiet).std(dim=(2, 3)).max()) < 1 / 255
    assert float(degraded(noise).std(dim=(2, 3)).min()) > 2 / 255


# --------------------------------------------------------------------------------------- evaluation pairs


def test_degraded_pairs_repeat_and_do_not_depend_on_the_other_images():
    images = [smooth_images(1, 40, seed=i)[0].permute(1, 2, 0).numpy()[: 37 + i] for i in range(3)]
    pairs = degraded_pairs(images, 4, seed=10)
    again = degraded_pairs(images, 4, seed=10)
    for (hr, low), (hr2, low2) in zip(pairs, again, strict=True):
        assert torch.equal(hr, hr2) and torch.equal(low, low2)
    assert [tuple(hr.shape) for hr, _ in pairs] == [(3, 36, 40), (3, 36, 40), (3, 36, 40)]
    assert [tuple(low.shape) for _, low in pairs] == [(3, 9, 10)] * 3
    assert torch.equal(pairs[0][0], torch.from_numpy(images[0][:36]).permute(2, 0, 1))  # the top-left crop
    alone = degraded_pairs(images[2:], 4, seed=12)  # image 2 on its own: the same seed, the same pair
    assert torch.equal(alone[0][1], pairs[2][1])
    backwards = degraded_pairs(images[::-1], 4, seed=10)  # each position keeps its seed
    assert torch.equal(backwards[2][0], pairs[0][0]) and not torch.equal(backwards[2][1], pairs[0][1])
    with pytest.raises(UsageError, match="float"):
        degraded_pairs([np.zeros((8, 8, 3), dtype=np.uint8)], 4, seed=0)
    with pytest.raises(UsageError, match="scale"):
        degraded_pairs(images, 0, seed=0)


# ------------------------------------------------------------------------------------------ recipes, loop


def real_sr_recipe(**data):
    raw_data = {"train": ["x"], "patch": 16, "batch": 2, "holdout": 2, "val_crop": 32}
    return {
        "model": {"architecture": "acdasr_s", "name": "acdasr_s.test", "options": {"scale": 2}},
        "data": raw_data | {"degradation": "real_sr", "scale": 2} | data,
    }


def test_a_real_sr_recipe_loads_with_scales_2_to_4():
    for scale in (2, 4):
        assert recipe_from_dict(real_sr_recipe(scale=scale)).data.degradation == "real_sr"
    assert recipe_from_dict(real_sr_recipe(scale=3, patch=24, val_crop=48)).data.scale == 3


@pytest.mark.parametrize(
    "data", [{"scale": 1}, {"scale": 5}, {"scale": "2"}, {"patch": 15}, {"val_crop": 30, "scale": 4}]
)
def test_bad_real_sr_recipes_are_usage_errors(data):
    with pytest.raises(UsageError, match="scale"):
        recipe_from_dict(real_sr_recipe(**data))


@pytest.mark.parametrize(("scale", "patch"), [(4, 128), (2, 96)])
def test_the_shipped_real_sr_recipes_load(scale, patch):
    recipe = load_recipe(RECIPES / f"acdasr_s.real_x{scale}.yaml")
    data, model, optim = recipe.data, recipe.model, recipe.optim
    assert (data.degradation, data.scale, data.patch, data.batch) == ("real_sr", scale, patch, 16)
    assert (model.architecture, model.name, model.options["scale"]) == ("acdasr_s", f"acdasr_s.real_x{scale}", scale)
    assert model.init == f"weights/acdasr_s.x{scale}.safetensors" and Path(model.init).name in {
        p.name for p in RECIPES.parent.glob("*.safetensors")
    }
    assert optim.iterations > optim.warmup and (optim.lr, optim.min_lr, optim.warmup, optim.loss) == (
        2e-4,
        5e-6,
        100,
        "l1",
    )
    assert recipe.run.out == f"runs/acdasr_s.real_x{scale}" and data.val_crop % scale == 0


def test_the_loop_draws_and_validates_real_sr_pairs():
    recipe = recipe_from_dict(real_sr_recipe())
    images = [(smooth_images(1, 48, seed=i)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(3)]
    clean, noisy, level, frame = draw_batch(recipe, images, np.random.default_rng(0), seeded())
    assert clean.shape == (2, 3, 16, 16) and noisy.shape == (2, 3, 8, 8) and frame is None
    assert is_8_bit(noisy) and not level.any()
    val_clean, val_noisy, _ = validation_set(recipe, images)
    assert val_clean.shape == (3, 3, 32, 32) and val_noisy.shape == (3, 3, 16, 16)
    assert torch.equal(validation_set(recipe, images)[1], val_noisy)  # fixed seeds
    centre = images[1][8:40, 8:40].astype(np.float32) / 255
    assert torch.equal(val_noisy[1], degraded_pairs([centre], 2, seed=12345 + 1)[0][1])  # crop i: seed 12345 + i
