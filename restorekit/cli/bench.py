"""`restorekit bench`: latency, quality and kernel benchmarks, and the docs page built from their results."""

from __future__ import annotations

import shlex
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from restorekit._checks import check, check_choice, fail
from restorekit.bench import latency as bench_latency
from restorekit.bench import quality as bench_quality
from restorekit.bench import report
from restorekit.bench import sr as bench_sr
from restorekit.bench import tune as bench_tune
from restorekit.bench.baselines import PEERS
from restorekit.bench.baselines import peers as peer_methods
from restorekit.bench.docs import render
from restorekit.bench.env import environment
from restorekit.bench.methods import model_method
from restorekit.bench.speed_refs import SPEED_REFERENCES
from restorekit.cli._console import console, handle_errors, print_json, progress, results, warning_line
from restorekit.cli._options import Device, Dtype, DtypeChoice, Json, Progress, ProgressMode, Tile, Verbose
from restorekit.errors import OutputError
from restorekit.inference import sweep
from restorekit.inference.api import DTYPES, resolve_device
from restorekit.models import create_model, list_models

app = typer.Typer(help="Benchmarks: latency, quality and kernels; `report` regenerates docs/benchmarks.md.")


class ProtocolChoice(str, Enum):
    """Noise protocol: ``float`` (unclipped, as in papers), ``file`` (clipped, 8-bit) or ``both``."""

    float = "float"
    file = "file"
    both = "both"


class Task(str, Enum):
    """What ``bench quality`` measures: ``denoise`` or ``sr`` (super-resolution)."""

    denoise = "denoise"
    sr = "sr"


class Degradation(str, Enum):
    """What ``bench quality --data`` adds to the clean images: ``awgn``, or ``shading`` (noise before a lens-shading
    gain, so it grows toward the corners); with ``--task sr``, ``real``: the LR inputs made by the seeded
    real-world degradation instead of bicubic downscaling."""

    awgn = "awgn"
    shading = "shading"
    real = "real"


class SigmaMode(str, Enum):
    """What methods are told: the ``true`` σ, or the same ``estimate`` for every method."""

    true = "true"
    estimate = "estimate"


Models = Annotated[
    list[str] | None,
    typer.Option(
        "-m",
        "--model",
        help="Model name or .safetensors path; repeatable. Default: every shipped denoiser.",
        show_default=False,
    ),
]
Peers = Annotated[
    str, typer.Option("--peers", help="Peers, comma-separated (cbm3d, opencv_nlm, skimage_nlm), 'all' or 'none'.")
]
Save = Annotated[
    list[Path] | None,
    typer.Option("--save", help="Write results to a file: .json, .csv, .md or .png (quality plot); repeatable."),
]
Data = Annotated[list[Path], typer.Option("--data", help="Folder of clean images; repeatable (one dataset each).")]
Pairs = Annotated[
    list[Path] | None,
    typer.Option(
        "--pairs",
        help="Folder of real noisy/clean pairs (*_real.* / *_mean.*); repeatable. Blind models run as they are, "
        "methods that take σ get the estimate.",
        show_default=False,
    ),
]
Limit = Annotated[
    int | None, typer.Option("--limit", min=1, help="Use the first N images of each folder.", show_default=False)
]
Machine = Annotated[
    str | None, typer.Option("--machine", help="A name for this machine, recorded in the results.", show_default=False)
]


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _peer_names(text: str) -> list[str]:
    choice = text.strip().lower()
    return list(PEERS) if choice == "all" else [] if choice == "none" else _split(text)


def _numbers(text: str, option: str) -> list[float]:
    """Comma-separated numbers; whole numbers stay ``int`` (``σ=25``, not ``25.0``)."""
    try:
        values = [int(item) if item.isdigit() else float(item) for item in _split(text)]
    except ValueError:
        fail(option, "comma-separated numbers", text)
    check(bool(values), option, "at least one value", text)
    return values


