"""`restorekit models`: the trained models that ship, with their metadata.

The table fits an 80-column terminal: the default models are marked (``*``, and a line says for what), a speed
column gives the time of one 512×512 colour image on the machine of docs/benchmarks.md (``weights/speed.json``,
made by ``python -m restorekit.bench.speed`` from the latency results; a model that was not timed shows the time
of the same network under another tag, if any), and a line names each evaluation set the quality figures come
from (real_cc15, kodak24, …). Training iterations join the table on a terminal of 120 columns or more; ``--json``
has everything.
"""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Column, Table

from restorekit.bench.cost import PAPER_GFLOPS, model_cost
from restorekit.cli._console import handle_errors, print_json, results
from restorekit.cli._options import Json, Verbose
from restorekit.errors import WeightsError
from restorekit.models import _weights, create_model, default_model, list_architectures

SPEED_FILE = "speed.json"
WIDE = 120  # columns from which the iterations column is shown
# What each default serves: (label, kind of default_model, channels).
DEFAULT_ROLES = (
    ("photos (no --sigma)", "real", 3),
    ("--sigma, colour", "denoise", 3),
    ("--sigma, gray", "denoise", 1),
    ("tune, colour", "tune", 3),
    ("tune, gray", "tune", 1),
    ("tune photos", "tune_real", 3),
    ("sr ×2", "sr2", 3),
    ("sr ×3", "sr3", 3),
    ("sr ×4", "sr4", 3),
    ("sr ×4 --w", "tune_sr4", 3),
)
# The evaluation sets of the quality column, in words.
DATASETS = {
    "real_cc15": "15 real noisy camera photos with clean references (Nam et al., CVPR 2016)",
    "kodak24": "24 Kodak colour photos, with added Gaussian noise (σ) or as the HR images of SR (Y)",
    "mcmaster": "18 McMaster colour images with added Gaussian noise",
    "set12": "12 classic gray test images with added Gaussian noise",
    "sr_set5": "Set5, PSNR of the luma (Y) of the upscale",
    "sr_set14": "Set14, PSNR of the luma (Y) of the upscale",
}
SR_KNOB = ("fidelity", "detail")  # the ω parameters of a tunable SR model (its weights' ``omega`` metadata)
# What the words of an SR model's quality label mean (shown under the table when a label has them).
REAL_DEGRADED = (
    "real-degraded: the LR inputs made from the HR images by the seeded real-world degradation (blur, resize, "
    "noise, JPEG, twice; bench quality --task sr --degradation real), not by a clean bicubic downscale"
)


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


def defaults() -> dict[str, str]:
    """What each default serves (see :data:`DEFAULT_ROLES`) → the model (members of an average joined by ``+``)."""
    roles = {}
    for label, kind, channels in DEFAULT_ROLES:
        try:
            roles[label] = default_model(channels, kind)
        except (WeightsError, KeyError):  # none ships, or a kind this install does not know
            continue
    return roles


def speeds(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Model name → ms for one 512×512 colour image on the reference machine (``weights/speed.json``); a model
    not timed gets ``≈`` the mean time of the timed ones with its architecture and parameter count (the same
    network under another tag)."""
    try:
        measured = jsonlib.loads((_weights.weights_dir() / SPEED_FILE).read_text(encoding="utf-8"))["ms"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    networks: dict[tuple, list[float]] = {}
    for row in rows:
        if row["name"] in measured:
            networks.setdefault((row["architecture"], row["parameters"]), []).append(measured[row["name"]])
    times = {}
    for row in rows:
        same = networks.get((row["architecture"], row["parameters"]))
        if row["name"] in measured:
            times[row["name"]] = f"{measured[row['name']]:.0f}"
        elif same:
            times[row["name"]] = f"≈{sum(same) / len(same):.0f}"
    return times


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
            label = f"real-degraded {label}" if sr_degradation(quality) == "real" else label
        elif "float" not in protocols and "shading" in protocols:  # noise amplified by lens shading
            label = "lens shading σ" + "/".join(per_sigma)
        else:
            label = "σ" + "/".join(per_sigma)
        parts.append(f"{dataset} {label}: {values}")
    return "; ".join(parts)


def sr_degradation(quality: dict) -> str:
    """How a super-resolution model's LR test inputs were made, ``bicubic`` or ``real``: the record's
    ``_degradation`` (``restorekit.train.publish`` copies the benchmark's), else, for weights published before
    it was recorded, the ``--degradation`` of the command in ``_measured_by``."""
    if quality.get("_degradation"):
        return str(quality["_degradation"])
    return "real" if "--degradation real" in str(quality.get("_measured_by") or "") else "bicubic"


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
    roles, times = defaults(), speeds(rows)
    for row in rows:
        row["default_for"] = [role for role, name in roles.items() if row["name"] in name.split("+")]
        row["ms_512"] = times.get(row["name"])
    if json:
        print_json(rows)
        return
    if not rows:
        results.print("no trained models ship with this install yet")
        return
    _print_table(rows, roles)


def _print_table(rows: list[dict[str, Any]], roles: dict[str, str]) -> None:
    """The models as a table that fits the terminal (80 columns and up), and the lines that explain it."""
    wide = results.width >= WIDE
    # On a narrow terminal the quality figures fold onto more lines rather than end in "…".
    columns = [Column("model", no_wrap=True), "ch", Column("params", justify="right")]
    columns += [Column("ms", justify="right"), Column("PSNR (dB)", overflow="fold")]
    table = Table(*columns, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, expand=False)
    if wide:
        table.add_column("iterations")
    for row in rows:
        cells = [
            ("* " if row["default_for"] else "  ") + row["name"],
            {1: "gray", 3: "rgb"}.get(row["channels"], str(row["channels"])),
            f"{row['parameters'] / 1e6:.2f}M" if row["parameters"] else "",
            row["ms_512"] or "–",
            _quality_text(row["quality"]) + _omega_text(row["omega"]),
        ]
        table.add_row(*cells, *([_iterations_text(row["training"])] if wide else []))
    results.print(table)
    if roles:
        results.print("* default — " + "; ".join(f"{role}: {name}" for role, name in roles.items()))
    results.print(
        "ms: one 512×512 colour image, bf16, on the 2-core CPU of docs/benchmarks.md (≈ the same network under "
        "another tag, – not timed)"
    )
    knobs = {tuple(row["omega"].get("parameters") or ()) for row in rows if isinstance(row["omega"], dict)}
    if knobs - {SR_KNOB}:
        results.print("ω (tunable models, restorekit tune --w ω1,ω2): ω1 remove noise, ω2 keep grain and fine detail")
    if SR_KNOB in knobs:
        results.print("ω (tunable SR, restorekit sr --w ω1,ω2): ω1 fidelity to the HR image, ω2 generated detail")
    for name, meaning in DATASETS.items():
        if any(name in (row["quality"] or {}) for row in rows):
            results.print(f"{name}: {meaning}")
    if any("real-degraded" in _quality_text(row["quality"]) for row in rows):
        results.print(REAL_DEGRADED)


def _omega_text(omega: object) -> str:
    """For a tunable model, the setting its quality figures are at, `` (at ω=1,0)`` (a line under the table
    says what ω means)."""
    return " (at ω=1,0)" if isinstance(omega, dict) else ""


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
