"""Interrupted batches (a real subprocess): no partial outputs, and a rerun finishes the rest.

``RESTOREKIT_TEST_DELAY_S`` makes the batch sleep after each file, so the signal lands mid-batch. The
timeouts are generous because a loaded machine can take a minute just to import torch.
"""

from __future__ import annotations

import contextlib
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


def start(folder: Path, out: Path, weights: Path, delay: float, sigma: str = "15") -> subprocess.Popen:
    env = {**os.environ, "RESTOREKIT_TEST_DELAY_S": str(delay), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "restorekit", "denoise", str(folder), "-o", str(out)]
    command += ["--sigma", sigma, "--model", str(weights), "--progress", "none", "--json"]
    # A shell that starts jobs in the background hands them SIGINT ignored, and Python then never raises
    # KeyboardInterrupt; restore the defaults so the test behaves the same under any parent (nohup: SIGHUP).
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGHUP)],
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


EXPECTED_CODE = {signal.SIGINT: 130, signal.SIGTERM: 130, signal.SIGHUP: 129}


def assert_nothing_left_behind(out: Path) -> None:
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.is_dir() else []
    assert hidden == [], hidden
    if out.is_dir():
        assert_only_complete_outputs(out)


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.8, 1.5, 3.0])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_at_any_moment_exits_cleanly(signum, delay, folder, tmp_path, tiny_weights):
    """From start-up (imports) through model loading into the batch: the code, no traceback, nothing left."""
    out = tmp_path / "out"
    process = start(folder, out, tiny_weights, delay=2.0)
    time.sleep(delay)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == EXPECTED_CODE[signum], stderr
    assert "Traceback" not in stderr and "Error" not in stderr and "interrupted" in stderr, stderr
    payload = json.loads(stdout)
    assert payload["interrupted"] is True and payload["exit_code"] == EXPECTED_CODE[signum]
    assert_nothing_left_behind(out)


def test_sighup_mid_batch_keeps_finished_outputs_and_answers_with_them(folder, tmp_path, tiny_weights):
    out = tmp_path / "out"
    process = start(folder, out, tiny_weights, delay=2.0)
    wait_for_outputs(out, 1, process)
    process.send_signal(signal.SIGHUP)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 129, stderr
    payload = json.loads(stdout)
    done = assert_only_complete_outputs(out)
    assert payload["interrupted"] is True and payload["ok"] == len(done) >= 1
    assert_nothing_left_behind(out)


@pytest.mark.parametrize("sigmas", [("15", "15"), ("15", "30")], ids=["same", "different"])
def test_two_runs_on_one_output_folder_share_the_work(sigmas, folder, tmp_path, tiny_weights, tree_hash):
    out = tmp_path / "out"
    runs = []
    for sigma in sigmas:
        runs.append(start(folder, out, tiny_weights, delay=0.5, sigma=sigma))
    payloads = []
    for process in runs:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr
        payloads.append(json.loads(stdout))
    assert sum(p["ok"] for p in payloads) == FILES and all(p["failed"] == 0 for p in payloads)
    for name in {Path(r["input"]).name for p in payloads for r in p["files"]}:
        statuses = sorted(r["status"] for p in payloads for r in p["files"] if Path(r["input"]).name == name)
        assert statuses in (["claimed", "ok"], ["exists", "ok"]), (name, statuses)
    ok_sigma = {Path(r["output"]).name: r["sigma"] for p in payloads for r in p["files"] if r["status"] == "ok"}
    before = tree_hash(out)
    rerun = start(folder, out, tiny_weights, delay=0, sigma=sigmas[1])
    stdout, _ = rerun.communicate(timeout=TIMEOUT)
    assert json.loads(stdout)["exists"] == FILES and tree_hash(out) == before
    assert len(ok_sigma) == FILES
    assert_nothing_left_behind(out)


def test_a_stop_signal_at_any_line_of_a_claimed_run_leaves_no_claim_or_temp_file(tmp_path, monkeypatch):
    """A signal delivered at each line of a batch's claiming, writing and releasing, as the program takes it."""
    from dataclasses import dataclass

    from restorekit.batch import _claims, _jobs, _run, _signals
    from restorekit.batch._plan import Job
    from restorekit.cli import _signals as program
    from restorekit.inference.api import Restoration
    from restorekit.inference.io import atomic

    source = tmp_path / "a.png"
    source.write_bytes(b"input")

    def process(src: Path, target: Path) -> dict:
        atomic._write_atomically(target, b"output", overwrite=False)
        return {}

    @dataclass(frozen=True, kw_only=True)
    class Write(_jobs.Work):
        def build(self):
            return process

    work = Write(spec=Restoration(device="cpu"), max_pixels=1)
    watched = {_run.__file__, _jobs.__file__, _claims.__file__, atomic.__file__}
    for line in range(1, 2000):
        target = tmp_path / f"out{line}" / "a.png"
        for name, value in (("phase", "work"), ("received", None), ("raised", False), ("deferred", 0)):
            monkeypatch.setattr(_signals._state, name, value)
        seen = 0

        def tracer(frame, event, arg, stop_at=line):
            nonlocal seen
            if frame.f_code.co_filename in watched and event == "line":
                seen += 1
                if seen == stop_at:
                    program._on_signal(signal.SIGTERM, frame)
            return tracer

        sys.settrace(tracer)
        summary = None
        try:
            with contextlib.suppress(KeyboardInterrupt):  # (raised before the batch began)
                summary = _run.run_plan([Job(source, target)], work)
        finally:
            sys.settrace(None)
            signal.setitimer(signal.ITIMER_REAL, 0)
        hidden = [p.name for p in target.parent.iterdir() if p.name.startswith(".")] if target.parent.exists() else []
        assert hidden == [], (line, hidden)
        assert not target.exists() or target.read_bytes() == b"output"
        if seen < line:  # the run had fewer lines: every one of them has been interrupted once
            assert summary is not None and not summary.interrupted and summary.exit_code == 0
            assert target.read_bytes() == b"output"
            break
    assert line > 20
