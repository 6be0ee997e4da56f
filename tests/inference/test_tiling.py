"""Tiling: padding, tiled ≡ untiled where the overlap covers the receptive field, OOM retry, memory sizing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restorekit.errors import DeviceError
from restorekit.inference import tiling
from restorekit.models import Requirements

CPU = torch.device("cpu")


class ConvStack(nn.Module):
    """Three 3×3 convolutions (receptive field exactly 3 each side), optionally at half resolution
    through pixel-unshuffle (then size multiple 2 and receptive field 2·3 + 1), optionally upscaling."""

    def __init__(self, channels: int = 3, unshuffle: bool = False, scale: int = 1):
        super().__init__()
        torch.manual_seed(0)
        inner = channels * 4 if unshuffle else channels
        self.convs = nn.Sequential(
            nn.Conv2d(inner + 1, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, inner * scale**2, 3, padding=1),
        )
        self.unshuffle, self.scale = unshuffle, scale
        self.requirements = Requirements(
            task="denoise" if scale == 1 else "sr",
            in_channels=channels,
            out_channels=channels,
            size_multiple=2 if unshuffle else 1,
            receptive_field=7 if unshuffle else 3,
            scale=scale,
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.unshuffle:
            x = F.pixel_unshuffle(x, 2)
            sigma = F.avg_pool2d(sigma, 2)
        out = self.convs(torch.cat([x, sigma], dim=1))
        if self.unshuffle:
            out = F.pixel_shuffle(out, 2)
        return F.pixel_shuffle(out, self.scale) if self.scale > 1 else out


def model_fn(model: nn.Module):
    def run(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x, sigma)

    return run


def test_pad_reflects_and_reaches_the_multiple():
    req = Requirements(task="denoise", in_channels=1, out_channels=1, size_multiple=8, min_size=16)
    x = torch.arange(5 * 19, dtype=torch.float32).reshape(1, 1, 5, 19)
    padded = tiling.pad(x, req)
    assert padded.shape == (1, 1, 16, 24)
    assert torch.equal(padded[..., :5, :19], x)
    # Where the padding is shorter than the image, it is exactly torch's reflect padding.
    assert torch.equal(padded[..., :5, :24], F.pad(x, (0, 5, 0, 0), mode="reflect"))
    assert torch.equal(tiling.pad(torch.ones(1, 1, 1, 1), req), torch.ones(1, 1, 16, 16))


@pytest.mark.parametrize("size", [(37, 53), (40, 40), (7, 90)])
def test_run_tiled_crops_back_to_odd_sizes(size):
    model = ConvStack(unshuffle=True)
    x = torch.rand(1, 3, *size)
    out = tiling.run_tiled(model_fn(model), x, 0.1, model.requirements, tile=None)
    assert out.shape == x.shape


@pytest.mark.parametrize("unshuffle", [False, True])
def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(unshuffle):
    model = ConvStack(unshuffle=unshuffle)
    x = torch.rand(1, 3, 61, 83)
    sigma = torch.rand(1, 1, 61, 83)  # a spatially varying map is tiled with the image
    whole = tiling.run_tiled(model_fn(model), x, sigma, model.requirements, tile=None)
    tiled = tiling.run_tiled(model_fn(model), x, sigma, model.requirements, tile=tiling.min_tile(model.requirements))
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_tiled_equals_untiled_for_upscaling_models():
    model = ConvStack(scale=2)
    x = torch.rand(1, 3, 45, 50)
    whole = tiling.run_tiled(model_fn(model), x, 0.1, model.requirements, tile=None)
    tiled = tiling.run_tiled(model_fn(model), x, 0.1, model.requirements, tile=16)
    assert whole.shape == (1, 3, 90, 100)
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_tiny_mallenet_tiled_within_one_level(tiny_model, make_pixels):
    x = torch.from_numpy(make_pixels(200, 280)).permute(2, 0, 1)[None]
    req = tiny_model.requirements
    whole = tiling.run_tiled(model_fn(tiny_model), x, 25 / 255, req, tile=None)
    tiled = tiling.run_tiled(model_fn(tiny_model), x, 25 / 255, req, tile=tiling.min_tile(req))
    assert (tiled - whole).abs().max() < 1 / 255


def test_tiles_never_exceed_the_tile_size():
    model = ConvStack()
    seen = []

    def spy(x, sigma):
        seen.append(tuple(x.shape[-2:]))
        assert sigma.shape[-2:] == x.shape[-2:]
        return model_fn(model)(x, sigma)

    tiling.run_tiled(spy, torch.rand(1, 3, 100, 130), 0.1, model.requirements, tile=32)
    assert len(seen) > 1 and max(max(s) for s in seen) <= 32


def oom_above(limit: int, error: type[BaseException] = torch.OutOfMemoryError):
    """A tile function that runs out of memory on tiles larger than ``limit``."""
    model = ConvStack(unshuffle=True)
    calls = []

    def run(x, sigma):
        calls.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > limit:
            raise error("CUDA out of memory. Tried to allocate 2 GiB") if error is not MemoryError else error()
        return model_fn(model)(x, sigma)

    return run, calls, model


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, RuntimeError, MemoryError])
def test_out_of_memory_retries_with_half_size_tiles(error):
    fn, calls, model = oom_above(40, error)
    x = torch.rand(1, 3, 150, 170)
    out, used = tiling.run_with_retry(fn, x, 0.1, model.requirements, None, CPU)
    whole = tiling.run_tiled(model_fn(model), x, 0.1, model.requirements, tile=None)
    assert used is not None and used <= 40
    assert calls[0] == 170 and sorted(set(calls), reverse=True)[:2] == [170, 84]
    assert torch.allclose(out, whole, atol=1e-5)


def test_out_of_memory_at_the_smallest_tile_is_a_device_error():
    fn, _, model = oom_above(1)
    with pytest.raises(DeviceError, match="smallest tile"):
        tiling.run_with_retry(fn, torch.rand(1, 3, 64, 64), 0.1, model.requirements, None, CPU)
    with pytest.raises(DeviceError, match="tiling disabled"):
        tiling.run_with_retry(fn, torch.rand(1, 3, 64, 64), 0.1, model.requirements, 0, CPU)


def test_other_errors_are_not_retried():
    def broken(x, sigma):
        raise RuntimeError("shape mismatch")

    req = ConvStack().requirements
    with pytest.raises(RuntimeError, match="shape mismatch"):
        tiling.run_with_retry(broken, torch.rand(1, 3, 64, 64), 0.1, req, None, CPU)


def test_auto_tile_follows_available_memory(monkeypatch, tiny_model):
    req = tiny_model.requirements
    per_pixel = tiling.bytes_per_pixel(tiny_model, req, CPU)
    assert per_pixel > 0
    monkeypatch.setattr(tiling, "available_memory", lambda device: 4 * 1024**3)
    big = tiling.auto_tile(per_pixel, req, CPU)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 64 * 1024**2)
    small = tiling.auto_tile(per_pixel, req, CPU)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1)
    assert tiling.auto_tile(per_pixel, req, CPU) == tiling.min_tile(req)
    assert big > small >= tiling.min_tile(req) and big % req.size_multiple == 0 == small % req.size_multiple


def test_auto_tile_for_an_image_does_the_least_work_within_memory(monkeypatch):
    req = Requirements(task="denoise", in_channels=3, out_channels=3, size_multiple=4, receptive_field=64)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 4 * 3456**2 * 384)  # fits a 3456-px tile
    largest = tiling.auto_tile(384.0, req, CPU)
    assert largest == 3456 and tiling.work_ratio(4000, 6000, largest, req) > 1.9  # 2×2 tiles, twice the pixels
    chosen = tiling.auto_tile(384.0, req, CPU, (4000, 6000))
    sides = range(largest, tiling.min_tile(req) - 1, -4)
    assert chosen < largest and tiling.work_ratio(4000, 6000, chosen, req) < 1.15
    assert tiling.work_ratio(4000, 6000, chosen, req) == min(tiling.work_ratio(4000, 6000, t, req) for t in sides)
    assert tiling.auto_tile(384.0, req, CPU, (3000, 2000)) == largest  # one piece fits: untiled


def test_available_memory_is_reported():
    assert tiling.available_memory(CPU) > 0


@pytest.mark.slow
def test_twelve_megapixels_run_in_bounded_memory_on_cpu():
    """4000×3000 colour with a 1 GiB memory view: peak RSS stays near the image buffers, not the activations."""
    script = textwrap.dedent(
        """
        import json, resource
        import numpy as np, torch
        from torch import nn
        from restorekit.inference import api, tiling
        from restorekit.models import Requirements

        class Wide(nn.Module):  # 64 float32 channels at full resolution: 3 GB of activations untiled
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Conv2d(4, 64, 3, padding=1), nn.Conv2d(64, 3, 1)
                self.requirements = Requirements(task="denoise", in_channels=3, out_channels=3, receptive_field=2)
            def forward(self, x, sigma):
                return x - 0.01 * self.b(torch.relu(self.a(torch.cat([x, sigma], 1))))

        tiling.available_memory = lambda device: 1024**3
        pixels = np.full((3000, 4000, 3), 0.5, np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out, info = api.denoise_image(pixels, 25, Wide(), "cpu")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"extra": peak - before, "tile": info.tile, "shape": out.shape}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    image = 3000 * 4000 * 3 * 4
    assert result["shape"] == [3000, 4000, 3] and result["tile"] is not None
    # Input tensor, accumulator, output array (3 images) plus tiles well under the 1 GiB view.
    assert result["extra"] < 3 * image + 1024**3, result


