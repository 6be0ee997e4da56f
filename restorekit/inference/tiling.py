"""Run a model over an image of any size: reflect padding, overlapping tiles, smooth blending, memory sizing.

The engine reads everything from the model's :class:`~restorekit.models.Requirements`; nothing here knows a
particular model.

Padding. Height and width are reflect-padded (bottom/right) up to a multiple of ``size_multiple`` and at
least ``min_size``, and the output is cropped back. Tiles gather their pixels through the same reflected
indices, so a tile hanging over the image border sees exactly what the padded whole image would show.

Conditioning. Besides the pixels, each tile gets the window of a per-pixel conditioning map: the σ map
(channel 0) and, for a layout-aware model, further channels (the frame coordinates of every pixel,
:func:`restorekit.layers.tv_conv.frame_coordinates`). The map is windowed with the same reflected indices as
the pixels, so a padded or reflected pixel carries the conditioning of the pixel it mirrors, in a tile as in
the whole image.

Tiling. Tiles are squares of side ``tile`` (a multiple of ``size_multiple``) on a grid whose origins are
multiples of ``size_multiple`` (so models built on pixel-unshuffle see the same phase as untiled); the last
tile of a row or column is shifted back to end at the padded border. Neighbouring tiles overlap by
``overlap = 2·RF + RF/2`` (``RF`` = ``receptive_field``, rounded up to the size multiple). In the overlap,
each tile's outer ``RF`` pixels get weight 0 (they lack context), and the middle band blends the two tiles
with a raised-cosine ramp. The weights are separable and normalized per axis, so no weight image is needed:
besides the input, the output accumulator is the only full-size buffer, and tiles run one at a time. Where the
declared receptive field is truthful, tiled and untiled results therefore agree up to float rounding.

Memory. The automatic tile is the largest that fits a share of the available memory, given the model's
activation bytes per pixel measured once on a small probe. Available is, on CUDA, ``torch.cuda.mem_get_info``;
on the CPU, the least of what each limit that applies leaves: the machine's free memory (``MemAvailable``), the
process's address-space limit (``RLIMIT_AS``, ``ulimit -v``) and its cgroup's memory limit (a container's,
v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) — plus what the process has freed and keeps for reuse. An
out-of-memory error — CUDA's, a ``MemoryError``, or the CPU allocator's ``RuntimeError`` ("can't allocate
memory") — restarts the run with tiles half as large, down to :func:`min_tile`; below that it raises
:class:`~restorekit.errors.DeviceError`.

Work. Each tile recomputes its overlap, so small tiles cost more than the pixels they produce:
:func:`work_ratio` is the pixels the tiles run over those of the one padded piece (MalleNet-S at 1260×806:
tile 192 with its 160-px overlap keeps 32 px of each step, ~27× the work). The out-of-memory restart
halves the tile but stops at :func:`efficient_tile` (asymptotically at most twice the work) before it goes
below it, and :func:`run_with_retry` reports a tile that does at least ``WORK_NOTE_RATIO`` times the work
as a note to the caller's :func:`collect_notes`. A requested tile below :func:`min_tile` runs at
:func:`min_tile`, which is the tile reported, with a warning to :func:`report_warnings` (else a note).

Progress. Within :func:`report_tiles`, :func:`run_tiled` calls the given function after each tile with the
tiles done and the tiles in the pass, so a caller far above (the command line's progress display) sees
progress inside one large image without every function in between taking a callback.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch
from torch import nn

from restorekit.errors import DeviceError
from restorekit.inference.runtime import free_heap_bytes
from restorekit.models import Requirements

# A tile function maps ``x (1, C, h, w)`` and the conditioning ``(1, K, h, w)`` (channel 0 the σ map, then any
# further channels the engine windows alike) to ``(1, C_out, h·scale, w·scale)``.
TileFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Share of the available memory a tile's activations may use; a model that discourages tiling gets more,
# so that it is tiled only when memory forces it.
MEMORY_SHARE = {"supported": 0.25, "discouraged": 0.5}
# Peak live memory of a forward pass, as a multiple of its largest single activation (inputs, outputs and
# temporaries of the widest layer plus the skip connections kept alive). MalleNet-S at 1024×1024 on the CPU:
# largest activation 320 B/px, measured peak 1.8 kB/px (ru_maxrss), so 6× (1.9 kB/px) covers it.
ACTIVATION_FACTOR = 6
PROBE_SIZE = 64
# Asymptotic work of the smallest tile the out-of-memory restart reaches before it has to go lower.
EFFICIENT_WORK = 2.0
# A run whose tiles do at least this many times the work of one piece gets a note.
WORK_NOTE_RATIO = 3.0

# Called after each tile with (tiles done, tiles in this pass); set by report_tiles.
TileProgress = Callable[[int, int], None]
_tile_progress: ContextVar[TileProgress | None] = ContextVar("restorekit_tile_progress", default=None)
# Where run_with_retry puts its notes; set by collect_notes.
_tile_notes: ContextVar[list[str] | None] = ContextVar("restorekit_tile_notes", default=None)
# Where run_with_retry sends its warnings; set by report_warnings.
_tile_warnings: ContextVar[Callable[[str], None] | None] = ContextVar("restorekit_tile_warnings", default=None)
# What the allocators' RuntimeErrors say when the memory ran out: CUDA's "out of memory"; on the CPU, c10's
# "DefaultCPUAllocator: can't allocate memory" (errno 12, "Cannot allocate memory"), std::bad_alloc, and oneDNN's
# "could not create a primitive" (its kernel's memory refused; "… a primitive descriptor" is another failure).
OUT_OF_MEMORY = re.compile(
    r"out of memory|can't allocate memory|cannot allocate memory|bad_alloc|could not create a primitive(?! descriptor)"
)
CGROUP_ROOT = "/sys/fs/cgroup"


@contextmanager
def report_tiles(callback: TileProgress) -> Iterator[None]:
    """Within this context, :func:`run_tiled` calls ``callback(done, total)`` after each tile it runs.

    A pass that runs the image in one piece reports ``(1, 1)``; a restart after running out of memory, or
    another pass (self-ensemble views, the channels of a colour image under a gray model), starts again at 1.

    Example:
        >>> req = Requirements(task="denoise", in_channels=1, out_channels=1, receptive_field=2)
        >>> seen = []
        >>> with report_tiles(lambda done, total: seen.append((done, total))):
        ...     _ = run_tiled(lambda x, s: x, torch.rand(1, 1, 40, 50), 0.1, req, tile=32)
        >>> seen
        [(1, 4), (2, 4), (3, 4), (4, 4)]
    """
    token = _tile_progress.set(callback)
    try:
        yield
    finally:
        _tile_progress.reset(token)


@contextmanager
def report_warnings(callback: Callable[[str], None]) -> Iterator[None]:
    """Within this context, :func:`run_with_retry` calls ``callback(message)`` for what the user should be
    warned about (a requested tile below the smallest useful one) instead of adding it to each file's notes."""
    token = _tile_warnings.set(callback)
    try:
        yield
    finally:
        _tile_warnings.reset(token)


