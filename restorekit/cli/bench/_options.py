"""The options of the ``bench`` subcommands, declared once: first those several share, then each one's own
(``restorekit.cli._options`` declares those every command shares: --device, --dtype, --tile, --json, …).

A subcommand's module lists its options by these names, so its signature reads as its ``--help`` does. The
choice options take their values from the library (:data:`restorekit.bench.noise.PROTOCOLS`, …), so a choice
the library adds is one the command line offers.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from restorekit.bench.noise import PROTOCOLS
from restorekit.bench.quality import DEGRADATIONS, SHADING_REFERENCE, SIGMA_MODES


def _choices(name: str, *values: str) -> type[Enum]:
    """A ``str`` enum of ``values`` for a choice option (a member equals its string: ``Task.sr == "sr"``)."""
    return Enum(name, [(value, value) for value in values], type=str)


ProtocolChoice = _choices("ProtocolChoice", *PROTOCOLS, "both")  # float: unclipped; file: clipped, 8-bit
Task = _choices("Task", "denoise", "sr")  # what quality and crops measure
Degradation = _choices("Degradation", *DEGRADATIONS, "real")  # real: the LR inputs of --task sr
SigmaMode = _choices("SigmaMode", *SIGMA_MODES)  # tell methods the true σ or one shared estimate
SRInput = _choices("SRInput", "bicubic", "real")  # how bench crops --task sr makes its LR input

DegradationOption = Annotated[
    Degradation,
    typer.Option(
        "--degradation",
        help="awgn, or shading: the images as whole frames, the noise (σ before the gain) amplified toward the "
        f"corners by a seeded lens-shading gain; adds {SHADING_REFERENCE} and runs every σ-conditioned "
        "model with the estimated σ and with the exact noise map (+oracle). With --task sr: real, the LR inputs "
        "made from the HR images by the seeded real-world degradation (blur, resize, noise, JPEG, twice) instead "
        "of bicubic downscaling.",
    ),
]
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
Pairs = Annotated[
    list[Path] | None,
    typer.Option(
        "--pairs",
        help="Folder of real noisy/clean pairs (*_real.* / *_mean.*); repeatable. Blind models run as they are, "
        "methods that take σ get the estimate.",
        show_default=False,
    ),
]
Sigmas = Annotated[str, typer.Option("--sigma", help="Noise levels (0–255), comma-separated.")]
NoiseLevel = Annotated[float, typer.Option("--sigma", help="Noise level of the input (0–255).")]
Limit = Annotated[
    int | None, typer.Option("--limit", min=1, help="Use the first N images of each folder.", show_default=False)
]
Repeats = Annotated[int, typer.Option("--repeats", min=1, help="Timed runs per configuration, at most.")]
Machine = Annotated[
    str | None, typer.Option("--machine", help="A name for this machine, recorded in the results.", show_default=False)
]


# bench quality
CleanData = Annotated[
    list[Path] | None,
    typer.Option("--data", help="Folder of clean images; repeatable (one dataset each).", show_default=False),
]
QualityTask = Annotated[Task, typer.Option("--task", help="denoise, or sr: super-resolution on --data.")]
Scales = Annotated[str, typer.Option("--scale", help="With --task sr: factors, comma-separated.")]
Protocols = Annotated[
    ProtocolChoice, typer.Option("--protocol", help="float (unclipped), file (clipped, 8-bit) or both.")
]
SigmaModeOption = Annotated[
    SigmaMode, typer.Option("--sigma-mode", help="Tell methods the true σ, or one shared estimate.")
]
Chain = Annotated[
    list[str] | None,
    typer.Option(
        "--chain",
        help="With --task sr: also run the photo denoiser, then this SR model (the two-command route); repeatable.",
        show_default=False,
    ),
]
PerImage = Annotated[bool, typer.Option("--per-image", help="Show per-image rows in the table too.")]
Ensembles = Annotated[
    bool, typer.Option("--ensemble", help="Also measure each model with --ensemble (named <model>+x8).")
]

# bench tune
TuneData = Annotated[
    list[Path] | None,
    typer.Option(
        "--data", help="Folder of clean images (seeded AWGN at each --sigma); repeatable.", show_default=False
    ),
]
TunableModel = Annotated[str, typer.Option("-m", "--model", help="The tunable model (name or .safetensors path).")]
FixedModel = Annotated[str, typer.Option("--fixed", help="The fixed denoiser (DNI's fidelity end).")]
Retain = Annotated[
    str | None,
    typer.Option(
        "--retain", help="The fixed denoiser fine-tuned for noise retention alone (DNI's other end); 'none' skips DNI."
    ),
]
Settings = Annotated[str, typer.Option("--w1", help="Settings ω1 (ω2 = 1 − ω1), comma-separated.")]
TuneProtocol = Annotated[
    ProtocolChoice, typer.Option("--protocol", help="float (unclipped, as the paper) or file (8-bit).")
]
Strip = Annotated[
    Path | None,
    typer.Option(
        "--strip",
        help="Also save a PNG of the first image at the largest σ (with --pairs: of --strip-image through the "
        "camera-noise synthesis): tunable and DNI rows, one column per ω1.",
        show_default=False,
    ),
]
StripImage = Annotated[
    Path | None,
    typer.Option(
        "--strip-image",
        help="With --pairs and --strip: the clean image (e.g. a scikit-image sample).",
        show_default=False,
    ),
]
StripBox = Annotated[str, typer.Option("--strip-box", help="Crop of the strip: top,left,size in pixels.")]
StripSeed = Annotated[
    int, typer.Option("--strip-seed", help="With --pairs and --strip: seed of the camera-noise synthesis.")
]

# bench latency
ImageSizes = Annotated[str, typer.Option("--size", help="Sizes: N (square), WxH or Nmp (4:3), comma-separated.")]
Devices = Annotated[str, typer.Option("--device", help="Devices for models, comma-separated (auto, cpu, cuda).")]
Dtypes = Annotated[
    str,
    typer.Option(
        "--dtype", help="Precisions for models, comma-separated (auto: as `denoise` picks; fp32, fp16, bf16)."
    ),
]
Threads = Annotated[
    int | None, typer.Option("--threads", min=1, help="CPU threads (default: the libraries').", show_default=False)
]
LatencyChain = Annotated[
    list[str] | None,
    typer.Option(
        "--chain",
        help="Also time the photo denoiser, then this super-resolution model, as one call (the two-command route "
        "to an upscaled photo); repeatable.",
        show_default=False,
    ),
]
References = Annotated[
    str,
    typer.Option(
        "--references",
        help="Speed references (random-weight networks shaped like FFDNet and DnCNN, run by the same engine), "
        "comma-separated, or 'none'.",
    ),
]

# bench kernels
FeatureSizes = Annotated[
    str, typer.Option("--size", help="Feature-map sizes: N (square), WxH or Nmp, comma-separated.")
]
KernelSize = Annotated[
    int, typer.Option("--kernel-size", help="Kernel size K (1 or 3; any odd K without --op malleable).")
]
Ops = Annotated[str, typer.Option("--op", help="Convolutions to measure, comma-separated (malleable, atom, tv).")]
Backends = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Backends of every op, comma-separated (naive, reference, cpu, triton). Default: all for the device.",
        show_default=False,
    ),
]

# bench crops
Noise = Annotated[
    str, typer.Option("--noise", help="awgn (σ, protocol) or camera (the training data's camera synthesis).")
]
CropsSave = Annotated[
    list[Path] | None,
    typer.Option("--save", help="Also write a results file (.json) that `bench report` shows with the PNG."),
]
SRDegradation = Annotated[
    SRInput,
    typer.Option(
        "--degradation",
        help="With --task sr: how the LR input is made: bicubic (a clean downscale), or real: the seeded "
        "real-world degradation of bench quality --task sr --degradation real (blur, resize, noise, JPEG, twice).",
    ),
]
