"""`restorekit bench tune`: the Table 1 protocol for a tunable model, DNI and the fixed model; its docs table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from restorekit.bench import tune as bench_tune
from restorekit.bench.docs import render
from restorekit.bench.quality import list_pairs
from restorekit.cli.app import app
from restorekit.inference.io import load_image, save_image
from restorekit.inference.metrics import psnr
from restorekit.models._weights import save_model
from restorekit.models.mallenet import MalleNet
from tests.conftest import tiny_mallenet, tiny_tunable


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tune_weights")
    paths = {name: folder / f"{name}.safetensors" for name in ("tunable", "fixed", "retain")}
    save_model(tiny_tunable(3), paths["tunable"], "tunable_mallenet_s.tinytest", recipe="tune: {nu: 0.9}\n")
    save_model(tiny_mallenet(3), paths["fixed"], "mallenet_s.tinytest")
    torch.manual_seed(3)
    save_model(
        MalleNet(in_channels=3, width=4, blocks=(1, 1, 1, 1), predictor_width=4), paths["retain"], "mallenet_s.r"
    )
    return paths


def test_interpolation_mixes_the_two_networks(weights):
    from restorekit.models import create_model

    fixed, retain = create_model(str(weights["fixed"])), create_model(str(weights["retain"]))
    half = bench_tune.interpolate(fixed, retain, 0.25)
    key = "tail.weight"
    expected = 0.25 * fixed.state_dict()[key] + 0.75 * retain.state_dict()[key]
    assert torch.allclose(half.state_dict()[key], expected)


def test_table1_rows_and_invariants(colour_dir: Path, weights):
    methods = bench_tune.contenders(weights["tunable"], weights["fixed"], weights["retain"], "cpu", "fp32")
    images = [("synthetic", p) for p in sorted(colour_dir.iterdir())[:2]]
    rows = bench_tune.evaluate(bench_tune.awgn_cases(images, [15, 30]), methods, [0.0, 0.5, 1.0], nu=0.9)
    assert len(rows) == 2 * 2 * 3 * 3
    by = {(r["method"], r["kind"], r["image"], r["sigma"], r["w1"]): r for r in rows}
    for (_, kind, image, sigma, w1), row in by.items():
        if w1 == 1.0:  # the retention target of (1, 0) is the clean image
            assert row["psnr_eta"] == pytest.approx(row["psnr"])
        if kind == "fixed":  # the fixed model's output does not depend on ω
            fixed_at_1 = next(r for k, r in by.items() if k[1:] == ("fixed", image, sigma, 1.0))
            assert row["psnr"] == pytest.approx(fixed_at_1["psnr"])
        if kind == "dni" and w1 == 1.0:  # DNI at ω1 = 1 is the fixed network
            fixed_row = next(r for k, r in by.items() if k[1:] == ("fixed", image, sigma, 1.0))
            assert row["psnr"] == pytest.approx(fixed_row["psnr"], abs=1e-6)
    summary = bench_tune.summarize(rows)
    means = [r for r in summary if r["sigma"] == "mean"]
    assert len(means) == 3 * 3 and all(r["images"] == 2 for r in means)


def test_cli_saves_results_and_the_docs_table(colour_dir: Path, weights, tmp_path: Path):
    saved = tmp_path / "tune.json"
    result = CliRunner().invoke(
        app,
        [
            "bench", "tune", "--data", str(colour_dir), "-m", str(weights["tunable"]), "--fixed", str(weights["fixed"]),
            "--retain", str(weights["retain"]), "--sigma", "15", "--w1", "0,1", "--limit", "1", "--device", "cpu",
            "--save", str(saved), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["command"] == "tune" and document["config"]["nu"] == 0.9
    assert [m["kind"] for m in document["methods"]] == ["tunable", "dni", "fixed"]
    page = render([(saved, json.loads(saved.read_text()))], "restorekit bench report x")
    assert "## Tunable denoising" in page and "| tunable_mallenet_s.tinytest | tunable |" in page
    assert "tunable_mallenet_s.tinytest − DNI | margin (dB)" in page


def test_cli_refuses_settings_outside_the_unit_interval(colour_dir: Path, weights):
    result = CliRunner().invoke(
        app, ["bench", "tune", "--data", str(colour_dir), "-m", str(weights["tunable"]), "--w1", "0,1.5"]
    )
    assert result.exit_code == 2


def test_strip_has_a_row_per_tunable_method_and_a_column_per_setting(colour_dir: Path, weights):
    methods = bench_tune.contenders(weights["tunable"], weights["fixed"], weights["retain"], "cpu", "fp32")
    image = sorted(colour_dir.iterdir())[0]
    case = next(bench_tune.awgn_cases([("synthetic", image)], [30]))
    figure = bench_tune.sweep_strip(case, methods, [0.0, 0.5, 1.0], 0.9, (4, 8, 16))
    assert figure.dtype == "uint8" and figure.shape == (2 * (16 + 18) + 4, 3 * 16 + 2 * 4, 3)


def _real_pairs(colour_dir: Path, folder: Path) -> Path:
    """Noisy/clean pairs named as real_cc15's, made from the synthetic images with a fixed-seed AWGN."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    for path in sorted(colour_dir.iterdir())[:2]:
        clean = load_image(path)
        noisy = np.clip(clean.pixels + rng.normal(0, 20 / 255, clean.pixels.shape), 0, 1).astype(np.float32)
        save_image(clean, folder / f"{path.stem}_mean.png")
        save_image(dataclasses.replace(clean, pixels=noisy), folder / f"{path.stem}_real.png")
    return folder


