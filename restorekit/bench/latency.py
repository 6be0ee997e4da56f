"""Latency, throughput, peak memory and FLOPs of denoisers, each configuration in a fresh process.

A configuration (:class:`Case`) is one method × image size × device × dtype. It runs in a new interpreter
(``spawn``), so the process's resident-set high-water mark belongs to that configuration alone:

1. set-up: load the model (or import the peer) and make the input, a deterministic smooth synthetic image
   with AWGN at σ under the ``file`` protocol (content matters little to any method's speed);
   ``rss_baseline_mb`` is the resident set size after this;
2. ``warmup`` untimed runs (at least one for models: the first sizes the tiles);
3. models only: one more untimed run gives the ``device``, ``dtype`` and ``tile`` the engine actually used;
4. timed runs until ``repeats`` are done or ``budget_s`` has passed (at least one): ``median_ms`` and
   ``p95_ms`` (linear interpolation) of the wall time of the whole call, array in → array out, including
   any tiling; ``mp_per_s`` is megapixels over the median; ``cpu_ms`` is the median CPU time of the
   process per run (all threads), which a busy machine inflates far less than wall time;
5. ``rss_peak_mb`` is the process's resident-set high-water mark (``getrusage``), so it includes the
   interpreter, torch and the model (that is ``rss_baseline_mb``); on CUDA, ``cuda_peak_mb`` is
   ``torch.cuda.max_memory_allocated`` over the timed runs;
6. models only, after the peaks are taken: one more run under :class:`torch.utils.flop_counter.FlopCounterMode`
   gives ``gflops`` (PyTorch counts convolutions and matrix products, 2 FLOPs per multiply-add; element-wise work
   such as MalleConv's kernel slicing is not counted; with tiling, the tile overlaps are included). It runs on the
   eager path (``RESTOREKIT_INFERENCE=eager``), in the timed runs' tiles: the fused CPU kernels do the same
   convolutions out of the counter's sight, and the eager path may take more memory, which the peaks must not see.

restorekit models run through :func:`restorekit.inference.api.denoise` (see
:mod:`restorekit.bench.methods`); peers run on the CPU at their own precision (``dtype`` shows ``float32``
or ``uint8``). A super-resolution model upscales the image of the case's size (the input's; ``output`` gives the
upscaled size, and ``megapixels``/``mp_per_s`` count input pixels), a tunable one folded at the centre of its
domain; a chain (``Case.chain``) times the photo denoiser then the SR model as one call, its ``device``, ``dtype``
and ``tile`` those of the SR step.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from restorekit._checks import check, check_choice, fail
from restorekit.bench.baselines import PEERS, peers
from restorekit.bench.methods import Method, chain_method, model_method
from restorekit.bench.noise import add_noise
from restorekit.errors import RestoreKitError
from restorekit.inference import runtime
from restorekit.inference.api import (
    DTYPES,
    INFERENCE_ENV,
    RunInfo,
    denoise_image,
    resolve_device,
    super_resolve_image,
)

try:
    import resource
except ImportError:  # Windows: no getrusage, so no RSS high-water mark
    resource = None

ROW_KEYS = (
    "method", "kind", "size", "output", "height", "width", "channels", "megapixels", "device", "dtype", "tile",
    "threads", "sigma", "warmup", "runs", "median_ms", "p95_ms", "cpu_ms", "mp_per_s", "rss_baseline_mb", "rss_peak_mb",
    "cuda_peak_mb", "gflops", "parameters", "error",
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One latency configuration.

    Attributes:
        method: A model name or ``.safetensors`` path (``kind="restorekit"``), or a peer name (``"peer"``).
        kind: ``restorekit`` or ``peer``.
        height: Image height in pixels.
        width: Image width in pixels.
        channels: 1 (gray) or 3 (colour).
        device: ``cpu``, ``cuda`` or ``cuda:N`` (peers: ``cpu``).
        dtype: ``auto``, ``fp32``, ``fp16`` or ``bf16`` for models (rows show what ran); ignored by peers.
        tile: Tile size (``0`` none, ``None`` chosen from the available memory); models only.
        sigma: Noise level of the input and the σ the method is told.
        warmup: Untimed runs before timing.
        repeats: Timed runs at most.
        budget_s: Stop timing after this many seconds (at least one run is timed).
        threads: CPU threads for torch and OpenCV, ``None`` for their defaults.
        chain: Run the photo denoiser (``restorekit denoise``'s default, no σ) on the input first, then the
            super-resolution model ``method``: the two-command route to a clean upscaled photo, timed as one.
    """

    method: str
    kind: str
    height: int
    width: int
    channels: int = 3
    device: str = "cpu"
    dtype: str = "auto"
    tile: int | None = None
    sigma: float = 25.0
    warmup: int = 1
    repeats: int = 10
    budget_s: float = 60.0
    threads: int | None = None
    chain: bool = False


