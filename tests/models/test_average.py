"""Averages of denoisers (``"a+b"``): the mean of the members' outputs, merged requirements, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restorekit.errors import WeightsError
from restorekit.inference import api
from restorekit.models import _weights, create_model, default_model
from restorekit.models.acdanet import ACDANet
from restorekit.models.acdasr import acdasr_s
from restorekit.models.average import ModelAverage
from restorekit.models.mallenet import MalleNet


def blind_pair() -> tuple[MalleNet, ACDANet]:
    torch.manual_seed(0)
    mallenet = MalleNet(width=4, blocks=(1, 1, 1, 1), predictor_width=4, blind=True).eval()
    acdanet = ACDANet(width=4, quarter_width=8, blocks=1).eval()
    with torch.no_grad():
        acdanet.tail.weight.normal_(std=0.1)  # a member that changes its input
    return mallenet, acdanet


def test_the_average_is_the_mean_of_the_members_outputs():
    mallenet, acdanet = blind_pair()
    average = ModelAverage([mallenet, acdanet]).eval()
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        expected = (mallenet(x) + acdanet(x)) / 2
        torch.testing.assert_close(average(x), expected)
        assert not torch.allclose(mallenet(x), acdanet(x))


def test_the_average_needs_what_every_member_needs():
    req = ModelAverage(list(blind_pair())).requirements
    assert req.size_multiple == 8 and req.min_size == 16 and req.receptive_field == 64  # lcm(8, 4), max, max
    assert req.sigma_range is None and req.task == "denoise" and req.in_channels == req.out_channels == 3


def test_the_engine_runs_an_average_like_any_denoiser(monkeypatch):
    average = ModelAverage(list(blind_pair()))
    pixels = np.random.default_rng(0).random((37, 29, 3), dtype=np.float32)  # padded to multiples of 8
    out, info = api.denoise_image(pixels, None, average, "cpu", None, "fp32")
    assert out.shape == pixels.shape and info.sigma_source == "blind"
    monkeypatch.setenv(api.INFERENCE_ENV, "eager")
    eager, _ = api.denoise_image(pixels, None, average, "cpu", None, "fp32")
    assert np.abs(out - eager).max() <= 1e-4


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (lambda: [MalleNet(width=4, blocks=(1, 1, 1, 1), predictor_width=4, blind=True)], "two or more"),
        (lambda: [blind_pair()[0], MalleNet(width=4, blocks=(1, 1, 1, 1), predictor_width=4)], "blind"),
        (lambda: [blind_pair()[1], ACDANet(in_channels=1, width=4, quarter_width=8, blocks=1)], "3-channel"),
        (lambda: [blind_pair()[1], ACDANet(width=4, quarter_width=8, blocks=1, tv_blocks=1)], "layout-aware"),
        (lambda: [blind_pair()[1], acdasr_s()], "SR"),
    ],
)
def test_what_cannot_be_averaged_is_refused(members, message):
    with pytest.raises(WeightsError, match=message):
        ModelAverage(members())


def test_models_joined_by_plus_are_averaged():
    average = create_model("acdanet_s.real_color_nr2+acdanet_s_static.real_color_nr2")
    assert isinstance(average, ModelAverage)
    assert average.name == "acdanet_s.real_color_nr2+acdanet_s_static.real_color_nr2"
    assert [member.name for member in average.members] == [
        "acdanet_s.real_color_nr2",
        "acdanet_s_static.real_color_nr2",
    ]
    with pytest.raises(WeightsError, match="expected a shipped model name"):
        create_model("acdanet_s.real_color_nr2+nope")


def test_an_average_is_a_default_only_when_every_member_ships(monkeypatch):
    shipped = _weights.shipped()
    assert default_model(3, "real") == "acdanet_m3s_static.real_color"
    shipped.pop("acdanet_m3s_static.real_color")
    monkeypatch.setattr(_weights, "shipped", lambda: shipped)
    assert default_model(3, "real") == "mallenet_r.real_color+acdanet_s.real_color_nr2"
    shipped.pop("mallenet_r.real_color")
    assert default_model(3, "real") == "acdanet_s.real_color_nr2"