def test_real_pairs_score_against_the_clean_reference_and_the_real_noise(colour_dir: Path, weights, tmp_path: Path):
    pairs = [("p", n, c) for n, c in list_pairs(_real_pairs(colour_dir, tmp_path / "pairs"))]
    methods = bench_tune.contenders(weights["tunable"], weights["fixed"], weights["retain"], "cpu", "fp32")
    rows = bench_tune.evaluate(bench_tune.pair_cases(pairs), methods, [0.0, 1.0], nu=0.9)
    assert len(rows) == 2 * 3 * 2 and {r["sigma"] for r in rows} == {"real"} == {r["protocol"] for r in rows}
    noisy, clean = load_image(pairs[0][1]).pixels, load_image(pairs[0][2]).pixels
    tunable = next(r for r in rows if r["kind"] == "tunable" and r["image"] == pairs[0][1].name and r["w1"] == 0.0)
    out = bench_tune.tune(noisy, (0.0, 1.0), model=str(weights["tunable"]), device="cpu", dtype="fp32")
    target = np.clip(clean + 0.9 * (noisy - clean), 0, 1)  # PSNRη at (0, 1): against y + ν(z − y) of the real pair
    assert tunable["psnr_eta"] == pytest.approx(psnr(np.clip(out, 0, 1), target), abs=1e-6)


def test_cli_real_pairs_and_the_camera_noise_strip(colour_dir: Path, weights, tmp_path: Path):
    folder = _real_pairs(colour_dir, tmp_path / "pairs")
    strip = tmp_path / "strip.png"
    base = ["bench", "tune", "--pairs", str(folder), "-m", str(weights["tunable"]), "--fixed", str(weights["fixed"]),
            "--retain", str(weights["retain"]), "--w1", "0,1", "--device", "cpu", "--json"]  # fmt: skip
    refused = CliRunner().invoke(app, [*base, "--strip", str(strip)])
    assert refused.exit_code == 2 and "--strip-image" in refused.output
    image = sorted(colour_dir.iterdir())[0]
    result = CliRunner().invoke(
        app, [*base, "--strip", str(strip), "--strip-image", str(image), "--strip-box", "0,0,16"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["pairs"] == [str(folder)] and {r["sigma"] for r in document["rows"]} == {"real"}
    assert strip.is_file()
