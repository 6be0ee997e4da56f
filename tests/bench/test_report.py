"""Report renderers: JSON schema, CSV, Markdown, rich table, plot."""

from __future__ import annotations

import builtins
import csv
import io
import json
from pathlib import Path

import pytest

from restorekit.bench import report
from restorekit.bench.env import environment
from restorekit.errors import InputError, UsageError

ROWS = [
    {"method": "noisy", "sigma": 25, "psnr": 20.1712, "ssim": 0.31, "seconds": None},
    {"method": "cbm3d", "sigma": 25, "psnr": 31.2345, "ssim": 0.88, "seconds": 17.25},
]
SUMMARY = [
    {"dataset": "kodak24", "protocol": "float", "sigma": 25, "method": m, "psnr": p, "seconds": s}
    for m, p, s in (("noisy", 20.2, None), ("cbm3d", 31.2, 17.0), ("opencv_nlm", 28.0, 0.2))
]


def _document() -> dict:
    argv = "restorekit bench quality --data x"
    return report.payload("quality", ROWS, environment(), {"sigmas": [25]}, argv, summary=SUMMARY, skipped=[])


def test_json_schema():
    document = json.loads(report.to_json(_document()))
    expected = {"schema", "command", "argv", "created", "environment", "config", "methods", "rows", "summary"}
    assert set(document) == expected | {"skipped"}
    assert document["schema"] == report.SCHEMA == "restorekit-bench/1"
    assert document["command"] == "quality" and document["argv"] == "restorekit bench quality --data x"
    assert document["created"].endswith("Z") and len(document["created"]) == 20
    assert isinstance(document["environment"], dict) and isinstance(document["config"], dict)
    assert document["rows"] == ROWS and document["summary"] == SUMMARY
    assert isinstance(document["methods"], list) and document["skipped"] == []


def test_non_finite_numbers_become_null():
    document = report.payload("quality", [{"psnr": float("inf"), "x": [float("nan")]}], {}, {})
    assert json.loads(report.to_json(document))["rows"] == [{"psnr": None, "x": [None]}]


def test_load_checks_the_schema(tmp_path: Path):
    good = tmp_path / "good.json"
    report.save(_document(), good)
    assert report.load(good)["rows"] == ROWS
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(InputError, match="restorekit-bench/1"):
        report.load(bad)
    with pytest.raises(InputError, match="cannot read"):
        report.load(tmp_path / "missing.json")


def test_csv():
    text = report.to_csv(ROWS)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "method,sigma,psnr,ssim,seconds"
    assert parsed[1] == {"method": "cbm3d", "sigma": "25", "psnr": "31.2345", "ssim": "0.88", "seconds": "17.25"}
    assert parsed[0]["seconds"] == ""


def test_markdown():
    lines = report.to_markdown(ROWS, columns=["method", "psnr", "seconds"]).splitlines()
    assert lines == [
        "| method | psnr | seconds |",
        "|:--|--:|--:|",
        "| noisy | 20.17 |  |",
        "| cbm3d | 31.23 | 17.25 |",
    ]


def test_format_value():
    values = (32.1549, 0.88123, 1234.5, 12345.6, 0.0, None, 3, float("inf"), [1, 2.5])
    assert [report.format_value(v) for v in values] == [
        "32.15",
        "0.8812",
        "1234",
        "12346",
        "0",
        "",
        "3",
        "inf",
        "1,2.500",
    ]


def test_rich_table():
    table = report.table(ROWS, title="quality")
    assert [c.header for c in table.columns] == ["method", "sigma", "psnr", "ssim", "seconds"]
    assert [c.justify for c in table.columns] == ["left", "right", "right", "right", "right"]
    assert table.row_count == 2


def test_save_formats(tmp_path: Path):
    document = _document()
    for suffix in (".json", ".csv", ".md"):
        report.save(document, tmp_path / f"out{suffix}")
    assert (tmp_path / "out.md").read_text().startswith("| method | sigma |")
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + len(ROWS) + len(SUMMARY)
    with pytest.raises(UsageError, match="output format"):
        report.save(document, tmp_path / "out.xlsx")


def test_plot_written(tmp_path: Path):
    pytest.importorskip("matplotlib")
    report.save(_document(), tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    latency = report.payload("latency", ROWS, {}, {})
    with pytest.raises(UsageError, match="quality results"):
        report.save(latency, tmp_path / "latency.png")


def test_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UsageError, match="matplotlib"):
        report.scatter_plot(SUMMARY, tmp_path / "plot.png")
