"""The AWGN protocol: seeded per file name and σ, float (unclipped) versus file (clipped, 8-bit)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from restorekit.bench.noise import add_noise, seed_for
from restorekit.errors import UsageError

CLEAN = np.linspace(0, 1, 32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3)


def test_seed_is_crc32_of_name_and_sigma():
    assert seed_for("kodim01.png", 25) == zlib.crc32(b"kodim01.png|25")
    assert seed_for("kodim01.png", 25.0) == seed_for("kodim01.png", 25)
    assert seed_for("kodim01.png", 12.5) == zlib.crc32(b"kodim01.png|12.5")


def test_noise_is_the_documented_draw():
    rng = np.random.default_rng(zlib.crc32(b"a.png|25"))
    expected = CLEAN + rng.standard_normal(CLEAN.shape, dtype=np.float32) * np.float32(25 / 255)
    np.testing.assert_array_equal(add_noise(CLEAN, "a.png", 25, "float"), expected)


def test_deterministic_and_distinct_per_name_and_sigma():
    first = add_noise(CLEAN, "a.png", 25, "float")
    np.testing.assert_array_equal(first, add_noise(CLEAN, "a.png", 25, "float"))
    assert not np.array_equal(first, add_noise(CLEAN, "b.png", 25, "float"))
    assert not np.array_equal(first - CLEAN, (add_noise(CLEAN, "a.png", 15, "float") - CLEAN) * 25 / 15)
    assert first.dtype == np.float32 and first.shape == CLEAN.shape


def test_file_protocol_is_the_float_input_clipped_and_rounded():
    noisy = add_noise(CLEAN, "a.png", 50, "float")
    stored = add_noise(CLEAN, "a.png", 50, "file")
    assert noisy.min() < 0 and noisy.max() > 1
    assert stored.min() >= 0 and stored.max() <= 1
    np.testing.assert_allclose(stored * 255, np.round(stored * 255), atol=1e-4)
    np.testing.assert_allclose(stored, np.round(np.clip(noisy, 0, 1) * 255) / 255, atol=1e-7)


def test_zero_sigma_and_bad_arguments():
    np.testing.assert_array_equal(add_noise(CLEAN, "a.png", 0, "float"), CLEAN)
    with pytest.raises(UsageError, match="protocol"):
        add_noise(CLEAN, "a.png", 25, "jpeg")
    with pytest.raises(UsageError, match="sigma"):
        add_noise(CLEAN, "a.png", -1, "float")
