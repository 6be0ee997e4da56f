"""Distillation: a larger ACDANet grown from a smaller one, and the teacher's share of the loss."""

from __future__ import annotations

import pytest
import torch

from restorekit.errors import UsageError
from restorekit.models import _architectures
from restorekit.models._weights import load_model, save_model
from restorekit.models.acdanet import GROWN_FROM, ACDANet, grown_state_dict
from restorekit.train.config import recipe_from_dict, recipe_to_dict
from restorekit.train.loop import distill_loss, initialize, train
from restorekit.train.losses import l1
from tests.train.conftest import recipe_for


def small(in_channels: int = 3) -> ACDANet:
    return ACDANet(in_channels, width=4, quarter_width=8, blocks=2, mixer="static")


def large(in_channels: int = 3) -> ACDANet:
    return ACDANet(in_channels, width=8, quarter_width=12, blocks=3, mixer="static")


@pytest.fixture
def growing_archs(monkeypatch):
    for name, build in (("acdanet_small", small), ("acdanet_large", large)):
        monkeypatch.setitem(_architectures._ARCHITECTURES, name, _architectures.Architecture(name, ACDANet, build))
    monkeypatch.setitem(GROWN_FROM, "acdanet_large", "acdanet_small")


def trained(module: ACDANet) -> ACDANet:
    """Random weights everywhere (the tails and blocks start near zero, which would hide a wrong placement)."""
    with torch.no_grad():
        for value in module.parameters():
            value.normal_(0, 0.3)
    return module.eval()


def test_a_grown_acdanet_computes_what_the_smaller_one_did_and_can_learn():
    torch.manual_seed(0)
    source, target = trained(small()), large()
    target.load_state_dict(grown_state_dict(target.state_dict(), source.state_dict()))
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), atol=1e-6, rtol=0)
    target(x).square().mean().backward()
    # The zeros that would carry an extra channel into an original one still get a gradient: they learn.
    assert target.down.weight.grad[:8, 16:].abs().sum() > 0
    assert target.body[0].reduce.weight.grad[:4, 8:].abs().sum() > 0


def test_growing_refuses_a_larger_source():
    with pytest.raises(ValueError, match="does not fit"):
        grown_state_dict(small().state_dict(), large().state_dict())


def test_a_grown_model_starts_from_its_smaller_twin(growing_archs, image_folder, tmp_path):
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "small", iterations=1))
    raw["model"] |= {"architecture": "acdanet_small", "name": "acdanet_small.test"}
    source = load_model(train(recipe_from_dict(raw))).eval()
    raw["model"] |= {"architecture": "acdanet_large", "name": "acdanet_large.test", "init": "unused"}
    raw["model"]["init"] = str(tmp_path / "small" / "acdanet_small.test.safetensors")
    model = large().eval()
    ema = {key: torch.zeros_like(value) for key, value in model.state_dict().items()}
    provenance = initialize(model, ema, recipe_from_dict(raw))
    assert provenance["reinitialised"] and all(key.startswith("body.2.") for key in provenance["reinitialised"])
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x, None), atol=1e-6, rtol=0)


def test_the_distillation_loss_mixes_teacher_and_clean(image_folder, tmp_path):
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path))
    prediction, clean, taught = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    for weight, expected in ((1.0, 0.5), (0.0, 1.0), (0.75, 0.625)):
        recipe = recipe_from_dict(raw | {"distill": {"teacher": "x.safetensors", "weight": weight}})
        assert distill_loss(l1, prediction, clean, taught, recipe).item() == pytest.approx(expected)


@pytest.mark.parametrize(
    "distill, message",
    [
        ({"teacher": "t", "weight": 1.5}, "distill.weight"),
        ({"teacher": "t", "dtype": "fp16"}, "distill.dtype"),
    ],
)
def test_bad_distill_sections_are_usage_errors(image_folder, tmp_path, distill, message):
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path)) | {"distill": distill}
    with pytest.raises(UsageError, match=message):
        recipe_from_dict(raw)


@pytest.mark.parametrize(
    "distill, tune",
    [({"teacher": "t", "weight": 0.5}, {}), ({"teacher": "t"}, {"objective": "detail"})],
)
def test_a_teacher_with_a_tune_section_is_the_multi_loss_y_only(image_folder, tmp_path, distill, tune):
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path))
    with pytest.raises(UsageError, match="distill with tune"):
        recipe_from_dict(raw | {"distill": distill, "tune": tune})
    assert recipe_from_dict(raw | {"distill": {"teacher": "t"}, "tune": {}}).distill.teacher == "t"


