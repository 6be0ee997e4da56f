import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from restorekit.errors import UsageError
from restorekit.models import _architectures
from restorekit.models._weights import load_model
from restorekit.models.acdanet import ACDANet
from restorekit.models.acdasr import ACDASR
from restorekit.models.mallenet import MalleNet
from restorekit.ops.resize import imresize
from restorekit.train import loop
from restorekit.train.config import load_recipe, recipe_from_dict, recipe_to_dict
from restorekit.train.data import add_awgn, downscale, draw_degradation, load_clean_images, sample_patches
from restorekit.train.loop import initialize, learning_rate, train
from restorekit.train.publish import publish
from tests.train.conftest import recipe_for, tiny_builder


def test_recipe_round_trip_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {architecture: mallenet_s, name: mallenet_s.x}\ndata: {train: [a, b], sigma: [5, 50]}\n")
    recipe = load_recipe(path, {"optim.iterations": 7})
    assert recipe.optim.iterations == 7
    assert recipe.data.sigma == (5, 50)
    assert recipe_from_dict(recipe_to_dict(recipe)) == recipe
    with pytest.raises(Exception, match=r"frozen|cannot assign"):
        recipe.optim.iterations = 3


@pytest.mark.parametrize(
    "raw",
    [
        {"model": {"architecture": "a", "name": "a.b"}, "data": {"train": ["x"]}, "bogus": {}},
        {"model": {"architecture": "a", "name": "a.b"}, "data": {"train": ["x"], "patchsize": 3}},
        {"model": {"architecture": "a", "name": "a.b"}, "data": {"train": ["x"]}, "optim": {"loss": "l7"}},
    ],
)
def test_bad_recipes_are_usage_errors(raw):
    with pytest.raises(UsageError):
        recipe_from_dict(raw)


def test_learning_rate_warms_up_then_decays(tmp_path):
    recipe = recipe_for(tmp_path, tmp_path, iterations=100)
    rates = [learning_rate(recipe, step) for step in range(100)]
    assert rates[0] == pytest.approx(recipe.optim.lr)  # warm-up of one step
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(recipe.optim.min_lr, rel=0.05)


def test_patches_are_random_crops_of_the_images(image_folder):
    images = load_clean_images((str(image_folder),), channels=3, min_size=16)
    assert len(images) == 8 and images[0].shape == (32, 40, 3)
    patches = sample_patches(images, 5, 16, np.random.default_rng(0))
    assert patches.shape == (5, 3, 16, 16) and patches.dtype == torch.float32
    assert patches.min() >= 0 and patches.max() <= 1
    gray = load_clean_images((str(image_folder),), channels=1, min_size=16)
    assert gray[0].shape == (32, 40, 1)


def test_awgn_has_the_requested_level_and_file_images_are_8_bit():
    generator = torch.Generator().manual_seed(0)
    clean = torch.full((2, 3, 64, 64), 0.5)
    noisy = add_awgn(clean, torch.tensor([25.0, 25.0]), torch.tensor([False, True]), generator)
    assert (noisy[0] - clean[0]).std().item() * 255 == pytest.approx(25, rel=0.05)
    assert noisy[0].min() < 0.5 - 3 * 25 / 255 or noisy[0].max() > 0.5 + 3 * 25 / 255
    as_file = noisy[1] * 255
    assert torch.equal(as_file, as_file.round()) and noisy[1].min() >= 0 and noisy[1].max() <= 1
    sigma, as_file = draw_degradation(1000, (0.0, 75.0), 0.5, generator)
    assert sigma.min() >= 0 and sigma.max() <= 75 and 0.4 < as_file.float().mean() < 0.6


def test_training_exports_weights_with_metadata(tiny_arch, image_folder, tmp_path):
    weights = train(recipe_for(image_folder, tmp_path / "run"))
    model = load_model(weights)
    meta = model.metadata
    assert meta["name"] == "mallenet_tiny.test"
    assert meta["training"]["iterations"] == 4
    assert "mallenet_tiny" in meta["recipe"]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert "val_psnr" in log[1]


