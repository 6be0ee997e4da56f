"""`restorekit models`: the trained models that ship, with their metadata."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from restorekit.bench.cost import PAPER_GFLOPS, model_cost
from restorekit.cli._console import handle_errors, print_json, results
from restorekit.cli._options import Json, Verbose
from restorekit.models import _weights, create_model, list_architectures


def _summary(name: str, meta: dict) -> dict:
    """The metadata worth listing, plus the ``recipe`` text only in JSON."""
    training = meta.get("training") or {}
    return {
        "name": name,
        "architecture": meta.get("architecture"),
        "channels": (meta.get("hyperparameters") or {}).get("in_channels"),
        "parameters": meta.get("parameters"),
        "quality": meta.get("quality"),
        "training": training,
        "license": meta.get("license"),
        "omega": meta.get("omega"),
        "recipe": meta.get("recipe"),
    }


def _quality_text(quality: object) -> str:
    """``dataset σ15/25/50: PSNR/PSNR/PSNR`` per dataset, float protocol, from the quality record.

    The record (written by ``restorekit.train.publish``) maps dataset → protocol → σ → {psnr, ssim}; for real
    noise the protocol and σ are ``real``, for super-resolution dataset → ``y_channel`` → ``x2``…, for lens
    shading (``bench quality --degradation shading``) the protocol is ``shading``.
    """
    if not isinstance(quality, dict):
        return ""
    parts = []
    for dataset, protocols in quality.items():
        if dataset.startswith("_") or not isinstance(protocols, dict):
            continue
        per_sigma = protocols.get("float") or next(iter(protocols.values()), {})
        values = "/".join(f"{v['psnr']:.2f}" for v in per_sigma.values())
        if "real" in protocols:  # real noisy/clean pairs
            label = "real noise"
        elif "y_channel" in protocols:  # super-resolution, Y-channel PSNR per factor
            label = "Y " + "/".join(key.replace("x", "×") for key in per_sigma)
        elif "float" not in protocols and "shading" in protocols:  # noise amplified by lens shading
            label = "lens shading σ" + "/".join(per_sigma)
        else:
            label = "σ" + "/".join(per_sigma)
        parts.append(f"{dataset} {label}: {values}")
    return "; ".join(parts)


@handle_errors
def models(
    architectures: Annotated[
        bool, typer.Option("--architectures", help="List registered architectures with parameters and FLOPs.")
    ] = False,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """List the trained models that ship with restorekit, with their metadata."""
    if architectures:
        _list_architectures(json)
        return
    rows = [_summary(name, _weights.describe(path)) for name, path in sorted(_weights.shipped().items())]
    if json:
        print_json(rows)
        return
    if not rows:
        results.print("no trained models ship with this install yet")
        return
    # On a narrow terminal the quality figures fold onto more lines rather than end in "…".
    table = Table(Column("model", no_wrap=True), "channels", "parameters", Column("quality (PSNR dB)", overflow="fold"))
    table.add_column("iterations")
    for row in rows:
        table.add_row(
            row["name"],
            {1: "gray", 3: "colour"}.get(row["channels"], str(row["channels"])),
            f"{row['parameters'] / 1e6:.2f} M" if row["parameters"] else "",
            _quality_text(row["quality"]) + _omega_text(row["omega"]),
            _iterations_text(row["training"]),
        )
    results.print(table)


def _omega_text(omega: object) -> str:
    """For a tunable model, what ω means (its quality figures are at ω = (1, 0)), e.g.
    `` (at ω=1,0; ω1: remove noise, ω2: keep grain and fine detail)``."""
    if not isinstance(omega, dict):
        return ""
    names = ", ".join(f"ω{i + 1}: {name}" for i, name in enumerate(omega.get("parameters", [])))
    return f" (at ω=1,0; {names})"


def _iterations_text(training: dict) -> str:
    """Iterations of the run, and of the runs it was fine-tuned from (``training.initialized_from``), e.g.
    ``8000 + 5000``."""
    stages = []
    while training:
        stages.append(str(training.get("iterations", "?")))
        training = (training.get("initialized_from") or {}).get("training")
    return " + ".join(reversed(stages))


def _list_architectures(json: bool) -> None:
    """Parameters and GFLOPs at 256×256 of every registered architecture, beside the paper's figure."""
    rows = []
    for name in list_architectures():
        cost = model_cost(create_model(name, pretrained=False))
        rows.append({"architecture": name, **cost, "paper_gflops": PAPER_GFLOPS.get(name)})
    if json:
        print_json(rows)
        return
    table = Table("architecture", "parameters", "GFLOPs @256² (ours)", "GFLOPs @256² (paper)")
    for row in rows:
        paper = row["paper_gflops"]
        table.add_row(
            row["architecture"],
            f"{row['parameters'] / 1e6:.2f} M",
            f"{row['gflops']:.2f}",
            f"{paper:.2f}" if paper else "",
        )
    results.print(table)
