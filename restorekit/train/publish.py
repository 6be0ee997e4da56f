"""Publish trained weights: record their measured quality in the metadata and copy them into ``weights/``.

Usage (the quality file comes from ``restorekit bench quality … --save results/quality.json``)::

    python -m restorekit.train.publish runs/mallenet_s.awgn_color/mallenet_s.awgn_color.safetensors \\
        results/quality.json weights/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from restorekit.models._weights import load_model, read_metadata, save_model


def quality_from_results(results: dict[str, Any], model_name: str) -> dict[str, Any]:
    """Mean PSNR/SSIM of ``model_name`` per dataset, protocol and σ, from a ``restorekit-bench/1`` file."""
    quality: dict[str, Any] = {}
    for row in results["summary"]:
        if row["method"] != model_name:
            continue
        entry = quality.setdefault(row["dataset"], {}).setdefault(row["protocol"], {})
        entry[str(int(row["sigma"]))] = {"psnr": round(row["psnr"], 2), "ssim": round(row["ssim"], 4)}
    if not quality:
        raise SystemExit(f"no summary rows for {model_name} in the results")
    quality["_measured_by"] = results.get("argv")
    settings = [m.get("settings") for m in results.get("methods", []) if m.get("name") == model_name]
    quality["_settings"] = settings[0] if settings else None  # device, precision and tiling of the run
    return quality


def publish(weights: Path, results_path: Path, destination: Path) -> Path:
    """Write ``weights`` with its measured quality into ``destination`` and return the new path."""
    model = load_model(weights)
    meta = read_metadata(weights)
    results = json.loads(results_path.read_text())
    quality = quality_from_results(results, meta["name"])
    target = destination / weights.name
    extra = {k: meta[k] for k in ("recipe", "training", "license") if k in meta}
    save_model(model, target, meta["name"], quality=quality, **extra)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    print(publish(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
