"""Checkpoints for exact resume, as safetensors (tensors) + JSON metadata. Never pickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn


def save_checkpoint(
    path: Path,
    model: nn.Module,
    ema: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: dict[str, Any],
) -> None:
    """Write everything a run needs to continue bit-for-bit: weights, EMA, Adam moments, RNG states.

    ``state`` holds JSON-able scalars (step, numpy RNG state, best validation, …).
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v for k, v in ema.items()}
    for index, param in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        for key, value in optimizer.state.get(param, {}).items():
            tensors[f"optim.{index}.{key}"] = value.reshape(-1) if value.dim() == 0 else value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(save(tensors, metadata={"state": json.dumps(state)}))  # the umask sets the mode (save_file: 0600)
    tmp.replace(path)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    ema: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` in place; returns its ``state``."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        state = json.loads(f.metadata()["state"])
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    for key in ema:
        ema[key].copy_(tensors[f"ema.{key}"])
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        prefix = f"optim.{index}."
        entries = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if entries:
            entries["step"] = entries["step"].reshape(())
            optimizer.state[param] = {k: v.to(param.device) for k, v in entries.items()}
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    return state
