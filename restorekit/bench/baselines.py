"""Peer denoisers that users would otherwise reach for, declared as benchmark :class:`Method` s.

* ``cbm3d`` — BM3D/CBM3D (``bm3d`` package, the ``baselines`` extra): ``bm3d_rgb`` with its defaults
  (``np`` profile, opponent colour space) on colour, ``bm3d`` on gray; told σ/255. Free for
  **non-commercial use only** (Tampere University licence).
* ``opencv_nlm`` — OpenCV ``fastNlMeansDenoisingColored`` (colour; RGB is passed as the BGR OpenCV
  expects) or ``fastNlMeansDenoising`` (gray), 7×7 templates, 21×21 search (OpenCV's defaults). OpenCV
  reads 8-bit images only, so it gets the noisy input clipped and rounded to 8 bits under either protocol.
  Filter strength ``h = 0.6·σ`` (colour, ``hColor = h``) and ``h = 0.9·σ`` (gray): measured on 4 images of
  Kodak24 and Set12 at σ = 15, 25, 50 over h ∈ [0.35σ, 1.2σ]; colour 0.6σ was best at every σ, gray 0.9σ
  is within 0.55 dB of the best at every σ (the best moves from 1.1σ at σ = 15 to 0.8σ at σ = 50).
* ``skimage_nlm`` — scikit-image ``denoise_nl_means`` with ``fast_mode=True``, ``sigma = σ/255``,
  ``h = 0.6·σ/255``, ``patch_size=5``, ``patch_distance=6``: the scikit-image gallery's "fast, σ
  provided" setting (its 0.8σ goes with the slow mode; 0.6σ measured 0.45–0.7 dB better on Kodak24 at
  σ = 15, 25, 50 and within 0.3 dB on Set12).

All three need σ: with ``--sigma-mode true`` they get the true σ, with ``estimate`` the shared estimate.
"""

from __future__ import annotations

import numpy as np

from restorekit._checks import check_choice
from restorekit.bench.methods import Method, RunFn

OPENCV_H = {3: 0.6, 1: 0.9}
SKIMAGE_H = 0.6


def _to_uint8(noisy: np.ndarray) -> np.ndarray:
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def _cbm3d(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
    import bm3d

    s = sigma / 255
    out = bm3d.bm3d_rgb(noisy, s) if noisy.shape[-1] == 3 else bm3d.bm3d(noisy[..., 0], s)
    return np.asarray(out, dtype=np.float32).reshape(noisy.shape)


def _opencv_nlm(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
    import cv2

    h = OPENCV_H[noisy.shape[-1]] * sigma
    image = _to_uint8(noisy)
    if noisy.shape[-1] == 3:
        bgr = np.ascontiguousarray(image[..., ::-1])
        out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)[..., ::-1]
    else:
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(image[..., 0]), None, h, 7, 21)
    return (out.astype(np.float32) / 255).reshape(noisy.shape)


def _skimage_nlm(noisy: np.ndarray, sigma: float | None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    s = sigma / 255
    out = denoise_nl_means(
        noisy, h=SKIMAGE_H * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=-1
    )
    return np.asarray(out, dtype=np.float32).reshape(noisy.shape)


def _peer(name: str, run: RunFn, package: str, reads: str, terms: str, settings: str) -> Method:
    """A peer: gray and colour, told σ; ``reads`` is its input type, ``terms`` its licence."""
    return Method(name, "peer", (1, 3), True, reads, terms, settings, run, package)


PEERS = {
    "cbm3d": _peer(
        "cbm3d",
        _cbm3d,
        "bm3d",
        "float32",
        "non-commercial use only (bm3d, Tampere University)",
        "bm3d_rgb / bm3d defaults (profile 'np', opponent colour), sigma_psd = σ/255",
    ),
    "opencv_nlm": _peer(
        "opencv_nlm",
        _opencv_nlm,
        "cv2",
        "uint8",
        "Apache-2.0 (OpenCV)",
        "fastNlMeansDenoising[Colored], h = hColor = 0.6σ colour, h = 0.9σ gray, template 7, search 21",
    ),
    "skimage_nlm": _peer(
        "skimage_nlm",
        _skimage_nlm,
        "skimage",
        "float32",
        "BSD-3-Clause (scikit-image)",
        "denoise_nl_means fast_mode, sigma = σ/255, h = 0.6σ/255, patch 5, distance 6",
    ),
}


def peers(names: list[str]) -> tuple[list[Method], list[dict[str, str]]]:
    """The peers called ``names`` that can run here, and a skip record for each that cannot.

    Args:
        names: Peer names (keys of :data:`PEERS`).

    Returns:
        ``(available, skipped)``; each skip record is ``{"method": name, "reason": …}``.

    Example:
        >>> [m.name for m in peers(["opencv_nlm"])[0]]
        ['opencv_nlm']
    """
    available, skipped = [], []
    for name in names:
        check_choice(name, list(PEERS), "peer")
        method = PEERS[name]
        if method.available():
            available.append(method)
        else:
            skipped.append({"method": name, "reason": f"package {method.package!r} is not installed"})
    return available, skipped
