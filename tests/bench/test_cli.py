"""`restorekit bench`: exit codes, JSON on stdout, saved files and the docs page (CliRunner)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from restorekit.bench import methods
from restorekit.cli.app import app

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["bench", *args])


def test_quality_json_and_saved_files(colour_dir: Path, tiny_model: Path, tmp_path: Path):
    saved = tmp_path / "quality.json"
    result = _invoke(
        "quality", "--data", str(colour_dir), "-m", str(tiny_model), "--peers", "skimage_nlm", "--sigma", "25",
        "--protocol", "both", "--device", "cpu", "--progress", "jsonl", "--json",
        "--save", str(saved), "--save", str(tmp_path / "quality.csv"), "--save", str(tmp_path / "quality.md"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "restorekit-bench/1" and document["command"] == "quality"
    assert document["config"]["sigmas"] == [25] and document["config"]["protocols"] == ["float", "file"]
    assert [m["name"] for m in document["methods"]] == ["mallenet_s.tinytest", "skimage_nlm"]
    assert len(document["rows"]) == 3 * 2 * 3 and len(document["summary"]) == 2 * 3
    progress = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [p["done"] for p in progress] == list(range(1, 7)) and progress[-1]["total"] == 6
    assert json.loads(saved.read_text())["rows"] == document["rows"]
    assert (tmp_path / "quality.csv").read_text().startswith("dataset,image,channels")

    page = tmp_path / "benchmarks.md"
    result = _invoke("report", str(saved), "-o", str(page))
    assert result.exit_code == 0, result.output
    text = page.read_text()
    # The RESTOREKIT_* settings in force come first (the tests run with RESTOREKIT_AUTO_DTYPE=rule).
    produced = f"Produced by `RESTOREKIT_AUTO_DTYPE=rule restorekit bench quality --data {colour_dir}"
    assert f"{produced} --model {tiny_model} --peers skimage_nlm" in text
    assert "#### synthetic, file protocol" in text


def test_quality_ensemble_adds_a_row_per_model(colour_dir: Path, tiny_model: Path):
    result = _invoke(
        "quality", "--data", str(colour_dir), "-m", str(tiny_model), "--peers", "none", "--sigma", "25",
        "--limit", "1", "--device", "cpu", "--ensemble", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    names = [m["name"] for m in document["methods"]]
    assert names == ["mallenet_s.tinytest", "mallenet_s.tinytest+x8"] and document["config"]["ensemble"] is True
    assert "self-ensemble" in document["methods"][1]["settings"]
    scores = {r["method"]: r["psnr"] for r in document["rows"]}
    assert scores["mallenet_s.tinytest+x8"] != scores["mallenet_s.tinytest"]


def test_quality_table_on_terminal(colour_dir: Path):
    result = _invoke("quality", "--data", str(colour_dir), "--peers", "opencv_nlm", "--sigma", "15", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert "quality (PSNR dB" in result.stdout and "│ mean " in result.stdout


def test_quality_errors(colour_dir: Path, tmp_path: Path):
    result = _invoke("quality", "--data", str(colour_dir), "--sigma", "x,25", "--peers", "none")
    assert result.exit_code == 2 and "--sigma: expected comma-separated numbers" in result.stderr
    result = _invoke("quality", "--data", str(tmp_path / "nowhere"), "--peers", "none")
    assert result.exit_code == 1 and "expected a folder of clean images" in result.stderr
    result = _invoke("quality", "--data", str(colour_dir), "-m", "nosuch.model", "--peers", "none")
    assert result.exit_code == 3
    result = _invoke("quality", "--data", str(colour_dir), "--peers", "bm4d")
    assert result.exit_code == 2 and "valid: cbm3d, opencv_nlm, skimage_nlm" in result.stderr


def test_missing_peer_package_is_reported(colour_dir: Path, monkeypatch: pytest.MonkeyPatch):
    real = methods.find_spec
    monkeypatch.setattr(methods, "find_spec", lambda name: None if name == "cv2" else real(name))
    result = _invoke(
        "quality", "--data", str(colour_dir), "--peers", "opencv_nlm,skimage_nlm", "--limit", "1", "--json"
    )
    assert result.exit_code == 0, result.output
    assert "warning: skipped opencv_nlm: package 'cv2' is not installed" in result.stderr
    document = json.loads(result.stdout)
    assert {"method": "opencv_nlm", "reason": "package 'cv2' is not installed"} in document["skipped"]
    measured = {row["method"] for row in document["rows"]}
    assert "opencv_nlm" not in measured and {"noisy", "skimage_nlm"} <= measured


def test_latency_json(tiny_model: Path):
    result = _invoke(
        "latency", "-m", str(tiny_model), "--peers", "none", "--size", "48x32", "--repeats", "2", "--json",
        "--progress", "none", "--references", "ffdnet_shape",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["command"] == "latency" and document["config"]["sizes"] == ["48x32"]
    row, reference = document["rows"]
    assert row["method"] == "mallenet_s.tinytest" and row["error"] is None and row["median_ms"] > 0
    assert row["kind"] == "restorekit"
    assert reference["method"] == "ffdnet_shape" and reference["kind"] == "reference" and reference["gflops"] > 0
    bad = _invoke("latency", "--peers", "none", "--references", "bm4d", "--size", "32")
    assert bad.exit_code == 2


def test_report_rejects_other_files(tmp_path: Path):
    other = tmp_path / "other.json"
    other.write_text("{}")
    result = _invoke("report", str(other), "-o", str(tmp_path / "out.md"))
    assert result.exit_code == 1 and "schema" in result.stderr


def test_kernels_renders_rows(monkeypatch: pytest.MonkeyPatch):
    calls = []

    def run(sizes, channels, kernel_size, backends, device, dtype, repeats, grid_stride, ops, atoms):
        calls.append((sizes, channels, kernel_size, backends, device, dtype, repeats, grid_stride, ops, atoms))
        return [
            {"op": "malleable_conv", "backend": b, "height": h, "ms_median": 1.5} for b in backends for h, _ in sizes
        ]

    fake = types.SimpleNamespace(run=run)
    monkeypatch.setitem(sys.modules, "restorekit.bench.kernels", fake)
    monkeypatch.setattr("restorekit.bench.kernels", fake, raising=False)  # in case another test imported it
    result = _invoke(
        "kernels", "--size", "48x32", "--backend", "reference", "--device", "cpu", "--repeats", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    assert calls == [([(32, 48)], [16, 80], 3, ["reference"], "cpu", torch.float32, 3, 8, ["malleable", "atom"], 4)]
    document = json.loads(result.stdout)
    assert document["rows"] == [{"op": "malleable_conv", "backend": "reference", "height": 32, "ms_median": 1.5}]
    assert document["config"]["sizes"] == ["48x32"] and document["config"]["dtype"] == "fp32"


def test_crops_results_file_and_its_docs_section(colour_dir: Path, tiny_model: Path, tmp_path: Path):
    image = sorted(colour_dir.iterdir())[0]
    strip, saved = tmp_path / "docs" / "img" / "strip.png", tmp_path / "docs" / "results" / "crops.json"
    strip.parent.mkdir(parents=True)
    saved.parent.mkdir()
    args = ("crops", str(image), "-m", str(tiny_model), "--peers", "none", "--box", "4,8,16", "--sigma", "30")
    result = _invoke(*args, "-o", str(strip), "--save", str(saved))
    assert result.exit_code == 0, result.output
    document = json.loads(saved.read_text())
    assert document["command"] == "crops" and document["config"]["box"] == [4, 8, 16]
    assert [r["method"] for r in document["rows"]][-1] == "mallenet_s.tinytest" and strip.exists()
    assert "--save" in document["argv"] and document["config"]["sigma"] == 30
    page = tmp_path / "docs" / "benchmarks.md"
    assert _invoke("report", str(saved), "-o", str(page)).exit_code == 0
    text = page.read_text()
    assert "## Crops: denoising, " in text and "](img/strip.png)" in text and "| mallenet_s.tinytest |" in text
    assert _invoke(*args, "-o", str(strip), "--save", str(tmp_path / "crops.csv")).exit_code == 2  # JSON only
