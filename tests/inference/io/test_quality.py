"""Tests for restorekit.inference.io.quality: a JPEG's quality estimated, and an output's chosen."""

from __future__ import annotations

import pytest
from PIL import Image as PILImage

from restorekit.errors import UsageError
from restorekit.inference.io import load_image, save_image
from tests.inference.io.conftest import random_samples, rgb_image


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 83, 90, 95, 100])
def test_jpeg_quality_is_estimated_from_the_quantisation_tables(tmp_path, quality):
    for subsampling in (0, 2):
        path = tmp_path / f"q{quality}_{subsampling}.jpg"
        PILImage.fromarray(random_samples(3, 8)).save(path, quality=quality, subsampling=subsampling)
        assert load_image(path).quality == quality
    gray = tmp_path / "gray.jpg"
    PILImage.fromarray(random_samples(1, 8)[..., 0]).save(gray, quality=quality)
    assert load_image(gray).quality == quality


def test_jpeg_output_quality_follows_the_source_unless_given(tmp_path):
    source = tmp_path / "in.jpg"
    PILImage.fromarray(random_samples(3, 8)).save(source, quality=62)
    image = load_image(source)
    save_image(image, tmp_path / "same.jpg")
    save_image(image, tmp_path / "given.jpg", quality=88)
    save_image(rgb_image(), tmp_path / "default.jpg")
    assert [load_image(tmp_path / f"{name}.jpg").quality for name in ("same", "given", "default")] == [62, 88, 95]
    assert load_image(tmp_path / "same.jpg").quality == 62
    with pytest.raises(UsageError, match="quality"):
        save_image(image, tmp_path / "bad.jpg", quality=101)
