"""The environment block of a report."""

from __future__ import annotations

import torch

import restorekit
from restorekit.bench.env import environment


def test_environment_records_restorekit_settings(monkeypatch):
    monkeypatch.setenv("RESTOREKIT_ALLOCATOR", "system")
    monkeypatch.setenv("OTHER_VARIABLE", "x")
    settings = environment()["settings"]
    assert settings["RESTOREKIT_ALLOCATOR"] == "system" and "OTHER_VARIABLE" not in settings


def test_environment_fields():
    env = environment("ci box")
    assert env["machine"] == "ci box"
    assert env["restorekit"] == restorekit.__version__
    assert isinstance(env["cpu"], str) and env["cpu"]
    assert env["cpu_count"] >= 1 and env["cpu_affinity"] >= 1 and env["torch_threads"] >= 1
    assert env["torch"] and env["python"]
    assert (env["gpu"] is not None) == torch.cuda.is_available()
    assert "numpy" in env["packages"] and env["packages"]["numpy"]
