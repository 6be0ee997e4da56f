"""Training tunable models: the parametric multi-loss, ω sampling, init from a plain model, metadata, publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from restorekit.errors import UsageError
from restorekit.models import _architectures
from restorekit.models._weights import load_model, save_model
from restorekit.models.mallenet import MalleNet
from restorekit.models.tunable_acdasr import TunableACDASR
from restorekit.models.tunable_mallenet import TunableMalleNet
from restorekit.train.config import TuneConfig, recipe_from_dict, recipe_to_dict
from restorekit.train.data import draw_omega
from restorekit.train.loop import second_objective, train, tune_target
from restorekit.train.losses import (
    gaussian_blur,
    l1,
    local_energy,
    multi_loss,
    noise_target,
    texture_loss,
    unsharp_mask,
)
from restorekit.train.publish import publish
from tests.train.conftest import recipe_for


def tiny_tunable_builder(in_channels: int = 3) -> TunableMalleNet:
    return TunableMalleNet(in_channels=in_channels, width=4, blocks=(1, 1, 1, 1), predictor_width=4)


@pytest.fixture
def tiny_tunable_arch(monkeypatch, tiny_arch):
    arch = _architectures.Architecture("tunable_mallenet_tiny", TunableMalleNet, tiny_tunable_builder)
    monkeypatch.setitem(_architectures._ARCHITECTURES, "tunable_mallenet_tiny", arch)
    return arch


def test_multi_loss_ends_are_removal_and_retention():
    clean, noisy = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    prediction = torch.full((2, 1, 4, 4), 0.45)

    def loss(w: list[float]) -> torch.Tensor:
        ws = torch.tensor([w] * 2)
        return multi_loss(l1, prediction, clean, noise_target(clean, noisy, ws[:, 1], 0.9), ws)

    removal = loss([1.0, 0.0])
    assert removal.item() == pytest.approx(0.45)
    retention = loss([0.0, 1.0])
    assert retention.item() == pytest.approx(0.0, abs=1e-7)  # target y + 0.9·(z − y) = 0.45
    half = loss([0.5, 0.5])
    # ω2 = 0.5: target y + 0.45·(z − y) = 0.225, so 0.5·0.45 + 0.5·0.225
    assert half.item() == pytest.approx(0.3375)


def test_omega_is_on_the_simplex_with_the_asked_share_at_the_ends():
    generator = torch.Generator().manual_seed(0)
    w = draw_omega(20000, 0.2, None, generator)
    assert torch.allclose(w.sum(1), torch.ones(20000))
    ends = ((w[:, 0] == 0) | (w[:, 0] == 1)).float().mean().item()
    assert ends == pytest.approx(0.2, abs=0.02)
    assert torch.equal(draw_omega(3, 0.2, 0.0, generator), torch.tensor([[0.0, 1.0]] * 3))


def tunable_recipe(folder, out, init, iterations=2, lr=1e-3):
    raw = recipe_to_dict(recipe_for(folder, out, iterations))
    raw["model"] = {
        "architecture": "tunable_mallenet_tiny",
        "name": "tunable_mallenet_tiny.test",
        "options": {"in_channels": 3},
        "init": str(init),
    }
    raw["optim"] |= {"lr": lr, "min_lr": 0.0}
    raw["tune"] = {"nu": 0.9, "endpoints": 0.5}
    return recipe_from_dict(raw)


def test_tunable_model_starts_as_the_plain_one_and_records_what_omega_means(
    tiny_tunable_arch,
    image_folder,
    tmp_path,
):
    plain = train(recipe_for(image_folder, tmp_path / "plain", iterations=1))
    weights = train(tunable_recipe(image_folder, tmp_path / "tunable", plain, iterations=1, lr=0.0))
    tunable, reference = load_model(weights), load_model(plain)
    x, sigma = torch.rand(1, 3, 16, 16), torch.full((1, 1, 16, 16), 0.1)
    with torch.no_grad():
        for w in ((1.0, 0.0), (0.0, 1.0), (0.4, 0.6)):
            assert torch.allclose(tunable.fold(w)(x, sigma), reference(x, sigma), atol=1e-5)
    omega = tunable.metadata["omega"]
    assert omega["parameters"] == ["remove noise", "keep grain and fine detail"]
    assert omega["domain"] == "simplex" and omega["nu"] == 0.9
    assert tunable.metadata["training"]["initialized_from"]["weights"] == "mallenet_tiny.test"
    log = [json.loads(line) for line in (tmp_path / "tunable" / "log.jsonl").read_text().splitlines()]
    assert {"val_psnr", "val_psnr_eta"} <= set(log[-1])


def test_training_moves_the_two_experts_apart(tiny_tunable_arch, image_folder, tmp_path):
    plain = train(recipe_for(image_folder, tmp_path / "plain", iterations=1))
    tunable = load_model(train(tunable_recipe(image_folder, tmp_path / "tunable", plain, iterations=3)))
    assert not torch.allclose(tunable.tail.weight[0], tunable.tail.weight[1])


def test_a_plain_model_trains_at_one_fixed_setting(tiny_arch, image_folder, tmp_path):
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "retain", iterations=2))
    raw["tune"] = {"nu": 0.9, "fixed_w1": 0.0}
    model = load_model(train(recipe_from_dict(raw)))
    assert type(model) is MalleNet and "omega" not in model.metadata
    log = [json.loads(line) for line in (tmp_path / "retain" / "log.jsonl").read_text().splitlines()]
    assert "val_psnr" in log[-1] and "val_psnr_eta" not in log[-1]


def test_publish_takes_a_tune_benchmark(tiny_tunable_arch, image_folder, tmp_path):
    plain = train(recipe_for(image_folder, tmp_path / "plain", iterations=1))
    weights = train(tunable_recipe(image_folder, tmp_path / "tunable", plain, iterations=1))
    row = {"method": "tunable_mallenet_tiny.test", "dataset": "kodak24", "protocol": "float", "kind": "tunable"}
    summary = [
        row | {"sigma": 15, "w1": 1.0, "w2": 0.0, "psnr": 33.333, "psnr_eta": 33.333},
        row | {"sigma": 15, "w1": 0.0, "w2": 1.0, "psnr": 25.0, "psnr_eta": 50.123},
        row | {"sigma": "mean", "w1": 0.0, "w2": 1.0, "psnr": 25.0, "psnr_eta": 50.123},
    ]
    results = {"command": "tune", "argv": "restorekit bench tune …", "summary": summary, "config": {"nu": 0.9}}
    (tmp_path / "tune.json").write_text(json.dumps(results))
    (tmp_path / "shipped").mkdir()
    quality = load_model(publish(weights, tmp_path / "tune.json", tmp_path / "shipped")).metadata["quality"]
    assert quality["kodak24"] == {"float": {"15": {"psnr": 33.33}}}
    assert quality["_settings_table"]["kodak24"]["float"]["0"] == {"psnr": 25.0, "psnr_eta": 50.12}


def test_publish_takes_the_settings_rows_of_a_tunable_sr_benchmark(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "tunable_acdasr_s.tinytest.safetensors"
    omega = {"parameters": ["fidelity", "detail"], "domain": "simplex"}
    save_model(tiny_tunable_sr_builder(), weights, name="tunable_acdasr_s.tinytest", omega=omega)
    row = {"dataset": "kodak24", "image": "mean", "scale": 2, "kind": "restorekit"}
    summary = [
        row | {"method": f"tunable_acdasr_s.tinytest@ω1={w1}", "psnr": psnr, "ssim": 0.61234, "detail": detail}
        for w1, psnr, detail in (("0", 24.04, 0.4361), ("0.5", 24.061, 0.444), ("1", 24.1549, 0.2304))
    ]
    summary.append(row | {"method": "bicubic", "psnr": 23.0, "ssim": 0.5, "detail": 0.2})
    methods = [{"name": r["method"], "settings": "device cpu, dtype auto: bf16, tile auto"} for r in summary]
    results = {"command": "sr_quality", "argv": "restorekit bench quality --task sr …", "summary": summary}
    results["config"] = {"degradation": "real"}
    (tmp_path / "sr.json").write_text(json.dumps(results | {"methods": methods}))
    (tmp_path / "shipped").mkdir()
    meta = load_model(publish(weights, tmp_path / "sr.json", tmp_path / "shipped")).metadata
    quality = meta["quality"]
    assert quality["kodak24"] == {"y_channel": {"x2": {"psnr": 24.15, "ssim": 0.6123}}}  # at ω1 = 1
    assert quality["_settings_table"]["kodak24"]["x2"]["0"] == {"psnr": 24.04, "ssim": 0.6123, "detail": 0.436}
    assert list(quality["_settings_table"]["kodak24"]["x2"]) == ["0", "0.5", "1"]
    assert quality["_settings"] == "device cpu, dtype auto: bf16, tile auto" and meta["omega"] == omega
    assert quality["_degradation"] == "real"  # what `restorekit models` labels the figures by
    (tmp_path / "no_one.json").write_text(json.dumps(results | {"summary": summary[:2]}))
    with pytest.raises(SystemExit, match=r"tunable_acdasr_s.tinytest@ω1=1 .*--w1 1"):
        publish(weights, tmp_path / "no_one.json", tmp_path / "shipped")


def test_the_detail_objective_targets_the_unsharp_masked_image():
    y = torch.zeros(1, 3, 16, 16)
    y[..., 8:] = 0.6  # an edge
    sharp = unsharp_mask(y, 1.5, 1.0)
    assert sharp[..., 7].max() == 0.0 and sharp[..., 8].min() > 0.6  # overshoot on the bright side only
    assert torch.equal(sharp[..., :2], y[..., :2]) and torch.allclose(sharp[..., -2:], y[..., -2:])
    tune = TuneConfig(objective="detail", detail_sigma=1.5, detail_amount=1.0)
    assert torch.equal(tune_target(tune, y, torch.rand(1, 3, 4, 4), torch.tensor([1.0])), sharp)
    with pytest.raises(UsageError, match=r"tune\.objective"):
        recipe_from_dict({"model": {"architecture": "mallenet_s", "name": "m.x"}, "data": {"train": ["a"]},
                          "tune": {"objective": "sharpness"}})  # fmt: skip


def tiny_tunable_sr_builder(scale: int = 2, in_channels: int = 3) -> TunableACDASR:
    return TunableACDASR(scale=scale, in_channels=in_channels, width=8, blocks=1, generator_width=4)


def tiny_tunable_sr_recipe(monkeypatch, image_folder, tmp_path) -> dict:
    """A 3-iteration ×2 real-world recipe for a tiny tunable ACDA-SR (registered for the test), as plain data."""
    arch = _architectures.Architecture("tunable_acdasr_tiny", TunableACDASR, tiny_tunable_sr_builder)
    monkeypatch.setitem(_architectures._ARCHITECTURES, "tunable_acdasr_tiny", arch)
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "run", iterations=3))
    raw["model"] = {"architecture": "tunable_acdasr_tiny", "name": "tunable_acdasr_tiny.t", "options": {"scale": 2}}
    raw["data"] |= {"degradation": "real_sr", "scale": 2, "patch": 16, "val_crop": 16}
    return raw


def test_a_tunable_sr_model_trains_with_the_detail_objective(monkeypatch, image_folder, tmp_path):
    raw = tiny_tunable_sr_recipe(monkeypatch, image_folder, tmp_path)
    raw["tune"] = {"objective": "detail", "endpoints": 0.5}
    weights = train(recipe_from_dict(raw))
    model = load_model(weights)
    assert model.metadata["omega"]["detail"] == {"sigma": 1.5, "amount": 1.0}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "val_psnr_eta" in log[-1] and log[-1]["val_psnr"] != log[-1]["val_psnr_eta"]


def test_the_texture_loss_is_zero_at_the_target_and_punishes_blur_and_noise_alike():
    torch.manual_seed(0)
    y = unsharp_mask(torch.rand(1, 3, 32, 32), 1.0, 1.0)
    blurred, noisy = gaussian_blur(y, 1.5), (y + 0.2 * torch.randn_like(y)).clamp(0, 1)
    assert texture_loss(l1, y, y, 1.5, 1.0) == 0
    for wrong in (blurred, noisy):
        assert texture_loss(l1, wrong, y, 1.5, 1.0) > texture_loss(l1, wrong, y, 1.5, 0.0) > 0
    # Detail shifted by a pixel costs the energy term little and L1 a lot: it rewards detail, not its phase.
    shifted = torch.roll(y, 1, dims=-1)
    energy = texture_loss(l1, shifted, y, 1.5, 1.0) - texture_loss(l1, shifted, y, 1.5, 0.0)
    assert energy < 0.2 * l1(shifted, y)
    ratio = local_energy(blurred, 1.5).mean() / local_energy(y, 1.5).mean()
    assert ratio < 0.6


def test_a_tunable_sr_model_trains_with_the_texture_objective(monkeypatch, image_folder, tmp_path):
    raw = tiny_tunable_sr_recipe(monkeypatch, image_folder, tmp_path)
    raw["tune"] = {"objective": "texture", "endpoints": 0.5, "texture_weight": 2.0}
    model = load_model(train(recipe_from_dict(raw)))
    assert model.metadata["omega"]["texture"] == {"sigma": 1.5, "weight": 2.0}
    seen = []
    second = second_objective(recipe_from_dict(raw).tune, lambda p, t: seen.append(p.shape) or l1(p, t))
    y = torch.rand(2, 3, 16, 16)
    multi_loss(l1, y, y, y, torch.tensor([[0.5, 0.5], [0.0, 1.0]]), second)
    assert seen and all(shape[0] == 1 for shape in seen)  # the texture term sees one image at a time
    with pytest.raises(UsageError, match="texture_weight"):
        recipe_from_dict(raw | {"tune": {"objective": "texture", "texture_weight": -1}})


def test_channels_last_is_refused_for_a_tunable_model_in_one_line(tiny_tunable_arch, image_folder, tmp_path):
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "run", iterations=1))
    raw["model"] = {"architecture": "tunable_mallenet_tiny", "name": "tunable_mallenet_tiny.t"}
    raw["run"] |= {"channels_last": True}
    raw["tune"] = {"nu": 0.9}
    with pytest.raises(UsageError, match="channels_last"):
        train(recipe_from_dict(raw))


def test_with_a_teacher_its_output_is_the_multi_loss_y(tiny_tunable_arch, image_folder, tmp_path, monkeypatch):
    from restorekit.train import loop

    plain = train(recipe_for(image_folder, tmp_path / "plain", iterations=1))
    raw = recipe_to_dict(tunable_recipe(image_folder, tmp_path / "tunable", plain, iterations=2))
    raw["distill"] = {"teacher": str(plain), "dtype": "fp32"}
    seen = []

    def recording(loss_fn, prediction, reference, target, w, objective=None):
        seen.append((reference, target, w))
        return multi_loss(loss_fn, prediction, reference, target, w, objective)

    monkeypatch.setattr(loop, "load_teacher", lambda recipe, device: lambda noisy, level: torch.full_like(noisy, 0.25))
    monkeypatch.setattr(loop, "multi_loss", recording)
    load_model(train(recipe_from_dict(raw)))
    assert len(seen) == 2
    for reference, target, w in seen:
        assert torch.equal(reference, torch.full_like(reference, 0.25))
        retained = target - 0.25  # ω2·ν·(z − t): zero exactly where ω2 is
        assert all((retained[i].abs().max() == 0) == (w[i, 1] == 0) for i in range(len(w)))


def test_a_teacher_is_named_in_what_omega_means_and_a_tunable_teacher_is_refused(
    tiny_tunable_arch, image_folder, tmp_path
):
    from restorekit.train.loop import load_teacher, omega_metadata

    plain = train(recipe_for(image_folder, tmp_path / "plain", iterations=1))
    raw = recipe_to_dict(tunable_recipe(image_folder, tmp_path / "tunable", plain, iterations=1))
    tunable = load_model(train(recipe_from_dict(raw)))
    assert "y" not in omega_metadata(tunable, recipe_from_dict(raw))
    raw["distill"] = {"teacher": str(plain), "dtype": "fp32"}
    meta = omega_metadata(tunable, recipe_from_dict(raw))
    assert meta["y"] == {"teacher": str(plain), "dtype": "fp32"} and str(plain) in meta["objective"]
    raw["distill"]["teacher"] = str(tmp_path / "tunable" / "tunable_mallenet_tiny.test.safetensors")
    with pytest.raises(UsageError, match="not tunable"):
        load_teacher(recipe_from_dict(raw), torch.device("cpu"))


def test_the_shipped_tunable_photo_recipes_load():
    from restorekit.train.config import load_recipe

    recipes = Path(__file__).parents[2] / "weights" / "recipes"
    tunable = load_recipe(recipes / "tunable_acdanet_m3s_static.real_color.yaml")
    retain = load_recipe(recipes / "acdanet_m3s_static.real_color_retain.yaml")
    assert tunable.model.architecture == f"tunable_{retain.model.architecture}"
    assert tunable.distill.teacher == retain.distill.teacher == tunable.model.init == retain.model.init
    assert (tunable.tune.fixed_w1, retain.tune.fixed_w1) == (None, 0.0) and tunable.data == retain.data
