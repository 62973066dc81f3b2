"""Plots (spec/cli.md): learning curves, confusion matrices, weight distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from n2q.io.plots import (
    DISTRIB_BIN_WIDTH,
    distribution_histogram,
    plot_confusion_matrix,
    plot_curve,
    plot_distribution,
    plot_success,
    row_normalized,
)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_row_normalized() -> None:
    matrix = np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    assert row_normalized(matrix).tolist() == [[0.75, 0.25, 0.0], [0.0, 0.0, 0.0],
                                               [0.25, 0.25, 0.5]]


def test_distribution_histogram_uses_n2d2_bins() -> None:
    counts, edges = distribution_histogram([-0.5, 0.0, 0.0, 0.5, 2.0])
    assert edges[0] == pytest.approx(-1.05) and edges[-1] == pytest.approx(2.05)
    assert np.diff(edges).mean() == pytest.approx(DISTRIB_BIN_WIDTH, rel=0.01)
    assert counts.sum() == 5
    assert counts[np.searchsorted(edges, 0.0, side="right") - 1] == 2
    # an outlier far away does not explode the number of bins
    assert len(distribution_histogram([1e6])[0]) <= 512


def test_plots_write_pngs(tmp_path: Path) -> None:
    plot_success(tmp_path / "Success_validation.png",
                 {"learning": ([100, 200, 300], [0.5, 0.8, 0.9]),
                  "validation": ([100, 200, 300], [0.6, 0.85, 0.84])}, title="softmax")
    plot_confusion_matrix(tmp_path / "ConfusionMatrix_test.png",
                          np.array([[5, 1], [0, 7]]), ["0", "1"], title="test")
    plot_distribution(tmp_path / "conv1_weights.distrib.png", np.random.randn(1000) * 0.3,
                      "conv1 weights")
    plot_curve(tmp_path / "find_lr.png", [1e-6, 1e-3, 1.0], [2.3, 1.0, 9.0], xlabel="lr",
               ylabel="loss", log_x=True)
    assert png_size(tmp_path / "Success_validation.png") == (600, 400)
    assert png_size(tmp_path / "conv1_weights.distrib.png") == (288, 216)
    width, height = png_size(tmp_path / "ConfusionMatrix_test.png")
    assert width == height
    assert png_size(tmp_path / "find_lr.png") == (600, 400)


def test_large_confusion_matrix_stays_bounded(tmp_path: Path) -> None:
    counts = np.random.default_rng(0).integers(0, 5, size=(200, 200))
    plot_confusion_matrix(tmp_path / "cm.png", counts, [str(i) for i in range(200)])
    assert max(png_size(tmp_path / "cm.png")) <= 2400
