"""Interrupted batches (a real subprocess): no partial outputs, and a rerun finishes the rest.

``RESTOREKIT_TEST_DELAY_S`` makes the batch sleep after each file, so the signal lands mid-batch. The
timeouts are generous because a loaded machine can take a minute just to import torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restorekit.inference.io import load_image

FILES = 6
TIMEOUT = 300


@pytest.fixture
def folder(tmp_path, write_png) -> Path:
    for i in range(FILES):
        write_png(tmp_path / "in" / f"img{i}.png", seed=i)
    return tmp_path / "in"


def start(folder: Path, out: Path, weights: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "RESTOREKIT_TEST_DELAY_S": str(delay), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "restorekit", "denoise", str(folder), "-o", str(out)]
    command += ["--sigma", "15", "--model", str(weights), "--progress", "none", "--json"]
    # A shell that starts jobs in the background hands them SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; restore the default so the test behaves the same under any parent.
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_outputs(out: Path, count: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(list(out.glob("*.png"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the batch did not start writing"
        time.sleep(0.05)


def assert_only_complete_outputs(out: Path) -> list[Path]:
    outputs = sorted(out.glob("*.png"))
    for path in outputs:
        assert load_image(path).pixels.shape == (24, 40, 3)
    return outputs


def rerun_finishes(folder: Path, out: Path, weights: Path, done_before: int) -> None:
    process = start(folder, out, weights, delay=0)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr
    payload = json.loads(stdout)
    assert (payload["exists"], payload["ok"]) == (done_before, FILES - done_before)
    assert len(assert_only_complete_outputs(out)) == FILES
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_exits_130_without_partial_files_and_a_rerun_completes(
    signum, folder, tmp_path, tiny_weights, tree_hash
):
    before = tree_hash(folder)
    out = tmp_path / "out"
    process = start(folder, out, tiny_weights, delay=2.0)
    wait_for_outputs(out, 1, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not list(out.glob(".*.part"))
    done = len(assert_only_complete_outputs(out))
    assert 1 <= done < FILES
    rerun_finishes(folder, out, tiny_weights, done)
    assert tree_hash(folder) == before


def test_sigkill_leaves_no_partial_outputs_and_a_rerun_cleans_up(folder, tmp_path, tiny_weights, tree_hash):
    before = tree_hash(folder)
    out = tmp_path / "out"
    process = start(folder, out, tiny_weights, delay=1.0)
    wait_for_outputs(out, 2, process)
    process.kill()
    process.communicate(timeout=TIMEOUT)
    # Visible outputs are complete; a hidden temp file may remain if the kill landed mid-write.
    done = len(assert_only_complete_outputs(out))
    assert 2 <= done < FILES
    (out / f".img{FILES - 1}.png.00c0ffee.part").write_bytes(b"what a kill mid-write leaves")
    rerun_finishes(folder, out, tiny_weights, done)
    assert tree_hash(folder) == before
