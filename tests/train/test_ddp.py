"""Data-parallel training under torchrun: two CPU processes (gloo) train as one process on the whole batch.

One ``torchrun --standalone --nproc-per-node=2`` launch runs this file as a module (:func:`main`, in each
process): ``restorekit train`` for one step, then a 4-step run straight and the same run interrupted at step 3
and resumed. The test compares them with a single process at the same global batch (4 crops, 2 per process).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors import safe_open

from restorekit.errors import UsageError
from restorekit.train.config import recipe_from_dict, recipe_to_dict, recipe_to_yaml
from restorekit.train.loop import World, train
from tests.train.conftest import recipe_for, tiny_builder

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300  # seconds for the launch: two processes import torch on a loaded 2-core machine
BATCH = 4


def recipe(folder: Path, out: Path, iterations: int):
    """The tiny MalleNet's test recipe with a global batch of :data:`BATCH` crops."""
    raw = recipe_to_dict(recipe_for(folder, out, iterations))
    raw["data"]["batch"] = BATCH
    return recipe_from_dict(raw)


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(folder / "checkpoint.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def main(folder: Path, out: Path) -> None:
    """What each process of the torchrun launch does (``python -m tests.train.test_ddp FOLDER OUT``).

    The command joins and leaves the process group itself. The runs after it share one group made here (on a
    fresh file store: a second group on torchrun's store would meet the first one's keys), which
    :func:`train` uses and leaves in place.
    """
    from restorekit.cli._options import ProgressMode
    from restorekit.cli.train import train as train_command
    from restorekit.models import _architectures
    from restorekit.models.mallenet import MalleNet

    _architectures._ARCHITECTURES["mallenet_tiny"] = _architectures.Architecture(
        "mallenet_tiny", MalleNet, tiny_builder
    )
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    path = out / f"one.{rank}.yaml"  # the same recipe, written by each process for itself
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(recipe_to_yaml(recipe(folder, out / "one", iterations=1)))
    train_command(path, set_=None, progress=ProgressMode.none, json=False, verbose=False)

    def interrupt(step, total, record):
        if step == 3:  # in every process, after the checkpoint of step 2
            raise KeyboardInterrupt

    dist.init_process_group("gloo", init_method=f"file://{out / 'group'}", rank=rank, world_size=size)
    train(recipe(folder, out / "straight", iterations=4))
    with contextlib.suppress(KeyboardInterrupt):
        train(recipe(folder, out / "resumed", iterations=4), progress=interrupt)
    train(recipe(folder, out / "resumed", iterations=4))
    dist.destroy_process_group()


def test_two_processes_train_as_one_process_on_the_whole_batch(tiny_arch, image_folder, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += ["-m", "tests.train.test_ddp", str(image_folder), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]

    single = tmp_path / "single"
    train(recipe(image_folder, single, iterations=1))
    ddp, one = tensors(out / "one"), tensors(single)
    assert ddp.keys() == one.keys()
    for key in ddp:
        if key.startswith("rng."):  # every process drew the whole batch from the single process's streams
            assert torch.equal(ddp[key], one[key]), key
        else:  # weights, EMA and Adam moments after one step: the same up to float rounding
            assert torch.allclose(ddp[key], one[key], rtol=1e-4, atol=1e-6), key
    assert log(out / "one")[0]["loss"] == pytest.approx(log(single)[0]["loss"], rel=1e-5)

    straight, resumed = tensors(out / "straight"), tensors(out / "resumed")
    assert straight.keys() == resumed.keys()
    for key in straight:  # resuming under DDP is exact
        assert torch.equal(straight[key], resumed[key]), key
    assert [r["step"] for r in log(out / "resumed")] == [r["step"] for r in log(out / "straight")] == [1, 2, 3, 4]


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tiny_arch, image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(UsageError, match=r"data.batch: expected a multiple of WORLD_SIZE=3 \(torchrun\), got 4"):
        train(recipe(image_folder, tmp_path / "run", iterations=1))
    assert not (tmp_path / "run").exists()


def test_each_process_takes_its_slice_of_the_batch():
    assert [World(rank, 2).share(4) for rank in (0, 1)] == [slice(0, 2), slice(2, 4)]
    assert World().share(4) == slice(0, 4) and World().main and not World(1, 2).main


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