# MalleNet-S: receptive field 64, size multiple 8 → overlap 160, smallest tile 192.
MALLENET_S = Requirements(
    task="denoise", in_channels=1, out_channels=1, size_multiple=8, min_size=16, receptive_field=64
)


def test_work_ratio_follows_the_tile_geometry():
    assert (tiling.overlap(MALLENET_S), tiling.min_tile(MALLENET_S)) == (160, 192)
    assert tiling.work_ratio(806, 1260, None, MALLENET_S) == 1.0
    assert tiling.work_ratio(806, 1260, 4096, MALLENET_S) == 1.0
    # 192-px tiles keep 32 px of each step: 21 × 35 tiles of 192² over the padded 808 × 1264.
    assert tiling.work_ratio(806, 1260, 192, MALLENET_S) == pytest.approx(21 * 35 * 192**2 / (808 * 1264))
    efficient = tiling.efficient_tile(MALLENET_S)
    assert tiling.min_tile(MALLENET_S) < efficient and tiling.work_ratio(3000, 4000, efficient, MALLENET_S) < 2.1
    assert tiling.tile_note(806, 1260, efficient, MALLENET_S) is None
    assert tiling.tile_note(806, 1260, 192, MALLENET_S) == (
        "tile 192 with 160-px overlap: ~27× the work of untiled; a larger tile runs faster"
    )


