"""Quality numbers match a direct computation on the same seeded noise."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from restorekit.bench.baselines import PEERS
from restorekit.bench.methods import model_method
from restorekit.bench.quality import OPPONENT, evaluate, list_images, ssim, summarize
from restorekit.errors import InputError
from restorekit.inference.io import load_image
from restorekit.inference.metrics import psnr
from restorekit.inference.noise import estimate_sigma

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "eval"


def _numpy_psnr(clean: np.ndarray, image: np.ndarray) -> float:
    mse = np.mean((image.astype(np.float64) - clean.astype(np.float64)) ** 2)
    return float(10 * np.log10(1 / mse))


def _noisy(path: Path, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    clean = load_image(path).pixels
    rng = np.random.default_rng(zlib.crc32(f"{path.name}|{sigma:g}".encode()))
    return clean, clean + rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma / 255)


@pytest.fixture(scope="module")
def results(colour_dir: Path, tiny_model: Path):
    images = [("synthetic", p) for p in list_images(colour_dir)]
    methods = [model_method(tiny_model, device="cpu"), PEERS["skimage_nlm"], PEERS["opencv_nlm"]]
    rows, skipped = evaluate(images, methods, [15, 25], ["float", "file"], "true")
    return images, rows, skipped


def test_row_layout(results):
    images, rows, skipped = results
    assert skipped == []
    assert len(rows) == len(images) * 2 * 2 * 4
    keys = ["dataset", "image", "channels", "height", "width", "sigma", "protocol", "sigma_mode", "method", "kind"]
    keys += ["sigma_used", "psnr", "ssim", "seconds"]
    assert all(list(row) == keys for row in rows)
    assert {row["method"] for row in rows} == {"noisy", "mallenet_s.tinytest", "skimage_nlm", "opencv_nlm"}
    noisy = [row for row in rows if row["method"] == "noisy"]
    assert all(row["sigma_used"] is None and row["seconds"] is None and row["kind"] == "input" for row in noisy)
    told = [row for row in rows if row["method"] != "noisy"]
    assert all(row["sigma_used"] == row["sigma"] and row["seconds"] > 0 for row in told)


def test_noisy_and_peer_psnr_match_direct_computation(results):
    images, rows, _ = results
    for _, path in images:
        clean, noisy = _noisy(path, 25)
        stored = np.round(np.clip(noisy, 0, 1) * 255) / 255
        row = {(r["method"], r["protocol"]): r for r in rows if r["image"] == path.name and r["sigma"] == 25}
        assert row["noisy", "float"]["psnr"] == pytest.approx(_numpy_psnr(clean, noisy), abs=1e-6)
        assert row["noisy", "file"]["psnr"] == pytest.approx(_numpy_psnr(clean, stored), abs=1e-5)
        denoised = np.clip(PEERS["skimage_nlm"].run(noisy, 25.0), 0, 1)
        assert row["skimage_nlm", "float"]["psnr"] == pytest.approx(_numpy_psnr(clean, denoised), abs=1e-6)
        assert row["skimage_nlm", "float"]["ssim"] == pytest.approx(ssim(clean, denoised), abs=1e-9)
        assert row["skimage_nlm", "float"]["psnr"] > row["noisy", "float"]["psnr"]


def test_summary_is_the_mean_over_images(results):
    images, rows, _ = results
    summary = summarize(rows)
    assert len(summary) == 2 * 2 * 4
    for entry in summary:
        members = [
            r
            for r in rows
            if (r["sigma"], r["protocol"], r["method"]) == (entry["sigma"], entry["protocol"], entry["method"])
        ]
        assert entry["images"] == len(images) == len(members) and entry["image"] == "mean"
        assert entry["psnr"] == pytest.approx(np.mean([r["psnr"] for r in members]))
        assert entry["ssim"] == pytest.approx(np.mean([r["ssim"] for r in members]))


def test_estimate_mode_tells_every_method_the_same_estimate(colour_dir: Path):
    path = list_images(colour_dir)[0]
    rows, _ = evaluate([("synthetic", path)], [PEERS["skimage_nlm"], PEERS["opencv_nlm"]], [25], ["float"], "estimate")
    expected = estimate_sigma(_noisy(path, 25)[1])
    assert [r["sigma_used"] for r in rows] == [None, pytest.approx(expected), pytest.approx(expected)]
    assert all(r["sigma_mode"] == "estimate" for r in rows)


def test_gray_images_skip_colour_models(gray_dir: Path, tiny_model: Path):
    images = [("gray", p) for p in list_images(gray_dir)]
    rows, skipped = evaluate(images, [model_method(tiny_model, device="cpu"), PEERS["opencv_nlm"]], [25])
    assert {r["method"] for r in rows} == {"noisy", "opencv_nlm"}
    assert all(r["channels"] == 1 for r in rows)
    assert skipped == [{"method": "mallenet_s.tinytest", "reason": "takes colour images, not gray"}]


def test_metrics():
    clean = np.zeros((16, 16, 1))
    assert psnr(clean + 0.1, clean) == pytest.approx(20.0)
    assert ssim(clean + 0.5, clean + 0.5) == pytest.approx(1.0)


def test_list_images_errors(tmp_path: Path):
    with pytest.raises(InputError, match="folder of clean images"):
        list_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="image files"):
        list_images(tmp_path)


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "kodak24").is_dir(), reason="../shared/data is not present")
def test_kodak_image_when_data_present():
    path = list_images(DATA / "kodak24")[0]
    rows, _ = evaluate([("kodak24", path)], [PEERS["opencv_nlm"]], [25], ["float"])
    noisy, opencv = rows
    assert noisy["psnr"] == pytest.approx(20.17, abs=0.1)
    assert opencv["psnr"] > noisy["psnr"] + 3


def test_pairs_are_matched_by_name_and_measured_against_the_clean_image(tmp_path, tiny_model):
    from PIL import Image

    from restorekit.bench.docs import render
    from restorekit.bench.methods import model_method
    from restorekit.bench.quality import evaluate_pairs, list_pairs, summarize

    rng = np.random.default_rng(0)
    for name in ("cam_a", "cam_b"):
        clean = rng.integers(40, 200, size=(32, 48, 3), dtype=np.uint8)
        noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
        Image.fromarray(clean).save(tmp_path / f"{name}_mean.png")
        Image.fromarray(noisy).save(tmp_path / f"{name}_real.png")
    Image.fromarray(clean).save(tmp_path / "lonely_real.png")  # no clean partner: ignored
    pairs = list_pairs(tmp_path)
    assert [(n.name, c.name) for n, c in pairs] == [
        ("cam_a_real.png", "cam_a_mean.png"),
        ("cam_b_real.png", "cam_b_mean.png"),
    ]
    method = model_method(tiny_model, "cpu", "fp32")
    rows, skipped = evaluate_pairs([("pairs", n, c) for n, c in pairs], [method])
    assert not skipped and len(rows) == 4
    assert {r["sigma"] for r in rows} == {"real"} and rows[0]["method"] == "noisy"
    assert rows[1]["sigma_used"] is not None  # a σ-conditioned model is told the estimate
    assert set(rows[0]["noise_std"]) == {"luma", "chroma"} and len(rows[0]["noise_corr"]["luma"]) == 3
    assert set(rows[1]["removed"]) == {"luma", "chroma"} and "removed" not in rows[0]
    summary = summarize(rows)
    model_mean = next(r for r in summary if r["method"] == rows[1]["method"])
    assert model_mean["removed"]["luma"] == pytest.approx((rows[1]["removed"]["luma"] + rows[3]["removed"]["luma"]) / 2)
    page = render([("q.json", {**_document(rows, summary)})], "restorekit bench report q.json -o x.md")
    assert "real noise: noisy/clean pairs" in page and "| real noise |" in page


def test_real_noise_rows_profile_the_noise_and_the_share_each_method_removed():
    from restorekit.bench.quality import noise_profile, noise_removed

    rng = np.random.default_rng(1)
    clean = rng.uniform(0.2, 0.8, size=(64, 80, 3))
    noise = rng.normal(0, 10 / 255, clean.shape)
    noisy = clean + noise
    profile = noise_profile(noisy, clean)
    assert profile["noise_std"]["luma"] == pytest.approx(10, rel=0.05)  # orthonormal basis: white noise keeps σ
    assert profile["noise_std"]["chroma"] == pytest.approx(10, rel=0.05)
    assert all(abs(c) < 0.05 for part in profile["noise_corr"].values() for c in part)  # white
    smooth = noise[:, 1:] + noise[:, :-1]  # correlated noise: 0.5 at one pixel, 0 beyond
    corr = noise_profile(clean[:, 1:] + smooth, clean[:, 1:])["noise_corr"]["luma"]
    assert corr[0] == pytest.approx(0.5, abs=0.05) and abs(corr[1]) < 0.05
    for kept in (0.0, 0.5, 1.0):  # an output that leaves `kept` of the noise removed 1 − kept of it
        removed = noise_removed(noisy, clean, clean + kept * noise)
        assert removed == pytest.approx({"luma": 1 - kept, "chroma": 1 - kept}, abs=1e-9)
    chroma_only = noise @ OPPONENT.T
    chroma_only[..., 0] = 0  # the output removes the luma part alone
    removed = noise_removed(noisy, clean, noisy - chroma_only @ OPPONENT)
    assert removed["chroma"] == pytest.approx(1.0) and abs(removed["luma"]) < 1e-9
    gray = noise_profile(noisy[..., :1], clean[..., :1])
    assert set(gray["noise_std"]) == {"luma"}


def _document(rows, summary):
    env = {
        "machine": None,
        "cpu": "cpu",
        "cpu_affinity": 2,
        "torch_threads": 2,
        "torch": "x",
        "restorekit": "x",
        "os": "x",
    }
    return {"command": "quality", "argv": "x", "created": "x", "environment": env, "config": {}, "rows": rows,
            "summary": summary, "methods": [], "skipped": []}  # fmt: skip
