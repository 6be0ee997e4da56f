"""`restorekit bench tune`: a tunable model against DNI and the fixed model, PSNR and PSNRη per setting."""

from __future__ import annotations

import typer

from restorekit._checks import check
from restorekit.bench import tune as bench_tune
from restorekit.cli._console import console, handle_errors
from restorekit.cli._options import Device, Dtype, DtypeChoice, Tile
from restorekit.cli.bench import _options as opt
from restorekit.cli.bench._common import Results, numbers, pick, with_results

SHOWN = ("dataset", "sigma", "method", "w1", "w2", "psnr", "psnr_eta")


@handle_errors
@with_results()
def tune(
    ctx: typer.Context,
    data: opt.TuneData = None,
    pairs: opt.Pairs = None,
    model: opt.TunableModel = "tunable_mallenet_s.awgn_color",
    fixed: opt.FixedModel = "mallenet_s.awgn_color",
    retain: opt.Retain = "weights/checkpoints/mallenet_s.awgn_color_retain.safetensors",
    sigma: opt.Sigmas = "5,15,30",
    w1: opt.Settings = "0,0.25,0.5,0.75,1",
    protocol: opt.TuneProtocol = opt.ProtocolChoice.float,
    limit: opt.Limit = None,
    strip: opt.Strip = None,
    strip_image: opt.StripImage = None,
    strip_box: opt.StripBox = "100,250,160",
    strip_seed: opt.StripSeed = 0,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    tile: Tile = None,
    *,
    out: Results,
) -> None:
    """A tunable model against DNI and the fixed model: PSNR and PSNRη per setting (the paper's Table 1), on
    clean images with seeded AWGN (--data) or on real noisy/clean pairs (--pairs, blind models)."""
    sigmas, settings = numbers(sigma, "--sigma"), numbers(w1, "--w1")
    check(not (pairs and strip and strip_image is None), "--strip", "--strip-image with --pairs", "none")
    run = {"limit": limit, "device": device, "dtype": dtype.value, "tile": tile}
    plan = bench_tune.plan(data or [], pairs or [], model, fixed, retain, sigmas, settings, protocol.value, **run)
    with out.progress(plan.total, "tune") as bar:
        rows, summary, _ = plan.run(bar.done)
    if strip is not None:
        from PIL import Image as PILImage

        box = tuple(int(v) for v in numbers(strip_box, "--strip-box"))
        check(len(box) == 3, "--strip-box", "top,left,size", strip_box)
        PILImage.fromarray(bench_tune.plan_strip(plan, box, strip_image, strip_seed)).save(strip)
        console.print(f"wrote {strip}")
    means = pick([row for row in summary if row["sigma"] == "mean"], SHOWN)
    methods = [{"name": m.name, "kind": m.kind} for m in plan.methods]
    table = ("tune (PSNR / PSNRη dB, mean over images and σ)", means)
    out.publish(ctx, "tune", rows, plan.config, table, methods=methods, summary=summary)
