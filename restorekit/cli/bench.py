"""`restorekit bench` (being written by the bench helper)."""

import typer

app = typer.Typer(help="Benchmarks: latency, quality and kernels.")
