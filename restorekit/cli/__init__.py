"""The ``restorekit`` command line: one Typer app (:mod:`restorekit.cli.app`), one thin module per command.

When this process is the ``restorekit`` program, the stop signals are taken over here, at the first import of
the command line, so that a signal during start-up (the imports of Typer and PyTorch) stops it cleanly
(:mod:`restorekit.cli._signals`); a library user's process keeps its own.
"""

from restorekit.cli import _signals

if _signals.is_program():
    _signals.install()
