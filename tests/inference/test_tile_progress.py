"""Progress inside an image: the tiler reports each tile to the function set by report_tiles."""

from __future__ import annotations

import torch

from restorekit.inference import tiling
from restorekit.models import Requirements

REQ = Requirements(task="denoise", in_channels=1, out_channels=1, receptive_field=2)


def test_tiles_are_reported_in_order_and_only_inside_the_context():
    seen: list[tuple[int, int]] = []
    x = torch.rand(1, 1, 40, 50)
    with tiling.report_tiles(lambda done, total: seen.append((done, total))):
        tiling.run_tiled(lambda t, s: t, x, 0.1, REQ, tile=16)
        tiling.run_tiled(lambda t, s: t, x, 0.1, REQ, tile=None)
    total = seen[0][1]
    assert total > 1 and seen == [(i, total) for i in range(1, total + 1)] + [(1, 1)]
    tiling.run_tiled(lambda t, s: t, x, 0.1, REQ, tile=16)
    assert len(seen) == total + 1


def test_a_restart_after_running_out_of_memory_reports_its_new_tiles():
    seen: list[tuple[int, int]] = []

    def fn(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if t.shape[-1] > 32:
            raise torch.OutOfMemoryError("out of memory")
        return t

    with tiling.report_tiles(lambda done, total: seen.append((done, total))):
        _, used = tiling.run_with_retry(fn, torch.rand(1, 1, 64, 64), 0.1, REQ, None, torch.device("cpu"))
    assert used is not None and seen and all(total > 1 for _, total in seen)
    assert seen[-1][0] == seen[-1][1]
