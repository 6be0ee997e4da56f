"""The one-time build of the CPU kernel says so, once (a first run otherwise sits silent while it compiles); an
OpenMP build the compiler refuses falls back to a plain one, once; which OpenMP runtimes a process maps."""

from __future__ import annotations

import subprocess
from pathlib import Path

from restorekit.ops import _cpu_kernels


def test_the_build_prints_one_line_and_a_cached_build_prints_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "c++")

    def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        if "-o" in command:  # the compile: write a stand-in library
            Path(command[command.index("-o") + 1]).write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, stdout="c++ (test) 1.0\n", stderr="")

    monkeypatch.setattr(_cpu_kernels.subprocess, "run", run)
    built = _cpu_kernels.build("malleable_conv_cpu")
    (line,) = capsys.readouterr().err.splitlines()
    assert "compiling the CPU kernel" in line and str(tmp_path) in line
    assert _cpu_kernels.build("malleable_conv_cpu") == built and capsys.readouterr().err == ""


def test_an_openmp_build_the_compiler_refuses_falls_back_and_is_not_retried(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESTOREKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "c++")
    compiles: list[bool] = []

    def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        if "-o" not in command:  # c++ --version
            return subprocess.CompletedProcess(command, 0, stdout="c++ (test) 1.0\n", stderr="")
        compiles.append("-fopenmp" in command)
        if "-fopenmp" in command:
            return subprocess.CompletedProcess(command, 1, stdout="", stderr="unsupported option '-fopenmp'")
        Path(command[command.index("-o") + 1]).write_bytes(b"")
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(_cpu_kernels.subprocess, "run", run)
    built = _cpu_kernels.build("malleable_conv_cpu", openmp=True)
    assert compiles == [True, False] and built == _cpu_kernels.build("malleable_conv_cpu")
    assert _cpu_kernels.build("malleable_conv_cpu", openmp=True) == built and compiles == [True, False]


def test_openmp_runtimes_are_read_from_the_memory_map():
    maps = "\n".join(
        [
            "7f00-7f10 r-xp 00000000 08:01 11  /venv/torch/lib/libgomp.so.1",
            "7f10-7f20 r--p 00010000 08:01 11  /venv/torch/lib/libgomp.so.1",
            "7f20-7f30 r-xp 00000000 08:01 12  /venv/torch/lib/libtorch_cpu.so",
            "7f30-7f40 rw-p 00000000 00:00 0 ",
            "7f40-7f50 r-xp 00000000 08:01 13  /usr/lib/libiomp5.so",
        ]
    )
    assert _cpu_kernels.openmp_runtimes(maps) == {"/venv/torch/lib/libgomp.so.1", "/usr/lib/libiomp5.so"}
    assert isinstance(_cpu_kernels.openmp_shared(), bool)