def test_a_costly_tile_is_noted_once():
    x = torch.rand(1, 1, 400, 400)
    with tiling.collect_notes([]) as notes:
        for _ in range(2):  # two passes (ensemble views, colour planes) over one image
            tiling.run_with_retry(lambda x, s: x, x, 0.1, MALLENET_S, 192, CPU)
    (note,) = notes
    assert note.startswith("tile 192 with 160-px overlap: ~15×")
    with tiling.collect_notes([]) as notes:
        tiling.run_with_retry(lambda x, s: x, x, 0.1, MALLENET_S, None, CPU)
        tiling.run_with_retry(lambda x, s: x, torch.rand(1, 1, 1000, 1000), 0.1, MALLENET_S, 552, CPU)
    assert notes == []


def test_out_of_memory_restart_stops_at_the_efficient_tile_before_the_smallest():
    calls = []

    def identity_oom_above(x, sigma):
        calls.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 600:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return x

    with tiling.collect_notes([]) as notes:
        _, used = tiling.run_with_retry(identity_oom_above, torch.rand(1, 1, 806, 1260), 0.1, MALLENET_S, None, CPU)
    assert used == tiling.efficient_tile(MALLENET_S) == 552 and sorted(set(calls), reverse=True) == [1264, 632, 552]
    assert notes == []


