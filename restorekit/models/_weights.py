"""Weights files: safetensors tensors plus metadata that says how to rebuild the model. Never pickles.

Metadata keys (all values are strings; structured ones are JSON):
    ``format``           ``restorekit-weights/1``
    ``name``             ``arch_variant.tag``
    ``architecture``     registered architecture name (``arch_variant``)
    ``hyperparameters``  JSON of the constructor arguments
    ``recipe``           the training recipe (YAML text)
    ``training``         JSON: data, iterations, device, wall time, date, code version
    ``quality``          JSON: measured quality (dataset → σ → PSNR)
    ``license``          licence of the weights
    ``omega``            tunable models only, JSON: what each interactive parameter ω_i does, the domain of ω
                         and the training objective that gives them that meaning

The shipped models. ``manifest.json`` beside the weights (:data:`MANIFEST`) is the list of the trained models that
ship: a file it names is a model (``<arch_variant.tag>.safetensors``), any other file in the folder is not. Each entry
holds the file's SHA-256 and size. :func:`save_model` adds the file it writes into the shipped folder (publishing a
model); ``python -m restorekit.models._weights`` rewrites the listed files' entries (:func:`write_manifest`); a test
keeps them equal to the files. Loading a shipped file checks it
against the manifest — its size always, its SHA-256 once per size and modification time (remembered in
``$RESTOREKIT_CACHE_DIR/weights-verified.json``, so start-up stays fast) — and refuses a file that differs, or
that the manifest does not list. Every weights file, shipped or not, is refused when a tensor holds NaN or Inf,
and a file whose tensors do not fit its architecture is refused with the name of the tensor that differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from restorekit._cache import cache_root
from restorekit._checks import fail
from restorekit.errors import WeightsError
from restorekit.models._architectures import architecture
from restorekit.models._base import Model

FORMAT = "restorekit-weights/1"
REQUIRED_KEYS = ("format", "name", "architecture", "hyperparameters")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "restorekit-weights-manifest/1"
VERIFIED_CACHE = "weights-verified.json"


def weights_dir() -> Path:
    """The folder of shipped weights (the installed ``restorekit_weights`` package)."""
    return Path(str(resources.files("restorekit_weights")))


def shipped() -> dict[str, Path]:
    """Shipped trained models, as the manifest lists them: ``arch_variant.tag`` → weights path."""
    folder = weights_dir()
    return {name.removesuffix(".safetensors"): folder / name for name in read_manifest(folder)}


def shipped_path(name: str) -> Path:
    """Path of the shipped weights for ``name``, or a :class:`WeightsError` listing the valid names."""
    models = shipped()
    if name not in models:
        fail("model", "a shipped model name", name, valid=sorted(models), error=WeightsError)
    return models[name]


def save_model(model: nn.Module, path: str | Path, name: str, **metadata: Any) -> None:
    """Write ``model``'s weights and metadata to ``path`` (safetensors).

    Args:
        model: A registered architecture's model (it carries ``hyperparameters``).
        path: Destination file.
        name: ``arch_variant.tag``.
        **metadata: ``recipe`` (str), ``training``, ``quality`` (JSON-able), ``license`` (str).
    """
    header = {
        "format": FORMAT,
        "name": name,
        "architecture": name.split(".")[0],
        "hyperparameters": json.dumps(model.hyperparameters),
    }
    for key, value in metadata.items():
        header[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(save(tensors, metadata=header))  # a plain write, so the umask sets the mode (save_file: 0600)
    tmp.replace(path)
    if _shipped_folder(path):
        write_manifest(path.parent, add=[path.name])


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"sha256": …, "size": …}`` of a file (its manifest entry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "size": Path(path).stat().st_size}


def build_manifest(folder: str | Path | None = None, add: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest of ``folder`` (default: the shipped folder) as its files are now: the SHA-256 and size of each
    file its manifest lists (none where it has none yet), and of the files named in ``add``.

    Raises:
        WeightsError: A listed or added file is missing.
    """
    folder = Path(folder) if folder is not None else weights_dir()
    names = sorted({*(read_manifest(folder) if (folder / MANIFEST).is_file() else {}), *add})
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise WeightsError(f"weights manifest {folder / MANIFEST} lists missing files: {', '.join(missing)}")
    return {"format": MANIFEST_FORMAT, "files": {name: file_record(folder / name) for name in names}}


def write_manifest(folder: str | Path | None = None, add: Sequence[str] = ()) -> Path:
    """Write ``manifest.json`` of ``folder`` (default: the shipped folder), listing what it lists and ``add``
    (file names in ``folder``), each with its SHA-256 and size as the file is now; its path."""
    folder = Path(folder) if folder is not None else weights_dir()
    path = folder / MANIFEST
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(build_manifest(folder, add), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """File name → ``{"sha256", "size"}`` from the manifest of ``folder`` (default: the shipped folder).

    Raises:
        WeightsError: The manifest is missing or unreadable.
    """
    path = (Path(folder) if folder is not None else weights_dir()) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"weights manifest {path} is missing or unreadable ({exc}); reinstall restorekit") from None
    return files


