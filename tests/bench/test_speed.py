"""The speed column's file is what its generator makes of the latency results it names (no hand-copied figures)."""

from __future__ import annotations

import json
from pathlib import Path

from restorekit.bench.speed import speed_table

ROOT = Path(__file__).parents[2]


def test_weights_speed_json_is_generated_from_its_sources():
    shipped = json.loads((ROOT / "weights" / "speed.json").read_text())
    assert shipped == speed_table([ROOT / source for source in shipped["sources"]]) | {"sources": shipped["sources"]}
    assert shipped["ms"]["mallenet_s.awgn_color"] > 0
