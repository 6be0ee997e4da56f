"""`restorekit bench quality`: PSNR/SSIM of models and peers on seeded noise, real pairs or SR test sets."""

from __future__ import annotations

import typer

from restorekit.bench import quality as bench_quality
from restorekit.bench import sr as bench_sr
from restorekit.cli._console import handle_errors, warning_line
from restorekit.cli._options import Device, Dtype, DtypeChoice, Tile
from restorekit.cli.bench import _options as opt
from restorekit.cli.bench._common import Results, numbers, peer_names, pick, with_results

TABLES = {  # --task → the table's title and columns
    "denoise": (
        "quality (PSNR dB, SSIM; mean rows are over images)",
        ("dataset", "image", "sigma", "protocol", "method", "sigma_used", "psnr", "ssim", "seconds"),
    ),
    "sr": (
        "super-resolution quality (Y-channel PSNR dB / SSIM, scale px shaved)",
        ("dataset", "image", "scale", "method", "psnr", "ssim", "detail", "seconds"),
    ),
}


@handle_errors
@with_results()
def quality(
    ctx: typer.Context,
    data: opt.CleanData = None,
    pairs: opt.Pairs = None,
    model: opt.Models = None,
    peers: opt.Peers = "all",
    task: opt.QualityTask = opt.Task.denoise,
    scale: opt.Scales = "2,3,4",
    sigma: opt.Sigmas = "15,25,50",
    protocol: opt.Protocols = opt.ProtocolChoice.float,
    sigma_mode: opt.SigmaModeOption = opt.SigmaMode.true,
    degradation: opt.DegradationOption = opt.Degradation.awgn,
    chain: opt.Chain = None,
    w1: opt.Settings = "1",
    limit: opt.Limit = None,
    per_image: opt.PerImage = False,
    ensemble: opt.Ensembles = False,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    tile: Tile = None,
    *,
    out: Results,
) -> None:
    """PSNR/SSIM of restorekit models and the peers on the same seeded noisy inputs (--data) or on real noisy
    images against their clean references (--pairs), per image and mean; with --degradation shading, on seeded
    lens-shaded noise against the σ-conditioned reference told the estimate and the exact noise map; with --task
    sr, Y-channel PSNR/SSIM and the detail statistic of the super-resolution models (a tunable one at each --w1),
    bicubic and Lanczos on the LR inputs of --data (SR test-set folders with image_SRF_<s>/ pairs, or plain images
    downscaled here)."""
    options = {"limit": limit, "device": device, "dtype": dtype.value, "tile": tile, "warn": warning_line}
    if task == "sr":
        scales = [int(v) for v in numbers(scale, "--scale")]
        plan = bench_sr.plan(
            data or [], pairs or [], model, scales, degradation=degradation.value, chain=chain or [],
            w1=numbers(w1, "--w1"), **options,
        )  # fmt: skip
    else:
        sigmas = numbers(sigma, "--sigma")
        settings = {"protocol": protocol.value, "sigma_mode": sigma_mode.value, "degradation": degradation.value}
        plan = bench_quality.plan(
            data or [], pairs or [], model, peer_names(peers), sigmas, ensemble=ensemble, **settings, **options
        )
    with out.progress(plan.total, "sr quality" if task == "sr" else "quality") as bar:
        rows, summary, skipped = plan.run(bar.done)
    title, shown = TABLES[task]
    table = (title, pick(rows + summary if per_image else summary, shown))
    sections = {"methods": [m.describe() for m in plan.methods], "summary": summary, "skipped": skipped}
    out.publish(ctx, plan.command, rows, plan.config, table, **sections)