def test_resume_is_exact(tiny_arch, image_folder, tmp_path):
    straight = tmp_path / "straight"
    train(recipe_for(image_folder, straight))

    def interrupt(step, total, record):
        if step == 3:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train(recipe_for(image_folder, resumed), progress=interrupt)
    train(recipe_for(image_folder, resumed))

    def tensors(folder):
        with safe_open(str(folder / "checkpoint.safetensors"), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118

    a, b = tensors(straight), tensors(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def steps(folder):
        return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]

    assert steps(resumed) == steps(straight) == [1, 2, 3, 4]  # step 3, logged then redone, appears once


def test_init_starts_from_weights_and_records_them(tiny_arch, image_folder, tmp_path):
    first = train(recipe_for(image_folder, tmp_path / "first"))
    seen = []

    def snapshot(step, total, record):
        seen.append(step)

    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "second", iterations=1))
    raw["model"]["init"] = str(first)
    raw["run"]["seed"] = 1  # another random initialization, which `init` must replace
    recipe = recipe_from_dict(raw)
    start = load_model(first).state_dict()
    second = load_model(train(recipe, progress=snapshot))
    moved = [k for k, v in second.state_dict().items() if not torch.equal(v, start[k])]
    # One Adam step at the warm-up rate moves the weights a little from where the first run left them.
    assert moved and all(torch.allclose(second.state_dict()[k], start[k], atol=0.05) for k in moved)
    origin = second.metadata["training"]["initialized_from"]
    assert origin["weights"] == "mallenet_tiny.test" and origin["training"]["iterations"] == 4
    assert len(origin["sha256"]) == 64 and seen == [1]


def test_init_of_another_architecture_is_refused(tiny_arch, image_folder, tmp_path, monkeypatch):
    first = train(recipe_for(image_folder, tmp_path / "first", iterations=1))
    other = _architectures.Architecture("mallenet_other", MalleNet, tiny_builder)
    monkeypatch.setitem(_architectures._ARCHITECTURES, "mallenet_other", other)
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "second"))
    raw["model"] |= {"architecture": "mallenet_other", "name": "mallenet_other.test", "init": str(first)}
    with pytest.raises(UsageError, match=r"model.init .* is a mallenet_tiny, not a mallenet_other"):
        train(recipe_from_dict(raw))


def test_a_tv_model_starts_as_its_twin(image_folder, tmp_path, monkeypatch):
    def tiny(tv_blocks):
        return lambda in_channels=3: ACDANet(in_channels, width=4, quarter_width=8, blocks=2, tv_blocks=tv_blocks)

    for name, tv_blocks in (("acdanet_tiny", 0), ("tv_acdanet_tiny", 1)):
        monkeypatch.setitem(
            _architectures._ARCHITECTURES, name, _architectures.Architecture(name, ACDANet, tiny(tv_blocks))
        )
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "twin", iterations=2))
    raw["model"] |= {"architecture": "acdanet_tiny", "name": "acdanet_tiny.test"}
    twin = load_model(train(recipe_from_dict(raw))).eval()
    init = str(tmp_path / "twin" / "acdanet_tiny.test.safetensors")
    raw["model"] |= {"architecture": "tv_acdanet_tiny", "name": "tv_acdanet_tiny.test", "init": init}
    recipe = recipe_from_dict(raw)
    model = tiny(1)().eval()
    ema = {key: torch.zeros_like(value) for key, value in model.state_dict().items()}
    provenance = initialize(model, ema, recipe)
    assert provenance["reinitialised"] and all(".tv." in key for key in provenance["reinitialised"])
    assert all(torch.equal(ema[key], value) for key, value in twin.state_dict().items())
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x, None), twin(x, None), atol=1e-6, rtol=0)


def test_a_blind_mallenet_starts_as_its_conditioned_twin_at_the_start_sigma(
    tiny_arch, image_folder, tmp_path, monkeypatch
):
    blind = _architectures.Architecture(
        "mallenet_tiny_r", MalleNet, lambda in_channels=3: tiny_builder(in_channels, blind=True)
    )
    monkeypatch.setitem(_architectures._ARCHITECTURES, "mallenet_tiny_r", blind)
    monkeypatch.setitem(loop.BLIND_TWINS, "mallenet_tiny_r", "mallenet_tiny")
    twin = load_model(train(recipe_for(image_folder, tmp_path / "twin", iterations=2))).eval()
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "blind", iterations=2))
    init = str(tmp_path / "twin" / "mallenet_tiny.test.safetensors")
    raw["model"] |= {"architecture": "mallenet_tiny_r", "name": "mallenet_tiny_r.test", "init": init}
    model = blind.build().eval()
    ema = {key: torch.zeros_like(value) for key, value in model.state_dict().items()}
    initialize(model, ema, recipe_from_dict(raw))
    assert model.requirements.sigma_range is None
    assert all(torch.equal(ema[key], value) for key, value in model.state_dict().items())
    x = torch.rand(1, 3, 192, 192)
    sigma = torch.full((1, 1, 192, 192), loop.BLIND_START_SIGMA / 255)
    with torch.no_grad():
        start, conditioned = model(x), twin(x, sigma)
        other = twin(x, sigma * 2)
    inner = (..., slice(64, -64), slice(64, -64))  # beyond the stems' zero-padded borders' reach
    torch.testing.assert_close(start[inner], conditioned[inner], atol=1e-5, rtol=0)
    assert (other[inner] - conditioned[inner]).abs().max() > 1e-4  # the σ map matters, so the fold is what matched


