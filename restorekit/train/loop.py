"""The training loop, as plain functions over a frozen :class:`Recipe`.

Data parallel. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the same loop runs in every process
with DistributedDataParallel (gloo on the CPU, nccl on CUDA, one GPU per process). Every process draws the
recipe's whole batch from the same seeded streams and trains on its slice, ``batch / WORLD_SIZE`` crops, so the
global batch is the recipe's and the gradient, averaged over the processes by DDP, is the single-process
mean up to float rounding (tested). The price is that each process prepares the whole batch (crops and noise,
cheap next to a training step) to keep one crop stream; the gain is that no data is sent between processes
and that every process's random state stays that of a single-process run, so a checkpoint written by rank 0
resumes every process exactly. Rank 0 alone keeps the EMA, validates, exports, checkpoints and logs; the
logged loss is the mean over the processes.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import restorekit
from restorekit._checks import check
from restorekit.errors import UsageError
from restorekit.inference.metrics import psnr
from restorekit.layers.tunable import expand_state_dict
from restorekit.layers.tv_conv import frame_coordinates
from restorekit.models._registry import architecture, create_model
from restorekit.models._weights import load_model, save_model
from restorekit.models.acdanet import GROWN_FROM, grown_state_dict
from restorekit.models.mallenet import BLIND_START_SIGMA, BLIND_TWINS, blind_state_dict
from restorekit.train.checkpoint import load_checkpoint, save_checkpoint
from restorekit.train.config import Recipe, TuneConfig, recipe_to_yaml
from restorekit.train.data import (
    add_awgn,
    degrade_mixture,
    downscale,
    draw_degradation,
    draw_omega,
    load_clean_images,
    sample_frame_patches,
    sample_patches,
)
from restorekit.train.degradations import degrade_real, degraded_pairs
from restorekit.train.losses import LOSSES, multi_loss, noise_target, texture_loss, unsharp_mask
from restorekit.train.shading import add_shaded_noise

CHECKPOINT = "checkpoint.safetensors"
LOG = "log.jsonl"
WEIGHTS_LICENSE = (
    "weights: Apache-2.0; trained on BSDS500 (CBSD432, research use), DnCNN Train400 and Wikimedia Commons "
    "photographs (CC, see SOURCES.md of the training set)"
)

ProgressFn = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process validates, exports, checkpoints and logs (rank 0)."""
        return self.rank == 0

    def share(self, batch: int) -> slice:
        """This process's slice of a global batch of ``batch`` items."""
        part = batch // self.size
        return slice(self.rank * part, (self.rank + 1) * part)


def world_from_env() -> World:
    """The :class:`World` that ``torchrun`` describes in ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``."""
    size = int(os.environ.get("WORLD_SIZE") or 1)
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK") or 0))


def build_model(recipe: Recipe) -> nn.Module:
    """The untrained model a recipe describes."""
    return architecture(recipe.model.architecture).build(**recipe.model.options)


