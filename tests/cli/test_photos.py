"""Real photos end to end: camera files (MPO, HEIC, RAW), the photo models of `denoise` and `tune`, the API that
returns what the CLI writes, and the σ-estimate hint on camera noise."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from typer.testing import CliRunner

import restorekit
from restorekit.cli.app import app
from restorekit.inference import api
from restorekit.inference.io import load_image
from restorekit.models import default_model
from restorekit.train.camera_noise import synthesize
from tests.inference.io.test_photo_inputs import MAKE, write_mpo

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def camera_photo(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth scene through the training data's camera-noise synthesis: correlated, signal-dependent noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    clean = np.stack([0.3 + 0.4 * x / width, 0.2 + 0.5 * y / height, 0.5 + 0.2 * np.sin(x / 7)], axis=-1)
    batch = torch.from_numpy(clean).permute(2, 0, 1)[None]
    noisy, _ = synthesize(batch, torch.Generator().manual_seed(seed))
    return noisy[0].permute(1, 2, 0).numpy().astype(np.float32)


def save_png(pixels: np.ndarray, path: Path) -> Path:
    PILImage.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def as_file(pixels: np.ndarray) -> np.ndarray:
    """What an 8-bit output file holds for float pixels."""
    return np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)


def test_denoise_an_mpo_writes_an_ordinary_jpeg_and_says_the_previews_were_dropped(tmp_path: Path):
    source = tmp_path / "DSC_0001.JPG"
    write_mpo(source, as_file(camera_photo()), previews=1)
    before = source.read_bytes()
    result = invoke("denoise", source, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["files"][0]
    assert record["status"] == "ok" and record["model"] == default_model(3, "real")
    assert any("primary image" in note for note in record["notes"])
    with PILImage.open(tmp_path / "DSC_0001_denoised.JPG") as out:
        assert out.format == "JPEG" and getattr(out, "n_frames", 1) == 1 and out.getexif()[MAKE] == "TestCam"
    assert source.read_bytes() == before


def test_denoise_a_heic_photo_writes_heic(tmp_path: Path):
    pytest.importorskip("pillow_heif")
    from restorekit.inference.io import Image, save_image

    save_image(Image(camera_photo(), None, 8, "RGB", "JPEG"), tmp_path / "IMG_0001.HEIC")
    result = invoke("denoise", tmp_path / "IMG_0001.HEIC", "--json")
    assert result.exit_code == 0, result.output
    out = load_image(tmp_path / "IMG_0001_denoised.HEIC")
    assert out.format == "HEIF" and out.pixels.shape == (64, 96, 3)


def test_a_raw_file_named_on_the_command_line_fails_with_one_line(tmp_path: Path):
    (tmp_path / "DSC_0001.NEF").write_bytes(b"MM\x00*" + bytes(300))
    result = invoke("denoise", tmp_path / "DSC_0001.NEF")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if "RAW is not read" in line]
    assert len(errors) == 1 and "16-bit TIFF" in errors[0]
    assert "Traceback" not in result.output


def test_the_api_denoises_a_photo_as_the_cli_does(tmp_path: Path):
    path = save_png(camera_photo(seed=1), tmp_path / "photo.png")
    result = invoke("denoise", path, "-o", tmp_path / "cli.png", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    from_cli = np.asarray(PILImage.open(tmp_path / "cli.png"))
    pixels = load_image(path).pixels
    from_api = as_file(restorekit.denoise(pixels, device="cpu"))
    np.testing.assert_array_equal(from_api, from_cli)
    gaussian = as_file(restorekit.denoise(pixels, sigma="auto", device="cpu"))
    assert np.abs(gaussian.astype(int) - from_cli).max() > 0  # "auto" keeps the Gaussian path: another model
    _, info = api.denoise_image(pixels, device="cpu")
    assert info.model == default_model(3, "real") and info.sigma_source == "blind"


def test_the_api_tunes_a_photo_as_the_cli_does(tmp_path: Path):
    path = save_png(camera_photo(seed=2), tmp_path / "photo.png")
    result = invoke("tune", path, "--w", "0.3,0.7", "-o", tmp_path / "cli.png", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["files"][0]
    from_api = as_file(restorekit.tune(load_image(path).pixels, (0.3, 0.7), device="cpu"))
    np.testing.assert_array_equal(from_api, np.asarray(PILImage.open(tmp_path / "cli.png")))
    assert record["model"] == default_model(3, "tune_real") and record["sigma_source"] == "blind"
    gaussian = invoke("tune", path, "--w", "0.3,0.7", "--sigma", "auto", "-o", tmp_path / "g.png", "--json")
    assert json.loads(gaussian.stdout)["files"][0]["model"] == default_model(3, "tune")


def test_tune_sweep_on_a_photo_goes_from_grainy_to_clean(tmp_path: Path):
    noisy = camera_photo(seed=3)
    outputs = [restorekit.tune(noisy, (w1, 1 - w1), device="cpu") for w1 in (0.0, 0.5, 1.0)]
    removed = [float(np.abs(out - noisy).mean() * 255) for out in outputs]  # grey levels changed, on average
    assert removed[0] < removed[1] < removed[2]  # more of the noise removed as ω1 grows
    assert removed[0] < 1.5 and removed[2] > 4.0  # (0, 1) keeps the grain, (1, 0) removes it: a visible sweep


def test_sigma_auto_on_camera_noise_says_so(tmp_path: Path):
    photo = camera_photo(seed=4)
    with pytest.warns(api.CameraNoiseWarning, match="looks like camera noise"):
        restorekit.denoise(photo, sigma="auto", device="cpu")
    result = invoke("denoise", save_png(photo, tmp_path / "p.png"), "--sigma", "auto", "--json")
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["files"][0]["notes"]
    assert sum("looks like camera noise" in note and "omit σ" in note for note in notes) == 1
    assert "Warning" not in result.stderr  # said once, as a note, not also as a Python warning
    tuned = invoke("tune", tmp_path / "p.png", "--w", "1,0", "--sigma", "auto", "--json")
    assert any("looks like camera noise" in n for n in json.loads(tuned.stdout)["files"][0]["notes"])


def test_sigma_auto_on_white_noise_says_nothing():
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:64, 0:96].astype(np.float32)
    clean = np.stack([0.3 + 0.4 * x / 96, 0.2 + 0.5 * y / 64, 0.5 + 0.2 * np.sin(x / 7)], axis=-1)
    noisy = (clean + rng.normal(0, 25 / 255, clean.shape)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", api.CameraNoiseWarning)
        _, info = api.denoise_image(noisy, "auto", device="cpu")
    assert abs(info.sigma - 25) < 3 and not any("camera noise" in note for note in info.notes)


@pytest.mark.parametrize("command", [["tune", "--w", "0.5,0.5"], ["sr", "--scale", "2"]])
def test_tune_and_sr_read_an_mpo_and_refuse_raw_alike(tmp_path: Path, command: list[str]):
    write_mpo(tmp_path / "DSC_0002.JPG", as_file(camera_photo(seed=6)), previews=1)
    result = invoke(command[0], tmp_path / "DSC_0002.JPG", *command[1:], "-o", tmp_path / "out.jpg", "--json")
    assert result.exit_code == 0, result.output
    assert any("primary image" in note for note in json.loads(result.stdout)["files"][0]["notes"])
    with PILImage.open(tmp_path / "out.jpg") as out:
        assert out.format == "JPEG" and getattr(out, "n_frames", 1) == 1 and out.getexif()[MAKE] == "TestCam"
    (tmp_path / "DSC_0002.ARW").write_bytes(b"II*\x00" + bytes(300))
    refused = invoke(command[0], tmp_path / "DSC_0002.ARW", *command[1:])
    assert refused.exit_code == 1 and sum("RAW is not read" in line for line in refused.stderr.splitlines()) == 1
