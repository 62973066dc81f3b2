"""Shared fixtures: where the real data and the N2D2 reference corpus are (CI sets both)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _folder(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value and Path(value).is_dir() else None


@pytest.fixture
def test_data() -> Path:
    """The folder holding real data sets (``mnist/``...): ``$N2Q_TEST_DATA``."""
    folder = _folder("N2Q_TEST_DATA")
    if folder is None:
        pytest.skip("real data not available: set N2Q_TEST_DATA to a folder holding mnist/")
    return folder


@pytest.fixture
def reference() -> Path:
    """N2D2 reference material (n2d2-models/, n2d2-run-LeNet/): ``$N2Q_TEST_REFERENCE``."""
    folder = _folder("N2Q_TEST_REFERENCE")
    if folder is None:
        pytest.skip("N2D2 reference corpus not available: set N2Q_TEST_REFERENCE")
    return folder


@pytest.fixture(autouse=True)
def _isolated_data_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own $N2Q_DATA / $N2Q_MODELS never leak into tests: each test that needs a
    data root sets it (to tmp_path or to the real data of N2Q_TEST_DATA)."""
    for name in ("N2Q_DATA", "N2D2_DATA", "N2Q_MODELS", "N2D2_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
