"""The exceptions restorekit raises. The library never exits; the CLI maps each class to an exit code."""


class RestoreKitError(Exception):
    """Base class of every error restorekit raises on purpose.

    Messages speak the library's words: ``parameter`` names the argument a message is about (its first word,
    ``"sigma: expected …"``), and an argument named inside the text is written in backticks (``pass
    `overwrite=True` to replace it``), so that the command line can name its options instead
    (:func:`restorekit.cli._console.describe`).
    """

    exit_code = 1

    def __init__(self, message: str = "", parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class InputError(RestoreKitError):
    """An input file or array cannot be used (unreadable, truncated, unsupported, too large)."""

    exit_code = 1


class OutputError(RestoreKitError):
    """An output cannot be written (exists, unwritable, would overwrite an input)."""

    exit_code = 1


class UsageError(RestoreKitError):
    """Arguments that do not make sense together or are out of range."""

    exit_code = 2


class BackendError(UsageError):
    """A backend named for an op (its ``backend`` argument or ``RESTOREKIT_<OP>_BACKEND``) cannot run: its kernel
    is missing (no Triton, no C++ compiler), or it cannot take these tensors (device, dtype, a gradient)."""


class WeightsError(RestoreKitError):
    """A model name is unknown, or a weights file is missing, corrupted or does not match its model."""

    exit_code = 3


class DeviceError(RestoreKitError):
    """The device is unavailable, or the work does not fit in memory even at the smallest tile."""

    exit_code = 4
