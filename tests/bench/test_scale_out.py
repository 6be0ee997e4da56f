"""`restorekit bench scale-out` with a fake batch and subprocess runner: rows, the identical-outputs flag, the
document."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from restorekit.bench import scale_out
from restorekit.bench.docs import render
from restorekit.cli.app import app


class FakeBatch:
    """Stands in for the library's batch: copies its inputs (the Ray run flips a byte of one output when
    ``ray_differs``)."""

    def __init__(self, ray_differs: bool = False):
        self.calls: list[tuple[float, int | None, int | None]] = []
        self.ray_differs = ray_differs

    def __call__(self, source: Path, out: Path, sigma: float, threads: int | None, actors: int | None) -> dict:
        self.calls.append((sigma, threads, actors))
        out.mkdir()
        files = []
        for path in sorted(source.iterdir()):
            shutil.copy(path, out / path.name)
            files.append({"input": str(path), "status": "ok", "ms": 10.0 + len(files), "model": "m"})
        if self.ray_differs and actors:
            target = out / "0000.png"
            target.write_bytes(target.read_bytes()[:-1] + b"\0")
        return {"exit_code": 0, "files": files}


class FakeCLI:
    """Stands in for the subprocesses: `train` writes a log.jsonl of 1 s/step (2 processes: 0.5 s/step)."""

    def __init__(self):
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, argv: list[str], env: dict[str, str]) -> str:
        self.calls.append((argv, env))
        assert "train" in argv and "--progress" in argv
        settings = dict(a.split("=", 1) for a in argv[argv.index("train") + 2 :] if "=" in a)
        recipe = json.loads(Path(argv[argv.index("train") + 1]).read_text())
        out, steps = Path(settings["run.out"]), recipe["optim"]["iterations"]
        every, per_step = recipe["run"]["log_every"], 0.5 if "torch.distributed.run" in argv else 1.0
        out.mkdir()
        records = [
            {"loss": 0.1 / step + (1e-7 if per_step < 1 else 0), "step": step, "elapsed_s": 2 + per_step * step}
            for step in range(every, steps + 1, every)
        ]
        (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        return ""


def test_rows_and_document(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    fake, batch_fake = FakeCLI(), FakeBatch()
    monkeypatch.setattr(scale_out, "run_command", fake)
    monkeypatch.setattr(scale_out, "denoise_folder", batch_fake)
    monkeypatch.setattr(scale_out, "ray_available", lambda: True)  # rows only: the fake runs nothing
    saved = tmp_path / "scale_out.json"
    result = CliRunner().invoke(
        app,
        ["bench", "scale-out", "--images", "3", "--size", "32", "--steps", "30", "--machine", "box", "--json",
         "--save", str(saved), "--save", str(tmp_path / "scale_out.md")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["command"] == "scale_out" and document["environment"]["machine"] == "box"
    assert document["argv"].startswith("restorekit bench scale-out --images 3 --size 32 --steps 30")
    assert document["config"]["images"] == 3 and document["config"]["ray"] is True
    assert document["config"]["recipe"]["optim"]["iterations"] == 30
    assert json.loads(saved.read_text())["rows"] == document["rows"]

    batch = [r for r in document["rows"] if r["kind"] == "batch"]
    assert [(r["engine"], r["threads"] if r["engine"] == "local" else r["actors"], r["files"]) for r in batch][1:] == [
        ("local", 1, 3), ("ray", 2, 3), ("local", batch[0]["threads"], 1), ("ray", 2, 1)
    ]  # fmt: skip
    assert [r["outputs_identical"] for r in batch] == [True, True, True, None, None]
    assert batch[0]["median_ms"] == 11.0 and batch[3]["median_ms"] == 10.0
    assert batch[4]["startup_s"] == pytest.approx(batch[4]["wall_s"] - batch[3]["wall_s"], abs=0.02)
    assert [threads for _, threads, _ in batch_fake.calls] == [None, 1, None, None, None]
    assert [actors for _, _, actors in batch_fake.calls] == [None, None, 2, None, 2]

    train = [r for r in document["rows"] if r["kind"] == "train"]
    assert [(r["processes"], r["threads"]) for r in train] == [(1, 2), (1, 1), (2, 1)]
    assert [r["s_per_step"] for r in train] == [1.0, 1.0, 0.5] and train[2]["steps_per_s"] == 2.0
    assert train[0]["steps_timed"] == "10–30" and train[2]["loss_max_diff"] == pytest.approx(1e-7)
    launches = [argv for argv, _ in fake.calls if "train" in argv]
    assert launches[2][1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert "run.threads=2" in launches[0] and "run.threads=1" in launches[2]

    page = render([(saved, document)], "restorekit bench report")
    assert "## Scale-out: local vs Ray (3 images of 32²), training 1 vs 2 processes (30 steps) (box)" in page
    assert "| kind | engine |" in page


def test_different_outputs_and_no_ray(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(scale_out, "ray_available", lambda: False)
    rows, config, skipped = scale_out.run(images=2, size=32, steps=2, skip_train=True, batcher=FakeBatch())
    assert config["ray"] is False and config["steps"] is None and skipped[0]["method"] == "ray"
    assert rows[-1] == {"kind": "batch", "engine": "ray", "note": "skipped: Ray Data is not installed"}
    assert not any(r["kind"] == "train" for r in rows)

    monkeypatch.setattr(scale_out, "ray_available", lambda: True)
    rows, _, _ = scale_out.run(images=2, size=32, skip_train=True, batcher=FakeBatch(ray_differs=True))
    assert [r["outputs_identical"] for r in rows[:3]] == [True, True, False]


def test_inputs_are_seeded(tmp_path: Path):
    first = scale_out.write_inputs(tmp_path / "a", 3, 24, 25)
    second = scale_out.write_inputs(tmp_path / "b", 3, 24, 25)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_timing_short_runs():
    assert scale_out._timing([{"loss": 1.0, "step": 2, "elapsed_s": 3.0}]) == (1.5, "0–2")
    assert scale_out._timing([{"step": 10, "elapsed_s": 5.0}, {"step": 12, "elapsed_s": 6.0}]) == (0.5, "10–12")