@pytest.mark.parametrize(
    "message",
    [
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate "
        "2304000000 bytes. Error code 12 (Cannot allocate memory)",
        "std::bad_alloc",
    ],
)
def test_a_cpu_allocation_failure_is_out_of_memory_and_retried_with_smaller_tiles(message):
    assert tiling.is_out_of_memory(RuntimeError(message))
    model = ConvStack(unshuffle=True)
    calls = []

    def run(x, sigma):
        calls.append(max(x.shape[-2:]))
        if max(x.shape[-2:]) > 40:
            raise RuntimeError(message)
        return model_fn(model)(x, sigma)

    out, used = tiling.run_with_retry(run, torch.rand(1, 3, 64, 80), 0.1, model.requirements, None, CPU)
    assert used is not None and used <= 40 and out.shape == (1, 3, 64, 80)
    assert not tiling.is_out_of_memory(RuntimeError("Expected 4-dimensional input"))


def test_the_automatic_tile_follows_the_address_space_limit(monkeypatch):
    import resource

    monkeypatch.setattr(tiling, "free_heap_bytes", lambda: 0)
    free = tiling.available_memory(CPU)
    size = tiling._virtual_size()
    monkeypatch.setattr(resource, "getrlimit", lambda which: (size + 2**28, resource.RLIM_INFINITY))
    monkeypatch.setattr(tiling, "_virtual_size", lambda: size)
    limited = tiling.available_memory(CPU)
    assert limited == 2**28 < free
    req = Requirements(task="denoise", in_channels=3, out_channels=3, size_multiple=8)
    assert tiling.auto_tile(1000.0, req, CPU) == math.isqrt(int(limited * 0.25 / 1000)) // 8 * 8


def test_the_automatic_tile_follows_the_cgroup_limit(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "jobs" / "run").mkdir(parents=True)
    (v2 / "jobs" / "memory.max").write_text("2147483648\n")
    (v2 / "jobs" / "memory.current").write_text("1073741824\n")
    (v2 / "jobs" / "memory.stat").write_text("anon 1\ninactive_file 1048576\n")
    (v2 / "jobs" / "run" / "memory.max").write_text("max\n")
    (v2 / "jobs" / "run" / "memory.current").write_text("5\n")
    assert tiling.cgroup_headroom(str(v2), ["0::/jobs/run"]) == [2**30 + 2**20]
    v1 = tmp_path / "v1" / "memory" / "box"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("536870912\n")
    (v1 / "memory.usage_in_bytes").write_text("268435456\n")
    (tmp_path / "v1" / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert tiling.cgroup_headroom(str(tmp_path / "v1"), ["4:memory:/box", "3:cpuset:/"]) == [2**28]
    assert tiling.cgroup_headroom(str(tmp_path / "none"), ["0::/"]) == []


def test_a_tile_below_the_smallest_useful_one_is_reported_as_the_tile_that_ran():
    model = ConvStack(unshuffle=True)
    req = model.requirements
    smallest = tiling.min_tile(req)
    warned = []
    with tiling.report_warnings(warned.append):
        _, used = tiling.run_with_retry(model_fn(model), torch.rand(1, 3, 48, 64), 0.1, req, 3, CPU)
    assert used == smallest and len(warned) == 1 and f"tile {smallest} used" in warned[0]
    with tiling.collect_notes([]) as notes:
        tiling.run_with_retry(model_fn(model), torch.rand(1, 3, 48, 64), 0.1, req, 3, CPU)
    assert any("below the smallest useful tile" in note for note in notes)
