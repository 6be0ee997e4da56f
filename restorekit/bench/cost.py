"""Model cost: parameters and FLOPs (PyTorch's flop counter), for `restorekit models --architectures`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# Published GFLOPs at 256×256 (MalleConv paper, Table 1), shown beside our count; not measured here.
PAPER_GFLOPS = {"mallenet_s": 2.93, "mallenet_m": 9.36, "mallenet_l": 33.47, "mallenet_xl": 181.89}


def model_cost(model: nn.Module, height: int = 256, width: int = 256) -> dict[str, Any]:
    """Parameters and forward GFLOPs of ``model`` on one ``height × width`` image.

    FLOPs are PyTorch's count (2 per multiply-add) of convolutions and matrix products; element-wise
    work (activations, the per-pixel malleable filtering) is not counted, as in the papers' tables. A tunable
    model is counted at one setting (equal weights), folded into the plain model that inference runs.
    """
    req = model.requirements
    x = torch.rand(1, req.in_channels, height, width)
    sigma = torch.full((1, 1, height, width), 25 / 255)
    count = len(req.tune_parameters)
    runs = model.fold((1 / count,) * count) if count else model
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        runs(x, sigma)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "gflops": counter.get_total_flops() / 1e9,
        "size": f"{height}x{width}",
    }
