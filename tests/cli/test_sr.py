"""`restorekit sr`: files and folders, output size, alpha, bit depth, --json, overwriting, failures, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restorekit.cli._console import ExitCode
from restorekit.inference.io import load_image, save_image
from restorekit.models import _weights
from restorekit.models._weights import save_model
from restorekit.models.acdasr import ACDASR
from tests.cli.test_cli import error_lines, invoke, summary

TINY_SR_NAME = "acdasr_s.tiny_test"


def tiny_sr(scale: int = 2) -> ACDASR:
    """A tiny ×``scale`` ACDA-SR with fixed random weights (its blocks and tail made to contribute)."""
    torch.manual_seed(0)
    model = ACDASR(scale=scale, width=8, blocks=1)
    with torch.no_grad():
        model.body[0].expand.weight.normal_(std=0.3)
        model.tail[-1].weight.normal_(std=0.02)
    return model.eval()


@pytest.fixture
def sr_weights(tmp_path: Path) -> Path:
    """The tiny ×2 ACDA-SR saved as a weights file (for ``--model PATH``)."""
    path = tmp_path / "weights" / "tiny_sr_x2.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_model(tiny_sr(2), path, name=TINY_SR_NAME)
    return path


@pytest.fixture
def nothing_ships(monkeypatch):
    """No trained model ships (whatever weights/ holds)."""
    monkeypatch.setattr(_weights, "shipped", dict)


def test_single_file_doubles_the_size_and_keeps_the_input(tmp_path, write_png, sr_weights, tree_hash):
    source = write_png(tmp_path / "photo.png", height=24, width=37)
    before = tree_hash(source)
    result = invoke("sr", source, "--scale", 2, "--model", sr_weights)
    assert result.exit_code == 0, result.output
    output = tmp_path / "photo_x2.png"
    image = load_image(output)
    assert image.pixels.shape == (48, 74, 3) and image.bit_depth == 8 and image.alpha is None
    assert TINY_SR_NAME in result.stderr and "σ" not in result.stderr
    assert tree_hash(source) == before


def test_explicit_output_file(tmp_path, write_png, sr_weights):
    source = write_png(tmp_path / "photo.png")
    result = invoke("sr", source, "--model", sr_weights, "-o", tmp_path / "big.tif")
    assert result.exit_code == 0, result.output
    image = load_image(tmp_path / "big.tif")
    assert image.format == "TIFF" and image.pixels.shape == (48, 80, 3)


def test_folder_recursive_mirrors_the_tree(tmp_path, write_png, sr_weights, tree_hash):
    folder = tmp_path / "in"
    for name in ("a.png", "b.png", "sub/c.png", "sub/deeper/d.png"):
        write_png(folder / name, height=12, width=15, seed=len(name))
    write_png(folder / ".hidden.png")
    (folder / "notes.txt").write_text("not an image")
    before = tree_hash(folder)
    out = tmp_path / "out"
    result = invoke("sr", folder, "-r", "-o", out, "--model", sr_weights, "--json")
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "b.png", "sub/c.png", "sub/deeper/d.png"]
    assert all(load_image(out / name).pixels.shape == (24, 30, 3) for name in written)
    assert summary(result)["ok"] == 4 and tree_hash(folder) == before


def test_json_summary_reports_the_scale(tmp_path, write_png, sr_weights):
    source = write_png(tmp_path / "a.png", height=12, width=15)
    result = invoke("sr", source, "--model", sr_weights, "--dtype", "fp32", "--json")
    assert result.exit_code == 0, result.output
    payload = summary(result)
    assert (payload["command"], payload["ok"], payload["failed"], payload["exit_code"]) == ("sr", 1, 0, 0)
    (record,) = payload["files"]
    assert record["status"] == "ok" and record["scale"] == 2 and record["model"] == TINY_SR_NAME
    assert record["sigma"] is None and record["sigma_source"] == "blind" and record["dtype"] == "fp32"
    assert record["output"].endswith("a_x2.png")


def test_rgba_keeps_an_upscaled_alpha(tmp_path, sr_weights):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 14, dtype=np.uint8)[None, :]  # a horizontal ramp of transparency
    source = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(source)
    result = invoke("sr", source, "--model", sr_weights)
    assert result.exit_code == 0, result.output
    image = load_image(tmp_path / "rgba_x2.png")
    assert image.pixels.shape == (20, 28, 3) and image.alpha.shape == (20, 28) and image.alpha.dtype == np.uint8
    assert np.abs(image.alpha[:, 1::2].astype(int) - rgba[..., 3].repeat(2, axis=0)).max() <= 20
    assert image.alpha[:, 0].max() <= 10 and image.alpha[:, -1].min() >= 245


def test_16_bit_png_stays_16_bit(tmp_path, write_png, sr_weights):
    eight = load_image(write_png(tmp_path / "eight.png", height=12, width=15))
    save_image(eight, tmp_path / "deep.png", bit_depth=16)
    result = invoke("sr", tmp_path / "deep.png", "--model", sr_weights)
    assert result.exit_code == 0, result.output
    image = load_image(tmp_path / "deep_x2.png")
    assert image.bit_depth == 16 and image.pixels.shape == (24, 30, 3)


def test_gray_png_stays_gray(tmp_path, write_png, sr_weights):
    source = write_png(tmp_path / "g.png", height=12, width=15, channels=1)
    result = invoke("sr", source, "--model", sr_weights)
    assert result.exit_code == 0, result.output
    assert load_image(tmp_path / "g_x2.png").pixels.shape == (24, 30, 1)


def test_refuses_to_overwrite_existing_outputs(tmp_path, write_png, sr_weights, tree_hash):
    source = write_png(tmp_path / "in" / "a.png", height=12, width=15)
    out = tmp_path / "out"
    existing = write_png(out / "a.png", seed=7)
    before = tree_hash(existing)
    result = invoke("sr", source.parent, "-o", out, "--model", sr_weights, "--json")
    assert result.exit_code == 0, result.output
    assert summary(result)["files"][0]["status"] == "exists" and tree_hash(existing) == before
    result = invoke("sr", source.parent, "-o", out, "--model", sr_weights, "--overwrite")
    assert result.exit_code == 0 and tree_hash(existing) != before
    assert load_image(existing).pixels.shape == (24, 30, 3)


def test_a_bad_file_fails_alone_and_the_batch_carries_on(tmp_path, write_png, sr_weights):
    folder = tmp_path / "in"
    write_png(folder / "good1.png", height=12, width=15)
    write_png(folder / "good2.png", height=12, width=15, seed=2)
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("hello, I am not an image")
    out = tmp_path / "out"
    result = invoke("sr", folder, "-o", out, "--model", sr_weights, "--json")
    assert result.exit_code == ExitCode.FAILED
    payload = summary(result)
    assert (payload["ok"], payload["failed"], payload["exit_code"]) == (2, 2, ExitCode.FAILED)
    lines = error_lines(result)
    assert len(lines) == 2
    assert any("zero.png" in line and "empty file" in line for line in lines)
    assert any("text.png" in line and "not a supported image" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["good1.png", "good2.png"]


def test_a_model_of_another_scale_is_a_usage_error(tmp_path, write_png, sr_weights):
    source = write_png(tmp_path / "a.png")
    result = invoke("sr", source, "--scale", 3, "--model", sr_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert "×3" in line and "×2" in line and "Traceback" not in result.output
    assert not (tmp_path / "a_x3.png").exists() and not (tmp_path / "a_x2.png").exists()


def test_a_denoiser_is_a_usage_error(tmp_path, write_png, tiny_weights):
    result = invoke("sr", write_png(tmp_path / "a.png"), "--model", tiny_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert "super-resolution" in line
    assert not (tmp_path / "a_x2.png").exists()


@pytest.mark.parametrize("scale", [5, 1, 0])
def test_a_bad_scale_is_a_usage_error(tmp_path, write_png, sr_weights, scale):
    result = invoke("sr", write_png(tmp_path / "a.png"), "--scale", scale, "--model", sr_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert "--scale" in line and "Traceback" not in result.output


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_no_shipped_model_exits_with_the_weights_code(tmp_path, write_png, nothing_ships, scale):
    result = invoke("sr", write_png(tmp_path / "a.png"), "--scale", scale)
    assert result.exit_code == ExitCode.WEIGHTS
    assert len(result.stderr.strip().splitlines()) == 1
    (line,) = error_lines(result)
    assert "super-resolution" in line and "ships" in line and f"×{scale}" in line
    assert not (tmp_path / f"a_x{scale}.png").exists()


# The shipped defaults and the fidelity ↔ detail knob (issue 27): real shipped models on a small image.
ships = _weights.shipped()
needs_tunable_sr = pytest.mark.skipif("tunable_acdasr_s.real_x4" not in ships, reason="no tunable ×4 SR model ships")


@pytest.mark.parametrize(
    ("scale", "expected"), [(2, "acdasr_s.real_x2"), (3, "acdasr_s.real_x3"), (4, "acdasr_s.real_x4")]
)
def test_the_default_model_per_scale_is_the_real_world_one_where_it_ships(tmp_path, write_png, scale, expected):
    if expected not in ships:
        pytest.skip(f"{expected} does not ship")
    source = write_png(tmp_path / "photo.png", height=12, width=14)
    result = invoke("sr", source, "--scale", scale, "--dtype", "fp32", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    record = summary(result)["files"][0]
    assert record["model"] == expected and record["w"] is None and record["scale"] == scale


@pytest.mark.skipif("acdasr_s.x4" not in ships, reason="acdasr_s.x4 does not ship")
def test_model_keeps_the_bicubic_model(tmp_path, write_png):
    source = write_png(tmp_path / "photo.png", height=12, width=14)
    result = invoke("sr", source, "--scale", 4, "--model", "acdasr_s.x4", "--dtype", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert summary(result)["files"][0]["model"] == "acdasr_s.x4"


@needs_tunable_sr
def test_w_runs_the_tunable_model_folded_at_w(tmp_path, write_png):
    from restorekit.models import create_model

    source = write_png(tmp_path / "photo.png", height=12, width=14)
    out = tmp_path / "big.tif"
    result = invoke(
        "sr", source, "--scale", 4, "--w", "0.3,0.7", "--dtype", "fp32", "-o", out, "--bit-depth", 32, "--json"
    )
    assert result.exit_code == 0, result.output
    record = summary(result)["files"][0]
    assert record["w"] == [0.3, 0.7] and record["scale"] == 4
    folded = create_model("tunable_acdasr_s.real_x4").fold((0.3, 0.7))
    expected = load_image(source).pixels
    from restorekit.inference.api import Restoration, restore

    direct, _ = restore(expected, Restoration(task="sr", scale=4, model=folded, device="cpu", dtype="fp32"))
    np.testing.assert_allclose(load_image(out).pixels, direct, atol=1e-5)


@needs_tunable_sr
def test_sweep_writes_a_labelled_sheet_of_n_settings(tmp_path, write_png):
    source = write_png(tmp_path / "photo.png", height=10, width=12)
    result = invoke("sr", source, "--scale", 4, "--sweep", 3, "--dtype", "fp32", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["files"][0]
    assert [s["w"] for s in record["sweep"]] == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    sheet = load_image(tmp_path / "photo_sweep.png")
    assert sheet.pixels.shape == (40 + 18, 3 * 48 + 2 * 4, 3)  # one row: each tile 4× the input under its label


@needs_tunable_sr
@pytest.mark.parametrize("w", ["0.5,0.6", "1.2,-0.2", "1", "abc"])
def test_w_off_the_domain_is_one_usage_error(tmp_path, write_png, w):
    source = write_png(tmp_path / "photo.png", height=8, width=8)
    result = invoke("sr", source, "--scale", 4, "--w", w)
    assert result.exit_code == ExitCode.USAGE and len(error_lines(result)) == 1, result.output
    assert "--w" in error_lines(result)[0] and not (tmp_path / "photo_x4.png").exists()


@needs_tunable_sr
def test_w_with_a_plain_model_or_with_sweep_is_a_usage_error(tmp_path, write_png):
    source = write_png(tmp_path / "photo.png", height=8, width=8)
    plain = invoke("sr", source, "--scale", 4, "--model", "acdasr_s.x4", "--w", "0.5,0.5")
    both = invoke("sr", source, "--scale", 4, "--w", "0.5,0.5", "--sweep", 3)
    for result in (plain, both):
        assert result.exit_code == ExitCode.USAGE and len(error_lines(result)) == 1, result.output
    assert "tunable" in error_lines(plain)[0]


@needs_tunable_sr
@pytest.mark.parametrize("option", [("--w", "0.5,0.5"), ("--sweep", "3")])
def test_x2_with_the_knob_says_what_ships(tmp_path, write_png, option):
    source = write_png(tmp_path / "photo.png", height=8, width=8)
    result = invoke("sr", source, "--scale", 2, *option)
    assert result.exit_code == ExitCode.WEIGHTS and len(error_lines(result)) == 1, result.output
    assert "no tunable ×2" in error_lines(result)[0] and "×4" in error_lines(result)[0]


def test_sr_takes_no_reference(tmp_path, write_png):
    source = write_png(tmp_path / "photo.png", height=8, width=8)
    result = invoke("sr", source, "--scale", 4, "--sweep", 3, "--reference", source)
    assert result.exit_code == ExitCode.USAGE
