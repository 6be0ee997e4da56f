"""Checkpoints: written with the mode the umask gives, like any other file the user owns, and read back exactly."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from torch import nn

from restorekit.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoint_mode_follows_the_umask(tmp_path, umask):
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    path = tmp_path / "checkpoint.safetensors"
    previous = os.umask(umask)
    try:
        save_checkpoint(path, model, ema, optimizer, generator, {"step": 7, "numpy": np.zeros(2).tolist()})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert not path.with_suffix(".tmp").exists()
    restored = nn.Linear(3, 2)
    state = load_checkpoint(path, restored, ema, torch.optim.Adam(restored.parameters()), torch.Generator())
    assert state["step"] == 7 and torch.equal(restored.weight, model.weight)
