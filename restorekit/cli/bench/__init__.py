"""`restorekit bench`: latency, quality and kernel benchmarks, and the docs page built from their results.

One module per subcommand, in the order ``restorekit bench --help`` lists them; the work is the library's
(:mod:`restorekit.bench`), the options shared by several subcommands are in :mod:`._options`.
"""

from __future__ import annotations

import typer

from restorekit.cli.bench import crops, kernels, latency, quality, report, scale_out, tune

app = typer.Typer(help="Benchmarks: latency, quality and kernels; `report` regenerates docs/benchmarks.md.")
for name, command in {
    "latency": latency.latency,
    "quality": quality.quality,
    "tune": tune.tune,
    "kernels": kernels.kernels,
    "crops": crops.crops,
    "scale-out": scale_out.scale_out,
    "report": report.report,
}.items():
    app.command(name)(command)
