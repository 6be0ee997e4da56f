"""`restorekit bench latency`: time models, speed references and peers, each configuration in its own process."""

from __future__ import annotations

from typing import Annotated

import typer

from restorekit._checks import check_choice
from restorekit.bench import latency as bench_latency
from restorekit.bench.methods import denoisers
from restorekit.bench.speed_refs import SPEED_REFERENCES
from restorekit.cli._console import handle_errors, warning_line
from restorekit.cli._options import Tile
from restorekit.cli.bench import _options as opt
from restorekit.cli.bench._common import Results, peer_names, pick, split, with_results

SHOWN = ("method", "size", "output", "device", "dtype", "tile", "runs", "median_ms", "p95_ms", "cpu_ms", "mp_per_s")
SHOWN += ("rss_peak_mb", "cuda_peak_mb", "gflops", "error")


@handle_errors
@with_results()
def latency(
    ctx: typer.Context,
    model: opt.Models = None,
    peers: opt.Peers = "all",
    size: opt.ImageSizes = "256,512,1mp,12mp",
    device: opt.Devices = "cpu",
    dtype: opt.Dtypes = "auto",
    channels: Annotated[int, typer.Option("--channels", help="Image channels: 3 (colour) or 1 (gray).")] = 3,
    tile: Tile = None,
    sigma: opt.NoiseLevel = 25.0,
    warmup: Annotated[int, typer.Option("--warmup", min=1, help="Untimed runs before timing.")] = 1,
    repeats: opt.Repeats = 10,
    budget: Annotated[float, typer.Option("--budget", help="Seconds of timed runs per configuration, at most.")] = 60,
    threads: opt.Threads = None,
    peer_max_mp: Annotated[float, typer.Option("--peer-max-mp", help="Skip peers on larger images.")] = 1.0,
    references: opt.References = "ffdnet_shape,dncnn_shape",
    chain: opt.LatencyChain = None,
    *,
    out: Results,
) -> None:
    """Latency, throughput, peak memory and FLOPs: models × sizes × devices × dtypes, and the peers on the CPU.

    Each configuration runs in a fresh process (warm-ups, then median and p95 of timed runs). A super-resolution
    model (-m acdasr_s.real_x4) upscales an image of --size (the input; the output column gives the upscaled size).
    """
    sizes = [bench_latency.parse_size(s) for s in split(size)]
    shapes = [] if references.strip().lower() == "none" else split(references)
    for name in shapes:
        check_choice(name, list(SPEED_REFERENCES), "--references")
    settings = {"devices": split(device), "dtypes": split(dtype), "channels": channels, "tile": tile, "sigma": sigma}
    settings |= {"warmup": warmup, "repeats": repeats, "budget_s": budget, "threads": threads}
    settings |= {"peer_max_mp": peer_max_mp, "chain": chain or []}
    models = (list(model or []) if chain else denoisers(model, warning_line)) + shapes
    cases, methods, skipped = bench_latency.plan(models, peer_names(peers), sizes, **settings)
    with out.progress(len(cases), "latency") as bar:
        rows = bench_latency.run(cases, lambda label, row: bar.done(label, median_ms=row["median_ms"]))
    config = {"sizes": [f"{w}x{h}" for h, w in sizes], **settings}
    described = [m.describe() for m in methods]
    table = ("latency", pick(rows, SHOWN))
    out.publish(ctx, "latency", rows, config, table, methods=described, skipped=skipped)
