"""Tunable ACDA-SR: starts as the plain model it expands, folds at any ω into the plain ACDA-SR it computes."""

from __future__ import annotations

import pytest
import torch

from restorekit.layers.tunable import expand_state_dict
from restorekit.models.acdasr import ACDASR
from restorekit.models.tunable_acdasr import TunableACDASR


def _tiny(scale: int = 2) -> tuple[ACDASR, TunableACDASR]:
    torch.manual_seed(0)
    plain = ACDASR(scale=scale, width=8, blocks=2).eval()
    with torch.no_grad():
        for block in plain.body:
            block.expand.weight.normal_(std=0.3)  # the blocks contribute (they start as the identity)
        plain.tail[-1].weight.normal_(std=0.05)
    tunable = TunableACDASR(scale=scale, width=8, blocks=2).eval()
    return plain, tunable


@pytest.mark.parametrize("scale", [2, 4])
def test_expanded_from_a_plain_model_it_computes_that_model_at_every_omega(scale):
    plain, tunable = _tiny(scale)
    tunable.load_state_dict(expand_state_dict(tunable, plain.state_dict()), strict=True)
    x = torch.rand(2, 3, 12, 10)
    for w in ((1.0, 0.0), (0.3, 0.7), (0.0, 1.0)):
        out = tunable(x, None, torch.tensor([w, w]))
        torch.testing.assert_close(out, plain(x), rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 3, 12 * scale, 10 * scale)


def test_fold_is_the_tunable_model_at_that_omega_and_the_ends_differ():
    _, tunable = _tiny()
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in tunable.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)  # experts (and φ) apart
    x = torch.rand(1, 3, 9, 11)
    outputs = []
    for w in ((1.0, 0.0), (0.4, 0.6), (0.0, 1.0)):
        folded = tunable.fold(w)
        assert type(folded) is ACDASR and folded.requirements.scale == 2
        expected = tunable(x, None, torch.tensor([w]))
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-5)
        outputs.append(expected)
    assert (outputs[0] - outputs[2]).abs().max() > 1e-3
    assert tunable.requirements.tune_parameters == ("fidelity", "detail") and tunable.requirements.task == "sr"