def test_a_distillation_recipe_trains_and_is_recorded_in_the_weights(tiny_arch, image_folder, tmp_path):
    teacher = train(recipe_for(image_folder, tmp_path / "teacher", iterations=2))
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path / "student", iterations=3))
    raw["distill"] = {"teacher": str(teacher), "weight": 1.0, "dtype": "fp32"}
    student = load_model(train(recipe_from_dict(raw)))
    recipe = student.metadata["recipe"]
    assert "distill" in recipe and str(teacher) in recipe


def test_an_eighth_level_starts_as_the_model_without_it_and_learns():
    torch.manual_seed(0)
    source = trained(small())
    target = ACDANet(3, width=4, quarter_width=8, blocks=2, mixer="static", eighth_width=8, eighth_blocks=1)
    assert target.requirements.size_multiple == 8 and target.requirements.receptive_field == 12 + 4 * 2 + 8 + 4
    target.load_state_dict(grown_state_dict(target.state_dict(), source.state_dict()))
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), atol=1e-6, rtol=0)
    target(x).square().mean().backward()
    assert target.eighth.up.weight.grad.abs().sum() > 0  # the level's zero output convolution learns
    assert GROWN_FROM["acdanet_m3_static"] == "acdanet_m_static"


def test_the_eighth_level_runs_after_the_quarter_blocks_it_is_told(tmp_path):
    torch.manual_seed(0)
    model = trained(
        ACDANet(3, width=4, quarter_width=8, blocks=3, mixer="static", eighth_width=8, eighth_blocks=1, eighth_after=2)
    )
    save_model(model, tmp_path / "m.safetensors", "acdanet_m3_static.test")  # a file records where the level runs
    assert load_model(tmp_path / "m.safetensors").eighth_after == 2
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        half = model.encode(model.head(x))
        quarter = model.eighth(model.body[1](model.body[0](model.down(half))))
        half = model.decode(model.up(model.body[2](quarter), add=half))
        expected = x - model.tail(half)
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=0)
    assert ACDANet(3, blocks=3, mixer="static", eighth_width=8, eighth_blocks=1).eighth_after == 1  # half, rounded down
    with pytest.raises(ValueError, match="eighth_after"):
        ACDANet(3, blocks=3, mixer="static", eighth_width=8, eighth_blocks=1, eighth_after=4)


def deep(in_channels: int = 3) -> ACDANet:
    return ACDANet(in_channels, width=4, quarter_width=8, blocks=4, mixer="static", eighth_width=8, eighth_blocks=1)


def slim(in_channels: int = 3) -> ACDANet:
    return ACDANet(
        in_channels, width=4, quarter_width=8, blocks=3, mixer="static", eighth_width=8, eighth_blocks=2, eighth_after=2
    )


def test_a_slimmer_model_starts_from_the_deeper_one_without_its_last_quarter_block(monkeypatch, image_folder, tmp_path):
    for name, build in (("acdanet_deep", deep), ("acdanet_slim", slim)):
        monkeypatch.setitem(_architectures._ARCHITECTURES, name, _architectures.Architecture(name, ACDANet, build))
    monkeypatch.setitem(GROWN_FROM, "acdanet_slim", "acdanet_deep")
    torch.manual_seed(0)
    source, path = trained(deep()), tmp_path / "deep.safetensors"
    save_model(source, path, "acdanet_deep.test")
    raw = recipe_to_dict(recipe_for(image_folder, tmp_path))
    raw["model"] |= {"architecture": "acdanet_slim", "name": "acdanet_slim.test", "init": str(path)}
    model = slim().eval()
    ema = {key: torch.zeros_like(value) for key, value in model.state_dict().items()}
    provenance = initialize(model, ema, recipe_from_dict(raw))
    assert provenance["dropped"] and all(key.startswith("body.3.") for key in provenance["dropped"])
    assert provenance["reinitialised"] and all(key.startswith("eighth.body.1.") for key in provenance["reinitialised"])
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        source.body = source.body[:3]  # what the slim model computes at the start: the deep one without block 4
        torch.testing.assert_close(model(x), source(x), atol=1e-5, rtol=0)
    assert GROWN_FROM["acdanet_m3s_static"] == "acdanet_m3_static"
