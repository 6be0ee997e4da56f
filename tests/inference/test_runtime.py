from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from restorekit.inference import runtime, tiling

PROBE = """
import ctypes, sys
from restorekit.inference import runtime
kept = runtime.keep_freed_memory()
block = ctypes.create_string_buffer(64 * 2**20)  # above glibc's mmap threshold
del block
print(kept, runtime.free_heap_bytes() >= 64 * 2**20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_memory_is_kept_for_reuse():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_allocator_is_left_alone_when_asked():
    env = {"RESTOREKIT_ALLOCATOR": "system", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "False"]


def test_kept_memory_counts_as_available(monkeypatch):
    baseline = tiling.available_memory(torch.device("cpu"))
    monkeypatch.setattr(tiling, "free_heap_bytes", lambda: 2**40)
    assert tiling.available_memory(torch.device("cpu")) >= baseline + 2**40 - 2**30


def test_native_bf16_probe_is_a_bool():
    assert isinstance(runtime.cpu_has_native_bf16(), bool)
