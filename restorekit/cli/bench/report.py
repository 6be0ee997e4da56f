"""`restorekit bench report`: the benchmarks page (and the quality plot) from saved results files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from restorekit.bench.docs import write_page
from restorekit.cli._console import console, handle_errors
from restorekit.cli._options import Verbose

Output = Annotated[
    Path, typer.Option("-o", "--output", help="Markdown page to write, e.g. docs/benchmarks.md.", show_default=False)
]
Plot = Annotated[
    Path | None,
    typer.Option("--plot", help="Also draw PSNR against time from the quality files (PNG).", show_default=False),
]


@handle_errors
def report(
    files: Annotated[list[Path], typer.Argument(help="Results files from `restorekit bench … --save x.json`.")],
    output: Output,
    plot: Plot = None,
    verbose: Verbose = False,
) -> None:
    """Build the benchmarks page (docs/benchmarks.md) and optionally the quality plot from saved results files.

    Writes only the files named by -o and --plot, each into a folder that must exist.
    """
    write_page(files, output, plot)
    console.print(f"wrote {output}")
