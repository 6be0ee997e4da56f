"""`restorekit bench kernels`: the malleable, atom and TVConv backends against a depthwise convolution."""

from __future__ import annotations

from typing import Annotated

import typer

from restorekit.bench.latency import parse_size
from restorekit.cli._console import handle_errors
from restorekit.cli._options import Device, Dtype, DtypeChoice
from restorekit.cli.bench import _options as opt
from restorekit.cli.bench._common import Results, numbers, split, with_results
from restorekit.inference.api import DTYPES, resolve_device


@handle_errors
@with_results(progress=False)
def kernels(
    ctx: typer.Context,
    size: opt.FeatureSizes = "256,512",
    channels: Annotated[str, typer.Option("--channels", help="Channel counts, comma-separated.")] = "16,80",
    kernel_size: opt.KernelSize = 3,
    op: opt.Ops = "malleable,atom",
    atoms: Annotated[int, typer.Option("--atoms", min=1, help="Atoms per pixel M of the atom convolution.")] = 4,
    backend: opt.Backends = None,
    device: Device = "auto",
    dtype: Dtype = DtypeChoice.auto,
    repeats: opt.Repeats = 10,
    grid_stride: Annotated[int, typer.Option("--grid-stride", min=1, help="Kernel-grid stride in pixels.")] = 8,
    *,
    out: Results,
) -> None:
    """Malleable, atom and TVConv backends against a depthwise convolution (rows as the benchmark gives them)."""
    from restorekit.bench import kernels as bench_kernels  # imported on use: it loads the Triton kernels

    sizes = [parse_size(s) for s in split(size)]
    precision = "fp32" if dtype == DtypeChoice.auto else dtype.value
    config = {
        "sizes": [f"{w}x{h}" for h, w in sizes],
        "channels": [int(v) for v in numbers(channels, "--channels")],
        "kernel_size": kernel_size,
        "ops": split(op),
        "atoms": atoms,
        "backends": split(backend) if backend else None,
        "device": str(resolve_device(device)),
        "dtype": precision,
        "repeats": repeats,
        "grid_stride": grid_stride,
    }
    shape = (sizes, config["channels"], kernel_size, config["backends"], config["device"], DTYPES[precision])
    rows = bench_kernels.run(*shape, repeats, grid_stride, ops=config["ops"], atoms=atoms)
    out.publish(ctx, "kernels", rows, config, ("kernels", rows))
