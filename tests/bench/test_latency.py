"""Latency: sizes, the plan, and the fields of a measured row (tiny sizes only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from restorekit.bench.latency import ROW_KEYS, Case, measure, parse_size, plan, run, synthetic_image
from restorekit.errors import UsageError
from restorekit.inference import api
from restorekit.models._weights import load_model


def test_parse_size():
    assert parse_size("256") == (256, 256)
    assert parse_size("48x32") == (32, 48)
    assert parse_size("1MP") == (864, 1152)
    assert parse_size("12mp") == (3000, 4000)
    for bad in ("big", "0", "12x", "-5"):
        with pytest.raises(UsageError, match="size"):
            parse_size(bad)


def test_synthetic_image_is_deterministic():
    first = synthetic_image(32, 48, 3, 25)
    assert first.shape == (32, 48, 3) and first.min() >= 0 and first.max() <= 1
    assert (first == synthetic_image(32, 48, 3, 25)).all()


def test_plan(tiny_model: Path):
    cases, methods, skipped = plan(
        [str(tiny_model)], ["opencv_nlm", "skimage_nlm"], [(32, 48), (64, 64)], peer_max_mp=0.002, repeats=2
    )
    assert [(c.kind, c.method.split("/")[-1], c.width) for c in cases] == [
        ("restorekit", tiny_model.name, 48),
        ("peer", "opencv_nlm", 48),
        ("peer", "skimage_nlm", 48),
        ("restorekit", tiny_model.name, 64),
    ]
    assert [m.name for m in methods] == ["mallenet_s.tinytest", "opencv_nlm", "skimage_nlm"]
    assert [s["method"] for s in skipped] == ["opencv_nlm", "skimage_nlm"]
    assert "above --peer-max-mp" in skipped[0]["reason"]
    _, _, gray = plan([str(tiny_model)], [], [(32, 48)], channels=1)
    assert gray == [{"method": "mallenet_s.tinytest", "reason": "takes 3-channel images, not 1"}]
    with pytest.raises(UsageError, match="dtype"):
        plan([], [], [(32, 48)], dtypes=["fp64"])


def _check_row(row: dict, case: Case) -> None:
    assert list(row) == list(ROW_KEYS)
    assert row["error"] is None
    assert row["size"] == f"{case.width}x{case.height}" and row["megapixels"] == case.height * case.width / 1e6
    assert 1 <= row["runs"] <= case.repeats
    assert 0 < row["median_ms"] <= row["p95_ms"] < 60_000
    assert row["mp_per_s"] == pytest.approx(row["megapixels"] / (row["median_ms"] / 1e3))
    assert 0 < row["rss_baseline_mb"] <= row["rss_peak_mb"] < 64_000
    assert row["cuda_peak_mb"] is None


def test_measure_model_in_process(tiny_model: Path):
    case = Case(str(tiny_model), "restorekit", 32, 48, repeats=3)
    row = measure(case)
    _check_row(row, case)
    model = load_model(tiny_model)
    expected = api.auto_precision(model.requirements, torch.device("cpu"), model)  # measured once, remembered
    assert row["method"] == "mallenet_s.tinytest" and row["device"] == "cpu" and row["dtype"] == expected
    assert measure(Case(str(tiny_model), "restorekit", 32, 48, dtype="fp32", repeats=1))["dtype"] == "fp32"
    assert row["gflops"] > 0 and row["parameters"] > 1000 and row["threads"] >= 1


def test_flops_are_the_models_on_either_inference_path(tiny_model: Path, monkeypatch):
    """Counted on the eager path in the timed runs' tiles: the fused kernels hide their convolutions from the
    counter, and no tile-size probe is counted."""
    rows = {}
    for path in ("fused", "eager"):
        monkeypatch.setenv(api.INFERENCE_ENV, path)
        api._bytes_per_pixel.clear()
        rows[path] = measure(Case(str(tiny_model), "restorekit", 64, 64, dtype="fp32", repeats=1))
    assert rows["fused"]["gflops"] == pytest.approx(rows["eager"]["gflops"], rel=1e-9)


def test_run_isolated_peer_and_failure():
    ok = Case("skimage_nlm", "peer", 32, 48, repeats=2)
    bad = Case("missing.safetensors", "restorekit", 32, 48)
    labels = []
    rows = run([ok, bad], lambda label, row: labels.append(label))
    _check_row(rows[0], ok)
    assert rows[0]["dtype"] == "float32" and rows[0]["gflops"] is None and rows[0]["parameters"] is None
    assert rows[1]["median_ms"] is None and "WeightsError" in rows[1]["error"]
    assert labels == ["skimage_nlm 48x32 cpu float32", "missing.safetensors 48x32 cpu auto"]


def test_super_resolution_rows_give_the_output_size_and_a_chain_adds_the_denoiser(tiny_model: Path, tmp_path: Path):
    from restorekit.models._weights import save_model
    from restorekit.models.tunable_acdasr import TunableACDASR
    from tests.cli.test_sr import tiny_sr

    weights = tmp_path / "acdasr_s.tinytest.safetensors"
    save_model(tiny_sr(2), weights, name="acdasr_s.tinytest")
    cases, methods, _ = plan([str(weights)], [], [(32, 48)], dtypes=["fp32"], repeats=1, chain=[str(weights)])
    assert [(c.method, c.chain) for c in cases] == [(str(weights), False), (str(weights), True)]
    assert [m.name for m in methods] == ["acdasr_s.tinytest", "denoise → acdasr_s.tinytest"]
    plain, chained = (measure(case) for case in cases)
    for row, case in ((plain, cases[0]), (chained, cases[1])):
        _check_row(row, case)
        assert row["output"] == "96x64" and row["dtype"] == "fp32"
    assert chained["method"] == "denoise → acdasr_s.tinytest" and chained["gflops"] > plain["gflops"]
    assert measure(Case(str(tiny_model), "restorekit", 32, 48, dtype="fp32", repeats=1))["output"] is None
    tunable = tmp_path / "tunable_acdasr_s.tinytest.safetensors"
    save_model(TunableACDASR(scale=2, width=8, blocks=1, generator_width=4), tunable, name="tunable_acdasr_s.tinytest")
    folded = measure(Case(str(tunable), "restorekit", 32, 48, dtype="fp32", repeats=1))  # as `sr --w` runs it
    assert folded["output"] == "96x64" and folded["error"] is None and folded["gflops"] > 0
    with pytest.raises(UsageError, match="--chain"):
        plan([], [], [(32, 48)], chain=[str(tiny_model)])
