"""Weights files are written like any other file the user owns: with the mode the umask gives."""

from __future__ import annotations

import os
import stat

import pytest

from restorekit.models._weights import load_model, save_model


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
