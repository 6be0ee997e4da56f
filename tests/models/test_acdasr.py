"""ACDA-SR: shapes, the bicubic start, requirements, validation, the static ablation, weights round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from restorekit.layers.acda import ACDAConv, DynamicBottleneck
from restorekit.models import create_model
from restorekit.models._weights import load_model, read_metadata, save_model
from restorekit.models.acdasr import ACDASR, acdasr_s, acdasr_s_static


def tiny_acdasr(scale: int = 2, in_channels: int = 3, mixer: str = "acda", seed: int = 0) -> ACDASR:
    """A tiny ACDA-SR whose zero-initialised layers are made random, so that every part contributes."""
    torch.manual_seed(seed)
    model = ACDASR(scale=scale, in_channels=in_channels, width=8, blocks=2, mixer=mixer)
    with torch.no_grad():
        for block in model.body:
            block.expand.weight.normal_(std=0.3)
        model.tail[-1].weight.normal_(std=0.05)
    return model.eval()


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


@pytest.mark.parametrize("in_channels", [3, 1])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_the_input_size_times_the_scale(scale, in_channels):
    model = tiny_acdasr(scale, in_channels)
    x = torch.rand(2, in_channels, 7, 9, generator=torch.Generator().manual_seed(scale))
    with torch.no_grad():
        y = model(x, torch.zeros(2, 1, 7, 9))
    assert y.shape == (2, in_channels, 7 * scale, 9 * scale) and torch.isfinite(y).all()
    assert not torch.allclose(y, bicubic(x, scale), atol=1e-3)  # the random tail and blocks contribute


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_a_fresh_model_starts_as_bicubic_upsampling(scale):
    torch.manual_seed(scale)
    model = create_model("acdasr_s", pretrained=False) if scale == 2 else acdasr_s(scale=scale).eval()
    x = torch.rand(1, 3, 11, 13, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, 11 * scale, 13 * scale)
    assert (y - bicubic(x, scale)).abs().max().item() < 0.03


def test_sigma_is_accepted_and_ignored():
    model = tiny_acdasr(3)
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x), model(x, torch.full((1, 1, 6, 5), 0.2)))


@pytest.mark.parametrize("build", [acdasr_s, acdasr_s_static])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_requirements(build, scale):
    req = build(scale=scale).requirements
    assert (req.task, req.scale, req.sigma_range) == ("sr", scale, None)
    assert req.in_channels == req.out_channels == 3 and req.size_multiple == 1
    assert req.min_size >= 1 and 0 < req.receptive_field <= 64 and req.tiling == "supported"
    gray = build(scale=scale, in_channels=1).requirements
    assert gray.in_channels == gray.out_channels == 1


@pytest.mark.parametrize("scale", [1, 5, 0, 2.5, "2"])
def test_invalid_scale_is_a_value_error(scale):
    with pytest.raises(ValueError, match="scale"):
        ACDASR(scale=scale, width=8, blocks=1)


def test_invalid_mixer_is_a_value_error():
    with pytest.raises(ValueError, match="mixer"):
        ACDASR(width=8, blocks=1, mixer="dynamic")


def test_static_variant_has_no_acda_layers():
    static, dynamic = acdasr_s_static(), acdasr_s()
    assert not any(isinstance(m, ACDAConv) for m in static.modules())
    assert sum(isinstance(m, ACDAConv) for m in dynamic.modules()) == 10
    assert sum(isinstance(m, DynamicBottleneck) for m in static.modules()) == 10
    assert static.hyperparameters["mixer"] == "static" and dynamic.hyperparameters["mixer"] == "acda"
    x = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert static.eval()(x).shape == (1, 3, 10, 14)


def test_hyperparameters_are_recorded():
    model = acdasr_s(scale=3, in_channels=1)
    assert model.hyperparameters == {
        "scale": 3,
        "in_channels": 1,
        "width": 64,
        "blocks": 10,
        "mixer": "acda",
        "kernel_size": 3,
        "atoms": 4,
        "bases_per_scale": 6,
        "generator_width": 16,
    }
    assert tiny_acdasr(4, mixer="static").hyperparameters["mixer"] == "static"


@pytest.mark.parametrize(("scale", "mixer"), [(3, "acda"), (2, "static")])
def test_weights_round_trip(tmp_path, scale, mixer):
    model = tiny_acdasr(scale, mixer=mixer)
    name = "acdasr_s.tiny" if mixer == "acda" else "acdasr_s_static.tiny"
    path = tmp_path / "tiny_sr.safetensors"
    save_model(model, path, name=name, training={"iterations": 2}, license="test")
    assert read_metadata(path)["hyperparameters"] == model.hyperparameters
    loaded = create_model(str(path))
    assert type(loaded) is ACDASR and loaded.name == name and load_model(path).requirements == model.requirements
    assert loaded.hyperparameters == model.hyperparameters
    x = torch.rand(1, 3, 9, 7, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
