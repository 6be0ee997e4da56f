"""`restorekit bench quality --task sr` on the real-world degradation, and the denoise → SR chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restorekit.bench import sr as bench_sr
from restorekit.cli.app import app
from restorekit.errors import UsageError
from restorekit.inference.api import denoise, super_resolve
from restorekit.models._weights import save_model
from restorekit.models.tunable_acdasr import TunableACDASR
from tests.cli.test_sr import tiny_sr


@pytest.fixture(scope="module")
def sr_x2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sr") / "acdasr_s.tinytest.safetensors"
    save_model(tiny_sr(2), path, name="acdasr_s.tinytest")
    return path


def test_real_lr_inputs_repeat_exactly_and_are_not_bicubic(colour_dir: Path):
    path = sorted(colour_dir.iterdir())[0]
    hr, real = bench_sr.load_pair(path, None, 2, "real")
    again = bench_sr.load_pair(path, None, 2, "real")[1]
    _, bicubic = bench_sr.load_pair(path, None, 2)
    assert real.shape == bicubic.shape == (hr.shape[0] // 2, hr.shape[1] // 2, 3)
    np.testing.assert_array_equal(real, again)
    assert np.abs(real - bicubic).mean() > 1 / 255  # blurred, noisy and compressed, not a clean downscale
    np.testing.assert_array_equal(np.round(real * 255) / 255, real)  # 8-bit values, as a file holds
    other = bench_sr.load_pair(path, None, 4, "real")[1]
    assert other.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)


def test_the_chain_denoises_with_the_photo_model_then_upscales(sr_x2: Path):
    rng = np.random.default_rng(0)
    lr = np.clip(0.5 + rng.normal(0, 0.05, (24, 32, 3)), 0, 1).astype(np.float32)
    method = bench_sr.chain_method(bench_sr.sr_model_method(sr_x2, "cpu", "fp32"), "cpu", "fp32")
    expected = super_resolve(denoise(lr, device="cpu", dtype="fp32"), 2, model=method.model, device="cpu", dtype="fp32")
    np.testing.assert_allclose(method.run(lr, 2), expected, atol=1e-6)
    assert method.name == "denoise → acdasr_s.tinytest" and method.scales == (2,)


def test_cli_real_degradation_with_a_chain(colour_dir: Path, sr_x2: Path):
    result = CliRunner().invoke(
        app,
        [
            "bench", "quality", "--task", "sr", "--data", str(colour_dir), "--scale", "2", "--degradation", "real",
            "-m", str(sr_x2), "--chain", str(sr_x2), "--limit", "1", "--device", "cpu", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["degradation"] == "real" and document["config"]["chain"] == [str(sr_x2)]
    methods = {r["method"] for r in document["summary"]}
    assert methods == {"acdasr_s.tinytest", "denoise → acdasr_s.tinytest", "bicubic", "lanczos"}
    refused = CliRunner().invoke(app, ["bench", "quality", "--data", str(colour_dir), "--degradation", "real"])
    assert refused.exit_code == 2


def test_a_tunable_sr_model_is_measured_at_each_setting_with_its_detail(colour_dir: Path, tmp_path: Path):
    torch.manual_seed(0)
    tunable = TunableACDASR(scale=2, width=8, blocks=1, generator_width=4).eval()
    with torch.no_grad():
        for value in tunable.parameters():
            value.add_(0.05 * torch.randn_like(value))  # the experts differ: each ω is another model
    path = tmp_path / "tunable_acdasr_s.tinytest.safetensors"
    save_model(tunable, path, name="tunable_acdasr_s.tinytest")
    plan = bench_sr.plan([colour_dir], [], [str(path)], [2], limit=1, device="cpu", dtype="fp32", w1=(0.0, 1.0))
    _, summary, _ = plan.run()
    by_method = {r["method"]: r for r in summary}
    ends = by_method["tunable_acdasr_s.tinytest@ω1=0"], by_method["tunable_acdasr_s.tinytest@ω1=1"]
    assert ends[0]["psnr"] != ends[1]["psnr"] and all(r["detail"] > 0 for r in summary)
    assert plan.config["w1"] == [0.0, 1.0]
    hr = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    assert bench_sr.gradient_rms(hr, 2) > bench_sr.gradient_rms(np.full_like(hr, 0.5), 2) == 0.0
    with pytest.raises(UsageError, match="--w1"):
        bench_sr.tuned_methods(bench_sr.sr_model_method(path, "cpu", "fp32"), [1.5])
