"""What N2D2 writes in a target folder (``softmax.Target/``), in N2D2's formats.

- ``Success_learning.dat`` / ``Success_test.dat``: one line per batch, ``success average`` with
  4 significant digits; the learning average is over the last AVERAGE_WINDOW stimuli (N2D2's
  ``-ws`` default, 10000 = 78 batches of 128), the test average over everything so far.
- ``Success_validation.dat``: ``<learn batches seen> <score>`` per validation.
- ``ConfusionMatrix_<p>.dat``: ``target estimated # %`` rows (% of the target's stimuli).
- ``ConfusionMatrix_<p>_score.dat``: per-class Sensitivity ... IU, a blank line, ``- AVG``.
- ``Misclassified_<p>.dat``: ``# name target estimated count`` then ``id "name" t e 1`` by id.
Plots (.png, through n2q.io.plots) are drawn next to the .dat files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from n2q.train.metrics import SCORE_COLUMNS, ConfusionMatrix

AVERAGE_WINDOW = 10000  # stimuli of the learning success running average (N2D2's -ws)


def _g(x: float) -> str:
    """N2D2/C++ default stream formatting: 6 significant digits, no trailing zeros."""
    return f"{x:.6g}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class SuccessLog:
    """Per-batch successes of one partition and the running average N2D2 logs with them."""

    window: int | None = AVERAGE_WINDOW  # None: average over everything
    batches: list[tuple[int, int]] = field(default_factory=list)  # (correct, size)

    def add(self, correct: int, size: int) -> None:
        self.batches.append((correct, size))

    def averages(self) -> np.ndarray:
        """float64 [n]: the average logged with each batch, in one vectorized pass.

        Without a window: correct / stimuli so far. With one: the mean batch success over the
        last window // batch size batches (78 for 10000 / 128), as N2D2 computes it."""
        counts = np.array(self.batches, dtype=np.float64).reshape(-1, 2)
        if self.window is None:
            return np.cumsum(counts[:, 0]) / np.cumsum(counts[:, 1])
        success = counts[:, 0] / counts[:, 1]
        cumulative = np.concatenate([[0.0], np.cumsum(success)])
        index = np.arange(len(success))
        span = np.maximum(1, self.window // np.maximum(1, counts[:, 1].astype(np.int64)))
        first = np.maximum(0, index - span + 1)
        return (cumulative[index + 1] - cumulative[first]) / (index + 1 - first)

    def running_average(self, i: int) -> float:
        """The average logged with batch i (see ``averages``), in O(window) for the bar."""
        if self.window is None:
            done = self.batches[: i + 1]
            return sum(c for c, _ in done) / sum(n for _, n in done)
        span = max(1, self.window // max(1, self.batches[i][1]))
        recent = self.batches[max(0, i - span + 1): i + 1]
        return sum(c / n for c, n in recent) / len(recent)

    def lines(self) -> list[str]:
        averages = self.averages()
        return [f"{correct / size:.4g} {avg:.4g}"
                for (correct, size), avg in zip(self.batches, averages, strict=True)]


class TargetReport:
    """The files of one target folder; ``folder`` is named after the target section.

    The .dat files are written at once. With ``defer_plots`` (during learning, where drawing
    every figure at every log point would cost more than a small network's epoch) the .png
    files are only remembered, latest request per file, and drawn by ``flush_plots()``.
    """

    def __init__(self, folder: str | Path, labels: Sequence[str]):
        self.folder = Path(folder)
        self.labels = list(labels)
        self.validation: list[tuple[int, float]] = []
        self.defer_plots = False
        self._deferred: dict[str, Callable[[], None]] = {}

    def _plot(self, name: str, draw: Callable[[], None]) -> None:
        if self.defer_plots:
            self._deferred[name] = draw
        else:
            draw()

    def flush_plots(self) -> None:
        for draw in self._deferred.values():
            draw()
        self._deferred.clear()

    def _path(self, name: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def label(self, i: int) -> str:
        return self.labels[i] if i < len(self.labels) else str(i)

    # -- success curves ------------------------------------------------------------------------
    def write_success(self, partition: str, log: SuccessLog) -> None:
        lines = log.lines()
        _write_atomic(self._path(f"Success_{partition}.dat"), "".join(x + "\n" for x in lines))
        values = np.array([[float(v) for v in x.split()] for x in lines]).reshape(-1, 2)
        xs = np.arange(1, len(values) + 1)
        from n2q.io.plots import plot_success

        path = self._path(f"Success_{partition}.png")
        self._plot(path.name, lambda: plot_success(
            path, {"batch success": (xs, values[:, 0]), "average": (xs, values[:, 1])},
            title=f"{self.folder.name}: {partition} success", xlabel="batches"))

    def add_validation(self, learn_batches: int, score: float, metric: str) -> None:
        self.validation.append((learn_batches, score))
        _write_atomic(self._path("Success_validation.dat"),
                      "".join(f"{x} {_g(y)}\n" for x, y in self.validation))
        from n2q.io.plots import plot_success

        path = self._path("Success_validation.png")
        curve = {f"validation [{metric}]": ([x for x, _ in self.validation],
                                            [y for _, y in self.validation])}
        self._plot(path.name, lambda: plot_success(
            path, curve, title=f"{self.folder.name}: validation score"))

    # -- confusion matrix ----------------------------------------------------------------------
    def write_confusion(self, partition: str, cm: ConfusionMatrix) -> None:
        counts = cm.counts
        rows = counts.sum(axis=1)
        lines = ["target estimated # %"]
        for t in range(cm.nb_classes):
            for e in range(cm.nb_classes):
                pct = counts[t, e] / rows[t] if rows[t] else 0.0
                lines.append(f"{t} {e} {counts[t, e]} {_g(pct)}")
        _write_atomic(self._path(f"ConfusionMatrix_{partition}.dat"), "\n".join(lines) + "\n")
        _write_atomic(self._path(f"ConfusionMatrix_{partition}_score.dat"), self._scores(cm))
        from n2q.io.plots import plot_confusion_matrix

        path = self._path(f"ConfusionMatrix_{partition}.png")
        counts = cm.counts.copy()
        labels = [self.label(i) for i in range(cm.nb_classes)]
        self._plot(path.name, lambda: plot_confusion_matrix(
            path, counts, labels, title=f"{self.folder.name}: {partition}"))

    def _scores(self, cm: ConfusionMatrix) -> str:
        per_class = cm.per_class()
        macro = cm.macro()
        head = "Target TargetName " + " ".join(title for title, _ in SCORE_COLUMNS)
        lines = [head]
        for c in np.flatnonzero(cm.seen()):
            values = " ".join(_g(per_class[key][c]) for _, key in SCORE_COLUMNS)
            lines.append(f'{c} "{self.label(int(c))}" {values}')
        lines.append("")
        lines.append("- AVG " + " ".join(_g(macro[key]) for _, key in SCORE_COLUMNS))
        return "\n".join(lines) + "\n"

    # -- labels --------------------------------------------------------------------------------
    def write_labels_mapping(self, names: Sequence[str], outputs: Sequence[int],
                             counts: dict[str, np.ndarray]) -> None:
        """``labels_mapping.log.dat``: per data base label its output and its stimuli per
        partition (``counts[partition]`` int [labels]); n2q has no ROIs (0)."""
        partitions = ("Learn", "Validation", "Test")
        lines = ["label name output " + " ".join(f"nb.stimuli({p})" for p in partitions)
                 + " " + " ".join(f"nb.ROIs({p})" for p in partitions)]
        for i, name in enumerate(names):
            stimuli = " ".join(str(int(counts[p][i])) for p in partitions)
            lines.append(f'{i} "{name}" {outputs[i]} {stimuli} 0 0 0')
        _write_atomic(self._path("labels_mapping.log.dat"), "\n".join(lines) + "\n")

    # -- misclassified -------------------------------------------------------------------------
    def write_misclassified(self, partition: str,
                            rows: Sequence[tuple[int, str, int, int]]) -> None:
        """``rows``: (stimulus id, stimulus name, target, estimated) of each error."""
        lines = ["# name target estimated count"]
        lines += [f'{sid} "{name}" {t} {e} 1' for sid, name, t, e in sorted(rows)]
        _write_atomic(self._path(f"Misclassified_{partition}.dat"), "\n".join(lines) + "\n")
