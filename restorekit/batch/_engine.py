"""Where a batch runs: the :class:`Engine` settings, checked where they are made."""

from __future__ import annotations

from dataclasses import dataclass

from restorekit._checks import check, check_choice
from restorekit.errors import UsageError

ENGINES = ("local", "ray")
INSTALL_HINT = "pip install 'restorekit[ray]'"


@dataclass(frozen=True)
class Engine:
    """Where a batch runs: ``local`` (this process, one file after another) or ``ray`` (a pool of Ray actors,
    :mod:`restorekit.batch._ray`).

    ``address`` is the Ray cluster to join (``None``: start a local one, or use the session already started in
    this process); ``actors`` the size of the actor pool (``None``: one per GPU, else one per 4 CPUs);
    ``verbose`` lets Ray's own messages through.

    Raises:
        UsageError: An unknown kind, Ray settings for the local engine, or the Ray engine without Ray installed.
    """

    kind: str = "local"
    address: str | None = None
    actors: int | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        check_choice(self.kind, ENGINES, "engine")
        if self.kind == "ray":
            require_ray()
        else:
            for name, value in (("ray_address", self.address), ("ray_actors", self.actors)):
                check(value is None, name, "`engine='ray'` with it", f"`engine={self.kind!r}`")


def require_ray() -> None:
    """Raise a one-line :class:`UsageError` unless Ray Data can be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError(f"`engine='ray'`: Ray Data is not installed ({INSTALL_HINT})") from None
