"""Peer denoisers: declarations, output contract, and clean skipping when a package is missing."""

from __future__ import annotations

import numpy as np
import pytest

from restorekit.bench import methods
from restorekit.bench.baselines import PEERS, peers
from restorekit.bench.noise import add_noise
from restorekit.errors import UsageError
from restorekit.inference.metrics import psnr


def _clean(channels: int) -> np.ndarray:
    y, x = np.mgrid[0:32, 0:48] / 48
    return np.stack([0.5 + 0.3 * np.sin(4 * x + c) * np.cos(3 * y) for c in range(channels)], -1).astype(np.float32)


def test_declarations():
    assert set(PEERS) == {"cbm3d", "opencv_nlm", "skimage_nlm"}
    assert "non-commercial" in PEERS["cbm3d"].license
    assert PEERS["opencv_nlm"].input == "uint8"
    for peer in PEERS.values():
        assert peer.kind == "peer" and peer.needs_sigma and peer.channels == (1, 3)
        assert set(peer.describe()) >= {"name", "kind", "channels", "needs_sigma", "input", "license", "settings"}


@pytest.mark.parametrize("name", ["opencv_nlm", "skimage_nlm"])
@pytest.mark.parametrize("channels", [1, 3])
def test_peer_denoises(name: str, channels: int):
    clean = _clean(channels)
    noisy = add_noise(clean, "x.png", 25, "float")
    out = PEERS[name].run(noisy, 25.0)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert psnr(np.clip(out, 0, 1), clean) > psnr(noisy, clean) + 3


def test_cbm3d_denoises_colour():
    pytest.importorskip("bm3d")
    clean = _clean(3)
    noisy = add_noise(clean, "x.png", 25, "float")
    out = PEERS["cbm3d"].run(noisy, 25.0)
    assert out.shape == noisy.shape and psnr(np.clip(out, 0, 1), clean) > psnr(noisy, clean) + 3


def test_missing_package_is_skipped(monkeypatch: pytest.MonkeyPatch):
    real = methods.find_spec
    monkeypatch.setattr(methods, "find_spec", lambda name: None if name == "bm3d" else real(name))
    available, skipped = peers(["cbm3d", "opencv_nlm"])
    assert [m.name for m in available] == ["opencv_nlm"]
    assert skipped == [{"method": "cbm3d", "reason": "package 'bm3d' is not installed"}]


def test_unknown_peer():
    with pytest.raises(UsageError, match="valid: cbm3d, opencv_nlm, skimage_nlm"):
        peers(["bm4d"])
