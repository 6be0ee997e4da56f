"""`restorekit tune`: a setting or a sweep over files and folders, with the shared batch behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from restorekit.cli._console import ExitCode
from restorekit.inference.io import load_image
from tests.cli.test_cli import error_lines, invoke


def test_one_setting_writes_a_tuned_file_and_reports_it(tmp_path, write_png, tiny_tunable_weights, tree_hash):
    source = write_png(tmp_path / "in" / "photo.png")
    before = tree_hash(tmp_path / "in")
    result = invoke("tune", source, "--w", "0.3,0.7", "--sigma", "25", "-m", tiny_tunable_weights, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)["files"][0]
    assert record["status"] == "ok" and record["w"] == [0.3, 0.7] and record["sweep"] is None
    assert record["model"] == "tunable_mallenet_s.tiny_test"
    assert (tmp_path / "in" / "photo_tuned.png").is_file()
    after = tree_hash(tmp_path / "in")
    assert {k: v for k, v in after.items() if k in before} == before


def test_settings_change_the_output(tmp_path, write_png, tiny_tunable_weights):
    source = write_png(tmp_path / "a.png", height=32, width=32)
    outputs = []
    for w in ("1,0", "0,1"):
        target = tmp_path / f"out_{w.replace(',', '_')}.png"
        assert invoke("tune", source, "--w", w, "-s", "25", "-m", tiny_tunable_weights, "-o", target).exit_code == 0
        outputs.append(load_image(target).pixels)
    assert np.abs(outputs[0] - outputs[1]).max() > 0


@pytest.mark.parametrize("w", ["0.3,0.8", "0.5", "1.5,-0.5", "a,b"])
def test_bad_settings_are_one_usage_error_naming_the_domain(tmp_path, write_png, tiny_tunable_weights, w):
    sources = [write_png(tmp_path / f"{i}.png") for i in range(3)]
    result = invoke("tune", *sources, "--w", w, "-m", tiny_tunable_weights)
    assert result.exit_code == ExitCode.USAGE
    (line,) = error_lines(result)
    assert "--w" in line
    assert "sum to 1" in line or "comma-separated numbers" in line
    assert not list(tmp_path.glob("*_tuned.png"))


def test_needs_exactly_one_of_w_and_sweep(tmp_path, write_png, tiny_tunable_weights):
    source = write_png(tmp_path / "a.png")
    for extra in ([], ["--w", "1,0", "--sweep", "3"]):
        result = invoke("tune", source, "-m", tiny_tunable_weights, *extra)
        assert result.exit_code == ExitCode.USAGE
        assert "--sweep" in error_lines(result)[0]


def test_a_plain_model_is_a_usage_error(tmp_path, write_png, tiny_weights):
    result = invoke("tune", write_png(tmp_path / "a.png"), "--w", "1,0", "-m", tiny_weights)
    assert result.exit_code == ExitCode.USAGE
    assert "tunable model" in error_lines(result)[0]


def test_sweep_writes_a_contact_sheet_per_input_with_scores(tmp_path, write_png, tiny_tunable_weights):
    folder = tmp_path / "in"
    for name in ("a.png", "sub/b.png"):
        write_png(folder / name, height=24, width=40, seed=len(name))
    clean = tmp_path / "clean"
    for name in ("a.png", "b.png"):
        write_png(clean / name, height=24, width=40, seed=7)
    result = invoke(
        "tune", folder, "-r", "-o", tmp_path / "out", "--sweep", "4", "-s", "25",
        "-m", tiny_tunable_weights, "--reference", clean, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert [f["output"] for f in files] == [str(tmp_path / "out" / "a.png"), str(tmp_path / "out" / "sub" / "b.png")]
    for record in files:
        settings = np.array([s["w"] for s in record["sweep"]])
        assert np.allclose(settings, [[0, 1], [1 / 3, 2 / 3], [2 / 3, 1 / 3], [1, 0]])
        assert all(np.isfinite(s["psnr"]) and np.isfinite(s["psnr_eta"]) for s in record["sweep"])
    with Image.open(tmp_path / "out" / "a.png") as sheet:
        assert sheet.size == (4 * 40 + 3 * 4, 24 + 18)


def test_reference_of_another_size_fails_that_file_only(tmp_path, write_png, tiny_tunable_weights):
    good, other = write_png(tmp_path / "a.png"), write_png(tmp_path / "b.png", height=32)
    clean = write_png(tmp_path / "ref" / "clean.png")
    result = invoke("tune", good, other, "--w", "1,0", "-s", "25", "-m", tiny_tunable_weights, "--reference", clean)
    assert result.exit_code == ExitCode.FAILED
    assert (tmp_path / "a_tuned.png").is_file() and not (tmp_path / "b_tuned.png").exists()
    assert "PSNR" in result.stdout


def test_help_says_what_each_parameter_does():
    result = invoke("tune", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "remove noise" in text and "keep grain and fine detail" in text
