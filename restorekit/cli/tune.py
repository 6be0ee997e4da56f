"""`restorekit tune`: restore with a tunable model at a trade-off chosen at run time, or sweep it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from restorekit._checks import check, fail
from restorekit.cli._batch import Restoring, restoring
from restorekit.cli._console import handle_errors, results
from restorekit.cli._options import Sigma, parse_sigma

Omega = Annotated[
    str | None,
    typer.Option(
        "--w",
        help="The trade-off ω1,ω2 (each in [0, 1], summing to 1 for the shipped models). ω1: remove noise; "
        "ω2: keep grain and fine detail. 1,0 denoises fully; 0,1 keeps 90% of the noise.",
        show_default=False,
    ),
]
Sweep = Annotated[
    int | None,
    typer.Option(
        "--sweep",
        min=2,
        help="Instead of one setting, write a labelled contact sheet of N settings from 0,1 to 1,0 per input.",
        show_default=False,
    ),
]
Reference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="Clean image (or a folder of them, matched by file name): report PSNR and PSNRη per setting.",
        show_default=False,
    ),
]


def parse_omega(text: str) -> tuple[float, ...]:
    """``"0.3,0.7"`` → ``(0.3, 0.7)``; the model's domain is checked later (:func:`api.check_omega`).

    Example:
        >>> parse_omega("0.3, 0.7")
        (0.3, 0.7)
    """
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        fail("w", "comma-separated numbers such as 0.3,0.7", text)


@handle_errors
@restoring
def tune(
    options: Restoring, w: Omega = None, sweep_count: Sweep = None, reference: Reference = None, sigma: Sigma = None
) -> None:
    """Denoise with a tunable model at the trade-off --w (ω1 remove noise, ω2 keep grain and fine detail).

    One trained network serves every setting: its kernels are mixed for the chosen ω, so any setting runs at
    the speed of a fixed denoiser. --sweep N writes a contact sheet of N settings instead. Without --sigma (and
    --model) the blind tunable photo model runs, for real camera noise; --sigma N|auto runs the Gaussian one.
    """
    check((w is None) != (sweep_count is None), "tune", "exactly one of --w ω1,ω2 or --sweep N", "both or neither")
    show = _print_scores if reference is not None else None
    omega = parse_omega(w) if w is not None else None
    options.run("tune", show, sweep_count, reference, w=omega, sigma=parse_sigma(sigma))


def _print_scores(source: Path, fields: dict) -> None:
    """A small table per input on stdout: each setting's PSNR and PSNRη against the reference."""
    results.print(f"{source}:  ω1    ω2    PSNR     PSNRη", soft_wrap=True)
    for record in fields["sweep"]:
        w1, w2 = record["w"]
        results.print(f"  {w1:5.2f} {w2:5.2f}  {record['psnr']:6.2f}  {record['psnr_eta']:6.2f}", soft_wrap=True)
