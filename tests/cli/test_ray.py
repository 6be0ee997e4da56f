"""The Ray engine (``--engine ray``): the local engine's outputs, summary and exit code; a killed actor loses nothing.

Ray runs on this machine, started once for the module with 2 CPUs; every test is bounded by :data:`TIMEOUT`. The
tests that need Ray skip where Ray Data is not installed (``pip install 'restorekit[ray]'``); the one that checks
the message for that case does not need it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from restorekit.batch import Engine, _ray
from restorekit.batch._jobs import DELAY_ENV
from restorekit.cli._console import ExitCode
from restorekit.errors import DeviceError
from restorekit.inference.io import load_image
from restorekit.models._weights import save_model
from tests.cli.test_cli import error_lines, invoke, summary
from tests.cli.test_sr import TINY_SR_NAME, tiny_sr

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from inside Ray Data
TIMEOUT = 240  # seconds a test may take: a loaded 2-core machine needs several to start Ray and its actors
ACTOR_TITLE = b"ray::MapWorker(MapBatches(Restorer))"


@pytest.fixture(scope="module")
def ray_address():
    """A Ray instance on this machine (2 CPUs) for the module; the engine uses it, a subprocess joins it."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(autouse=True)
def bounded():
    """Fail a test that runs past :data:`TIMEOUT` instead of hanging the suite."""

    def expire(signum, frame):
        raise TimeoutError(f"the test ran past {TIMEOUT} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def engine_args(engine: str, actors: int = 2) -> list[object]:
    return ["--engine", "ray", "--ray-actors", actors] if engine == "ray" else []


def without_timing(payload: dict, out: Path) -> dict:
    """The summary with each file's ``ms`` dropped and its output relative to ``out``."""
    files = [{**r, "ms": None, "output": str(Path(r["output"]).relative_to(out))} for r in payload["files"]]
    return {**payload, "files": files}


def test_without_ray_the_engine_is_a_usage_error_that_says_how_to_install_it(tmp_path, write_png, monkeypatch):
    source = write_png(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = invoke("denoise", source, "--sigma", 25, "--engine", "ray")
    assert result.exit_code == ExitCode.USAGE
    assert error_lines(result) == ["error: --engine ray: Ray Data is not installed (pip install 'restorekit[ray]')"]
    assert "Traceback" not in result.output and not (tmp_path / "a_denoised.png").exists()


@pytest.mark.parametrize("option", [["--ray-actors", "2"], ["--ray-address", "auto"]])
def test_ray_options_need_the_ray_engine(tmp_path, write_png, option):
    result = invoke("denoise", write_png(tmp_path / "a.png"), "--sigma", 25, *option)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert option[0] in line and "--engine ray" in line


@pytest.mark.parametrize(
    ("cluster", "device", "actors", "expected"),
    [
        ({"CPU": 16.0}, "auto", None, (4, {"num_cpus": 4})),  # one actor per 4 CPUs
        ({"CPU": 2.0}, "auto", 2, (2, {"num_cpus": 1})),
        ({"CPU": 2.0}, "auto", 4, (4, {"num_cpus": 0.5})),  # more actors than CPUs share them
        ({"CPU": 8.0, "GPU": 2.0}, "auto", None, (2, {"num_gpus": 1, "num_cpus": 1})),  # one per GPU
        ({"CPU": 8.0, "GPU": 2.0}, "auto", 4, (4, {"num_gpus": 0.5, "num_cpus": 1})),
        ({"CPU": 8.0, "GPU": 2.0}, "cpu", None, (2, {"num_cpus": 4})),
    ],
)
def test_the_actor_pool_fits_the_cluster(monkeypatch, cluster, device, actors, expected):
    engine = Engine("ray", None, actors)
    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(cluster_resources=lambda: cluster))
    assert _ray._pool(engine, device) == expected


def test_an_actor_error_comes_out_of_rays_wrappers():
    inner = DeviceError("device 'cuda': CUDA is not available on this machine (use --device cpu)")
    wrapper = RuntimeError("RayTaskError(UserCodeException): …")
    wrapper.cause = RuntimeError("UserCodeException")
    wrapper.cause.__cause__ = inner
    assert _ray._unwrapped(wrapper) is inner
    bug = ValueError("a bug")
    wrapper.cause.__cause__ = bug
    assert _ray._unwrapped(wrapper) is bug


def test_ray_engine_writes_what_the_local_engine_writes(ray_address, tmp_path, write_png, tiny_weights):
    folder = tmp_path / "in"
    names = [f"img{i}.png" for i in range(5)]
    for seed, name in enumerate(names):
        write_png(folder / name, seed=seed)
    (folder / "broken.png").write_bytes(b"not an image")  # fails on an actor; the batch carries on
    payloads = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        write_png(out / "img0.png", seed=9)  # an existing output: kept and reported as skipped
        result = invoke(
            "denoise", folder, "-o", out, "--sigma", 15, "-m", tiny_weights, "--json", "--progress", "jsonl",
            *engine_args(engine),
        )  # fmt: skip
        assert result.exit_code == ExitCode.FAILED, result.output
        events = [json.loads(line) for line in result.stderr.splitlines()]  # only JSON lines
        progress = [event for event in events if event["event"] == "progress"]
        (failed,) = [event for event in progress if event["status"] == "failed"]
        assert "broken.png" in failed["error"] and events[-1]["event"] == "end"
        assert [event["done"] for event in progress] == list(range(1, 7))
        assert sorted(event["item"] for event in progress) == sorted(str(folder / n) for n in [*names, "broken.png"])
        payloads[engine] = without_timing(summary(result), out)
    assert payloads["ray"] == payloads["local"]
    assert (payloads["ray"]["ok"], payloads["ray"]["exists"], payloads["ray"]["failed"]) == (4, 1, 1)
    for name in names:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")]


def test_tune_and_sr_on_ray_match_the_local_engine(ray_address, tmp_path, write_png, tiny_tunable_weights):
    source = write_png(tmp_path / "in" / "a.png", height=32, width=32)
    sr_weights = tmp_path / "sr.safetensors"
    save_model(tiny_sr(2), sr_weights, name=TINY_SR_NAME)
    commands = {
        "tune": ["tune", source, "--w", "0.3,0.7", "-s", 25, "-m", tiny_tunable_weights, "--reference", source],
        "sr": ["sr", source, "--scale", 2, "-m", sr_weights],
    }
    stdout = {}
    for name, command in commands.items():
        seen = {}
        for engine in ("local", "ray"):
            out = tmp_path / engine / name
            result = invoke(*command, "-o", out, "--progress", "none", *engine_args(engine, actors=1))
            assert result.exit_code == 0, result.output
            seen[engine] = (result.stdout, (out / "a.png").read_bytes())
        assert seen["ray"] == seen["local"], name
        stdout[name] = seen["ray"][0]
    assert "PSNRη" in stdout["tune"]  # tune's scores, computed on the actor, printed here as locally
    assert load_image(tmp_path / "ray" / "sr" / "a.png").pixels.shape == (64, 64, 3)


def actor_pids() -> set[int]:
    """Processes of this machine that are Ray actors of the engine (by their process title)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(ACTOR_TITLE):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_killed_actor_loses_no_file_and_the_batch_completes(ray_address, tmp_path, write_png, tiny_weights):
    folder, out = tmp_path / "in", tmp_path / "out"
    for index in range(6):
        write_png(folder / f"img{index}.png", seed=index)
    before = actor_pids()
    env = {**os.environ, DELAY_ENV: "1.5", "OMP_NUM_THREADS": "1"}  # each file holds its actor 1.5 s
    command = [sys.executable, "-m", "restorekit", "denoise", str(folder), "-o", str(out), "--sigma", "15"]
    command += ["-m", str(tiny_weights), "--json", "--progress", "none"]
    command += ["--engine", "ray", "--ray-address", ray_address, "--ray-actors", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not list(out.glob("*.png")):  # an actor is at work
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        (victim, *_) = sorted(actor_pids() - before)
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    payload = json.loads(stdout)  # Ray's messages about the dead worker stayed off stdout
    assert payload["failed"] == 0 and payload["ok"] + payload["exists"] == 6  # a retried file may be found done
    for index in range(6):
        assert load_image(out / f"img{index}.png").pixels.shape == (24, 40, 3)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert "raylet" not in stderr and "core_worker" not in stderr, stderr
