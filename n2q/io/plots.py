"""Small matplotlib PNG writers: learning curves, confusion matrices, weight distributions.

Figures are built with the object API (``matplotlib.figure.Figure``) and rendered by Agg: no
pyplot global state, no GUI backend, safe to call from any thread. Kept small (low dpi) because
some of them are rewritten at every new best validation score.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# N2D2's histogram bin width for weight distributions (just under 1/128).
DISTRIB_BIN_WIDTH = 0.0078
MAX_BINS = 512


def _figure(width: float, height: float, layout: str | None = "constrained") -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path, dpi: int) -> None:
    figure.savefig(str(path), dpi=dpi, format="png")


def distribution_histogram(values: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(counts, bin edges) of N2D2's weight histogram: bins of 1/128 over [-1, 1] widened to
    every finite value, with a 0.05 margin (at most MAX_BINS bins)."""
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    data = data[np.isfinite(data)]
    low = min(float(data.min()) if data.size else 0.0, -1.0) - 0.05
    high = max(float(data.max()) if data.size else 0.0, 1.0) + 0.05
    nb_bins = int(min(max(round((high - low) / DISTRIB_BIN_WIDTH), 1), MAX_BINS))
    return np.histogram(data, bins=nb_bins, range=(low, high))


class _DistributionFigure:
    """One figure reused for every histogram: only the data, limits and texts change, which
    halves the cost of a plot (~20 ms). Drawn twice per quantized cell at every new best
    score. A lock keeps concurrent callers (threads) from sharing it mid-draw."""

    def __init__(self) -> None:
        from matplotlib.ticker import MaxNLocator

        self.figure = _figure(4.0, 3.0, layout=None)
        self.axes = self.figure.add_axes((0.16, 0.12, 0.8, 0.78))
        # bins are about one pixel wide: an outline keeps single-level spikes visible
        self.bars = self.axes.stairs([0.0], [0.0, 1.0], fill=True, edgecolor="C0",
                                     linewidth=0.8)
        self.shades: list[Any] = []
        self.axes.xaxis.set_major_locator(MaxNLocator(5))
        self.axes.yaxis.set_major_locator(MaxNLocator(4))
        self.axes.tick_params(labelsize=7)
        self.title = self.axes.set_title("", fontsize=9)
        self.stats = self.axes.text(0.66, 0.85, "", transform=self.axes.transAxes, fontsize=7)
        self.lock = threading.Lock()

    def draw(self, path: str | Path, data: np.ndarray, title: str) -> None:
        counts, edges = distribution_histogram(data)
        low, high = float(edges[0]), float(edges[-1])
        with self.lock:
            self.bars.set_data(counts, edges)
            for shade in self.shades:
                shade.remove()
            self.shades = [self.axes.axvspan(low, -1.0, color="0.85", zorder=0),
                           self.axes.axvspan(1.0, high, color="0.85", zorder=0)]
            self.axes.set_xlim(low, high)
            self.axes.set_ylim(0, max(int(counts.max(initial=0)), 1) * 1.05)
            self.title.set_text(title)
            self.stats.set_text(f"Average: {data.mean():.4g}\nStd. dev.: {data.std():.4g}"
                                if data.size > 1 else "")
            _save(self.figure, path, dpi=72)


_distribution_figure: _DistributionFigure | None = None


def plot_distribution(path: str | Path, values: np.ndarray | Sequence[float], title: str) -> None:
    """Histogram of weights as N2D2 draws it: the area outside [-1, 1] shaded, mean and
    standard deviation written."""
    global _distribution_figure
    if _distribution_figure is None:
        _distribution_figure = _DistributionFigure()
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    _distribution_figure.draw(path, data[np.isfinite(data)], title)


def plot_success(
    path: str | Path,
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "Learn batches seen",
    ylabel: str = "Success rate",
) -> None:
    """Learning curves: one line per named curve (``{"learning": (x, y), "validation": ...}``),
    x = learn batches seen, y = score in [0, 1]; the best point of each curve is marked and
    given in the legend."""
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    for name, (xs, ys) in curves.items():
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
        if x.size == 0:
            continue
        best = int(np.nanargmax(y)) if np.isfinite(y).any() else 0
        label = f"{name} (best {100 * y[best]:.2f}% at {x[best]:g})"
        (line,) = axes.plot(x, y, marker="." if x.size < 50 else None, label=label)
        axes.plot([x[best]], [y[best]], "o", color=line.get_color(), markersize=5)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if title:
        axes.set_title(title)
    if curves:
        axes.legend(loc="lower right")
    _save(figure, path, dpi=100)


def row_normalized(matrix: np.ndarray) -> np.ndarray:
    """Each row (target class) divided by its total; empty rows stay 0."""
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def plot_confusion_matrix(
    path: str | Path,
    matrix: np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "",
) -> None:
    """Confusion matrix: rows = target, columns = estimated; colours are row-normalized (per
    class recall), cells hold the counts (written while the matrix stays readable, <= 40
    classes)."""
    counts = np.asarray(matrix)
    n = counts.shape[0]
    size = float(min(max(4.0, 0.45 * n + 2.0), 24.0))
    figure = _figure(size, size)
    axes = figure.add_subplot()
    image = axes.imshow(row_normalized(counts), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, shrink=0.8, label="fraction of the target class")
    if n <= 40:
        normalized = row_normalized(counts)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    axes.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                              fontsize=7, color="white" if normalized[i, j] > 0.5 else "black")
    if n <= 100:
        ticks = np.arange(n)
        axes.set_xticks(ticks, [str(label) for label in labels], rotation=90, fontsize=7)
        axes.set_yticks(ticks, [str(label) for label in labels], fontsize=7)
    axes.set_xlabel("Estimated")
    axes.set_ylabel("Target")
    if title:
        axes.set_title(title)
    _save(figure, path, dpi=100)


def plot_curve(
    path: str | Path,
    x: Sequence[float],
    y: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    log_x: bool = False,
) -> None:
    """A single y(x) curve (learning-rate range test: loss against learning rate, log x)."""
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    axes.plot(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if log_x:
        axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if title:
        axes.set_title(title)
    _save(figure, path, dpi=100)
