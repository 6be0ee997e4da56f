"""The user cache folder restorekit remembers things in across runs (built kernels, verified weights, measured
precisions): ``$RESTOREKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/restorekit``, else ``~/.cache/restorekit``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """The cache folder (not created here)."""
    root = os.environ.get("RESTOREKIT_CACHE_DIR")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restorekit")
    return Path(root)


def read_json(path: Path) -> dict[str, Any]:
    """A cached JSON object; empty where the file is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: dict[str, Any]) -> bool:
    """Replace a cached JSON object atomically; whether it could (a read-only cache is not an error)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError:
        return False
    return True
