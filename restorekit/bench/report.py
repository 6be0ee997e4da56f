"""Render benchmark results: rich table, JSON, CSV, Markdown, and a PSNR-versus-time scatter plot.

Every renderer takes a list of flat row dicts; columns are the union of the rows' keys in order of first
appearance unless given.

JSON schema (``schema: "restorekit-bench/1"``; new keys may be added, existing ones keep their meaning)::

    {
      "schema":      "restorekit-bench/1",
      "command":     "latency" | "quality" | "kernels" | "tune",
      "argv":        "restorekit bench quality --data … " (the command line that produced it),
      "created":     "2025-01-01T12:00:00Z" (UTC),
      "environment": {machine, cpu, cpu_count, cpu_affinity, torch_threads, os, python, torch, cuda, gpu,
                      restorekit, packages: {name: version | null}},
      "config":      {the command's options},
      "methods":     [{name, kind, channels, needs_sigma, input, license, settings, parameters}],
      "rows":        [one flat object per measurement; fields below],
      "summary":     [quality only: means over images, same fields as rows with image "mean" and images],
      "skipped":     [{method, reason}]
    }

``quality`` rows: ``dataset, image, channels, height, width, sigma, protocol, sigma_mode, method, kind,
sigma_used, psnr, ssim, seconds`` (``method`` ``noisy`` is the input itself; ``sigma_used`` is the σ the
method was told, ``null`` when it takes none). ``latency`` rows: ``method, kind, size, height, width,
channels, megapixels, device, dtype, tile, threads, sigma, warmup, runs, median_ms, p95_ms, cpu_ms, mp_per_s,
rss_baseline_mb, rss_peak_mb, cuda_peak_mb, gflops, parameters, error``. ``tune`` rows: ``dataset, image,
sigma, protocol, method, kind, w1, w2, psnr, psnr_eta`` (see :mod:`restorekit.bench.tune`). ``kernels`` rows
are whatever :func:`restorekit.bench.kernels.run` returns. Numbers that are not finite are written as ``null``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.table import Table

from restorekit._checks import check, check_choice
from restorekit.errors import InputError, OutputError, UsageError

SCHEMA = "restorekit-bench/1"
FORMATS = (".json", ".csv", ".md", ".png")


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The union of the rows' keys, in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))


def format_value(value: Any) -> str:
    """A cell's text: about four significant digits for floats, never in exponent form.

    Example:
        >>> [format_value(v) for v in (32.1549, 0.88123, 1234.5, None, 3)]
        ['32.15', '0.8812', '1234', '', '3']
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0:
            return "0"
        decimals = max(0, 3 - math.floor(math.log10(abs(value))))
        return f"{value:.{decimals}f}"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def payload(
    command: str,
    rows: list[dict[str, Any]],
    environment: dict[str, Any],
    config: dict[str, Any],
    argv: str = "",
    **sections: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document of one benchmark run (see the module docstring for the schema).

    Args:
        command: ``latency``, ``quality``, ``kernels`` or ``tune``.
        rows: One flat dict per measurement.
        environment: :func:`restorekit.bench.env.environment`.
        config: The command's options.
        argv: The command line that produced the results.
        **sections: ``methods``, ``summary``, ``skipped``.
    """
    document = {
        "schema": SCHEMA,
        "command": command,
        "argv": argv,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment,
        "config": config,
        "methods": [],
        "rows": rows,
        "summary": [],
        "skipped": [],
    }
    document.update(sections)
    return _finite(document)


def to_json(document: dict[str, Any]) -> str:
    """``document`` as indented JSON (non-finite numbers become ``null``)."""
    return json.dumps(_finite(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def load(path: str | Path) -> dict[str, Any]:
    """Read a results file written by ``restorekit bench … --save x.json``, checking its schema."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read benchmark results {path}: {exc}") from None
    schema = document.get("schema") if isinstance(document, dict) else None
    check(schema == SCHEMA, f"results file {path}", f"schema {SCHEMA!r}", schema, error=InputError)
    return document


def table(rows: Sequence[dict[str, Any]], title: str | None = None, columns: Sequence[str] | None = None) -> Table:
    """A rich table of ``rows``; numeric columns are right-aligned."""
    columns = list(columns or columns_of(rows))
    result = Table(title=title, title_justify="left")
    for column in columns:
        numeric = all(isinstance(row.get(column), (int, float)) or row.get(column) is None for row in rows)
        result.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        result.add_row(*(format_value(row.get(column)) for column in columns))
    return result


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``rows`` as CSV text with a header line; numbers at full precision.

    Example:
        >>> to_csv([{"a": 1, "b": 0.5}, {"a": 2}]).splitlines()
        ['a,b', '1,0.5', '2,']
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or columns_of(rows)), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items() if key in writer.fieldnames})
    return buffer.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """``rows`` as a GitHub Markdown table; numeric columns are right-aligned.

    Example:
        >>> print(to_markdown([{"method": "cbm3d", "psnr": 31.234}]))
        | method | psnr |
        |:--|--:|
        | cbm3d | 31.23 |
    """
    columns = list(columns or columns_of(rows))
    align = [
        "--:" if all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) else ":--" for c in columns
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = (format_value(row.get(column)).replace("|", "\\|") for column in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scatter_plot(summary: Sequence[dict[str, Any]], path: str | Path) -> None:
    """PSNR against time per image, one panel per dataset and protocol, one colour per σ (needs matplotlib).

    Args:
        summary: Quality summary rows (``dataset, protocol, sigma, method, psnr, seconds``); the ``noisy``
            input is left out.
        path: PNG file to write.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("the plot needs matplotlib: pip install 'restorekit[plot]'") from None
    points = [row for row in summary if row["method"] != "noisy" and row.get("seconds")]
    check(bool(points), "plot", "quality results with at least one timed method", len(points))
    panels = sorted({(row["dataset"], row["protocol"]) for row in points})
    sigmas = sorted({row["sigma"] for row in points})
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (dataset, protocol) in zip(axes[0], panels, strict=True):
        for index, sigma in enumerate(sigmas):
            group = [r for r in points if (r["dataset"], r["protocol"], r["sigma"]) == (dataset, protocol, sigma)]
            ax.scatter(
                [r["seconds"] for r in group], [r["psnr"] for r in group], color=f"C{index}", label=f"σ={sigma:g}"
            )
            for row in group:
                ax.annotate(
                    row["method"], (row["seconds"], row["psnr"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
        ax.set_xscale("log")
        ax.set(title=f"{dataset} ({protocol})", xlabel="seconds per image (log)", ylabel="PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)


def save(document: dict[str, Any], path: str | Path, rows: Sequence[dict[str, Any]] | None = None) -> None:
    """Write ``document`` to ``path`` in the format its extension names (.json, .csv, .md or .png).

    Args:
        document: A :func:`payload`.
        path: Destination; ``.csv`` and ``.md`` hold ``rows`` (default: the document's rows, then its
            summary), ``.png`` the scatter plot of a quality summary.
        rows: The rows for the tabular formats.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_choice(suffix, FORMATS, f"output format of {path}")
    rows = list(rows if rows is not None else document["rows"] + document.get("summary", []))
    try:
        if suffix == ".png":
            check(document["command"] == "quality", f"plot {path}", "quality results", document["command"])
            scatter_plot(document["summary"], path)
        elif suffix == ".json":
            path.write_text(to_json(document))
        elif suffix == ".csv":
            path.write_text(to_csv(rows))
        else:
            path.write_text(to_markdown(rows) + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None
