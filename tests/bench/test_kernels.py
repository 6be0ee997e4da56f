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
        else:
            assert row["ms_median"] > 0 and row["gbps"] > 0 and row["ratio_vs_depthwise"] > 0
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