def parse_size(text: str) -> tuple[int, int]:
    """``(height, width)`` from ``"512"`` (square), ``"640x480"`` (width × height) or ``"12mp"``.

    ``Nmp`` is a 4:3 frame of about N megapixels with sides multiples of 8: ``1mp`` is 1152×864,
    ``12mp`` 4000×3000.

    Example:
        >>> parse_size("256"), parse_size("640x480"), parse_size("1mp"), parse_size("12mp")
        ((256, 256), (480, 640), (864, 1152), (3000, 4000))
    """
    text = text.strip().lower()
    if re.fullmatch(r"\d+", text):
        side = int(text)
        check(side > 0, "size", "a positive side", text)
        return side, side
    if match := re.fullmatch(r"(\d+)x(\d+)", text):
        width, height = int(match[1]), int(match[2])
        check(width > 0 and height > 0, "size", "positive sides", text)
        return height, width
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)mp", text):
        width = max(8, round(math.sqrt(float(match[1]) * 1e6 * 4 / 3) / 8) * 8)
        return width * 3 // 4 // 8 * 8, width
    fail("size", "N (square), WxH or Nmp (e.g. 512, 640x480, 12mp)", text)
    raise AssertionError  # unreachable: fail raises


def synthetic_image(height: int, width: int, channels: int, sigma: float) -> np.ndarray:
    """A deterministic noisy test image (H, W, C) in [0, 1]: smooth gradients and waves plus AWGN."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    phase = np.arange(channels, dtype=np.float32)[None, None, :]
    clean = 0.5 + 0.25 * np.sin(12 * x + 2 * phase) * np.cos(9 * y - phase) + 0.2 * (x - y)
    clean = np.clip(np.broadcast_to(clean, (height, width, channels)), 0, 1)
    return add_noise(clean, f"synthetic_{width}x{height}", sigma, "file")


def _rss_mb() -> float | None:
    """The current resident set size (Linux ``/proc/self/statm``), else ``None``."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return None
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float | None:
    """The process's resident-set high-water mark (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure(case: Case) -> dict[str, Any]:
    """Measure ``case`` in this process (see the module docstring); :func:`run` calls it in a fresh one.

    The process gets the allocator setting the ``restorekit`` command uses (``runtime.keep_freed_memory``),
    peers included, so every method runs as it would from the command line.
    """
    runtime.keep_freed_memory()
    if case.threads is not None:
        torch.set_num_threads(case.threads)
        cv2.setNumThreads(case.threads)
    peer = case.kind == "peer"
    method = (
        PEERS[case.method]
        if peer
        else model_method(case.method, case.device, case.dtype, case.tile, channels=case.channels)
    )
    if case.chain:
        method = chain_method(method, case.device, case.dtype, case.tile)
    noisy = synthetic_image(case.height, case.width, case.channels, case.sigma)
    rss_baseline = _rss_mb()
    row = _row(case) | {"method": method.name, "kind": method.kind}
    if not peer and method.model.requirements.task == "sr":  # the size is the input's; say what comes out
        scale = method.model.requirements.scale
        row["output"] = f"{case.width * scale}x{case.height * scale}"
    for _ in range(case.warmup):
        method.run(noisy, case.sigma)
    if not peer:
        info = _engine_run(method, noisy, case)
        row |= {"device": info.device, "dtype": info.dtype, "tile": info.tile}
    cuda = row["device"].startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(row["device"])
    times: list[float] = []
    cpu_times: list[float] = []
    started = time.perf_counter()
    while len(times) < max(case.repeats, 1) and (not times or time.perf_counter() - started < case.budget_s):
        start, cpu_start = time.perf_counter(), time.process_time()
        method.run(noisy, case.sigma)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    median = float(np.median(times))
    peak = _peak_rss_mb()
    peaks = {
        # ru_maxrss lags the current resident set by a few pages at times: the mark is at least the baseline
        "rss_peak_mb": peak if peak is None or rss_baseline is None else max(peak, rss_baseline),
        "cuda_peak_mb": torch.cuda.max_memory_allocated(row["device"]) / 2**20 if cuda else None,
    }
    if not peer:  # after the peaks are taken: the eager path may use more memory than the default one
        tile = row["tile"] or 0  # the timed runs' tiling (0: whole), so no tile-size probe is counted
        with FlopCounterMode(display=False) as counter, _eager_inference():
            _engine_run(method, noisy, case, tile)
        row["gflops"] = counter.get_total_flops() / 1e9
    return (
        row
        | peaks
        | {
            "threads": case.threads if peer else torch.get_num_threads(),
            "runs": len(times),
            "median_ms": median * 1e3,
            "p95_ms": float(np.percentile(times, 95)) * 1e3,
            "cpu_ms": float(np.median(cpu_times)) * 1e3,
            "mp_per_s": row["megapixels"] / median,
            "rss_baseline_mb": rss_baseline,
            "parameters": method.parameters,
        }
    )


def _engine_run(method: Method, noisy: np.ndarray, case: Case, tile: int | None = None) -> RunInfo:
    """One untimed run of a model through the engine (in ``tile``-pixel tiles, 0 for none, if given), for what it
    reports (device, dtype, tile); a chain's photo denoiser runs first, in the tiles the engine picks for it."""
    if case.chain:
        noisy = denoise_image(noisy, None, None, case.device, case.tile, case.dtype)[0]
    model, tile = method.model, case.tile if tile is None else tile
    if model.requirements.task == "sr":
        return super_resolve_image(noisy, model.requirements.scale, model, case.device, tile, case.dtype)[1]
    return denoise_image(noisy, case.sigma, model, case.device, tile, case.dtype)[1]


