"""The environment block of a benchmark report: the machine and the software that produced the figures."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import restorekit

# Distributions whose versions matter to the figures (the peers and the image stack).
PACKAGES = ("numpy", "opencv-python-headless", "scikit-image", "bm3d", "triton")


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment(label: str | None = None) -> dict[str, Any]:
    """Describe this machine and software.

    Args:
        label: A free-text name for the machine (e.g. ``"dev box, 2 vCPU"``), recorded as ``machine``.

    Returns:
        ``machine``, ``cpu``, ``cpu_count`` (logical CPUs), ``cpu_affinity`` (CPUs this process may use),
        ``torch_threads``, ``os``, ``python``, ``torch``, ``cuda`` (torch's CUDA version or ``None``),
        ``gpu`` (name or ``None``), ``restorekit``, ``packages`` (name → version or ``None``) and
        ``settings`` (the ``RESTOREKIT_*`` environment variables that were set).

    Example:
        >>> environment()["restorekit"] == restorekit.__version__
        True
    """
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cuda = torch.cuda.is_available()
    return {
        "machine": label,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "restorekit": restorekit.__version__,
        "packages": {name: _version(name) for name in PACKAGES},
        "settings": {k: v for k, v in sorted(os.environ.items()) if k.startswith("RESTOREKIT_")},
    }
