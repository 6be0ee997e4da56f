"""The inference API: model contract, σ handling, devices, precision, channels, model loading and caching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import restorekit
from restorekit.errors import DeviceError, UsageError, WeightsError
from restorekit.inference import api, runtime, tiling
from restorekit.models import Requirements
from restorekit.models._weights import save_model, shipped


class Spy(nn.Module):
    """Records what the engine passes in; returns ``x`` shifted by ``offset``."""

    def __init__(self, channels: int = 3, offset: float = 0.0, **requirements):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.offset = offset
        self.requirements = Requirements(
            task="denoise", in_channels=channels, out_channels=channels, sigma_range=(0.0, 75.0), **requirements
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), sigma.clone()))
        return x + self.offset


class NaNUnderAutocast(Spy):
    def forward(self, x, sigma):
        return torch.full_like(x, float("nan")) if torch.is_autocast_enabled(x.device.type) else x


def test_model_contract_and_shapes(make_pixels):
    spy = Spy(size_multiple=8, min_size=16)
    out = restorekit.denoise(make_pixels(13, 21), sigma=30, model=spy, device="cpu")
    assert out.shape == (13, 21, 3) and out.dtype == np.float32
    x, sigma = spy.calls[-1]  # (the first call is the memory probe)
    assert x.shape == (1, 3, 16, 24) and sigma.shape == (1, 1, 16, 24)
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(sigma, torch.full_like(sigma, 30 / 255))


def test_output_is_clipped_to_unit_range(make_pixels):
    out = restorekit.denoise(make_pixels(24, 40), 10, Spy(offset=0.5), device="cpu")
    assert out.max() == 1.0


def test_tiny_mallenet_color_and_gray(tiny_model, tiny_gray_model, make_pixels, device):
    for model, channels in ((tiny_model, 3), (tiny_gray_model, 1)):
        pixels = make_pixels(24, 40, channels)
        out, info = api.denoise_image(pixels, 25, model, device)
        assert out.shape == pixels.shape and np.isfinite(out).all()
        assert info.sigma == 25 and info.sigma_source == "given"
        assert info.dtype == api.auto_precision(model.requirements, torch.device(device), model)
        assert info.device.startswith(device) and info.tile is None and info.ms > 0


def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch):
    safe = Requirements(task="denoise", in_channels=3, out_channels=3)
    unsafe = Requirements(task="denoise", in_channels=3, out_channels=3, half_safe=False)
    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert api.auto_precision(safe, cpu) == "bf16" and api.auto_precision(unsafe, cpu) == "fp32"
    assert api.auto_precision(safe, torch.device("cuda")) == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert api.auto_precision(safe, cpu) == "fp32"


def test_auto_precision_of_a_trained_model_is_measured_once_on_this_cpu(tiny_model, make_pixels, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(api.AUTO_DTYPE_ENV)  # the default: measured
    tiny_model.metadata = {"name": "mallenet_tiny.t", "hyperparameters": {"width": 4}}
    timed: list[str] = []
    real = runtime.measured_precision

    def spy(key, run, candidates=("fp32", "bf16")):
        timed.append(key)
        return real(key, run, candidates)

    monkeypatch.setattr(runtime, "measured_precision", spy)
    _, first = api.denoise_image(make_pixels(24, 40), 25, tiny_model, "cpu")
    _, second = api.denoise_image(make_pixels(24, 40), 25, tiny_model, "cpu")
    (entry,) = json.loads((tmp_path / runtime.PRECISION_CACHE).read_text()).values()
    assert first.dtype == second.dtype == entry["dtype"] and set(entry["ms"]) == {"fp32", "bf16"}
    assert timed[0].endswith("mallenet_tiny.t {'width': 4} @512")
    monkeypatch.setattr(runtime, "measured_precision", lambda key, run, candidates=(): "fp32")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    _, info = api.denoise_image(make_pixels(24, 40), 25, tiny_model, "cpu")
    assert info.dtype == "fp32"  # the measurement, not the CPU's flags, decides


def test_auto_precision_output_is_close_to_fp32(tiny_model, make_pixels):
    pixels = make_pixels(32, 40)
    out16, info16 = api.denoise_image(pixels, 25, tiny_model, "cpu", dtype="bf16")
    out32, info32 = api.denoise_image(pixels, 25, tiny_model, "cpu", dtype="fp32")
    assert (info16.dtype, info32.dtype) == ("bf16", "fp32")
    assert 0 < np.abs(out16 - out32).max() < 0.02


def test_sigma_auto_is_estimated_and_reported(make_pixels):
    clean = np.full((48, 64, 3), 0.5, np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 20 / 255, clean.shape).astype(np.float32)
    for sigma in (None, "auto"):
        _, info = api.denoise_image(noisy, sigma, Spy(), "cpu")
        assert info.sigma_source == "estimated" and abs(info.sigma - 20) < 3


def test_estimated_sigma_is_clamped_to_the_model_range():
    noisy = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)  # uniform: σ ≈ 74
    spy = Spy()
    spy.requirements = Requirements(task="denoise", in_channels=3, out_channels=3, sigma_range=(0.0, 50.0))
    _, info = api.denoise_image(noisy, "auto", spy, "cpu")
    assert info.sigma == 50 and "outside" in info.notes[0]


def test_sigma_map(make_pixels):
    spy = Spy()
    noise_map = np.linspace(0, 50, 24 * 40, dtype=np.float32).reshape(24, 40)
    _, info = api.denoise_image(make_pixels(24, 40), noise_map, spy, "cpu")
    assert info.sigma_source == "map" and info.sigma == pytest.approx(25, abs=0.01)
    assert torch.allclose(spy.calls[-1][1][0, 0], torch.from_numpy(noise_map / 255))


@pytest.mark.parametrize(
    "sigma",
    [-1, 80, float("nan"), "loud", True, np.zeros((3, 3)), np.full((24, 40), 90.0)],
    ids=["negative", "above-range", "nan", "word", "bool", "map-shape", "map-range"],
)
def test_bad_sigma_is_a_usage_error(sigma, make_pixels):
    with pytest.raises(UsageError, match="sigma"):
        restorekit.denoise(make_pixels(24, 40), sigma, Spy(), device="cpu")


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((24, 40)),
        np.zeros((24, 40, 4), np.float32),
        np.full((24, 40, 3), np.nan, np.float32),
        np.zeros((24, 40, 3), np.uint8),
        "x.png",
    ],
    ids=["2d", "4-channels", "nan", "uint8", "path"],
)
def test_bad_image_is_a_usage_error(image):
    with pytest.raises(UsageError, match="image"):
        restorekit.denoise(image, 10, Spy(), device="cpu")


def test_devices(make_pixels):
    assert api.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="valid: auto, cpu, cuda, cuda:N"):
        api.resolve_device("tpu")
    with pytest.raises(DeviceError):
        api.resolve_device("cuda:99")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_device_error(make_pixels):
    with pytest.raises(DeviceError, match="not available"):
        restorekit.denoise(make_pixels(24, 40), 10, Spy(), device="cuda")


def test_half_precision_only_where_safe(make_pixels):
    _, info = api.denoise_image(make_pixels(24, 40), 10, Spy(), "cpu", dtype="bf16")
    assert info.dtype == "bf16"
    _, info = api.denoise_image(make_pixels(24, 40), 10, Spy(half_safe=False), "cpu", dtype="fp16")
    assert info.dtype == "fp32" and "not half-precision safe" in info.notes[0]
    with pytest.raises(UsageError, match="dtype"):
        restorekit.denoise(make_pixels(24, 40), 10, Spy(), device="cpu", dtype="fp8")


def test_nan_in_half_precision_is_retried_in_fp32(make_pixels):
    pixels = make_pixels(24, 40)
    out, info = api.denoise_image(pixels, 10, NaNUnderAutocast(), "cpu", dtype="bf16")
    assert info.dtype == "fp32" and "NaN" in info.notes[0]
    assert np.array_equal(out, pixels)


def test_gray_model_on_colour_image_runs_per_channel(make_pixels, tiny_gray_model):
    pixels = make_pixels(24, 40)
    out, info = api.denoise_image(pixels, 20, tiny_gray_model, "cpu")
    per_channel = [restorekit.denoise(pixels[..., c : c + 1], 20, tiny_gray_model, "cpu") for c in range(3)]
    np.testing.assert_allclose(out, np.concatenate(per_channel, axis=-1), atol=1e-6)
    assert "each colour channel" in info.notes[0]


def test_colour_model_on_gray_image_is_refused(make_pixels, tiny_model):
    with pytest.raises(UsageError, match="3-channel"):
        restorekit.denoise(make_pixels(24, 40, 1), 20, tiny_model, device="cpu")


def test_module_without_requirements_is_refused(make_pixels):
    with pytest.raises(UsageError, match="requirements"):
        restorekit.denoise(make_pixels(24, 40), 20, nn.Identity(), device="cpu")


def test_non_denoising_model_is_refused(make_pixels):
    spy = Spy()
    spy.requirements = Requirements(task="sr", in_channels=3, out_channels=3, scale=2)
    with pytest.raises(UsageError, match="denoising"):
        restorekit.denoise(make_pixels(24, 40), 20, spy, device="cpu")


def test_model_from_weights_file_is_cached_per_file_and_device(tiny_weights, tiny_model, make_pixels):
    first = api.get_model(tiny_weights, 3, torch.device("cpu"))
    assert api.get_model(str(tiny_weights), 3, torch.device("cpu")) is first
    out, info = api.denoise_image(make_pixels(24, 40), 25, str(tiny_weights), "cpu")
    assert info.model == "mallenet_s.tiny_test"
    np.testing.assert_allclose(out, restorekit.denoise(make_pixels(24, 40), 25, tiny_model, "cpu"), atol=1e-6)
    save_model(tiny_model, tiny_weights, name="mallenet_s.tiny_test")  # rewritten → reloaded
    assert api.get_model(tiny_weights, 3, torch.device("cpu")) is not first


def test_bad_model_names_are_weights_errors(tmp_path, make_pixels):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    for model in ("no_such_model.tag", str(tmp_path / "missing.safetensors"), str(corrupt)):
        with pytest.raises(WeightsError):
            restorekit.denoise(make_pixels(24, 40), 25, model, device="cpu")


@pytest.mark.skipif("mallenet_s.awgn_color" in shipped(), reason="a default colour model ships")
def test_no_default_model_is_a_weights_error(make_pixels):
    with pytest.raises(WeightsError, match="no trained denoiser"):
        restorekit.denoise(make_pixels(24, 40), 25, device="cpu")


def test_explicit_tile_is_used_and_reported(tiny_model, make_pixels):
    pixels = make_pixels(200, 280)
    whole = restorekit.denoise(pixels, 25, tiny_model, "cpu", tile=0)
    tiled, info = api.denoise_image(pixels, 25, tiny_model, "cpu", tile=192)
    assert info.tile == 192
    assert np.abs(tiled - whole).max() < 1 / 255
    with pytest.raises(UsageError, match="tile"):
        restorekit.denoise(pixels, 25, tiny_model, "cpu", tile=-1)


def test_run_info_as_dict_is_json_ready(make_pixels):
    _, info = api.denoise_image(make_pixels(24, 40), 25, Spy(), "cpu")
    record = info.as_dict()
    keys = {"sigma", "sigma_source", "model", "device", "dtype", "tile", "ms", "notes", "ensemble", "w", "scale"}
    assert set(record) == keys
    assert record["model"] == "Spy" and record["notes"] == [] and record["w"] is None and record["scale"] == 1


class ColumnRamp(Spy):
    """Not equivariant to flips or rotations: adds a ramp along the columns of whatever frame it is given."""

    def forward(self, x, sigma):
        self.calls.append((x.clone(), sigma.clone()))
        return x + 0.01 * torch.arange(x.shape[-1], dtype=x.dtype) / x.shape[-1]


def test_ensemble_averages_the_eight_views_mapped_back(make_pixels):
    pixels = make_pixels(24, 40) * 0.5 + 0.25
    model = ColumnRamp()
    out, info = api.denoise_image(pixels, 25, model, "cpu", tile=0, dtype="fp32", ensemble=True)
    expected = np.zeros_like(pixels)
    for turns in range(4):
        for mirror in (False, True):
            view = np.rot90(pixels[:, ::-1] if mirror else pixels, turns)
            ramp = 0.01 * np.arange(view.shape[1], dtype=np.float32)[None, :, None] / view.shape[1]
            back = np.rot90(view + ramp, -turns)
            expected += back[:, ::-1] if mirror else back
    np.testing.assert_allclose(out, expected / 8, atol=1e-6)
    assert info.ensemble and len(model.calls) == 8
    assert {tuple(x.shape[-2:]) for x, _ in model.calls} == {(24, 40), (40, 24)}
    single, info = api.denoise_image(pixels, 25, ColumnRamp(), "cpu", tile=0, dtype="fp32")
    assert not info.ensemble and np.abs(single - out).max() > 1e-3


class SigmaEcho(Spy):
    """Returns the noise map it is given, in every channel."""

    def forward(self, x, sigma):
        return sigma.expand_as(x)


def test_ensemble_turns_a_noise_map_with_the_image(make_pixels):
    noise_map = np.linspace(0, 50, 24 * 40, dtype=np.float32).reshape(24, 40)
    out = restorekit.denoise(make_pixels(24, 40), noise_map, SigmaEcho(), "cpu", tile=0, ensemble=True)
    np.testing.assert_allclose(out, np.repeat(noise_map[..., None] / 255, 3, axis=2), atol=1e-6)


def test_ensemble_of_an_equivariant_model_through_the_tiler(tiny_model, make_pixels):
    pixels = make_pixels(200, 280)
    out, info = api.denoise_image(pixels, 25, tiny_model, "cpu", tile=96, dtype="fp32", ensemble=True)
    single = restorekit.denoise(pixels, 25, tiny_model, "cpu", tile=96, dtype="fp32")
    assert info.ensemble and info.tile == tiling.min_tile(tiny_model.requirements) and out.shape == pixels.shape
    assert np.abs(out - single).mean() < 0.05
    with pytest.raises(UsageError, match="ensemble"):
        restorekit.denoise(pixels, 25, tiny_model, "cpu", ensemble="yes")


def test_a_costly_tile_is_noted_in_the_run_info(make_pixels):
    _, info = api.denoise_image(make_pixels(90, 90), 25, Spy(), "cpu", tile=32)
    assert any("the work of untiled" in note for note in info.notes)


def test_an_output_with_nan_even_in_fp32_is_refused_not_clamped(make_pixels):
    class Broken(Spy):
        def forward(self, x, sigma):
            return x * float("nan")

    with pytest.raises(WeightsError, match="NaN or Inf") as excinfo:
        api.denoise_image(make_pixels(24, 40), 25, Broken(), "cpu", None, "fp32")
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize(
    "values, finite",
    [
        ([0.0, 1.0], True),
        ([1.0, float("nan")], False),
        ([float("inf"), -float("inf")], False),  # the sum is NaN
        ([float("-inf"), 1.0], False),
        ([3e38, 3e38, -1.0], True),  # finite values whose sum overflows: the element-wise test decides
    ],
)
def test_all_finite_is_the_element_wise_test(values, finite):
    assert api.all_finite(torch.tensor(values)) is finite
    assert api.all_finite(torch.tensor(values).reshape(1, -1, 1, 1).to(memory_format=torch.channels_last)) is finite
