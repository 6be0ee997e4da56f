"""Weights files are written like any other file the user owns: with the mode the umask gives."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from restorekit.errors import WeightsError
from restorekit.models._weights import load_model, save_model
from restorekit.models.mallenet import MalleNet


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_weights_file_mode_follows_the_umask(tmp_path, tiny_model, umask):
    previous = os.umask(umask)
    try:
        save_model(tiny_model, tmp_path / "w.safetensors", name="mallenet_s.tiny_test")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o666 & ~umask
    assert not (tmp_path / "w.tmp").exists()
    assert load_model(tmp_path / "w.safetensors").name == "mallenet_s.tiny_test"


def test_the_manifest_lists_every_shipped_weights_file_as_it_is():
    from restorekit.models import _weights

    manifest = json.loads((_weights.weights_dir() / _weights.MANIFEST).read_text())
    assert manifest == _weights.build_manifest(), "regenerate it: python -m restorekit.models._weights"
    assert sorted(manifest["files"]) == sorted(f"{name}.safetensors" for name in _weights.shipped())


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch, tiny_model):
    """A shipped folder of one tiny model (with its manifest), and a fresh verification cache."""
    from restorekit.models import _weights

    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(_weights, "weights_dir", lambda: folder)
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path / "cache"))
    save_model(tiny_model, folder / "mallenet_s.tiny_test.safetensors", name="mallenet_s.tiny_test")
    return folder / "mallenet_s.tiny_test.safetensors"


def flip_a_bit(path, offset_from_end: int = 40, bit: int = 6) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 1 << bit  # inside the last tensor: an exponent bit of a float32
    path.write_bytes(bytes(data))


def test_a_damaged_shipped_file_is_refused_and_a_verified_one_is_not_hashed_again(shipped_copy, monkeypatch):
    from restorekit.models import _weights

    assert json.loads((shipped_copy.parent / _weights.MANIFEST).read_text())["files"]  # save_model wrote it
    hashed, real = [], _weights.file_record
    monkeypatch.setattr(_weights, "file_record", lambda path: hashed.append(path) or real(path))
    for _ in range(2):
        assert load_model(shipped_copy).name == "mallenet_s.tiny_test"
    assert len(hashed) == 1  # the second start-up remembers the file by its size and time
    flip_a_bit(shipped_copy)
    with pytest.raises(WeightsError, match="damaged") as excinfo:
        load_model(shipped_copy)
    assert "SHA-256" in str(excinfo.value) and "\n" not in str(excinfo.value)
    (shipped_copy.parent / "extra.safetensors").write_bytes(shipped_copy.read_bytes())
    with pytest.raises(WeightsError, match="not listed"):
        load_model(shipped_copy.parent / "extra.safetensors")


def test_only_the_files_the_manifest_lists_are_models(shipped_copy):
    from restorekit.models import _weights, list_models

    (shipped_copy.parent / "mallenet_s.stray.safetensors").write_bytes(shipped_copy.read_bytes())
    assert list_models() == ["mallenet_s.tiny_test"]  # a weights-shaped name is not enough
    with pytest.raises(WeightsError, match="expected a shipped model name"):
        _weights.shipped_path("mallenet_s.stray")
    _weights.write_manifest()  # rewriting the manifest keeps the list as it was
    assert list_models() == ["mallenet_s.tiny_test"]
    _weights.write_manifest(add=["mallenet_s.stray.safetensors"])  # listing a file makes it a model
    assert list_models() == ["mallenet_s.stray", "mallenet_s.tiny_test"]


def test_a_tensor_with_nan_or_inf_is_refused(tmp_path, tiny_model):
    for value in (float("nan"), float("inf")):
        with torch.no_grad():
            tiny_model.tail.weight[0, 0, 0, 0] = value
        path = tmp_path / "w.safetensors"
        save_model(tiny_model, path, name="mallenet_s.tiny_test")
        with pytest.raises(WeightsError, match=r"'tail\.weight' holds NaN or Inf"):
            load_model(path)


def test_a_width_mismatch_names_the_tensor(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from tests.conftest import tiny_mallenet

    small, wide = tmp_path / "small.safetensors", tmp_path / "wide.safetensors"
    save_model(tiny_mallenet(), small, name="mallenet_s.tiny_test")
    wider = MalleNet(in_channels=3, width=8, blocks=(1, 1, 1, 1), predictor_width=4)
    save_model(wider, wide, name="mallenet_s.tiny_test")
    with safe_open(str(small), framework="pt") as f:
        metadata = f.metadata()
    with safe_open(str(wide), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    save_file(tensors, str(wide), metadata=metadata)  # width 8 tensors, width 4 hyper-parameters
    with pytest.raises(WeightsError, match=r"tensor '[\w.]+' has shape \(") as excinfo:
        load_model(wide)
    assert "does not match mallenet_s" in str(excinfo.value) and "\n" not in str(excinfo.value)