def learning_rate(recipe: Recipe, step: int) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``min_lr`` at the last iteration."""
    optim = recipe.optim
    if step < optim.warmup:
        return optim.lr * (step + 1) / optim.warmup
    progress = (step - optim.warmup) / max(1, optim.iterations - optim.warmup)
    return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def initialize(model: nn.Module, ema: dict[str, torch.Tensor], recipe: Recipe) -> dict[str, Any]:
    """Start ``model`` and its EMA from the weights file ``recipe.model.init``; returns its provenance.

    The file may hold the same architecture, the plain twin of a tunable one (every expert starts as it), the
    twin of a layout-aware ``tv_`` one (whose TVConv layers then keep their fresh initialisation, zero at the
    output, so that the model starts as its twin), the σ-conditioned twin of a blind MalleNet-R (which starts
    as it at σ = ``BLIND_START_SIGMA``; :func:`~restorekit.models.mallenet.blind_state_dict`), or a
    super-resolution model of another factor: then every tensor but the factor-sized tail starts from it, or the
    model it grows from (``GROWN_FROM``; :func:`~restorekit.models.acdanet.grown_state_dict`): a smaller one, or one
    with more quarter blocks, whose last ones are dropped. The provenance lists the tensors left at their fresh
    initialisation (``reinitialised``) and those of the file left out (``dropped``).
    """
    source = load_model(recipe.model.init)
    weights = source.state_dict()
    fresh: list[str] = []
    dropped: list[str] = []
    if source.metadata["architecture"] == recipe.model.architecture:
        if source.requirements.task == "sr" and source.requirements.scale != model.requirements.scale:
            own = model.state_dict()
            fresh = sorted(key for key, value in weights.items() if value.shape != own[key].shape)
            weights = {key: weights[key] if key not in fresh else own[key] for key in own}
    elif recipe.model.architecture == f"tunable_{source.metadata['architecture']}":
        weights = expand_state_dict(model, weights)  # every expert starts as the trained plain model
    elif recipe.model.architecture == f"tv_{source.metadata['architecture']}":
        own = model.state_dict()
        fresh = sorted(key for key in own if key not in weights)  # the TVConv layers; every other tensor is shared
        weights = {key: weights.get(key, own[key]) for key in own}
    elif BLIND_TWINS.get(recipe.model.architecture) == source.metadata["architecture"]:
        weights = blind_state_dict(weights, source.requirements.in_channels, BLIND_START_SIGMA)
    elif GROWN_FROM.get(recipe.model.architecture) == source.metadata["architecture"]:
        own = model.state_dict()
        fresh = sorted(key for key in own if key not in weights)  # the extra blocks; the rest is grown from it
        dropped = sorted(key for key in weights if key not in own)  # a slimmer model's blocks past its last
        weights = grown_state_dict(own, weights)
    else:
        raise UsageError(
            f"model.init {recipe.model.init} is a {source.metadata['architecture']}, not a {recipe.model.architecture}"
        )
    model.load_state_dict(weights, strict=True)
    for key, value in ema.items():
        value.copy_(weights[key])
    digest = hashlib.sha256(Path(recipe.model.init).read_bytes()).hexdigest()
    provenance = {"weights": source.metadata["name"], "sha256": digest, "training": source.metadata.get("training")}
    return provenance | ({"reinitialised": fresh} if fresh else {}) | ({"dropped": dropped} if dropped else {})


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def validation_set(recipe: Recipe, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Centre crops of the held-out images and their noisy versions (σ = ``val_sigma``, fixed seed, float).

    For ``degradation: camera`` the crops go through the camera-noise synthesis instead (fixed seed), and the
    returned clean crops are the synthesis targets; for ``bicubic`` the "noisy" crops are the low-resolution
    inputs, and for ``real_sr`` the crops through the Real-ESRGAN degradation, crop ``i`` with seed 12345 + ``i``
    (:func:`~restorekit.train.degradations.degraded_pairs`); for ``shading`` see :func:`shading_validation_set`.

    Returns:
        ``(clean, noisy, frame)``: the crops, their degraded versions and, for ``shading``, the crops' frame
        coordinates (else ``None``).
    """
    if recipe.data.degradation == "shading":
        return shading_validation_set(recipe, images)
    crop = recipe.data.val_crop
    clean = []
    for image in images:
        top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
        clean.append(image[top : top + crop, left : left + crop])
    batch = torch.from_numpy(np.stack(clean)).permute(0, 3, 1, 2).float().div(255)
    generator = torch.Generator().manual_seed(12345)
    if recipe.data.degradation == "camera":  # the synthetic validation split: every crop through the synthesis
        noisy, target = degrade_mixture(batch, 1.0, 0.0, recipe.data.sigma, generator, recipe.data.camera_noise())
        return target, noisy, None
    if recipe.data.degradation == "bicubic":  # super-resolution: the crop and its bicubic downscale
        return batch, downscale(batch, recipe.data.scale), None
    if recipe.data.degradation == "real_sr":  # blind super-resolution: the crops' fixed-seed realistic degradation
        pairs = degraded_pairs([crop.astype(np.float32) / 255 for crop in clean], recipe.data.scale, seed=12345)
        return batch, torch.stack([low for _, low in pairs]), None
    sigma = torch.full((len(images),), recipe.data.val_sigma)
    return batch, add_awgn(batch, sigma, torch.zeros(len(images), dtype=torch.bool), generator), None


