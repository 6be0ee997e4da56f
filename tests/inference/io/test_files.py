"""Tests for restorekit.inference.io.files: missing, unreadable and forbidden inputs give one line."""

from __future__ import annotations

import os
import stat

import pytest

from restorekit.errors import InputError
from restorekit.inference.io import files, load_image
from tests.inference.io.conftest import one_line_error, random_samples, write_source


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file") as excinfo:
        load_image(tmp_path / "missing.png")
    one_line_error(excinfo, tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory") as excinfo:
        load_image(tmp_path)
    one_line_error(excinfo, tmp_path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = write_source(tmp_path / "locked.png", random_samples(3, 8), has_alpha=False)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_permission_denied_reading_as_any_user(tmp_path, monkeypatch):
    path = write_source(tmp_path / "locked.png", random_samples(3, 8), has_alpha=False)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "open", denied, raising=False)  # the module's built-in open
    with pytest.raises(InputError, match="permission denied") as excinfo:
        load_image(path)
    one_line_error(excinfo, path)
