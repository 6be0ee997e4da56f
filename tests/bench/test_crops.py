"""`restorekit bench crops --task sr`: crops of the real-world degradation's LR input, the chain and a tunable model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restorekit.bench import crops as bench_crops
from restorekit.bench import sr as bench_sr
from restorekit.cli.app import app
from restorekit.models._weights import save_model
from restorekit.models.tunable_acdasr import TunableACDASR
from tests.cli.test_sr import tiny_sr


@pytest.fixture(scope="module")
def sr_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny ×2 ACDA-SR and a tiny tunable one whose two experts differ, as weights files."""
    folder = tmp_path_factory.mktemp("sr_crops")
    plain = folder / "acdasr_s.tinytest.safetensors"
    save_model(tiny_sr(2), plain, name="acdasr_s.tinytest")
    torch.manual_seed(0)
    tunable = TunableACDASR(scale=2, width=8, blocks=1, generator_width=4).eval()
    with torch.no_grad():
        for value in tunable.parameters():
            value.add_(0.05 * torch.randn_like(value))
    path = folder / "tunable_acdasr_s.tinytest.safetensors"
    save_model(tunable, path, name="tunable_acdasr_s.tinytest")
    return plain, path


def test_sr_crops_upscale_the_real_degradation_of_bench_quality(colour_dir: Path, sr_models: tuple[Path, Path]):
    image = sorted(colour_dir.iterdir())[0]
    plain, tunable = (str(p) for p in sr_models)
    models = [plain, tunable]
    strip, rows = bench_crops.strip(
        image, (4, 8, 16), "sr", models, scale=2, degradation="real", chain=[plain], w1=[0.0, 1.0]
    )
    names = [r["method"] for r in rows]
    assert names == [
        "HR", "bicubic", "lanczos", "acdasr_s.tinytest", "tunable_acdasr_s.tinytest@ω1=0",
        "tunable_acdasr_s.tinytest@ω1=1", "denoise → acdasr_s.tinytest",
    ]  # fmt: skip
    assert strip.shape[1] == 7 * 32 and strip.dtype == np.uint8
    hr, lr = bench_sr.load_pair(image, None, 2, "real")  # the LR input bench quality measures on
    upscaled = bench_sr.interpolation_method("cubic").run(lr, 2)
    by_name = {r["method"]: r for r in rows}
    assert by_name["bicubic"]["psnr"] == pytest.approx(bench_sr.y_psnr_ssim(hr, upscaled, 2)[0])
    assert by_name["bicubic"]["detail"] == pytest.approx(bench_sr.detail_ratio(hr, upscaled, 2))
    assert by_name["tunable_acdasr_s.tinytest@ω1=0"]["psnr"] != by_name["tunable_acdasr_s.tinytest@ω1=1"]["psnr"]
    _, clean = bench_crops.strip(image, (4, 8, 16), "sr", [plain], scale=2)
    assert {r["method"]: r["psnr"] for r in clean}["bicubic"] > by_name["bicubic"]["psnr"]  # a clean downscale


def test_cli_sr_crops_of_the_real_degradation_and_their_docs_section(
    colour_dir: Path, sr_models: tuple[Path, Path], tmp_path: Path
):
    image = sorted(colour_dir.iterdir())[0]
    plain, tunable = (str(p) for p in sr_models)
    png, saved = tmp_path / "docs" / "img" / "sr.png", tmp_path / "docs" / "results" / "crops_sr.json"
    png.parent.mkdir(parents=True)
    saved.parent.mkdir()
    args = ["bench", "crops", str(image), "--task", "sr", "--scale", "2", "--degradation", "real", "--box", "4,8,16"]
    args += ["-m", plain, "-m", tunable, "--w1", "0", "--chain", plain, "-o", str(png), "--save", str(saved)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(saved.read_text())
    assert document["config"]["w1"] == [0] and document["config"]["degradation"] == "real"
    assert document["config"]["chain"] == [plain] and png.exists()
    last = [r["method"] for r in document["rows"]][-2:]
    assert last == ["tunable_acdasr_s.tinytest@ω1=0", "denoise → acdasr_s.tinytest"]
    assert all(r["detail"] > 0 for r in document["rows"])
    page = tmp_path / "docs" / "benchmarks.md"
    assert CliRunner().invoke(app, ["bench", "report", str(saved), "-o", str(page)]).exit_code == 0
    text = page.read_text()
    assert "## Crops: super-resolution ×2 of the real-world degradation, " in text and "](img/sr.png)" in text
    assert "| denoise → acdasr_s.tinytest |" in text and "`detail`" in text


def test_cli_refuses_sr_options_when_denoising(colour_dir: Path, tiny_model: Path, tmp_path: Path):
    image = sorted(colour_dir.iterdir())[0]
    args = ["bench", "crops", str(image), "-m", str(tiny_model), "--peers", "none", "-o", str(tmp_path / "c.png")]
    result = CliRunner().invoke(app, [*args, "--degradation", "real"])
    assert result.exit_code == 2 and "--task sr" in result.output and "Traceback" not in result.output
    bad = CliRunner().invoke(app, [*args, "--task", "sr", "--degradation", "jpeg"])
    assert bad.exit_code == 2 and "jpeg" in bad.output


def test_labels_are_drawn_in_glyphs_the_default_font_has():
    image = np.full((8, 8, 3), 0.5, np.float32)
    drawn = bench_crops.render([("denoise → m@ω1=0", 1.0, image)], (0, 0, 8), 8)
    plain = bench_crops.render([("denoise -> m@w1=0", 1.0, image)], (0, 0, 8), 8)
    np.testing.assert_array_equal(drawn, plain)
