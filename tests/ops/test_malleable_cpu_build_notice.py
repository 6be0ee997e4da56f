"""The one-time build of the CPU kernel says so, once: a first run otherwise sits silent while it compiles."""

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