def _shipped_folder(path: Path) -> bool:
    """Whether ``path`` lies in the shipped weights folder."""
    try:
        return path.resolve().parent == weights_dir().resolve()
    except (OSError, ModuleNotFoundError):
        return False


def verify_shipped(path: str | Path) -> None:
    """Check a shipped weights file against the manifest: its size, and its SHA-256 unless this size and
    modification time were verified before (see the module docstring).

    Raises:
        WeightsError: The manifest does not list the file, or the file differs from its entry.
    """
    path = Path(path).resolve()
    expected = read_manifest(path.parent).get(path.name)
    if expected is None:
        raise WeightsError(
            f"weights file {path} is not listed in {MANIFEST}; regenerate it (python -m restorekit.models._weights)"
        )
    stat = path.stat()
    if stat.st_size != expected.get("size"):
        raise WeightsError(
            f"weights file {path} is damaged: {stat.st_size} bytes, {MANIFEST} lists {expected.get('size')} "
            "(reinstall restorekit)"
        )
    key, stamp = str(path), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": expected.get("sha256")}
    cache = _verified()
    if cache.get(key) == stamp:
        return
    digest = file_record(path)["sha256"]
    if digest != expected.get("sha256"):
        raise WeightsError(
            f"weights file {path} is damaged: its SHA-256 {digest[:16]}… differs from {MANIFEST} "
            f"({str(expected.get('sha256'))[:16]}…; reinstall restorekit)"
        )
    cache[key] = stamp
    _remember(cache)


def _cache_path() -> Path:
    """Where verified weights files are remembered (``$RESTOREKIT_CACHE_DIR``, else the user cache folder)."""
    return cache_root() / VERIFIED_CACHE


def _verified() -> dict[str, Any]:
    """The verified files remembered: path → ``{"size", "mtime_ns", "sha256"}`` (empty where unreadable)."""
    try:
        cache = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _remember(cache: dict[str, Any]) -> None:
    """Write the verified files back (a folder that cannot be written only costs the next start-up a hash)."""
    path = _cache_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        tmp.replace(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a weights file, JSON fields decoded."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:
        raise WeightsError(f"weights file {path} is corrupted or not safetensors: {exc}") from None
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing or raw.get("format") != FORMAT:
        raise WeightsError(f"weights file {path}: expected {FORMAT} metadata, missing {missing or 'format'}")
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            meta[key] = json.loads(value) if key in ("hyperparameters", "training", "quality", "omega") else value
        except json.JSONDecodeError:
            raise WeightsError(f"weights file {path}: metadata {key!r} is not valid JSON") from None
    return meta


def load_model(path: str | Path) -> Model:
    """Build the model a weights file describes and load its tensors strictly.

    A shipped file is first checked against the manifest (:func:`verify_shipped`); every file's tensors must be
    finite and fit the architecture built from its hyper-parameters.

    Raises:
        WeightsError: A missing, damaged or mismatched file (the message names the tensor that differs), or a
            tensor with NaN or Inf values.
    """
    if _shipped_folder(Path(path)) and Path(path).is_file():
        verify_shipped(path)
    meta = read_metadata(path)
    family = architecture(meta["architecture"]).family
    try:
        model = family(**meta["hyperparameters"])
    except TypeError as exc:
        raise WeightsError(f"weights file {path}: hyper-parameters do not fit {family.__name__}: {exc}") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as exc:
        raise WeightsError(f"weights file {path} is corrupted: {exc}") from None
    _check_state(path, meta["architecture"], model.state_dict(), state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        detail = next((line for line in lines[1:] if line), lines[0])
        raise WeightsError(f"weights file {path} does not match {meta['architecture']}: {detail}") from None
    model.name = meta["name"]
    model.metadata = meta
    return model


def _check_state(
    path: str | Path, name: str, expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> None:
    """Refuse tensors that do not fit the model (naming the first that differs) or hold NaN or Inf."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = [f"{label} {', '.join(keys[:3])}{' …' * (len(keys) > 3)}" for label, keys in
                 (("missing tensors", missing), ("unexpected tensors", unexpected)) if keys]  # fmt: skip
        raise WeightsError(f"weights file {path} does not match {name}: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"weights file {path} does not match {name}: tensor {key!r} has shape {tuple(tensor.shape)} in "
                f"the file, {tuple(expected[key].shape)} in a {name} built from its hyper-parameters (width, …)"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"weights file {path} is corrupt: tensor {key!r} holds NaN or Inf values")


def describe(path: str | Path) -> dict[str, Any]:
    """Metadata plus parameter count, for ``restorekit models``."""
    meta = read_metadata(path)
    with safe_open(str(path), framework="pt") as f:
        meta["parameters"] = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    return meta


if __name__ == "__main__":  # python -m restorekit.models._weights [FOLDER [FILE …]]: rewrite, and list FILEs too
    print(write_manifest(sys.argv[1] if len(sys.argv) > 1 else None, add=sys.argv[2:]))
