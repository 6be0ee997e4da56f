"""restorekit.tune: ω checked against the model's domain, the folded model cached but never stale, sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import restorekit
from restorekit.errors import UsageError
from restorekit.inference import api, sweep
from restorekit.models import Requirements
from tests.conftest import noisy_pixels, tiny_tunable


@pytest.fixture
def pixels():
    return noisy_pixels(32, 48, 3)


def test_tune_is_the_tunable_model_at_that_setting(pixels):
    net = tiny_tunable()
    out = restorekit.tune(pixels, (0.3, 0.7), sigma=25, model=net, device="cpu", dtype="fp32")
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = net(x, torch.full((1, 1, 32, 48), 25 / 255), torch.tensor([[0.3, 0.7]])).clamp(0, 1)
    assert np.abs(out - expected[0].permute(1, 2, 0).numpy()).max() < 1e-5
    other = restorekit.tune(pixels, (1.0, 0.0), sigma=25, model=net, device="cpu", dtype="fp32")
    assert np.abs(out - other).max() > 1e-3


def test_run_info_records_the_setting(pixels):
    _, info = api.tune_image(pixels, [0.5, 0.5], 25, tiny_tunable(), "cpu")
    assert info.w == (0.5, 0.5)
    assert info.as_dict()["w"] == [0.5, 0.5]


@pytest.mark.parametrize("w", [(0.3,), (0.3, 0.8), (1.2, -0.2), (float("nan"), 1.0), "ab", None])
def test_settings_off_the_domain_are_usage_errors_naming_it(pixels, w):
    with pytest.raises(UsageError, match="sum to 1"):
        restorekit.tune(pixels, w, sigma=25, model=tiny_tunable(), device="cpu")


def test_box_domain_accepts_any_values_in_the_unit_square():
    req = Requirements("denoise", 3, 3, tune_parameters=("noise", "blur"), tune_domain="box")
    assert api.check_omega((0.2, 0.9), req, "m") == (0.2, 0.9)
    with pytest.raises(UsageError, match=r"in \[0, 1\]"):
        api.check_omega((0.2, 1.5), req, "m")


def test_a_plain_model_is_refused(pixels, tiny_model):
    with pytest.raises(UsageError, match="tunable model"):
        restorekit.tune(pixels, (0.5, 0.5), sigma=25, model=tiny_model, device="cpu")


def test_folded_model_is_cached_per_setting_and_never_stale():
    net = tiny_tunable()
    first = api.fold_tunable(net, (0.3, 0.7))
    assert api.fold_tunable(net, (0.3, 0.7)) is first
    assert api.fold_tunable(net, (0.4, 0.6)) is not first
    x, level = torch.rand(1, 3, 16, 16), torch.full((1, 1, 16, 16), 0.1)
    with torch.no_grad():
        before = api.fold_tunable(net, (0.3, 0.7))(x, level)
        net.tail.bias.add_(0.5)  # weights change in place (training, load_state_dict)
        after = api.fold_tunable(net, (0.3, 0.7))(x, level)
    assert (after - before).abs().max() > 0.1
    net.load_state_dict(tiny_tunable().state_dict())
    with torch.no_grad():
        assert torch.allclose(api.fold_tunable(net, (0.3, 0.7))(x, level), before, atol=1e-6)


def test_sweep_runs_from_retention_to_removal_and_scores_against_the_reference(pixels):
    clean = noisy_pixels(32, 48, 3, seed=9)
    sheet, records, _ = sweep.sweep_image(pixels, 3, 25, tiny_tunable(), "cpu", clean=clean)
    assert [r["w"] for r in records] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    assert all({"psnr", "psnr_eta", "ms"} <= set(r) for r in records)
    assert sheet.shape == (32 + sweep.LABEL_HEIGHT, 3 * 48 + 2 * 4, 3)
    # at ω = (1, 0) the retention target is the clean image, so the two scores agree
    assert records[-1]["psnr"] == pytest.approx(records[-1]["psnr_eta"])


def test_scores_use_the_retention_target():
    clean = np.zeros((4, 4, 1), np.float32)
    noisy = np.full((4, 4, 1), 0.2, np.float32)
    kept = clean + 0.9 * (noisy - clean)
    assert sweep.scores(kept, noisy, clean, (0.0, 1.0), 0.9)["psnr_eta"] == float("inf")


def test_sweep_needs_two_settings():
    with pytest.raises(UsageError, match="≥ 2"):
        sweep.sweep_settings(1)
