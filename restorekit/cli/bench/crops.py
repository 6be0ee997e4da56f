"""`restorekit bench crops`: side-by-side crops of one image and what each method made of it, with PSNR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from restorekit._checks import check
from restorekit.bench import report
from restorekit.bench.env import environment
from restorekit.cli._console import console, handle_errors, results, warning_line
from restorekit.cli._options import Verbose
from restorekit.cli.bench import _options as opt
from restorekit.cli.bench._common import command_line, numbers, peer_names


@handle_errors
def crops(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="A clean image (e.g. a scikit-image sample).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path("crops.png"),
    box: Annotated[str, typer.Option("--box", help="Crop as top,left,size in pixels.")] = "100,100,96",
    sigma: opt.NoiseLevel = 25.0,
    protocol: Annotated[str, typer.Option("--protocol", help="float or file.")] = "float",
    noise: opt.Noise = "awgn",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the camera-noise synthesis.")] = 0,
    task: Annotated[opt.Task, typer.Option("--task", help="denoise, or sr: HR | bicubic | Lanczos | models.")] = (
        opt.Task.denoise
    ),
    scale: Annotated[int, typer.Option("--scale", help="With --task sr: the factor.")] = 2,
    degradation: opt.SRDegradation = opt.SRInput.bicubic,
    model: Annotated[list[str] | None, typer.Option("-m", "--model", help="Model name or path; repeatable.")] = None,
    chain: opt.Chain = None,
    w1: opt.Settings = "1",
    peers: opt.Peers = "all",
    machine: opt.Machine = None,
    save: opt.CropsSave = None,
    verbose: Verbose = False,
) -> None:
    """Side-by-side crops (clean, noisy, restorekit models, peers) of one image, with whole-image PSNR; with
    --task sr, the HR image, bicubic, Lanczos, the SR models (a tunable one at each --w1) and each --chain, on the
    LR input --degradation makes (Y-channel PSNR, and the detail statistic in --save's file)."""
    from PIL import Image as PILImage

    from restorekit.bench import crops as bench_crops

    top, left, size = (int(v) for v in box.split(","))
    options = {"noise": noise, "sigma": sigma, "protocol": protocol, "seed": seed, "scale": scale}
    options |= {"degradation": degradation.value, "chain": chain or [], "w1": numbers(w1, "--w1")}
    strip, rows = bench_crops.strip(
        image, (top, left, size), task.value, model, peer_names(peers), **options, warn=warning_line
    )
    PILImage.fromarray(strip).save(output)
    scores = ", ".join(f"{r['method']} {r['psnr']:.2f} dB" for r in rows if r["psnr"] is not None)
    results.print(f"wrote {output}: {scores}")
    if save:
        config = {"image": str(image), "output": str(output), "box": [top, left, size], "task": task.value}
        sr = {"scale": scale, "degradation": degradation.value, "chain": chain or [], "w1": options["w1"]}
        config |= sr if task == "sr" else {"noise": noise, "sigma": sigma, "protocol": protocol}
        config |= {"seed": seed} if task != "sr" and noise == "camera" else {}
        document = report.payload("crops", rows, environment(machine), config, command_line(ctx))
        for path in save:
            check(path.suffix.lower() == ".json", f"--save {path}", "a .json file", path.suffix or "no suffix")
            report.save(document, path)
            console.print(f"wrote {path}")