def _models(chosen: list[str] | None) -> list[str]:
    """The models asked for, or every shipped plain denoiser (tunable ones run at a setting only when named)."""
    models = chosen or [
        name
        for name in list_models()
        if (req := create_model(name).requirements).task == "denoise" and not req.tune_parameters
    ]
    if not models:
        warning_line("no trained model ships with this install and none was given (--model); measuring peers only")
    return models


def _command_line(context: typer.Context) -> str:
    """The running ``restorekit bench …`` command with the options given on the command line."""
    words = ["restorekit", "bench", context.info_name or ""]
    for param in context.command.params:
        value = context.params.get(param.name)
        source = context.get_parameter_source(param.name)
        if value is None or getattr(source, "name", "") != "COMMANDLINE":
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            item = getattr(item, "value", item)
            if param.param_type_name == "argument":
                words.append(str(item))
            elif getattr(param, "is_flag", False):
                words.append(param.opts[-1])
            else:
                words += [param.opts[-1], str(item)]
    return shlex.join(words)


def _emit(document: dict[str, Any], table_rows: list[dict[str, Any]], title: str, json: bool, save: list[Path]) -> None:
    """Save the results where asked, then print them: JSON on stdout, or a table."""
    for path in save:
        report.save(document, path)
        console.print(f"wrote {path}")
    for message in dict.fromkeys(f"skipped {s['method']}: {s['reason']}" for s in document["skipped"]):
        warning_line(message)
    if not document["rows"]:
        warning_line("nothing was measured")
    if json:
        print_json(document)
    elif table_rows:
        columns = [c for c in report.columns_of(table_rows) if any(row.get(c) is not None for row in table_rows)]
        results.print(report.table(table_rows, title=title, columns=columns))