def _row(case: Case, error: str | None = None) -> dict[str, Any]:
    """A row with ``case``'s settings and empty measurements."""

    row = dict.fromkeys(ROW_KEYS)
    row |= {
        "method": ("denoise → " if case.chain else "") + Path(case.method).name,
        "kind": case.kind,
        "size": f"{case.width}x{case.height}",
        "height": case.height,
        "width": case.width,
        "channels": case.channels,
        "megapixels": case.height * case.width / 1e6,
        "device": case.device,
        "dtype": PEERS[case.method].input if case.kind == "peer" else case.dtype,
        "tile": case.tile,
        "sigma": case.sigma,
        "warmup": case.warmup,
        "error": error,
    }
    return row


def run_isolated(case: Case) -> dict[str, Any]:
    """Measure ``case`` in a fresh interpreter; a failure becomes a row whose ``error`` says why."""
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(measure, case).result()
    except BrokenProcessPool:
        return _row(case, "the worker process died (out of memory?)")
    except (RestoreKitError, RuntimeError, MemoryError) as exc:
        return _row(case, f"{type(exc).__name__}: {exc}")


def run(cases: Sequence[Case], progress: Callable[[str, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Measure every case, each in a fresh process.

    Args:
        cases: The configurations (see :func:`plan`).
        progress: Called with a label and the row after each case.

    Returns:
        One row per case (keys: :data:`ROW_KEYS`).
    """
    rows = []
    for case in cases:
        row = run_isolated(case)
        rows.append(row)
        if progress is not None:
            progress(f"{row['method']} {row['size']} {row['device']} {row['dtype']}", row)
    return rows


def plan(
    models: Sequence[str],
    peer_names: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    devices: Sequence[str] = ("cpu",),
    dtypes: Sequence[str] = ("auto",),
    channels: int = 3,
    tile: int | None = None,
    sigma: float = 25.0,
    warmup: int = 1,
    repeats: int = 10,
    budget_s: float = 60.0,
    threads: int | None = None,
    peer_max_mp: float = 1.0,
    chain: Sequence[str] = (),
) -> tuple[list[Case], list[Method], list[dict[str, str]]]:
    """The cases of a latency run: models × sizes × devices × dtypes, then the ``chain`` super-resolution models
    after the photo denoiser (:attr:`Case.chain`) likewise, and each peer × size on the CPU.

    Args:
        models: Model names, ``.safetensors`` paths or speed references (``ffdnet_shape``, ``dncnn_shape``;
            loaded here once, to check them).
        peer_names: Peers (see :data:`restorekit.bench.baselines.PEERS`); missing packages are skipped.
        sizes: ``(height, width)`` pairs (see :func:`parse_size`).
        devices: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (models only).
        dtypes: ``auto`` (what ``restorekit denoise`` picks), ``fp32``, ``fp16``, ``bf16`` (models only).
        channels: Image channels; models that take another count are skipped.
        tile: Tile size for models (``0`` none, ``None`` automatic).
        sigma: Noise level of the input, told to every method.
        warmup: Untimed runs before timing (at least 1).
        repeats: Timed runs at most.
        budget_s: Time budget of the timed runs of one case.
        threads: CPU threads (``None``: the libraries' defaults).
        peer_max_mp: Peers are skipped on larger images (CBM3D takes minutes per megapixel).
        chain: Super-resolution models to time after the photo denoiser (names or ``.safetensors`` paths).

    Returns:
        ``(cases, methods, skipped)``: the cases in order, the methods measured and the skip records.
    """
    check(warmup >= 1, "warmup", "at least 1 untimed run", warmup)
    check(channels in (1, 3), "channels", "1 or 3", channels)
    for dtype in dtypes:
        check_choice(dtype, ["auto", *DTYPES], "dtype")
    devices = [str(resolve_device(device)) for device in devices]
    measured: dict[str, Method] = {}
    skipped = []
    for model in models:
        method = model_method(model, channels=channels)
        if channels in method.channels:
            measured[str(model)] = method
        else:
            skipped.append(
                {"method": method.name, "reason": f"takes {method.channels[0]}-channel images, not {channels}"}
            )
    chained: dict[str, Method] = {}
    for model in chain:
        method = model_method(model, channels=channels)
        check(method.model.requirements.task == "sr", "--chain", "a super-resolution model", method.name)
        chained[str(model)] = chain_method(method)
    available, missing = peers(list(peer_names))
    skipped += missing
    common = {"channels": channels, "sigma": sigma, "warmup": warmup, "repeats": repeats, "budget_s": budget_s}
    cases = []
    for height, width in sizes:
        for (model, routed), device, dtype in itertools.product(
            [*((m, False) for m in measured), *((m, True) for m in chained)], devices, dtypes
        ):
            restorekit = {"device": device, "dtype": dtype, "tile": tile, "threads": threads, "chain": routed}
            cases.append(Case(model, "restorekit", height, width, **restorekit, **common))
        for peer in available:
            if height * width / 1e6 <= peer_max_mp:
                cases.append(Case(peer.name, "peer", height, width, threads=threads, **common))
            else:
                skipped.append(
                    {"method": peer.name, "reason": f"{width}x{height} is above --peer-max-mp {peer_max_mp:g}"}
                )
    return cases, [*measured.values(), *chained.values(), *available], skipped


@contextlib.contextmanager
def _eager_inference() -> Iterator[None]:
    """Run the engine on the eager path inside (this process runs one configuration; the setting is restored)."""
    before = os.environ.get(INFERENCE_ENV)
    os.environ[INFERENCE_ENV] = "eager"
    try:
        yield
    finally:
        if before is None:
            del os.environ[INFERENCE_ENV]
        else:
            os.environ[INFERENCE_ENV] = before
