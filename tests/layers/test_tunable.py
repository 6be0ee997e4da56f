"""Tunable layers and models: start from a plain model exactly, fold exactly, per-sample ω in a batch."""

from __future__ import annotations

import pytest
import torch

from restorekit.errors import UsageError
from restorekit.layers.tunable import (
    Phi,
    TunableConv2d,
    TunableDynamicBottleneck,
    TunablePReLU,
    expand_state_dict,
    fold_state_dict,
)
from restorekit.models.mallenet import MalleNet
from restorekit.models.tunable_mallenet import TunableMalleNet

TINY = {"width": 4, "blocks": (1, 1, 1, 1), "predictor_width": 4}


def tiny_pair(in_channels=3):
    torch.manual_seed(0)
    plain = MalleNet(in_channels=in_channels, **TINY).eval()
    tunable = TunableMalleNet(in_channels=in_channels, **TINY).eval()
    tunable.load_state_dict(expand_state_dict(tunable, plain.state_dict()))
    return plain, tunable


def perturb(model, scale=0.05, seed=1):
    """Make the experts differ (as training does) and φ not the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return model


def inputs(channels=3, batch=1, size=32):
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(batch, channels, size, size, generator=generator)
    return x, torch.full((batch, 1, size, size), 25 / 255)


def test_phi_starts_as_the_identity():
    w = torch.tensor([[0.3, 0.7]])
    assert torch.equal(Phi(2)(w), w)


@pytest.mark.parametrize("w", [(1.0, 0.0), (0.0, 1.0), (0.3, 0.7)])
def test_expanded_model_computes_the_plain_model_everywhere_on_the_simplex(w):
    plain, tunable = tiny_pair()
    x, sigma = inputs()
    with torch.no_grad():
        assert torch.allclose(tunable(x, sigma, torch.tensor([w])), plain(x, sigma), atol=1e-5)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("w", [(1.0, 0.0), (0.0, 1.0), (0.25, 0.75)])
def test_fold_is_the_tunable_model_at_that_setting(in_channels, w):
    _, tunable = tiny_pair(in_channels)
    perturb(tunable)
    x, sigma = inputs(in_channels)
    plain = tunable.fold(w)
    assert type(plain) is MalleNet
    with torch.no_grad():
        assert torch.allclose(plain(x, sigma), tunable(x, sigma, torch.tensor([w])), atol=1e-5)


def test_settings_differ_once_the_experts_do():
    _, tunable = tiny_pair()
    perturb(tunable)
    x, sigma = inputs()
    with torch.no_grad():
        a = tunable(x, sigma, torch.tensor([[1.0, 0.0]]))
        b = tunable(x, sigma, torch.tensor([[0.0, 1.0]]))
    assert (a - b).abs().max() > 1e-3


def test_per_sample_settings_in_one_batch_equal_separate_runs():
    _, tunable = tiny_pair()
    perturb(tunable)
    x, sigma = inputs(batch=3)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.4]])
    with torch.no_grad():
        batched = tunable(x, sigma, w)
        for b in range(3):
            single = tunable(x[b : b + 1], sigma[b : b + 1], w[b : b + 1])
            assert torch.allclose(batched[b : b + 1], single, atol=1e-5)


def test_gradients_reach_every_expert_and_phi():
    _, tunable = tiny_pair()
    tunable.train()
    x, sigma = inputs(batch=2)
    tunable(x, sigma, torch.tensor([[0.2, 0.8], [0.9, 0.1]])).square().mean().backward()
    named = dict(tunable.named_parameters())
    assert all(p.grad is not None for p in named.values())
    # A PReLU whose inputs happen to be all positive gets a zero gradient; every convolution gets one, and its
    # two experts get different ones (the samples weight them differently).
    for name, parameter in named.items():
        if name.endswith("weight") and parameter.dim() == 5:
            assert parameter.grad.abs().sum() > 0, name
            assert not torch.allclose(parameter.grad[0], parameter.grad[1]), name
        if name.endswith("phi.weight") and ".act" not in name:
            assert parameter.grad.abs().sum() > 0, name


def test_fold_state_dict_mixes_through_phi():
    layer = TunableConv2d(2, 3, 3, params=2, padding=1)
    with torch.no_grad():
        layer.phi.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # φ swaps the two parameters
    state = fold_state_dict(layer, torch.tensor([1.0, 0.0]))
    assert torch.equal(state["weight"], layer.weight[1])
    assert set(state) == {"weight", "bias"}
    prelu = TunablePReLU(3)
    assert set(fold_state_dict(prelu, torch.tensor([0.5, 0.5]))) == {"weight"}


def test_fold_checks_the_number_of_parameters():
    from restorekit.errors import UsageError

    _, tunable = tiny_pair()
    with pytest.raises(UsageError, match="2 values"):
        tunable.fold((0.2, 0.3, 0.5))


def test_a_tunable_dynamic_bottleneck_takes_an_acda_or_a_static_mixer_only():
    static = TunableDynamicBottleneck(8, 3, 0, 0, 0, 2, "static")
    assert type(static.mixer) is TunableConv2d and tuple(static.mixer.weight.shape) == (2, 4, 4, 3, 3)
    with pytest.raises(UsageError, match="mixer"):
        TunableDynamicBottleneck(8, 3, 0, 0, 0, 2, "dynamic")
