"""Kernel benchmark: malleable and atom convolution rows side by side, and `--op` (tiny sizes only)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from restorekit.bench import kernels
from restorekit.cli.app import app
from restorekit.errors import UsageError


def test_rows_for_both_ops(monkeypatch: pytest.MonkeyPatch):
    measured = []
    monkeypatch.setattr(kernels, "_peak_extra", lambda case, key: measured.append(key) or 0.0)  # no spawning here
    rows = kernels.run([(24, 24)], [4], backends=["naive", "reference", "cpu", "triton"], repeats=1, atoms=3)
    assert [(row["op"], row["backend"]) for row in rows] == [
        ("depthwise_conv2d", "torch"),
        ("naive", "torch"),
        ("malleable_conv", "reference"),
        ("malleable_conv", "cpu"),
        ("malleable_conv", "triton"),
        ("atom_conv_naive", "torch"),
        ("atom_conv", "reference"),
        ("atom_conv", "cpu"),
        ("atom_conv", "triton"),
    ]
    assert all(tuple(row) == kernels.ROW_KEYS for row in rows)
    depthwise, *others = rows
    assert measured.count(("depthwise", "depthwise")) == 1  # one baseline per shape, shared by both ops
    for row in rows:
        if row["backend"] == "triton" or row["note"]:  # no CUDA here; cpu without a compiler
            assert row["note"].startswith("unavailable") and row["ms_median"] is None
        else:  # figures rounded to 2 decimals: a tiny shape on a loaded machine can round to 0
            assert row["ms_median"] > 0 and row["gbps"] >= 0 and row["ratio_vs_depthwise"] >= 0
    atom = [row for row in rows if row["op"].startswith("atom_conv")]
    assert all(row["output_mb"] == round(3 * 4 * 24 * 24 * 4 / 1e6, 2) for row in atom)  # C·M·H·W fp32
    assert depthwise["output_mb"] == others[0]["output_mb"] == round(4 * 24 * 24 * 4 / 1e6, 2)
    with pytest.raises(UsageError, match="op"):
        kernels.run([(24, 24)], [4], backends=["reference"], ops=["atoms"])


def test_op_atom_alone_from_the_cli():
    result = CliRunner().invoke(
        app,
        ["bench", "kernels", "--size", "24", "--channels", "4", "--op", "atom", "--atoms", "2", "--kernel-size", "5",
         "--backend", "reference", "--device", "cpu", "--repeats", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["ops"] == ["atom"] and document["config"]["atoms"] == 2
    depthwise, atom = document["rows"]
    assert (depthwise["op"], atom["op"], atom["backend"]) == ("depthwise_conv2d", "atom_conv", "reference")
    assert atom["kernel_size"] == 5 and atom["note"] is None and atom["ms_median"] > 0
    assert atom["peak_extra_mb"] is not None  # measured in a spawned process
    assert atom["output_mb"] == round(4 * 2 * 24 * 24 * torch.float32.itemsize / 1e6, 2)


def test_rows_for_tv_conv_next_to_the_depthwise_baseline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(kernels, "_peak_extra", lambda case, key: 0.0)  # no spawning here
    rows = kernels.run(
        [(20, 24)], [4], kernel_size=5, backends=["naive", "reference", "cpu", "triton"], repeats=1, ops=["tv"]
    )
    assert [(row["op"], row["backend"]) for row in rows] == [
        ("depthwise_conv2d", "torch"),
        ("tv_conv_naive", "torch"),
        ("tv_conv", "reference"),
        ("tv_conv", "cpu"),
        ("tv_conv", "triton"),
    ]
    element = torch.float32.itemsize
    for row in rows[1:]:
        assert row["kernel_size"] == 5 and row["output_mb"] == round(4 * 20 * 24 * element / 1e6, 2)
        if row["backend"] == "triton" or row["note"]:  # no CUDA here; cpu without a compiler
            assert row["note"].startswith("unavailable") and row["ms_median"] is None
        else:
            assert row["ms_median"] > 0 and row["gbps"] >= 0 and row["ratio_vs_depthwise"] >= 0  # 2 decimals
    default = kernels.run([(16, 16)], [2], backends=["reference"], repeats=1)
    assert [row["op"] for row in default] == ["depthwise_conv2d", "malleable_conv", "atom_conv"]  # tv when asked


def test_tv_bytes_model_and_naive_memory_estimate(monkeypatch: pytest.MonkeyPatch):
    """Read x, read the (C, K², H, W) map once, write the output; the naive row needs (3·K² + 2)·C·H·W elements."""
    case = kernels.Case(10, 12, 3, 3, "cpu", torch.float64, 8, ops=("tv",))
    row = kernels._row(case, ("tv", "cpu"), {"times": [2.0], "peak_extra": 0.0, "note": None}, [1.0])
    assert row["gbps"] == round((2 + 9) * 3 * 10 * 12 * 8 / 2e-3 / 1e9, 2) and row["ratio_vs_depthwise"] == 2.0
    monkeypatch.setattr(kernels, "_available_memory", lambda device: 2 * (3 * 9 + 2) * 3 * 10 * 12 * 8 - 1)
    assert kernels._unavailable(case, ("tv", "naive")).startswith("skipped")


def test_op_tv_from_the_cli():
    result = CliRunner().invoke(
        app,
        ["bench", "kernels", "--size", "24", "--channels", "4", "--op", "tv", "--kernel-size", "3",
         "--backend", "naive,cpu", "--device", "cpu", "--repeats", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config"]["ops"] == ["tv"]
    assert [(row["op"], row["backend"]) for row in document["rows"]] == [
        ("depthwise_conv2d", "torch"),
        ("tv_conv_naive", "torch"),
        ("tv_conv", "cpu"),
    ]
    naive = document["rows"][1]
    assert naive["note"] is None and naive["ms_median"] > 0 and naive["peak_extra_mb"] is not None
