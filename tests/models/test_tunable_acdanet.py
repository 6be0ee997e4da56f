"""Tunable ACDANet: starts as the static ACDANet it expands, folds at any ω into the plain ACDANet it computes."""

from __future__ import annotations

import pytest
import torch

from restorekit.layers.tunable import expand_state_dict
from restorekit.models import create_model
from restorekit.models._architectures import architecture
from restorekit.models.acdanet import ACDANet
from restorekit.models.tunable_acdanet import TunableACDANet

SHAPE = dict(width=4, quarter_width=8, blocks=3, mixer="static", eighth_width=8, eighth_blocks=2, eighth_after=2)


def _plain(**overrides) -> ACDANet:
    torch.manual_seed(0)
    plain = ACDANet(3, **(SHAPE | overrides)).eval()
    with torch.no_grad():
        for value in plain.parameters():
            value.normal_(0, 0.3)  # blocks, the eighth level and the tail start near zero, which would hide a slip
    return plain


@pytest.mark.parametrize("eighth_after", [0, 2, 3])
def test_expanded_from_a_plain_model_it_computes_that_model_at_every_omega(eighth_after):
    plain = _plain(eighth_after=eighth_after)
    tunable = TunableACDANet(3, **(SHAPE | {"eighth_after": eighth_after})).eval()
    tunable.load_state_dict(expand_state_dict(tunable, plain.state_dict()), strict=True)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        for w in ((1.0, 0.0), (0.3, 0.7), (0.0, 1.0)):
            torch.testing.assert_close(tunable(x, None, torch.tensor([w, w])), plain(x), rtol=1e-4, atol=1e-4)


def test_fold_is_the_tunable_model_at_that_omega_per_sample_and_the_ends_differ():
    plain = _plain()
    tunable = TunableACDANet(3, **SHAPE).eval()
    tunable.load_state_dict(expand_state_dict(tunable, plain.state_dict()), strict=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in tunable.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)  # experts (and φ) apart
        x = torch.rand(2, 3, 16, 24)
        settings = ((1.0, 0.0), (0.4, 0.6), (0.0, 1.0))
        outputs = [tunable(x, None, torch.tensor([w])) for w in settings]
        for w, expected in zip(settings, outputs, strict=True):
            folded = tunable.fold(w)
            assert type(folded) is ACDANet and folded.eighth_after == 2
            torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5)
        mixed = tunable(x, None, torch.tensor([settings[0], settings[2]]))  # each sample its own ω
        torch.testing.assert_close(mixed, torch.cat([outputs[0][:1], outputs[2][1:]]), rtol=1e-4, atol=1e-5)
    assert (outputs[0] - outputs[2]).abs().max() > 1e-3
    req = tunable.requirements
    assert req.tune_parameters == ("remove noise", "keep grain and fine detail") and req.tune_domain == "simplex"
    assert (req.receptive_field, req.size_multiple) == (plain.requirements.receptive_field, 8)


@pytest.mark.parametrize("options", [{"mixer": "acda"}, {"tv_blocks": 1}])
def test_only_the_static_family_is_tunable(options):
    with pytest.raises(ValueError, match="static"):
        TunableACDANet(3, **(SHAPE | options))


def test_the_registered_variant_is_the_photo_default_s_backbone():
    tunable = architecture("tunable_acdanet_m3s_static").build(in_channels=3)
    plain = create_model("acdanet_m3s_static", pretrained=False)
    assert tunable.fold((1.0, 0.0)).hyperparameters == plain.hyperparameters


def test_from_scratch_it_starts_as_acdanet_does_close_to_the_identity():
    torch.manual_seed(0)
    tunable, plain = TunableACDANet(3, **SHAPE).eval(), ACDANet(3, **SHAPE).eval()
    zeros = {k for k, v in plain.state_dict().items() if not v.any()}
    assert zeros and zeros == {k for k, v in tunable.state_dict().items() if not v.any() and "phi" not in k}
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        assert (tunable(x, None, torch.tensor([[0.5, 0.5]])) - x).abs().max() < 0.02
