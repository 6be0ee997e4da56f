import numpy as np
import pytest
import torch

from restorekit.errors import WeightsError
from restorekit.inference.metrics import psnr
from restorekit.models import create_model, list_architectures, list_models
from restorekit.models._base import Model, Requirements
from restorekit.models._weights import load_model, read_metadata, save_model, shipped_path
from restorekit.models.mallenet import MalleNet


def tiny_mallenet(in_channels=3, seed=0):
    torch.manual_seed(seed)
    return MalleNet(in_channels=in_channels, width=4, blocks=(1, 1, 1, 1), predictor_width=4).eval()


def sample_input(requirements: Requirements, size=32, sigma=25.0):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, requirements.in_channels, size, size, generator=generator)
    return x, torch.full((1, 1, size, size), sigma / 255)


def setting(requirements: Requirements, first: float = 1.0) -> tuple[torch.Tensor, ...]:
    """The extra ``w`` argument of a tunable model (all weight on parameter 1 by default), else nothing."""
    count = len(requirements.tune_parameters)
    if not count:
        return ()
    w = torch.full((1, count), (1 - first) / max(count - 1, 1))
    w[0, 0] = first
    return (w,)


LARGE = {"mallenet_l", "mallenet_xl"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in list_architectures()]
)
def test_architectures_build_and_run(name):
    model = create_model(name, pretrained=False)
    req = model.requirements
    assert req.task in ("denoise", "sr") and (req.task == "sr") == (req.scale > 1)
    size = max(req.min_size, 2 * req.size_multiple)
    x, sigma = sample_input(req, size)
    with torch.no_grad():
        y = model(x, sigma, *setting(req))
    assert y.shape == (1, req.out_channels, size * req.scale, size * req.scale)
    assert torch.isfinite(y).all()


def _task(name: str) -> str:
    """The task of a shipped model, from its architecture (no weights loaded at collection)."""
    return create_model(name.split(".")[0], pretrained=False).requirements.task


# Bicubic-trained SR models; the real-world ones (``.real_xN``) score below bicubic on clean bicubic inputs by
# design (they remove blur, noise and JPEG; docs/results/quality_sr_real_x4_on_bicubic.json).
BICUBIC_SR = [n for n in list_models() if _task(n) == "sr" and ".real_" not in n]
REAL_SR = [n for n in list_models() if _task(n) == "sr" and ".real_" in n]


@pytest.mark.parametrize("name", BICUBIC_SR)
def test_shipped_sr_models_beat_bicubic(name):
    from restorekit.ops.resize import imresize

    model = create_model(name)
    for key in ("recipe", "training", "license", "hyperparameters"):
        assert model.metadata.get(key), f"{name} lacks {key} metadata"
    scale = model.requirements.scale
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    hr = (0.5 + 0.3 * torch.sin(40 * xx * (1 + yy)) * torch.cos(25 * yy)).expand(1, 3, 96, 96)
    lr = imresize(hr, 1 / scale)
    with torch.no_grad():
        out = model(lr, torch.zeros(1, 1, *lr.shape[-2:]))
    bicubic = imresize(lr, scale)

    def inner_psnr(a):
        return psnr(a.clamp(0, 1)[..., 8:-8, 8:-8], hr[..., 8:-8, 8:-8])

    assert out.shape == hr.shape
    assert inner_psnr(out) > inner_psnr(bicubic) + 0.3


@pytest.mark.parametrize("name", [n for n in list_models() if _task(n) == "denoise"])
def test_shipped_models_denoise(name):
    model = create_model(name)
    meta = model.metadata
    for key in ("recipe", "training", "license", "hyperparameters"):
        assert meta.get(key), f"{name} lacks {key} metadata"
    assert meta["training"]["iterations"] > 0
    req = model.requirements
    generator = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    clean = (0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy)).expand(1, req.in_channels, 64, 64)
    noisy = clean + torch.randn(clean.shape, generator=generator) * 25 / 255
    level = torch.full((1, 1, 64, 64), 25 / 255)
    with torch.no_grad():
        out = model(noisy, level, *setting(req))

    assert psnr(out, clean) > psnr(noisy, clean) + 5
    if req.tune_parameters:  # the other end keeps most of the noise: close to its target y + 0.9·(z − y)
        with torch.no_grad():
            kept = model(noisy, level, *setting(req, first=0.0))
        assert psnr(kept, clean) < psnr(out, clean) - 5
        assert psnr(kept, clean + 0.9 * (noisy - clean)) > psnr(out, clean) + 5


