"""The speed column of ``restorekit models``: ``weights/speed.json``, generated from ``bench latency`` results.

Usage (the sources are the 512² colour latency runs of docs/benchmarks.md)::

    python -m restorekit.bench.speed docs/results/latency_512_peers.json docs/results/latency_tune_512.json \\
        docs/results/latency_tv_shading.json > weights/speed.json

Each restorekit model's median time for one 512×512 colour image (bf16 where the run used it, the fused CPU path),
from the first source that measured it; the file records its sources and the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def speed_table(paths: list[str | Path]) -> dict[str, Any]:
    """``{"what", "sources", "ms"}``: model → rounded median ms at 512² (the first source that has it wins).

    Example:
        >>> speed_table([])["ms"]
        {}
    """
    ms: dict[str, int] = {}
    machines = []
    for path in paths:
        document = json.loads(Path(path).read_text())
        environment = document.get("environment") or {}
        machines.append(environment.get("machine") or environment.get("cpu") or "unnamed machine")
        for row in document["rows"]:
            fits = row.get("kind") == "restorekit" and row.get("size") == "512x512" and row.get("channels") == 3
            if fits and row.get("median_ms") is not None and not row.get("error"):
                ms.setdefault(row["method"], round(row["median_ms"]))
    what = "median ms for one 512x512 colour image, fused CPU path, auto precision, on: " + "; ".join(
        dict.fromkeys(machines)
    )
    return {"what": what, "sources": [str(p) for p in paths], "ms": dict(sorted(ms.items()))}


if __name__ == "__main__":
    print(json.dumps(speed_table(sys.argv[1:]), indent=2))