def shading_validation_set(recipe: Recipe, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The held-out images as frames for ``degradation: shading``: each scaled to a short side of ``val_crop``
    (antialiased bilinear), its centre ``val_crop``² kept (the whole short side, so two edges of the frame), and
    shaded noise of level ``val_sigma`` added with a fixed seed (float).

    Returns:
        ``(clean, noisy, frame)``, the last the crops' frame coordinates ``(N, 2, val_crop, val_crop)``.
    """
    data, crop = recipe.data, recipe.data.val_crop
    clean, coords, sizes = [], [], []
    for image in images:
        height, width = image.shape[:2]
        scale = crop / min(height, width)
        size = (max(crop, round(height * scale)), max(crop, round(width * scale)))
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
        frame = F.interpolate(pixels[None], size=size, mode="bilinear", antialias=True)[0].clamp(0, 1)
        top, left = (size[0] - crop) // 2, (size[1] - crop) // 2
        clean.append(frame[:, top : top + crop, left : left + crop])
        rows, cols = torch.arange(top, top + crop), torch.arange(left, left + crop)
        coords.append(frame_coordinates(*size, rows, cols)[0])
        sizes.append(size)
    batch, frame = torch.stack(clean), torch.stack(coords)
    generator = torch.Generator().manual_seed(12345)
    sigma, as_file = torch.full((len(images),), data.val_sigma), torch.zeros(len(images), dtype=torch.bool)
    frame_size = torch.tensor(sizes, dtype=torch.float32)
    noisy, _ = add_shaded_noise(batch, frame, frame_size, sigma, as_file, generator, data.corner_gain, data.axis_offset)
    return batch, noisy, frame


def is_layout_aware(model: nn.Module) -> bool:
    """Whether ``model`` takes the frame coordinates of its input (``model(x, sigma, frame=…)``)."""
    return model.requirements.layout_aware


def is_tunable(model: nn.Module) -> bool:
    """Whether ``model`` takes interactive parameters ω (``model(x, sigma, w)``)."""
    return bool(model.requirements.tune_parameters)


@torch.no_grad()
def validate(
    model: nn.Module,
    clean: torch.Tensor,
    noisy: torch.Tensor,
    sigma: float,
    device: torch.device,
    w: tuple[float, float] | None = None,
    tune: TuneConfig | None = None,
    frame: torch.Tensor | None = None,
) -> float:
    """Mean PSNR over the validation crops.

    With ``w`` and ``tune`` (a recipe's ``tune`` section) the target is the clean crop at ω = (1, 0) and the
    second objective's target (:func:`tune_target`) at ω = (0, 1), the noise-retention target ``y_η`` of that
    setting between them; a tunable model runs at that ω. The targets are built from the clean crop even where
    training put a distillation teacher's output in its place (the distance to the truth, not to the teacher).
    ``frame`` (the crops' frame coordinates, ``(N, 2, H, W)``) goes to a layout-aware model.
    """
    scores = []
    for index in range(len(clean)):
        x = noisy[index : index + 1].to(device)
        level = torch.full_like(x[:, :1], sigma / 255)
        extra = (torch.tensor([w], device=device),) if w is not None and is_tunable(model) else ()
        where = {"frame": frame[index : index + 1].to(device)} if frame is not None and is_layout_aware(model) else {}
        target = clean[index : index + 1]
        if w is not None and tune is not None and w[1] > 0:
            target = tune_target(tune, target, noisy[index : index + 1], torch.tensor([w[1]]))
        scores.append(psnr(model(x, level, *extra, **where).clamp(0, 1).cpu(), target.clamp(0, 1)))
    return float(np.mean(scores))


def second_objective(
    tune: TuneConfig, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The multi-loss's second term as a loss of ``(ŷ, y)`` where the objective has no target (``texture``)."""
    if tune.objective != "texture":
        return None
    return functools.partial(texture_loss, loss_fn, sigma=tune.detail_sigma, weight=tune.texture_weight)


def tune_target(tune: TuneConfig, clean: torch.Tensor, noisy: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """The second objective's target of the multi-loss (:class:`~restorekit.train.config.TuneConfig`): the
    noise-retention ``y_η = y + ω2·ν·(z − y)``, the unsharp-masked ``y``, or ``y`` itself (``texture``: the
    second term is then :func:`second_objective`, and validation at ω = (0, 1) measures PSNR to y).
    Shapes ``(B, C, H, W)``, ``w2 (B,)``."""
    if tune.objective == "detail":
        return unsharp_mask(clean, tune.detail_sigma, tune.detail_amount)
    if tune.objective == "texture":
        return clean
    return noise_target(clean, noisy, w2, tune.nu)


def draw_batch(
    recipe: Recipe, images: list[np.ndarray], data_rng: np.random.Generator, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One training batch: crops from ``data_rng``, degraded as the recipe says with ``generator``.

    Returns:
        ``(clean, noisy, level, frame)``: targets and inputs ``(B, C, H, W)``, the σ map ``(B, 1, H, W)`` (σ/255;
        zeros for the blind degradations, the exact per-pixel level for ``shading``) and, for ``shading``, the
        crops' frame coordinates ``(B, 2, H, W)`` (else ``None``).
    """
    data = recipe.data
    if data.degradation == "shading":
        clean, frame, frame_size = sample_frame_patches(
            images, data.batch, data.patch, data_rng, data.frame_side, data.channel_shuffle
        )
        sigma, as_file = draw_degradation(data.batch, data.sigma, data.file_fraction, generator)
        shading = (data.corner_gain, data.axis_offset)
        noisy, level = add_shaded_noise(clean, frame, frame_size, sigma, as_file, generator, *shading)
        return clean, noisy, level / 255, frame
    clean = sample_patches(images, data.batch, data.patch, data_rng, data.rescale, data.channel_shuffle)
    if data.degradation == "camera":
        noisy, clean = degrade_mixture(
            clean, data.camera_fraction, data.clean_fraction, data.sigma, generator, data.camera_noise()
        )
        sigma = torch.zeros(data.batch)  # blind models take no noise level
    elif data.degradation == "bicubic":
        noisy, sigma = downscale(clean, data.scale), torch.zeros(data.batch)
    elif data.degradation == "real_sr":
        noisy, sigma = degrade_real(clean, data.scale, generator), torch.zeros(data.batch)
    else:
        sigma, as_file = draw_degradation(data.batch, data.sigma, data.file_fraction, generator)
        noisy = add_awgn(clean, sigma, as_file, generator)
    return clean, noisy, (sigma / 255).view(-1, 1, 1, 1).expand(-1, 1, *noisy.shape[-2:]), None


def train(recipe: Recipe, progress: ProgressFn | None = None) -> Path:
    """Train (or resume) the model a recipe describes and export its EMA weights.

    Writes into ``recipe.run.out``: ``checkpoint.safetensors`` (exact resume), ``log.jsonl`` and
    ``<model name>.safetensors`` (EMA weights with metadata, refreshed at every validation). Under ``torchrun``
    it trains data-parallel (see the module docstring); ``progress`` is then called in every process (the
    validation fields of its record only on rank 0), and ``run.out`` must be on a file system that every
    process sees for a resume.

    Returns:
        Path of the exported weights.

    Raises:
        UsageError: Under ``torchrun``, a batch that does not split evenly over the processes, or processes
            that found different checkpoints.
    """
    world, batch = world_from_env(), recipe.data.batch
    check(batch % world.size == 0, "data.batch", f"a multiple of WORLD_SIZE={world.size} (torchrun)", batch)
    device = pick_device(recipe.run.device)
    if world.size == 1:
        return _train(recipe, progress, world, device)
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        weights = _train(recipe, progress, world, device)
        dist.barrier()  # rank 0's last export and checkpoint are written before any process returns
        return weights
    finally:
        if joined:
            dist.destroy_process_group()


def _train(recipe: Recipe, progress: ProgressFn | None, world: World, device: torch.device) -> Path:
    """The loop of :func:`train`, in one process of ``world`` (the whole run when ``world.size`` is 1)."""
    run, data = recipe.run, recipe.data
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    if run.threads:
        torch.set_num_threads(run.threads)
    torch.manual_seed(run.seed)
    model = build_model(recipe).to(device)
    check(not (run.channels_last and is_tunable(model)), "run.channels_last", "false for a tunable model", True)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema_model = copy.deepcopy(model).eval()
    ema = {k: v for k, v in ema_model.state_dict().items() if v.dtype.is_floating_point}
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr)
    generator = torch.Generator().manual_seed(run.seed)

    images = load_clean_images(data.train, data.channels, max(data.patch, data.val_crop))
    train_images, val_images = images[: -data.holdout], images[-data.holdout :]
    val_clean, val_noisy, val_frame = validation_set(recipe, val_images)

    state: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "val_psnr": None, "data_rng": None, "init": None}
    if (out / CHECKPOINT).exists():
        state = load_checkpoint(out / CHECKPOINT, model, ema, optimizer, generator)
        if world.main:
            _truncate_log(out / LOG, state["step"])
    elif recipe.model.init:
        state["init"] = initialize(model, ema, recipe)
    forward = _data_parallel(model, world, device, state["step"], out)
    data_rng = np.random.default_rng(run.seed)
    if state["data_rng"] is not None:
        data_rng.bit_generator.state = state["data_rng"]

    loss_fn = LOSSES[recipe.optim.loss]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    teacher = load_teacher(recipe, device)
    memory_format = torch.channels_last if run.channels_last else torch.contiguous_format
    weights_path = out / f"{recipe.model.name}.safetensors"
    started, running_loss = time.perf_counter() - state["elapsed_s"], []
    model.train()
    while state["step"] < recipe.optim.iterations:
        step = state["step"]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        clean, noisy, level, frame = draw_batch(recipe, train_images, data_rng, generator)
        if world.size > 1:  # every process drew the whole batch alike; each trains on its share
            clean, noisy, level = (t[world.share(data.batch)] for t in (clean, noisy, level))
            frame = frame[world.share(data.batch)] if frame is not None else None
        clean, noisy, level = (t.to(device, memory_format=memory_format) for t in (clean, noisy, level))
        where = {"frame": frame.to(device)} if frame is not None and is_layout_aware(model) else {}
        if teacher is not None and recipe.tune is None:
            with autocast:
                prediction = forward(noisy, level, **where).float()
                loss = distill_loss(loss_fn, prediction, clean, teacher(noisy, level), recipe)
        elif recipe.tune is None:
            with autocast:
                loss = loss_fn(forward(noisy, level, **where).float(), clean)
        else:
            w = draw_omega(data.batch, recipe.tune.endpoints, recipe.tune.fixed_w1, generator)
            w = (w[world.share(data.batch)] if world.size > 1 else w).to(device)
            reference = clean if teacher is None else teacher(noisy, level)  # y: the teacher's output with distill
            with autocast:
                prediction = forward(noisy, level, w) if is_tunable(model) else forward(noisy, level)
                target = tune_target(recipe.tune, reference, noisy, w[:, 1])
                objective = second_objective(recipe.tune, loss_fn)
                loss = multi_loss(loss_fn, prediction.float(), reference, target, w, objective)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
        optimizer.step()
        if world.main:
            _update_ema(ema, model, recipe.optim.ema, step)
        running_loss.append(loss.item() if world.size == 1 else _mean_over(world, loss))
        state["step"] = step + 1
        state["elapsed_s"] = time.perf_counter() - started
        record: dict[str, Any] = {}
        if state["step"] % run.log_every == 0:
            record = {"loss": float(np.mean(running_loss)), "lr": learning_rate(recipe, step)}
            running_loss = []
        last = state["step"] == recipe.optim.iterations
        if world.main and (state["step"] % run.validate_every == 0 or last):
            for key, w in _validation_settings(recipe, model).items():
                record[key] = validate(
                    ema_model, val_clean, val_noisy, data.val_sigma, device, w, recipe.tune, val_frame
                )
            state["val_psnr"] = record["val_psnr"]
            _export(ema_model, weights_path, recipe, state, device, len(train_images))
        if world.main and (state["step"] % run.checkpoint_every == 0 or last):
            state["data_rng"] = data_rng.bit_generator.state
            save_checkpoint(out / CHECKPOINT, model, ema, optimizer, generator, state)
        if record and world.main:
            record |= {"step": state["step"], "elapsed_s": round(state["elapsed_s"], 1)}
            with (out / LOG).open("a") as log:
                log.write(json.dumps(record) + "\n")
        if progress is not None:
            progress(state["step"], recipe.optim.iterations, record)
    return weights_path


def load_teacher(recipe: Recipe, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The recipe's distillation teacher as a function of the batch (no gradients), or ``None`` without one."""
    if recipe.distill is None:
        return None
    distill = recipe.distill
    model = load_model(distill.teacher) if distill.teacher.endswith(".safetensors") else create_model(distill.teacher)
    model = model.to(device).eval()
    check(model.requirements.task == "denoise", "distill.teacher", "a denoiser", distill.teacher)
    check(not is_tunable(model), "distill.teacher", "a plain (not tunable) denoiser", distill.teacher)
    dtype = torch.bfloat16 if distill.dtype == "bf16" else torch.float32

    @torch.no_grad()
    def teacher(noisy: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            return model(noisy, level).float()

    return teacher


def distill_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    prediction: torch.Tensor,
    clean: torch.Tensor,
    taught: torch.Tensor,
    recipe: Recipe,
) -> torch.Tensor:
    """``weight·L(ŷ, teacher) + (1 − weight)·L(ŷ, y)`` (``recipe.distill.weight``)."""
    weight = recipe.distill.weight
    if weight == 1:
        return loss_fn(prediction, taught)
    return weight * loss_fn(prediction, taught) + (1 - weight) * loss_fn(prediction, clean)


def _data_parallel(model: nn.Module, world: World, device: torch.device, step: int, out: Path) -> nn.Module:
    """What the loop calls forward: ``model`` itself, or under ``torchrun`` its DDP wrapper.

    Refuses processes that resume from different steps (``run.out`` not shared between the nodes).
    """
    if world.size == 1:
        return model
    steps = [_reduced(world, float(step), op) for op in (dist.ReduceOp.MIN, dist.ReduceOp.MAX)]
    if steps[0] != steps[1]:
        raise UsageError(
            f"run.out {out}: the processes found checkpoints of steps {steps[0]:g} to {steps[1]:g}; "
            "resuming on several nodes needs run.out on a file system they share"
        )
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _reduced(world: World, value: float, op: dist.ReduceOp) -> float:
    """``value`` reduced over the processes of ``world`` with ``op``."""
    device = torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op)
    return float(tensor.item())


def _mean_over(world: World, loss: torch.Tensor) -> float:
    """The mean of each process's ``loss``: the loss of the whole batch, as one process would log it."""
    return _reduced(world, loss.item(), dist.ReduceOp.SUM) / world.size


def _validation_settings(recipe: Recipe, model: nn.Module) -> dict[str, tuple[float, float] | None]:
    """What to validate: log key → ω (``None`` for a plain denoiser); the first entry is ``val_psnr``.

    A tunable model is validated at both ends, PSNR at ω = (1, 0) and PSNRη at (0, 1); a model trained at
    one fixed setting, at that setting.
    """
    if recipe.tune is None:
        return {"val_psnr": None}
    if is_tunable(model):
        return {"val_psnr": (1.0, 0.0), "val_psnr_eta": (0.0, 1.0)}
    w1 = recipe.tune.fixed_w1 if recipe.tune.fixed_w1 is not None else 1.0
    return {"val_psnr": (w1, 1.0 - w1)}


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log records past the checkpoint a run resumes from (they are about to be redone)."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def _update_ema(ema: dict[str, torch.Tensor], model: nn.Module, decay: float, step: int) -> None:
    decay = min(decay, (1 + step) / (10 + step))
    current = model.state_dict()
    with torch.no_grad():
        for key, value in ema.items():
            value.lerp_(current[key], 1 - decay)


def _export(
    ema_model: nn.Module, path: Path, recipe: Recipe, state: dict[str, Any], device: torch.device, images: int
) -> None:
    training = {
        "data": list(recipe.data.train),
        "images": images,
        "iterations": state["step"],
        "planned_iterations": recipe.optim.iterations,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "wall_s": round(state["elapsed_s"]),
        "val_psnr": _validation_record(recipe, state["val_psnr"]),
        "initialized_from": state.get("init"),
        "torch": torch.__version__,
        "restorekit": restorekit.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    extra = {"omega": omega_metadata(ema_model, recipe)} if is_tunable(ema_model) else {}
    save_model(
        ema_model,
        path,
        recipe.model.name,
        recipe=recipe_to_yaml(recipe),
        training=training,
        license=WEIGHTS_LICENSE,
        **extra,
    )


def _validation_record(recipe: Recipe, value: float | None) -> dict[str, Any]:
    """What the weights' ``training.val_psnr`` says: the PSNR and how the held-out crops were degraded."""
    data = recipe.data
    if data.degradation == "bicubic":
        return {"scale": data.scale, "psnr": value, "set": "held-out training images, RGB PSNR, bicubic ×scale"}
    if data.degradation == "real_sr":
        what = "held-out training images, RGB PSNR, Real-ESRGAN-style degradation ×scale (fixed seeds)"
        return {"scale": data.scale, "psnr": value, "set": what}
    if data.degradation == "shading":
        what = f"held-out training images as frames (short side {data.val_crop}), σ before a random lens-shading gain"
        return {"sigma": data.val_sigma, "psnr": value, "set": what}
    return {"sigma": data.val_sigma, "psnr": value, "set": "held-out training images"}


def omega_metadata(model: nn.Module, recipe: Recipe) -> dict[str, Any]:
    """What ω means for a model trained with the recipe's multi-loss (the ``omega`` metadata of its weights)."""
    req, tune = model.requirements, recipe.tune
    objective = tune.objective if tune is not None else "noise"
    meta: dict[str, Any] = {"parameters": list(req.tune_parameters), "domain": req.tune_domain, "nu": None}
    if objective == "detail":
        meta["detail"] = {"sigma": tune.detail_sigma, "amount": tune.detail_amount}
        meta["objective"] = (
            f"ω1·L(ŷ, y) + ω2·L(ŷ, y_d), y_d = y + {tune.detail_amount}·(y − G_{tune.detail_sigma} * y): "
            "ω = (1, 0) is faithful to y, ω = (0, 1) aims at the unsharp-masked y"
        )
    elif objective == "texture":
        meta["texture"] = {"sigma": tune.detail_sigma, "weight": tune.texture_weight}
        meta["objective"] = (
            f"ω1·L(ŷ, y) + ω2·(L(G*ŷ, G*y) + {tune.texture_weight}·L(E(ŷ), E(y))), G a Gaussian of σ "
            f"{tune.detail_sigma} px, E the local gradient energy: ω = (1, 0) is faithful to y, ω = (0, 1) renders "
            "y's amount of detail"
        )
    else:
        nu = meta["nu"] = tune.nu if tune is not None else None
        meta["objective"] = (
            f"ω1·L(ŷ, y) + ω2·L(ŷ, y_η), y_η = y + ω2·{nu}·(z − y): ω = (1, 0) removes the noise, "
            f"ω = (0, 1) keeps {nu:.0%} of it"
        )
    if recipe.distill is not None:  # the multi-loss's y was a teacher's output (config: only with objective noise)
        meta["y"] = {"teacher": recipe.distill.teacher, "dtype": recipe.distill.dtype}
        meta["objective"] += f"; y is the output of the teacher {recipe.distill.teacher}, not the clean image"
    return meta
