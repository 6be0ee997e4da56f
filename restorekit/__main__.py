"""``python -m restorekit``: the same as the ``restorekit`` command."""

from restorekit.cli.app import main

if __name__ == "__main__":
    main()