@app.command()
@handle_errors
def latency(
    ctx: typer.Context,
    model: Models = None,
    peers: Peers = "all",
    size: Annotated[str, typer.Option("--size", help="Sizes: N (square), WxH or Nmp (4:3), comma-separated.")] = (
        "256,512,1mp,12mp"
    ),
    device: Annotated[str, typer.Option("--device", help="Devices for models, comma-separated (auto, cpu, cuda).")] = (
        "cpu"
    ),
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype", help="Precisions for models, comma-separated (auto: as `denoise` picks; fp32, fp16, bf16)."
        ),
    ] = "auto",
    channels: Annotated[int, typer.Option("--channels", help="Image channels: 3 (colour) or 1 (gray).")] = 3,
    tile: Tile = None,
    sigma: Annotated[float, typer.Option("--sigma", help="Noise level of the input (0–255).")] = 25.0,
    warmup: Annotated[int, typer.Option("--warmup", min=1, help="Untimed runs before timing.")] = 1,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs at most.")] = 10,
    budget: Annotated[float, typer.Option("--budget", help="Seconds of timed runs per configuration, at most.")] = 60,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads (default: the libraries').", show_default=False)
    ] = None,
    peer_max_mp: Annotated[float, typer.Option("--peer-max-mp", help="Skip peers on larger images.")] = 1.0,
    references: Annotated[
        str,
        typer.Option(
            "--references",
            help="Speed references (random-weight networks shaped like FFDNet and DnCNN, run by the same "
            "engine), comma-separated, or 'none'.",
        ),
    ] = "ffdnet_shape,dncnn_shape",
    machine: Machine = None,
    save: Save = None,
    progress_mode: Progress = ProgressMode.auto,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Latency, throughput, peak memory and FLOPs: models × sizes × devices × dtypes, and the peers on the CPU.

    Each configuration runs in a fresh process (warm-ups, then median and p95 of timed runs).
    """
    sizes = [bench_latency.parse_size(s) for s in _split(size)]
    shapes = [] if references.strip().lower() == "none" else _split(references)
    for name in shapes:
        check_choice(name, list(SPEED_REFERENCES), "--references")
    cases, methods, skipped = bench_latency.plan(
        _models(model) + shapes,
        _peer_names(peers),
        sizes,
        devices=_split(device),
        dtypes=_split(dtype),
        channels=channels,
        tile=tile,
        sigma=sigma,
        warmup=warmup,
        repeats=repeats,
        budget_s=budget,
        threads=threads,
        peer_max_mp=peer_max_mp,
    )
    with progress(progress_mode, len(cases), "latency") as bar:
        rows = bench_latency.run(cases, lambda label, row: bar.done(label, median_ms=row["median_ms"]))
    config = {
        "sizes": [f"{w}x{h}" for h, w in sizes],
        "devices": _split(device),
        "dtypes": _split(dtype),
        "channels": channels,
        "tile": tile,
        "sigma": sigma,
        "warmup": warmup,
        "repeats": repeats,
        "budget_s": budget,
        "threads": threads,
        "peer_max_mp": peer_max_mp,
    }
    document = report.payload(
        "latency",
        rows,
        environment(machine),
        config,
        _command_line(ctx),
        methods=[m.describe() for m in methods],
        skipped=skipped,
    )
    shown = ("method", "size", "device", "dtype", "tile", "runs", "median_ms", "p95_ms", "cpu_ms", "mp_per_s")
    shown += ("rss_peak_mb", "cuda_peak_mb", "gflops", "error")
    table_rows = [{k: r[k] for k in shown} for r in rows]
    _emit(document, table_rows, "latency", json, save or [])


@app.command()
@handle_errors
def quality(
    ctx: typer.Context,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Folder of clean images; repeatable (one dataset each).", show_default=False),
    ] = None,
    pairs: Pairs = None,
    model: Models = None,
    peers: Peers = "all",
    task: Annotated[Task, typer.Option("--task", help="denoise, or sr: super-resolution on --data.")] = Task.denoise,
    scale: Annotated[str, typer.Option("--scale", help="With --task sr: factors, comma-separated.")] = "2,3,4",
    sigma: Annotated[str, typer.Option("--sigma", help="Noise levels (0–255), comma-separated.")] = "15,25,50",
    protocol: Annotated[
        ProtocolChoice, typer.Option("--protocol", help="float (unclipped), file (clipped, 8-bit) or both.")
    ] = ProtocolChoice.float,
    sigma_mode: Annotated[
        SigmaMode, typer.Option("--sigma-mode", help="Tell methods the true σ, or one shared estimate.")
    ] = SigmaMode.true,
    degradation: Annotated[
        Degradation,
        typer.Option(
            "--degradation",
            help="awgn, or shading: the images as whole frames, the noise (σ before the gain) amplified toward the "
            f"corners by a seeded lens-shading gain; adds {bench_quality.SHADING_REFERENCE} and runs every "
            "σ-conditioned model with the estimated σ and with the exact noise map (+oracle). With --task sr: "
            "real, the LR inputs made from the HR images by the seeded real-world degradation (blur, resize, "
            "noise, JPEG, twice) instead of bicubic downscaling.",
        ),
    ] = Degradation.awgn,
    chain: Annotated[
        list[str] | None,
        typer.Option(
            "--chain",
            help="With --task sr: also run the photo denoiser, then this SR model (the two-command route); repeatable.",
            show_default=False,
        ),
    ] = None,
    limit: Limit = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Show per-image rows in the table too.")] = False,
    ensemble: Annotated[
        bool, typer.Option("--ensemble", help="Also measure each model with --ensemble (named <model>+x8).")
    ] = False,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    tile: Tile = None,
    machine: Machine = None,
    save: Save = None,
    progress_mode: Progress = ProgressMode.auto,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """PSNR/SSIM of restorekit models and the peers on the same seeded noisy inputs (--data) or on real noisy
    images against their clean references (--pairs), per image and mean; with --degradation shading, on seeded
    lens-shaded noise against the σ-conditioned reference told the estimate and the exact noise map; with --task
    sr, Y-channel PSNR/SSIM of the super-resolution models, bicubic and Lanczos on the LR inputs of --data (SR
    test-set folders with image_SRF_<s>/ pairs, or plain images downscaled here)."""
    if task == Task.sr:
        check(bool(data) and not pairs, "bench quality --task sr", "--data folders (and no --pairs)", "none")
        check(degradation != Degradation.shading, "--degradation", "awgn (bicubic) or real with --task sr", "shading")
        sr_degradation = "real" if degradation == Degradation.real else "bicubic"
        _quality_sr(
            ctx, data, model, scale, limit, per_image, device, dtype.value, tile, machine, save, progress_mode, json,
            sr_degradation, chain or [],
        )  # fmt: skip
        return
    check(degradation != Degradation.real, "--degradation", "awgn or shading without --task sr", "real")
    check(bool(data or pairs), "bench quality", "--data or --pairs folders", "neither")
    shading = degradation == Degradation.shading
    if shading:
        check(
            bool(data) and not pairs,
            "bench quality --degradation shading",
            "--data folders (and no --pairs)",
            "--pairs",
        )
    sigmas = _numbers(sigma, "--sigma")
    protocols = ["float", "file"] if protocol == ProtocolChoice.both else [protocol.value]
    images = [(folder.name, path) for folder in data or [] for path in bench_quality.list_images(folder)[:limit]]
    real = [(f.name, n, c) for f in pairs or [] for n, c in bench_quality.list_pairs(f)[:limit]]
    precision = dtype.value
    device = str(resolve_device(device))
    names = list(_models(model))
    if shading and bench_quality.SHADING_REFERENCE not in names and bench_quality.SHADING_REFERENCE in list_models():
        names.append(bench_quality.SHADING_REFERENCE)
    methods = [model_method(name, device, precision, tile) for name in names]
    if ensemble:
        methods += [model_method(m.name, device, precision, tile, ensemble=True, module=m.model) for m in methods]
    available, skipped = peer_methods(_peer_names(peers))
    methods += available
    total = len(images) * len(sigmas) * len(protocols) + len(real)
    with progress(progress_mode, total, "quality") as bar:
        rows, unfit = bench_quality.evaluate(
            images, methods, sigmas, protocols, sigma_mode.value, bar.done, degradation=degradation.value
        )
        real_rows, real_unfit = bench_quality.evaluate_pairs(real, methods, bar.done)
    rows, unfit = rows + real_rows, unfit + [u for u in real_unfit if u not in unfit]
    summary = bench_quality.summarize(rows)
    config = {
        "data": [str(folder) for folder in data or []],
        "pairs": [str(folder) for folder in pairs or []],
        "sigmas": sigmas,
        "protocols": protocols,
        "sigma_mode": "estimate" if shading else sigma_mode.value,
        "degradation": degradation.value,
        "limit": limit,
        "device": device,
        "dtype": precision,
        "tile": tile,
        "ensemble": ensemble,
    }
    document = report.payload(
        "quality",
        rows,
        environment(machine),
        config,
        _command_line(ctx),
        methods=[m.describe() for m in methods],
        summary=summary,
        skipped=skipped + unfit,
    )
    shown = ("dataset", "image", "sigma", "protocol", "method", "sigma_used", "psnr", "ssim", "seconds")
    table_rows = [{k: r[k] for k in shown} for r in (rows + summary if per_image else summary)]
    _emit(document, table_rows, "quality (PSNR dB, SSIM; mean rows are over images)", json, save or [])


def _quality_sr(
    ctx: typer.Context,
    data: list[Path],
    model: list[str] | None,
    scale: str,
    limit: int | None,
    per_image: bool,
    device: str,
    precision: str,
    tile: int | None,
    machine: str | None,
    save: list[Path] | None,
    progress_mode: ProgressMode,
    json: bool,
    degradation: str = "bicubic",
    chain: list[str] | None = None,
) -> None:
    """``bench quality --task sr``: every SR model at its own factor, bicubic and Lanczos at every factor, and
    the ``chain`` models after the photo denoiser."""
    scales = [int(v) for v in _numbers(scale, "--scale")]
    for value in scales:
        check_choice(value, (2, 3, 4), "--scale")
    device = str(resolve_device(device))
    names = model or [name for name in list_models() if create_model(name).requirements.task == "sr"]
    if not names:
        warning_line("no super-resolution model ships with this install and none was given (--model)")
    models = [bench_sr.sr_model_method(name, device, precision, tile) for name in names]
    chained = [
        bench_sr.chain_method(bench_sr.sr_model_method(name, device, precision, tile), device, precision, tile)
        for name in chain or []
    ]
    methods = [*models, *chained, bench_sr.interpolation_method("cubic"), bench_sr.interpolation_method("lanczos3")]
    images = {s: [(f.name, hr, lr) for f in data for hr, lr in bench_sr.list_pairs(f, s)[:limit]] for s in scales}
    rows: list[dict[str, Any]] = []
    with progress(progress_mode, sum(len(v) for v in images.values()), "sr quality") as bar:
        for value in scales:
            rows += bench_sr.evaluate(images[value], methods, value, bar.done, degradation)
    summary = bench_sr.summarize(rows)
    config = {
        "data": [str(f) for f in data],
        "degradation": degradation,
        "chain": chain or [],
        "scales": scales,
        "limit": limit,
        "device": device,
        "dtype": precision,
        "tile": tile,
    }
    document = report.payload(
        "sr_quality",
        rows,
        environment(machine),
        config,
        _command_line(ctx),
        methods=[m.describe() for m in methods],
        summary=summary,
    )
    shown = ("dataset", "image", "scale", "method", "psnr", "ssim", "seconds")
    table_rows = [{k: r[k] for k in shown} for r in (rows + summary if per_image else summary)]
    _emit(
        document, table_rows, "super-resolution quality (Y-channel PSNR dB / SSIM, scale px shaved)", json, save or []
    )


@app.command("tune")
@handle_errors
def tune_(
    ctx: typer.Context,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data", help="Folder of clean images (seeded AWGN at each --sigma); repeatable.", show_default=False
        ),
    ] = None,
    pairs: Pairs = None,
    model: Annotated[str, typer.Option("-m", "--model", help="The tunable model (name or .safetensors path).")] = (
        "tunable_mallenet_s.awgn_color"
    ),
    fixed: Annotated[str, typer.Option("--fixed", help="The fixed denoiser (DNI's fidelity end).")] = (
        "mallenet_s.awgn_color"
    ),
    retain: Annotated[
        str | None,
        typer.Option(
            "--retain",
            help="The fixed denoiser fine-tuned for noise retention alone (DNI's other end); 'none' skips DNI.",
        ),
    ] = "weights/checkpoints/mallenet_s.awgn_color_retain.safetensors",
    sigma: Annotated[str, typer.Option("--sigma", help="Noise levels (0–255), comma-separated.")] = "5,15,30",
    w1: Annotated[str, typer.Option("--w1", help="Settings ω1 (ω2 = 1 − ω1), comma-separated.")] = "0,0.25,0.5,0.75,1",
    protocol: Annotated[
        ProtocolChoice, typer.Option("--protocol", help="float (unclipped, as the paper) or file (8-bit).")
    ] = ProtocolChoice.float,
    limit: Limit = None,
    strip: Annotated[
        Path | None,
        typer.Option(
            "--strip",
            help="Also save a PNG of the first image at the largest σ (with --pairs: of --strip-image through the "
            "camera-noise synthesis): tunable and DNI rows, one column per ω1.",
            show_default=False,
        ),
    ] = None,
    strip_image: Annotated[
        Path | None,
        typer.Option(
            "--strip-image",
            help="With --pairs and --strip: the clean image (e.g. a scikit-image sample).",
            show_default=False,
        ),
    ] = None,
    strip_box: Annotated[
        str, typer.Option("--strip-box", help="Crop of the strip: top,left,size in pixels.")
    ] = "100,250,160",
    strip_seed: Annotated[
        int, typer.Option("--strip-seed", help="With --pairs and --strip: seed of the camera-noise synthesis.")
    ] = 0,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    tile: Tile = None,
    machine: Machine = None,
    save: Save = None,
    progress_mode: Progress = ProgressMode.auto,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """A tunable model against DNI and the fixed model: PSNR and PSNRη per setting (the paper's Table 1), on
    clean images with seeded AWGN (--data) or on real noisy/clean pairs (--pairs, blind models)."""
    sigmas = _numbers(sigma, "--sigma")
    settings = _numbers(w1, "--w1")
    for value in settings:
        check(0 <= value <= 1, "--w1", "settings in [0, 1]", value)
    check(protocol != ProtocolChoice.both, "--protocol", "float or file", "both")
    check(bool(data) != bool(pairs), "bench tune", "--data or --pairs folders (one of them)", "both or neither")
    check(not (pairs and strip and strip_image is None), "--strip", "--strip-image with --pairs", "none")
    images = [(folder.name, path) for folder in data or [] for path in bench_quality.list_images(folder)[:limit]]
    real = [(f.name, n, c) for f in pairs or [] for n, c in bench_quality.list_pairs(f)[:limit]]
    target = str(resolve_device(device))
    retain_model = None if retain is None or retain.lower() == "none" else retain
    methods = bench_tune.contenders(model, fixed, retain_model, target, dtype.value, tile)
    nu = sweep.retention_nu(create_model(model))
    cases = bench_tune.pair_cases(real) if pairs else bench_tune.awgn_cases(images, sigmas, protocol.value)
    with progress(progress_mode, len(real) or len(images) * len(sigmas), "tune") as bar:
        rows = bench_tune.evaluate(cases, methods, settings, nu, bar.done)
    summary = bench_tune.summarize(rows)
    config = {
        "data": [str(folder) for folder in data or []],
        "pairs": [str(folder) for folder in pairs or []],
        "sigmas": sigmas,
        "w1": settings,
        "nu": nu,
        "protocol": protocol.value,
        "limit": limit,
        "device": target,
        "dtype": dtype.value,
        "tile": tile,
    }
    if strip is not None:
        from PIL import Image as PILImage

        box = tuple(int(v) for v in _numbers(strip_box, "--strip-box"))
        check(len(box) == 3, "--strip-box", "top,left,size", strip_box)
        if pairs:
            from restorekit.bench.crops import camera_noisy

            noisy, clean = camera_noisy(strip_image, seed=strip_seed)
            case = bench_tune.Case("strip", strip_image.name, "real", "real", clean, noisy)
        else:
            case = next(bench_tune.awgn_cases(images[:1], [max(sigmas)], protocol.value))
        figure = bench_tune.sweep_strip(case, methods, settings, nu, box)
        PILImage.fromarray(figure).save(strip)
        console.print(f"wrote {strip}")
    described = [{"name": m.name, "kind": m.kind} for m in methods]
    document = report.payload(
        "tune", rows, environment(machine), config, _command_line(ctx), methods=described, summary=summary
    )
    shown = ("dataset", "sigma", "method", "w1", "w2", "psnr", "psnr_eta")
    table_rows = [{k: r[k] for k in shown} for r in summary if r["sigma"] == "mean"]
    _emit(document, table_rows, "tune (PSNR / PSNRη dB, mean over images and σ)", json, save or [])


@app.command()
@handle_errors
def kernels(
    ctx: typer.Context,
    size: Annotated[str, typer.Option("--size", help="Feature-map sizes: N (square), WxH or Nmp, comma-separated.")] = (
        "256,512"
    ),
    channels: Annotated[str, typer.Option("--channels", help="Channel counts, comma-separated.")] = "16,80",
    kernel_size: Annotated[
        int, typer.Option("--kernel-size", help="Kernel size K (1 or 3; any odd K without --op malleable).")
    ] = 3,
    op: Annotated[
        str, typer.Option("--op", help="Convolutions to measure, comma-separated (malleable, atom, tv).")
    ] = "malleable,atom",
    atoms: Annotated[int, typer.Option("--atoms", min=1, help="Atoms per pixel M of the atom convolution.")] = 4,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Backends of every op, comma-separated (naive, reference, cpu, triton). Default: all for the device.",
            show_default=False,
        ),
    ] = None,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per configuration, at most.")] = 10,
    grid_stride: Annotated[int, typer.Option("--grid-stride", min=1, help="Kernel-grid stride in pixels.")] = 8,
    machine: Machine = None,
    save: Save = None,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Malleable, atom and TVConv backends against a depthwise convolution (rows as the benchmark gives them)."""
    from restorekit.bench import kernels as bench_kernels  # imported on use: it loads the Triton kernels

    sizes = [bench_latency.parse_size(s) for s in _split(size)]
    precision = "fp32" if dtype == DtypeChoice.auto else dtype.value
    config = {
        "sizes": [f"{w}x{h}" for h, w in sizes],
        "channels": [int(v) for v in _numbers(channels, "--channels")],
        "kernel_size": kernel_size,
        "ops": _split(op),
        "atoms": atoms,
        "backends": _split(backend) if backend else None,
        "device": str(resolve_device(device)),
        "dtype": precision,
        "repeats": repeats,
        "grid_stride": grid_stride,
    }
    rows = bench_kernels.run(
        sizes,
        config["channels"],
        kernel_size,
        config["backends"],
        config["device"],
        DTYPES[precision],
        repeats,
        grid_stride,
        ops=config["ops"],
        atoms=atoms,
    )
    document = report.payload("kernels", rows, environment(machine), config, _command_line(ctx))
    _emit(document, rows, "kernels", json, save or [])


@app.command("crops")
@handle_errors
def crops(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="A clean image (e.g. a scikit-image sample).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path("crops.png"),
    box: Annotated[str, typer.Option("--box", help="Crop as top,left,size in pixels.")] = "100,100,96",
    sigma: Annotated[float, typer.Option("--sigma", help="Noise level (0–255).")] = 25.0,
    protocol: Annotated[str, typer.Option("--protocol", help="float or file.")] = "float",
    noise: Annotated[
        str, typer.Option("--noise", help="awgn (σ, protocol) or camera (the training data's camera synthesis).")
    ] = "awgn",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the camera-noise synthesis.")] = 0,
    task: Annotated[Task, typer.Option("--task", help="denoise, or sr: HR | bicubic | Lanczos | models.")] = (
        Task.denoise
    ),
    scale: Annotated[int, typer.Option("--scale", help="With --task sr: the factor.")] = 2,
    model: Annotated[list[str] | None, typer.Option("-m", "--model", help="Model name or path; repeatable.")] = None,
    peers: Annotated[str, typer.Option("--peers", help="Peers, comma-separated, 'all' or 'none'.")] = "all",
    machine: Machine = None,
    save: Annotated[
        list[Path] | None,
        typer.Option("--save", help="Also write a results file (.json) that `bench report` shows with the PNG."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Side-by-side crops (clean, noisy, restorekit models, peers) of one image, with whole-image PSNR; with
    --task sr, the HR image, bicubic, Lanczos and the SR models (Y-channel PSNR)."""
    from PIL import Image as PILImage

    from restorekit.bench import crops as bench_crops
    from restorekit.inference.io import load_image

    top, left, size = (int(v) for v in box.split(","))
    check_choice(noise, ("awgn", "camera"), "--noise")
    if task == Task.sr:
        check_choice(scale, (2, 3, 4), "--scale")
        names = model or [
            n for n in list_models() if (r := create_model(n).requirements).task == "sr" and r.scale == scale
        ]
        methods = [bench_sr.interpolation_method("cubic"), bench_sr.interpolation_method("lanczos3")]
        methods += [bench_sr.sr_model_method(name) for name in names]
        strip, scores = bench_crops.sr_strip(image, methods, scale, (top, left, size))
    else:
        channels = 1 if load_image(image).pixels.shape[2] == 1 else 3
        names = [n for n in _models(model) if create_model(n).requirements.in_channels == channels]
        available, _ = peer_methods(_peer_names(peers))
        methods = [model_method(name) for name in names] + available
        if noise == "camera":
            strip, scores = bench_crops.camera_noise_strip(image, methods, seed, (top, left, size))
        else:
            strip, scores = bench_crops.comparison_strip(image, methods, sigma, protocol, (top, left, size))
    PILImage.fromarray(strip).save(output)
    results.print(f"wrote {output}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in scores if v is not None))
    if save:
        config = {"image": str(image), "output": str(output), "box": [top, left, size], "task": task.value}
        config |= {"scale": scale} if task == Task.sr else {"noise": noise, "sigma": sigma, "protocol": protocol}
        config |= {"seed": seed} if task != Task.sr and noise == "camera" else {}
        rows = [{"method": label, "psnr": psnr} for label, psnr in scores]
        document = report.payload("crops", rows, environment(machine), config, _command_line(ctx))
        for path in save:
            check(path.suffix.lower() == ".json", f"--save {path}", "a .json file", path.suffix or "no suffix")
            report.save(document, path)
            console.print(f"wrote {path}")


@app.command("scale-out")
@handle_errors
def scale_out(
    ctx: typer.Context,
    images: Annotated[int, typer.Option("--images", min=1, help="Noisy PNGs in the batch.")] = 200,
    size: Annotated[int, typer.Option("--size", min=16, max=300, help="Their side, in pixels.")] = 128,
    actors: Annotated[int, typer.Option("--actors", min=1, help="Ray actors (--ray-actors).")] = 2,
    sigma: Annotated[float, typer.Option("--sigma", min=0, max=255, help="AWGN level σ (0–255).")] = 25.0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps per run.")] = 30,
    skip_train: Annotated[bool, typer.Option("--skip-train", help="Measure the batch only.")] = False,
    skip_ray: Annotated[bool, typer.Option("--skip-ray", help="Leave out the Ray runs.")] = False,
    machine: Machine = None,
    save: Annotated[list[Path] | None, typer.Option("--save", help="Write results: .json, .csv or .md.")] = None,
    json: Json = False,
    verbose: Verbose = False,
) -> None:
    """A batch of seeded noisy crops of scikit-image's colour samples through `denoise` (local engine, local
    with 1 thread, --engine ray) and a small MalleNet-S training run (1 process × 2 threads, 1 × 1, torchrun
    2 × 1), each as a subprocess of the installed CLI; see restorekit/bench/scale_out.py."""
    from restorekit.bench import scale_out as bench_scale_out

    rows, config, skipped = bench_scale_out.run(images, size, actors, sigma, steps, skip_train, skip_ray)
    document = report.payload("scale_out", rows, environment(machine), config, _command_line(ctx), skipped=skipped)
    _emit(document, rows, "scale-out (wall_s: whole command; median_ms: per file)", json, save or [])


@app.command("report")
@handle_errors
def report_(
    files: Annotated[list[Path], typer.Argument(help="Results files from `restorekit bench … --save x.json`.")],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="Markdown page to write, e.g. docs/benchmarks.md.", show_default=False),
    ],
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw PSNR against time from the quality files (PNG).", show_default=False),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Build the benchmarks page (docs/benchmarks.md) and optionally the quality plot from saved results files.

    Writes only the files named by -o and --plot, each into a folder that must exist.
    """
    for path in (output, plot):
        if path is not None and not path.parent.is_dir():
            raise OutputError(f"{path}: no such folder {path.parent} (create it first)")
    documents = [(path, report.load(path)) for path in files]
    command = "restorekit bench report " + " ".join(str(p) for p in files) + f" -o {output}"
    if plot is not None:
        command += f" --plot {plot}"
        summary = [row for _, doc in documents if doc["command"] == "quality" for row in doc["summary"]]
        report.scatter_plot(summary, plot)
    try:
        output.write_text(render(documents, command))
    except OSError as exc:
        raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
    console.print(f"wrote {output}")