def test_publish_writes_measured_quality_into_the_metadata(tiny_arch, image_folder, tmp_path):
    weights = train(recipe_for(image_folder, tmp_path / "run", iterations=1))
    row = {"method": "mallenet_tiny.test", "dataset": "kodak24", "protocol": "float", "ssim": 0.91234}
    results = {
        "argv": "restorekit bench quality …",
        "summary": [row | {"sigma": 25.0, "psnr": 31.5049}, row | {"method": "cbm3d", "sigma": 25.0, "psnr": 30.0}],
        "methods": [{"name": "mallenet_tiny.test", "settings": "device cpu, dtype auto: bf16, tile auto"}],
    }
    (tmp_path / "quality.json").write_text(json.dumps(results))
    (tmp_path / "shipped").mkdir()
    renamed = weights.rename(tmp_path / "exported.safetensors")
    published = publish(renamed, tmp_path / "quality.json", tmp_path / "shipped")
    assert published == tmp_path / "shipped" / "mallenet_tiny.test.safetensors"  # named after the model
    meta = load_model(published).metadata
    assert meta["quality"]["kodak24"] == {"float": {"25": {"psnr": 31.5, "ssim": 0.9123}}}
    assert meta["quality"]["_settings"] == "device cpu, dtype auto: bf16, tile auto"
    assert meta["training"] == load_model(renamed).metadata["training"]