@contextmanager
def collect_notes(notes: list[str]) -> Iterator[list[str]]:
    """Within this context, :func:`run_with_retry` appends to ``notes`` what the caller should know (a tile
    that does several times the work of one piece), each note once.

    Example:
        >>> req = Requirements(task="denoise", in_channels=1, out_channels=1, receptive_field=8)
        >>> with collect_notes([]) as notes:
        ...     _ = run_with_retry(lambda x, s: x, torch.rand(1, 1, 90, 90), 0.1, req, 32, torch.device("cpu"))
        >>> notes
        ['tile 32 with 20-px overlap: ~5× the work of untiled; a larger tile runs faster']
    """
    token = _tile_notes.set(notes)
    try:
        yield notes
    finally:
        _tile_notes.reset(token)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` means the device (or host) ran out of memory.

    Example:
        >>> is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
        True
    """
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and OUT_OF_MEMORY.search(str(error).lower()) is not None


def _align_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _align_down(n: int, multiple: int) -> int:
    return n // multiple * multiple


def padded_size(n: int, requirements: Requirements) -> int:
    """``n`` rounded up to the size multiple and to at least ``min_size``.

    Example:
        >>> padded_size(21, Requirements(task="denoise", in_channels=3, out_channels=3, size_multiple=8))
        24
    """
    return max(_align_up(n, requirements.size_multiple), _align_up(requirements.min_size, requirements.size_multiple))


def overlap(requirements: Requirements) -> int:
    """Tile overlap: ``2·RF`` of context plus ``RF/2`` of blending, rounded up to the size multiple."""
    rf = requirements.receptive_field
    return _align_up(2 * rf + max(rf // 2, 1), requirements.size_multiple)


def min_tile(requirements: Requirements) -> int:
    """The smallest tile worth running: the overlap plus a useful step, and at least ``min_size``."""
    m = requirements.size_multiple
    step = max(m, requirements.receptive_field // 2)
    return max(_align_up(overlap(requirements) + step, m), padded_size(1, requirements))


def efficient_tile(requirements: Requirements) -> int:
    """The smallest tile that does at most ``EFFICIENT_WORK`` times the work of one piece on a large image.

    A tile of side ``t`` keeps ``t - overlap`` of each step, so its work per useful pixel tends to
    ``(t / (t - overlap))²``.

    Example:
        >>> req = Requirements(task="denoise", in_channels=3, out_channels=3, size_multiple=8, receptive_field=64)
        >>> overlap(req), min_tile(req), efficient_tile(req)
        (160, 192, 552)
    """
    over = overlap(requirements)
    side = math.ceil(over * math.sqrt(EFFICIENT_WORK) / (math.sqrt(EFFICIENT_WORK) - 1))
    return max(_align_up(side, requirements.size_multiple), min_tile(requirements))


def _grid(
    height: int, width: int, tile: int | None, requirements: Requirements
) -> tuple[int, int, list[int], list[int]]:
    """Tile height and width and the row and column origins :func:`run_tiled` uses on the padded image."""
    full_h, full_w = padded_size(height, requirements), padded_size(width, requirements)
    if tile is None or (tile >= full_h and tile >= full_w):
        return full_h, full_w, [0], [0]
    tile = max(_align_up(tile, requirements.size_multiple), min_tile(requirements))
    tile_h, tile_w = min(tile, full_h), min(tile, full_w)
    over = overlap(requirements)
    return tile_h, tile_w, _origins(full_h, tile_h, tile_h - over), _origins(full_w, tile_w, tile_w - over)


def work_ratio(height: int, width: int, tile: int | None, requirements: Requirements) -> float:
    """Pixels the tiles of a ``height×width`` image run over, as a multiple of the one padded piece's.

    Example:
        >>> req = Requirements(task="denoise", in_channels=3, out_channels=3, size_multiple=8, receptive_field=64)
        >>> round(work_ratio(806, 1260, 192, req), 1), round(work_ratio(806, 1260, 552, req), 1)
        (26.5, 1.8)
    """
    tile_h, tile_w, rows, cols = _grid(height, width, tile, requirements)
    return (
        len(rows) * tile_h * len(cols) * tile_w / (padded_size(height, requirements) * padded_size(width, requirements))
    )


def tile_note(height: int, width: int, tile: int | None, requirements: Requirements) -> str | None:
    """A note when the tiles of a ``height×width`` image do at least ``WORK_NOTE_RATIO`` times the work of one
    piece, else ``None``."""
    ratio = work_ratio(height, width, tile, requirements)
    if tile is None or ratio < WORK_NOTE_RATIO:
        return None
    side = max(_align_up(tile, requirements.size_multiple), min_tile(requirements))
    return (
        f"tile {side} with {overlap(requirements)}-px overlap: ~{ratio:.0f}× the work of untiled; "
        "a larger tile runs faster"
    )


def _reflect(start: int, size: int, length: int) -> torch.Tensor:
    """Indices into ``[0, length)`` of positions ``start … start+size-1``, reflected at both borders."""
    positions = torch.arange(start, start + size)
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    positions = positions.remainder(period)
    return torch.where(positions < length, positions, period - positions)


def _gather(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The ``height×width`` window of ``x (B, C, H, W)`` at ``(top, left)``, reflect-extended past the borders (a
    view of x where the window lies inside it: the tile function copies it once, into its device and layout)."""
    if top + height <= x.shape[-2] and left + width <= x.shape[-1]:
        return x[..., top : top + height, left : left + width]
    rows = _reflect(top, height, x.shape[-2]).to(x.device)
    cols = _reflect(left, width, x.shape[-1]).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def pad(x: torch.Tensor, requirements: Requirements) -> torch.Tensor:
    """Reflect-pad ``x (B, C, H, W)`` at the bottom/right to what the model requires.

    Works for any amount of padding (the reflection repeats), even for a 1-pixel image.

    Example:
        >>> req = Requirements(task="denoise", in_channels=1, out_channels=1, size_multiple=8, min_size=16)
        >>> pad(torch.zeros(1, 1, 5, 19), req).shape
        torch.Size([1, 1, 16, 24])
    """
    height, width = x.shape[-2:]
    return _gather(x, 0, 0, padded_size(height, requirements), padded_size(width, requirements))


def _origins(length: int, tile: int, step: int) -> list[int]:
    """Tile origins along one axis: every ``step``, the last one shifted back to end at ``length``."""
    if tile >= length:
        return [0]
    return [*range(0, length - tile, step), length - tile]


def _window(size: int, margin: int, ramp: int, cut_before: bool, cut_after: bool) -> torch.Tensor:
    """1-D weights of a tile: 0 on the ``margin`` next to a cut, a raised-cosine ``ramp``, then 1."""
    weights = torch.ones(size, dtype=torch.float64)
    edge = torch.zeros(margin + ramp, dtype=torch.float64)
    if ramp:
        t = (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp
        edge[margin:] = 0.5 - 0.5 * torch.cos(math.pi * t)
    if cut_before:
        weights[: margin + ramp] = edge
    if cut_after:
        weights[size - margin - ramp :] = torch.minimum(weights[size - margin - ramp :], edge.flip(0))
    return weights


def _axis_weights(length: int, tile: int, origins: list[int], margin: int, ramp: int) -> list[torch.Tensor]:
    """Per-tile 1-D weights along one axis, normalized so that they sum to 1 at every position."""
    windows = [_window(tile, margin, ramp, i > 0, i < len(origins) - 1) for i in range(len(origins))]
    total = torch.zeros(length, dtype=torch.float64)
    for origin, window in zip(origins, windows, strict=True):
        total[origin : origin + tile] += window
    return [(w / total[o : o + tile]).float() for o, w in zip(origins, windows, strict=True)]


def _condition_window(sigma: float | torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The conditioning of a window: a constant σ map for a scalar σ, else the gathered window of the
    ``(1, K, H, W)`` map (σ, then any further channels)."""
    if isinstance(sigma, torch.Tensor):
        return _gather(sigma, top, left, height, width)
    return torch.full((1, 1, height, width), float(sigma))


def run_tiled(
    fn: TileFn,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    requirements: Requirements,
    tile: int | None,
) -> torch.Tensor:
    """Run ``fn`` over ``x`` in overlapping tiles (or in one padded piece) and blend the results.

    Args:
        fn: The model call on one tile (see ``TileFn``); it may raise an out-of-memory error.
        x: Image ``(1, C, H, W)``, on the CPU; tiles are cut from it one at a time.
        sigma: Noise level σ/255, a float or a map ``(1, 1, H, W)``; or the conditioning ``(1, K, H, W)``, the σ
            map followed by further channels (a layout-aware model's frame coordinates), windowed alike.
        requirements: The model's requirements.
        tile: Tile side (rounded up to the size multiple and at least :func:`min_tile`); ``None`` runs the
            whole image as one padded piece.

    Returns:
        ``(1, C_out, H·scale, W·scale)`` float32 on the CPU.

    Example:
        >>> req = Requirements(task="denoise", in_channels=1, out_channels=1, receptive_field=2)
        >>> run_tiled(lambda x, s: x, torch.rand(1, 1, 40, 50), 0.1, req, tile=16).shape
        torch.Size([1, 1, 40, 50])
    """
    height, width = x.shape[-2:]
    s = requirements.scale
    full_h, full_w = padded_size(height, requirements), padded_size(width, requirements)
    progress = _tile_progress.get() or (lambda done, total: None)
    if tile is None or (tile >= full_h and tile >= full_w):
        out = fn(pad(x, requirements), _condition_window(sigma, 0, 0, full_h, full_w))
        progress(1, 1)
        return out[..., : height * s, : width * s].float().cpu()

    tile_h, tile_w, rows, cols = _grid(height, width, tile, requirements)
    over, margin = overlap(requirements), requirements.receptive_field
    ramp = over - 2 * margin
    row_w = _axis_weights(full_h * s, tile_h * s, [r * s for r in rows], margin * s, ramp * s)
    col_w = _axis_weights(full_w * s, tile_w * s, [c * s for c in cols], margin * s, ramp * s)

    out = torch.zeros(1, requirements.out_channels, height * s, width * s)
    done = 0
    for top, wy in zip(rows, row_w, strict=True):
        for left, wx in zip(cols, col_w, strict=True):
            condition = _condition_window(sigma, top, left, tile_h, tile_w)
            piece = fn(_gather(x, top, left, tile_h, tile_w), condition).float().cpu()
            y0, x0 = top * s, left * s
            y1, x1 = min(y0 + tile_h * s, height * s), min(x0 + tile_w * s, width * s)
            weights = wy[: y1 - y0, None] * wx[None, : x1 - x0]
            out[..., y0:y1, x0:x1].addcmul_(piece[..., : y1 - y0, : x1 - x0], weights)  # one pass, no blended copy
            done += 1
            progress(done, len(rows) * len(cols))
    return out


def available_memory(device: torch.device) -> int:
    """Bytes free on ``device``: ``torch.cuda.mem_get_info`` on CUDA; on the CPU the least that the machine's free
    memory, the address-space limit and the cgroup's memory limit leave (:func:`host_headroom`), plus the memory
    this process has freed and keeps for reuse (:func:`~restorekit.inference.runtime.free_heap_bytes`)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return max(0, min(host_headroom())) + free_heap_bytes()


def host_headroom() -> list[int]:
    """Bytes this process may still allocate under each limit that applies on the host: free memory, then
    ``RLIMIT_AS`` and the cgroup's limit where they are set."""
    return [_free_memory(), *_address_space_headroom(), *cgroup_headroom()]


def _free_memory() -> int:
    """``MemAvailable`` (Linux), else the free pages, else 2 GiB."""
    available = _proc_bytes("/proc/meminfo", "MemAvailable:")
    if available is not None:
        return available
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


def _address_space_headroom() -> list[int]:
    """``RLIMIT_AS`` less the process's virtual size, where a limit is set (``ulimit -v``); else nothing."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):  # not on this platform
        return []
    if limit == resource.RLIM_INFINITY or limit < 0:
        return []
    return [limit - _virtual_size()]


def _virtual_size() -> int:
    """The process's virtual size in bytes (``VmSize``), 0 where unknown."""
    return _proc_bytes("/proc/self/status", "VmSize:") or 0


def _proc_bytes(path: str, key: str) -> int | None:
    """The ``key: N kB`` line of a /proc file in bytes, or ``None`` when the file or the line is missing."""
    try:
        with open(path, encoding="ascii") as lines:
            for line in lines:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cgroup_headroom(root: str = CGROUP_ROOT, membership: Sequence[str] | None = None) -> list[int]:
    """What the memory limits of this process's cgroup and its ancestors leave: limit − usage + the inactive
    file cache (which the kernel reclaims first), for each level with a limit (v2 and v1 hierarchies).

    Args:
        root: Where the cgroup file systems are mounted.
        membership: The lines of ``/proc/self/cgroup`` (read when ``None``).
    """
    if membership is None:
        try:
            with open("/proc/self/cgroup", encoding="utf-8") as cgroup:
                membership = cgroup.read().splitlines()
        except OSError:
            return []
    headroom = []
    for line in membership:
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "-", "")
        if controllers == "":  # v2
            files = (root, "memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            files = (f"{root}/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        headroom += _cgroup_levels(Path(files[0]), path, *files[1:])
    return headroom


def _cgroup_levels(mount: Path, path: str, limit_file: str, usage_file: str, inactive_key: str) -> list[int]:
    """The headroom of each level from the cgroup ``path`` up to the mount's root that sets a limit."""
    levels = []
    folder = mount / path.strip("/")
    while True:
        limit = _read_int(folder / limit_file)
        if limit is not None and limit < 2**60:  # "max", or v1's "no limit" (PAGE_COUNTER_MAX pages)
            usage = _read_int(folder / usage_file) or 0
            inactive = _stat_value(folder / "memory.stat", inactive_key)
            levels.append(limit - usage + inactive)
        if folder == mount or mount not in folder.parents:
            return levels
        folder = folder.parent


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def bytes_per_pixel(model: nn.Module, requirements: Requirements, device: torch.device) -> float:
    """Estimated peak activation bytes per input pixel of ``model``, from one forward pass on a small probe.

    Forward hooks record the largest tensor any module produces; the peak is taken as
    ``ACTIVATION_FACTOR`` times that.
    """
    size = max(padded_size(PROBE_SIZE, requirements), padded_size(1, requirements))
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        tensors = output if isinstance(output, (tuple, list)) else (output,)
        for t in tensors:
            if isinstance(t, torch.Tensor):
                largest = max(largest, t.numel() * t.element_size())

    handles = [module.register_forward_hook(record) for module in model.modules()]
    try:
        with torch.inference_mode():
            x = torch.rand(1, requirements.in_channels, size, size, device=device)
            model(x, torch.full((1, 1, size, size), 0.1, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return ACTIVATION_FACTOR * largest / (size * size)


def auto_tile(
    per_pixel: float, requirements: Requirements, device: torch.device, size: tuple[int, int] | None = None
) -> int:
    """The tile to run: the largest whose activations fit the memory share for this model and device, or, for an
    image of ``size`` (height, width) that does not fit in one piece, the tile up to that side that does the
    least work (:func:`work_ratio`; the larger on a tie).

    Why the second: tiles are squares and the last of a row is shifted back to end at the border, so the largest
    tile that fits is often a poor one — on a 6000×4000 image a 3504-px tile with a 160-px overlap runs 2×2 tiles,
    twice the pixels of the image, where 2080 px runs 3×2 for 1.08×, in a third of the memory.

    Example:
        >>> req = Requirements(task="denoise", in_channels=3, out_channels=3, size_multiple=8)
        >>> auto_tile(1e12, req, torch.device("cpu")) == min_tile(req)
        True
    """
    share = MEMORY_SHARE.get(requirements.tiling, MEMORY_SHARE["supported"])
    side = math.isqrt(int(available_memory(device) * share / max(per_pixel, 1.0)))
    largest = max(_align_down(side, requirements.size_multiple), min_tile(requirements))
    if size is None:
        return largest
    height, width = size
    if largest >= padded_size(height, requirements) and largest >= padded_size(width, requirements):
        return largest
    candidates = range(largest, min_tile(requirements) - 1, -requirements.size_multiple)
    return min(candidates, key=lambda tile: work_ratio(height, width, tile, requirements))


def run_with_retry(
    fn: TileFn,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    requirements: Requirements,
    tile: int | None,
    device: torch.device,
) -> tuple[torch.Tensor, int | None]:
    """:func:`run_tiled`, restarting with half-size tiles after an out-of-memory error.

    The restart halves the tile down to :func:`min_tile`, but tries :func:`efficient_tile` before it goes
    below it. Within :func:`collect_notes`, a tile that does at least ``WORK_NOTE_RATIO`` times the work of
    one piece (:func:`tile_note`) is noted.

    Args:
        fn, x, sigma, requirements: As for :func:`run_tiled`.
        tile: First tile side to try; ``None`` tries the whole image first; ``0`` forbids tiling.
        device: Where ``fn`` runs (to free its cache between attempts).

    Returns:
        The output and the tile side that succeeded, as it ran (rounded up to the size multiple and to at least
        :func:`min_tile`); ``None`` when the image ran in one piece.

    Raises:
        DeviceError: Out of memory even at :func:`min_tile` (or with tiling forbidden).

    Example:
        >>> req = Requirements(task="denoise", in_channels=1, out_channels=1, receptive_field=2)
        >>> _, used = run_with_retry(lambda x, s: x, torch.rand(1, 1, 8, 8), 0.1, req, None, torch.device("cpu"))
        >>> used is None
        True
    """
    smallest, efficient = min_tile(requirements), efficient_tile(requirements)
    full = max(padded_size(n, requirements) for n in x.shape[-2:])
    attempt = None if tile == 0 else tile
    if tile and tile < smallest < full:
        _warn(
            f"tile {tile} is below the smallest useful tile of this model ({smallest} px: its tiles overlap by "
            f"{overlap(requirements)} px); tile {smallest} used"
        )
    while True:
        try:
            out = run_tiled(fn, x, sigma, requirements, attempt)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            current = full if attempt is None or attempt >= full else max(attempt, smallest)
            if tile == 0 or current <= smallest:
                detail = "with tiling disabled (tile 0)" if tile == 0 else f"even at the smallest tile ({smallest} px)"
                raise DeviceError(
                    f"out of memory on {device} {detail} for a {x.shape[-2]}×{x.shape[-1]} image"
                ) from None
            half = _align_down(current // 2, requirements.size_multiple)
            attempt = max(half, efficient if current > efficient else smallest)
            continue
        note = tile_note(*x.shape[-2:], attempt, requirements)
        if note is not None:
            _note(note)
        side = None if attempt is None else max(_align_up(attempt, requirements.size_multiple), smallest)
        return out, (side if side is not None and side < full else None)


def _note(note: str) -> None:
    """Add ``note`` once to the notes :func:`collect_notes` gathers (if any)."""
    notes = _tile_notes.get()
    if notes is not None and note not in notes:
        notes.append(note)


def _warn(message: str) -> None:
    """Send ``message`` to :func:`report_warnings`' callback, or where none is set, to the notes."""
    callback = _tile_warnings.get()
    if callback is not None:
        callback(message)
    else:
        _note(message)
