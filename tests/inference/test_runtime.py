from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

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


@pytest.fixture
def clock(monkeypatch):
    """A fake clock for runtime's timings: only the fake runs advance it, so ties are exact."""
    now = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: now[0])
    return now


def fake_run(costs: dict[str, float], calls: list[str], clock: list[float]):
    def run(dtype: str) -> None:
        calls.append(dtype)
        clock[0] += costs[dtype]

    return run


def test_the_measured_precision_is_the_faster_one_and_is_remembered(tmp_path, monkeypatch, clock):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path))
    calls: list[str] = []
    assert runtime.measured_precision("m", fake_run({"fp32": 0.03, "bf16": 0.01}, calls, clock)) == "bf16"
    assert calls == ["fp32"] * 3 + ["bf16"] * 3  # a warm-up and two timed runs each
    assert runtime.measured_precision("m", fake_run({"fp32": 0.0, "bf16": 1.0}, calls, clock)) == "bf16"  # remembered
    assert len(calls) == 6
    entry = json.loads((tmp_path / runtime.PRECISION_CACHE).read_text())
    (key,) = entry
    assert key.endswith("| m") and entry[key]["ms"]["fp32"] > entry[key]["ms"]["bf16"]


def test_fp32_wins_a_near_tie_and_an_isa_cap_is_another_cpu(tmp_path, monkeypatch, clock):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path))
    calls: list[str] = []
    assert runtime.measured_precision("m", fake_run({"fp32": 0.02, "bf16": 0.0195}, calls, clock)) == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in runtime.cpu_identity()
    assert runtime.measured_precision("m", fake_run({"fp32": 0.03, "bf16": 0.01}, calls, clock)) == "bf16"
    assert len(json.loads((tmp_path / runtime.PRECISION_CACHE).read_text())) == 2


def test_an_unreadable_cache_is_measured_again_and_a_read_only_one_is_no_error(tmp_path, monkeypatch, clock):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("not a folder")  # the cache cannot be created
    calls: list[str] = []
    assert runtime.measured_precision("m", fake_run({"fp32": 0.0, "bf16": 0.02}, calls, clock)) == "fp32"
    assert runtime.measured_precision("m", fake_run({"fp32": 0.0, "bf16": 0.02}, calls, clock)) == "fp32"
    assert len(calls) == 12


def test_processes_measuring_together_keep_the_first_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path))
    started, answers, calls = threading.Barrier(2), [], []

    def measure(fast: str) -> None:
        def run(dtype: str) -> None:
            calls.append(dtype)
            time.sleep(0.0 if dtype == fast else 0.01)

        started.wait()
        answers.append(runtime.measured_precision("m", run))

    threads = [threading.Thread(target=measure, args=(fast,)) for fast in ("bf16", "fp32")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 6 and answers[0] == answers[1]  # one measured, the other read its answer


def test_the_cpu_identity_does_not_depend_on_the_thread_count():
    threads = torch.get_num_threads()
    try:
        first = runtime.cpu_identity()
        torch.set_num_threads(1 if threads > 1 else 2)
        assert runtime.cpu_identity() == first
    finally:
        torch.set_num_threads(threads)