def test_channel_shuffle_permutes_the_colour_channels():
    image = np.empty((64, 64, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 120, 240
    patches = sample_patches([image], 40, 16, np.random.default_rng(0), channel_shuffle=True)
    orders = {tuple(round(v * 255) for v in patch[:, 0, 0].tolist()) for patch in patches}
    assert all(sorted(order) == [10, 120, 240] for order in orders)
    assert len(orders) > 3


def test_rescale_cuts_a_larger_region_and_shrinks_it():
    ramp = np.repeat(np.arange(128, dtype=np.uint8)[None, :, None], 128, axis=0).repeat(3, axis=2)
    native = sample_patches([ramp], 8, 16, np.random.default_rng(0))
    halved = sample_patches([ramp], 8, 16, np.random.default_rng(0), rescale=(0.5, 0.5))

    def step(patches):  # the ramp's slope per pixel, whichever way each crop was turned (the other axis is flat)
        return (patches.diff(dim=2).abs().mean() + patches.diff(dim=3).abs().mean()).item() * 255

    assert step(native) == pytest.approx(1.0, abs=0.01)
    assert step(halved) == pytest.approx(2.0, abs=0.1)
    assert halved.shape == (8, 3, 16, 16) and halved.min() >= 0 and halved.max() <= 1


# ---------------------------------------------------------------------------------- super-resolution training

RECIPES = Path(__file__).parents[2] / "weights" / "recipes"


def sr_recipe(folder="x", out="runs/x", **data):
    """A super-resolution recipe dict (bicubic ×2 unless ``data`` says otherwise)."""
    raw_data = {"train": [str(folder)], "patch": 16, "batch": 2, "holdout": 2, "val_crop": 16}
    return {
        "model": {"architecture": "acdasr_tiny", "name": "acdasr_tiny.test", "options": {"scale": 2}},
        "data": raw_data | {"degradation": "bicubic", "scale": 2} | data,
        "optim": {"iterations": 2, "warmup": 1},
        "run": {"out": str(out), "checkpoint_every": 2, "validate_every": 2, "log_every": 1, "threads": 1},
    }


def test_a_bicubic_recipe_loads(tmp_path):
    recipe = recipe_from_dict(sr_recipe(patch=24, val_crop=48))
    assert (recipe.data.degradation, recipe.data.scale, recipe.data.patch) == ("bicubic", 2, 24)
    assert recipe_from_dict(recipe_to_dict(recipe)) == recipe
    assert recipe_from_dict(sr_recipe(scale=3, patch=24, val_crop=48)).data.scale == 3
    assert recipe_from_dict(sr_recipe(scale=4, patch=24, val_crop=48)).data.scale == 4
    path = tmp_path / "sr.yaml"
    path.write_text(
        "model: {architecture: acdasr_s, name: acdasr_s.y}\ndata: {train: [a], degradation: bicubic, scale: 2}\n"
    )
    assert load_recipe(path).data.scale == 2  # the default patch (64) and val_crop (128) are even
    assert recipe_from_dict({"model": {"architecture": "a", "name": "a.b"}, "data": {"train": ["x"]}}).data.scale == 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_shipped_sr_recipes_load(scale):
    recipe = load_recipe(RECIPES / f"acdasr_s.x{scale}.yaml")
    assert (recipe.data.degradation, recipe.data.scale, recipe.model.architecture) == ("bicubic", scale, "acdasr_s")
    assert recipe.model.options["scale"] == scale and recipe.model.name == f"acdasr_s.x{scale}"
    assert recipe.data.patch % scale == 0 and recipe.data.val_crop % scale == 0
    assert scale == 2 or recipe.model.init == "weights/acdasr_s.x2.safetensors"  # ×3/×4 start from the ×2 model


@pytest.mark.parametrize(
    "data",
    [
        {"degradation": "awgn"},  # a scale is for bicubic only
        {"degradation": "camera"},
        {"scale": 1},  # bicubic needs 2, 3 or 4
        {"scale": 5},
        {"scale": "2"},
        {"patch": 25},  # not a multiple of the scale
        {"val_crop": 30, "scale": 4},
        {"scale": 3},  # patch 16
    ],
)
def test_bad_sr_recipes_are_usage_errors(data):
    with pytest.raises(UsageError, match="scale"):
        recipe_from_dict(sr_recipe(**data))


def test_downscale_is_bicubic_quantized_to_8_bits():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 24, 18, generator=generator)
    before = clean.clone()
    for scale in (2, 3):
        low = downscale(clean, scale)
        assert low.shape == (2, 3, 24 // scale, 18 // scale) and low.dtype == torch.float32
        assert low.min() >= 0 and low.max() <= 1 and torch.equal(low * 255, (low * 255).round())
        assert torch.allclose(low, imresize(clean, 1 / scale).clamp(0, 1), atol=0.5 / 255 + 1e-6)
    assert torch.equal(clean, before)
    flat = downscale(torch.full((1, 1, 8, 8), 0.4), 4)
    assert torch.allclose(flat, torch.full((1, 1, 2, 2), round(0.4 * 255) / 255))


@pytest.fixture
def tiny_sr_arch(monkeypatch):
    def build(scale: int = 2, in_channels: int = 3) -> ACDASR:
        return ACDASR(scale=scale, in_channels=in_channels, width=8, blocks=1)

    arch = _architectures.Architecture("acdasr_tiny", ACDASR, build)
    monkeypatch.setitem(_architectures._ARCHITECTURES, "acdasr_tiny", arch)
    return arch


def test_sr_training_runs_and_validates(tiny_sr_arch, image_folder, tmp_path):
    weights = train(recipe_from_dict(sr_recipe(image_folder, tmp_path / "run")))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert "val_psnr" in log[1] and 15 < log[1]["val_psnr"] < 60
    model = load_model(weights)
    assert type(model) is ACDASR and model.requirements.scale == 2
    assert model.metadata["training"]["iterations"] == 2 and "bicubic" in model.metadata["recipe"]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_a_x3_model_starts_from_x2_weights_but_its_tail(tiny_sr_arch, image_folder, tmp_path):
    x2 = train(recipe_from_dict(sr_recipe(image_folder, tmp_path / "x2")))
    raw = sr_recipe(image_folder, tmp_path / "x3", scale=3, patch=12, val_crop=24)
    raw["model"] |= {"options": {"scale": 3}, "init": str(x2)}
    raw["optim"] |= {"iterations": 1}
    x3 = load_model(train(recipe_from_dict(raw)))
    start = x3.metadata["training"]["initialized_from"]
    assert start["weights"] == "acdasr_tiny.test" and start["reinitialised"] == ["tail.2.bias", "tail.2.weight"]
    assert x3.requirements.scale == 3
    with torch.no_grad():
        assert x3(torch.rand(1, 3, 8, 8)).shape == (1, 3, 24, 24)
