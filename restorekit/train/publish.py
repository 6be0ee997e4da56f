"""Publish trained weights: record their measured quality in the metadata and copy them into ``weights/``.

Usage (the quality file comes from ``restorekit bench quality … --save results/quality.json`` — with
``--task sr`` for a super-resolution model, and ``--w1 0,…,1`` for a tunable one —, or for a tunable denoiser
from ``restorekit bench tune … --save results/tune.json``)::

    python -m restorekit.train.publish runs/mallenet_s.awgn_color/mallenet_s.awgn_color.safetensors \\
        results/quality.json weights/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from restorekit.models._weights import load_model, read_metadata, save_model
from restorekit.train.config import recipe_from_dict
from restorekit.train.loop import is_tunable, omega_metadata

SETTING = "@ω1="  # a tunable SR model's rows in a ``bench quality --task sr`` file: ``<name>@ω1=0.25``


def quality_from_results(results: dict[str, Any], model_name: str) -> dict[str, Any]:
    """Mean PSNR/SSIM of ``model_name`` per dataset, protocol and σ (per dataset and factor for a
    ``bench quality --task sr`` file), from a ``restorekit-bench/1`` file.

    A tunable SR model appears there once per setting, as ``<name>@ω1=…`` (``--w1``): its quality is that at
    ω1 = 1, as for the tunable denoisers, and ``_settings_table`` holds PSNR/SSIM/detail per dataset, factor and ω1.
    """
    table = _sr_settings_table(results, model_name) if results.get("command") == "sr_quality" else {}
    measured = f"{model_name}{SETTING}1" if table else model_name
    quality: dict[str, Any] = {}
    for row in results["summary"]:
        if row["method"] != measured:
            continue
        if results.get("command") == "sr_quality":  # Y-channel PSNR/SSIM per dataset and factor
            entry = quality.setdefault(row["dataset"], {}).setdefault("y_channel", {})
            entry[f"x{row['scale']}"] = {"psnr": round(row["psnr"], 2), "ssim": round(row["ssim"], 4)}
            continue
        entry = quality.setdefault(row["dataset"], {}).setdefault(row["protocol"], {})
        sigma = row["sigma"] if isinstance(row["sigma"], str) else str(int(row["sigma"]))
        entry[sigma] = {"psnr": round(row["psnr"], 2), "ssim": round(row["ssim"], 4)}
    if not quality:
        at_one = " (measure it with --w1 1)" if table else ""
        raise SystemExit(f"no summary rows for {measured} in the results{at_one}")
    quality["_measured_by"] = results.get("argv")
    settings = [m.get("settings") for m in results.get("methods", []) if m.get("name") == measured]
    quality["_settings"] = settings[0] if settings else None  # device, precision and tiling of the run
    if results.get("command") == "sr_quality":  # how the LR inputs were made: bicubic or real (`restorekit models`)
        quality["_degradation"] = (results.get("config") or {}).get("degradation", "bicubic")
    if table:
        quality["_settings_table"] = table
    return quality


def _sr_settings_table(results: dict[str, Any], model_name: str) -> dict[str, Any]:
    """dataset → ``x<factor>`` → ω1 → mean PSNR/SSIM/detail of the ``<model_name>@ω1=…`` rows of a ``bench
    quality --task sr`` file (empty when there are none: not a tunable model)."""
    prefix = f"{model_name}{SETTING}"
    table: dict[str, Any] = {}
    for row in results["summary"]:
        if not row["method"].startswith(prefix):
            continue
        entry = {"psnr": round(row["psnr"], 2), "ssim": round(row["ssim"], 4)}
        entry |= {"detail": round(row["detail"], 3)} if row.get("detail") is not None else {}
        table.setdefault(row["dataset"], {}).setdefault(f"x{row['scale']}", {})[row["method"][len(prefix) :]] = entry
    return table


def quality_from_tune_results(results: dict[str, Any], model_name: str) -> dict[str, Any]:
    """A tunable model's quality from a ``bench tune`` file: PSNR at ω = (1, 0) per dataset, protocol and σ
    (the layout of :func:`quality_from_results`), and under ``_settings_table`` the mean PSNR / PSNRη per ω1."""
    quality: dict[str, Any] = {}
    table: dict[str, Any] = {}
    for row in results["summary"]:
        if row["method"] != model_name:
            continue
        if row["sigma"] == "mean":
            entry = {"psnr": round(row["psnr"], 2), "psnr_eta": round(row["psnr_eta"], 2)}
            table.setdefault(row["dataset"], {}).setdefault(row["protocol"], {})[f"{row['w1']:g}"] = entry
        elif row["w1"] == 1.0:
            entry = quality.setdefault(row["dataset"], {}).setdefault(row["protocol"], {})
            sigma = row["sigma"] if isinstance(row["sigma"], str) else f"{row['sigma']:g}"  # "real": real pairs
            entry[sigma] = {"psnr": round(row["psnr"], 2)}
    if not quality:
        raise SystemExit(f"no summary rows at ω1 = 1 for {model_name} in the results")
    quality["_settings_table"] = table
    quality["_measured_by"] = results.get("argv")
    quality["_settings"] = {k: results["config"].get(k) for k in ("device", "dtype", "tile", "nu")}
    return quality


def publish(weights: Path, results_path: Path, destination: Path) -> Path:
    """Write ``weights`` with its measured quality into ``destination`` and return the new path.

    ``results_path`` is a ``bench quality`` file, or for a tunable model a ``bench tune`` file. The file is named
    after the model (``<name>.safetensors``, the name the registry serves it by), whatever ``weights`` is called.
    """
    model = load_model(weights)
    meta = read_metadata(weights)
    results = json.loads(results_path.read_text())
    if results.get("command") == "tune":
        quality = quality_from_tune_results(results, meta["name"])
    else:
        quality = quality_from_results(results, meta["name"])
    target = destination / f"{meta['name']}.safetensors"
    extra = {k: meta[k] for k in ("recipe", "training", "license", "omega") if k in meta}
    if is_tunable(model) and "recipe" in meta:  # what ω means, from its recipe (the run may predate this wording)
        extra["omega"] = omega_metadata(model, recipe_from_dict(yaml.safe_load(meta["recipe"])))
    save_model(model, target, meta["name"], quality=quality, **extra)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print(publish(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