def test_noise_level_map_conditions_the_output():
    model = tiny_mallenet()
    x, sigma = sample_input(model.requirements)
    with torch.no_grad():
        assert not torch.allclose(model(x, sigma), model(x, sigma * 2))
        ramp = torch.linspace(0, 50 / 255, 32).view(1, 1, 1, 32).expand(1, 1, 32, 32)
        assert torch.isfinite(model(x, ramp)).all()


def test_a_blind_mallenet_takes_no_noise_level():
    model = create_model("mallenet_r", pretrained=False)
    assert model.requirements.sigma_range is None and model.stems[0].in_channels == 3
    x, sigma = sample_input(model.requirements)
    with torch.no_grad():
        assert torch.equal(model(x), model(x, sigma * 2))


def test_hyperparameters_are_recorded():
    model = tiny_mallenet(in_channels=1)
    assert model.hyperparameters["in_channels"] == 1
    assert model.hyperparameters["blocks"] == [1, 1, 1, 1]
    assert model.requirements.in_channels == model.requirements.out_channels == 1


def test_a_model_carries_its_identity_from_whoever_built_it(tmp_path):
    model = tiny_mallenet()
    assert isinstance(model, Model) and (model.name, model.metadata) == ("MalleNet", {})
    untrained = create_model("mallenet_s", pretrained=False)
    assert (untrained.name, untrained.metadata) == ("mallenet_s", {})
    save_model(model, tmp_path / "tiny.safetensors", name="mallenet_s.tiny", license="test")
    loaded = load_model(tmp_path / "tiny.safetensors")
    assert loaded.name == "mallenet_s.tiny" and loaded.metadata == read_metadata(tmp_path / "tiny.safetensors")
    assert loaded.metadata["license"] == "test"


def test_weights_round_trip(tmp_path):
    model = tiny_mallenet()
    path = tmp_path / "tiny.safetensors"
    save_model(model, path, name="mallenet_s.tiny", training={"iterations": 3}, license="test")
    loaded = load_model(path)
    assert loaded.name == "mallenet_s.tiny"
    assert read_metadata(path)["training"] == {"iterations": 3}
    x, sigma = sample_input(model.requirements)
    with torch.no_grad():
        assert torch.equal(model(x, sigma), loaded(x, sigma))
    assert type(create_model(str(path))) is MalleNet


def test_weights_mismatch_is_a_weights_error(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_model(tiny_mallenet(), path, name="mallenet_s.tiny")
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors.pop(next(iter(tensors)))
    broken = tmp_path / "missing.safetensors"
    save_file(tensors, str(broken), metadata=meta)
    with pytest.raises(WeightsError, match="does not match"):
        load_model(broken)


@pytest.mark.parametrize(
    "content", [b"", b"not a safetensors file at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json}     "]
)
def test_corrupted_weights_are_a_weights_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError):
        load_model(path)


def test_truncated_weights_are_a_weights_error(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_model(tiny_mallenet(), path, name="mallenet_s.tiny")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError):
        load_model(path)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(WeightsError, match="valid"):
        create_model("nope.nothing")
    with pytest.raises(WeightsError, match="mallenet_s"):
        create_model("nope", pretrained=False)
    with pytest.raises(WeightsError):
        shipped_path("mallenet_s.does_not_exist")


def test_foreign_safetensors_without_metadata_is_rejected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.from_numpy(np.zeros(3, dtype=np.float32))}, str(path))
    with pytest.raises(WeightsError, match="metadata"):
        load_model(path)


@pytest.mark.parametrize("name", REAL_SR)
def test_shipped_real_world_sr_models_are_measured_on_real_degradations(name):
    model = create_model(name)
    for key in ("recipe", "training", "license", "hyperparameters"):
        assert model.metadata.get(key), f"{name} lacks {key} metadata"
    quality = model.metadata["quality"]
    assert "--degradation real" in quality["_measured_by"] and f"x{model.requirements.scale}" in str(quality)
    lr = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(lr, torch.zeros(1, 1, 20, 24), *setting(model.requirements))
    scale = model.requirements.scale
    assert out.shape == (1, 3, 20 * scale, 24 * scale) and torch.isfinite(out).all()
