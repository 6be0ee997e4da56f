"""`bench quality --degradation shading`: seeded lens-shaded noise, the oracle noise map, results and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorekit.bench.methods import model_method
from restorekit.bench.noise import add_noise, add_shading
from restorekit.bench.quality import evaluate, list_images, summarize
from restorekit.cli.app import app
from restorekit.inference.api import denoise
from restorekit.inference.io import load_image
from restorekit.inference.metrics import psnr
from restorekit.models._weights import save_model
from restorekit.models.acdanet import ACDANet
from tests.models.test_tv_acdanet import randomized

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_tv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, randomised colour TVConv ACDANet small enough to run in milliseconds."""
    model = randomized(ACDANet(width=4, quarter_width=8, blocks=2, generator_width=4, tv_blocks=1))
    path = tmp_path_factory.mktemp("weights") / "tv_acdanet_s.tinytest.safetensors"
    save_model(model, path, name="tv_acdanet_s.tinytest")
    return path


def test_shaded_noise_is_seeded_by_name_and_follows_its_map():
    clean = np.full((64, 96, 3), 0.5, dtype=np.float32)
    noisy, level = add_shading(clean, "a.png", 20, "float")
    again, same = add_shading(clean, "a.png", 20, "float")
    other, _ = add_shading(clean, "b.png", 20, "float")
    assert np.array_equal(noisy, again) and np.array_equal(level, same) and not np.array_equal(noisy, other)
    assert level.shape == (64, 96) and level.min() >= 20 and level.max() > 30
    z = (noisy - clean) / (level[..., None] / 255)
    assert float(z.std()) == pytest.approx(1.0, abs=0.02)
    stored, _ = add_shading(clean, "a.png", 20, "file")
    assert np.array_equal(stored, np.round(np.clip(noisy, 0, 1) * 255) / np.float32(255))
    assert not np.array_equal(noisy, add_noise(clean, "a.png", 20, "float"))  # its own seed, not the AWGN draw


def test_every_method_gets_the_same_input_and_the_oracle_the_map(colour_dir: Path, tiny_model: Path, tiny_tv: Path):
    images = [("synthetic", p) for p in list_images(colour_dir)][:2]
    methods = [model_method(tiny_tv, device="cpu", dtype="fp32"), model_method(tiny_model, device="cpu", dtype="fp32")]
    rows, skipped = evaluate(images, methods, [15], ["float"], "true", degradation="shading")
    assert skipped == []
    names = ["noisy", "tv_acdanet_s.tinytest", "mallenet_s.tinytest", "mallenet_s.tinytest+oracle"]
    assert [r["method"] for r in rows] == names * 2
    assert {r["protocol"] for r in rows} == {"shading"} and {r["sigma_mode"] for r in rows} == {"estimate"}
    by = {(r["image"], r["method"]): r for r in rows}
    path = images[0][1]
    clean = load_image(path).pixels
    noisy, level = add_shading(clean, path.name, 15, "float")
    assert by[path.name, "noisy"]["psnr"] == pytest.approx(psnr(noisy, clean), abs=1e-9)
    oracle = by[path.name, "mallenet_s.tinytest+oracle"]
    assert oracle["kind"] == "oracle" and oracle["sigma_used"] == pytest.approx(float(level.mean()), rel=1e-6)
    module = methods[1].model
    direct = np.clip(denoise(noisy, sigma=level, model=module, device="cpu", dtype="fp32"), 0, 1)
    assert oracle["psnr"] == pytest.approx(psnr(direct, clean), abs=1e-9)
    assert by[path.name, "tv_acdanet_s.tinytest"]["sigma_used"] is None  # blind
    assert by[path.name, "mallenet_s.tinytest"]["sigma_used"] > 0  # told the estimate
    summary = summarize(rows)
    assert {r["method"] for r in summary} == set(names) and all(r["images"] == 2 for r in summary)


def test_quality_with_shading_adds_the_reference_and_the_report_shows_the_oracle_gap(
    colour_dir: Path, tiny_model: Path, tiny_tv: Path, tmp_path: Path
):
    saved = tmp_path / "shading.json"
    result = runner.invoke(app, [
        "bench", "quality", "--data", str(colour_dir), "-m", str(tiny_tv), "-m", str(tiny_model),
        "--degradation", "shading", "--sigma", "15", "--limit", "1", "--peers", "none", "--device", "cpu",
        "--dtype", "fp32", "--json", "--save", str(saved),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["degradation"] == "shading"
    methods = [m["name"] for m in document["methods"]]
    assert methods == ["tv_acdanet_s.tinytest", "mallenet_s.tinytest", "mallenet_s.awgn_color"]
    assert {r["method"] for r in document["rows"]} >= {"mallenet_s.awgn_color+oracle", "mallenet_s.tinytest+oracle"}

    page = tmp_path / "benchmarks.md"
    result = runner.invoke(app, ["bench", "report", str(saved), "-o", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "## Quality with lens shading: synthetic" in text and "#### synthetic, lens shading, float protocol" in text
    assert "tv_acdanet_s.tinytest − oracle" in text and "mallenet_s.awgn_color+oracle" in text


def test_shading_takes_clean_folders_only(colour_dir: Path):
    result = runner.invoke(app, ["bench", "quality", "--pairs", str(colour_dir), "--degradation", "shading"])
    assert result.exit_code == 2 and "--degradation shading" in result.output
