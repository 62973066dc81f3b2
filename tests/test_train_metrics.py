"""The 13 metrics on a hand-made confusion matrix, N2D2's console block, top-N."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from n2q.train.metrics import (
    ConfusionMatrix,
    final_block,
    is_better,
    metrics_block,
    percent,
    top_n_correct,
)

# rows = target, columns = estimated; class 2 never is a target (only wrongly estimated)
COUNTS = np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])
# class 0: TP 3 FN 1 FP 0 TN 4 ; class 1: TP 2 FN 2 FP 1 TN 3 (worked out by hand)
MACRO = {
    "Sensitivity": (0.75 + 0.5) / 2, "Specificity": (1 + 0.75) / 2,
    "Precision": (1 + 2 / 3) / 2, "NegativePredictiveValue": (0.8 + 0.6) / 2,
    "MissRate": (0.25 + 0.5) / 2, "FallOut": (0 + 0.25) / 2,
    "FalseDiscoveryRate": (0 + 1 / 3) / 2, "FalseOmissionRate": (0.2 + 0.4) / 2,
    "IU": (0.75 + 0.4) / 2, "Accuracy": (7 / 8 + 5 / 8) / 2, "F1Score": (6 / 7 + 4 / 7) / 2,
    "Informedness": (0.75 + 0.25) / 2, "Markedness": (0.8 + (2 / 3 + 0.6 - 1)) / 2,
}


def test_macro_metrics_over_classes_seen() -> None:
    cm = ConfusionMatrix(COUNTS.copy())
    assert set(cm.macro()) == set(MACRO)  # N2D2's 13 metrics, written out above
    for name, value in MACRO.items():
        assert cm.score(name) == pytest.approx(value), name
    assert cm.recognition_rate() == pytest.approx(5 / 8)


def test_add_counts_target_estimated_pairs() -> None:
    cm = ConfusionMatrix.empty(3)
    cm.add(np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0, 0, 0, 1, 1, 1, 2, 2]))
    np.testing.assert_array_equal(cm.counts, COUNTS)


def test_zero_denominators_count_as_zero() -> None:
    cm = ConfusionMatrix(np.array([[0, 2], [0, 0]]))  # class 0 never estimated right
    per_class = cm.per_class()
    assert per_class["Precision"][0] == 0.0 and per_class["Sensitivity"][0] == 0.0
    assert ConfusionMatrix.empty(4).macro()["Sensitivity"] == 0.0


def test_percent_and_blocks_use_n2d2_layout() -> None:
    assert [percent(x) for x in (0.857, 0.9725, 0.97491, 1.0, 0.0)] == [
        "85.7", "97.25", "97.49", "100", "0"]
    cm = ConfusionMatrix(COUNTS.copy())
    assert final_block(cm).splitlines() == [
        "Final recognition rate: 62.5%    (error rate: 37.5%)",
        "    Sensitivity: 62.5% / Specificity: 87.5% / Precision: 83.33%",
        "    Accuracy: 75% / F1-score: 71.43% / Informedness: 50%",
    ]
    assert metrics_block(cm.macro()) == "\n".join(final_block(cm).splitlines()[1:])


def test_reference_run_final_block(reference: Path) -> None:
    """N2D2's own confusion matrix gives N2D2's own console numbers."""
    rows = np.loadtxt(reference / "n2d2-run-LeNet/softmax.Target/ConfusionMatrix_test.dat",
                      skiprows=1)
    cm = ConfusionMatrix.empty(10)
    for t, e, count, _ in rows:
        cm.counts[int(t), int(e)] = int(count)
    log = (reference / "n2d2-run-LeNet/console.log").read_text().splitlines()
    start = next(i for i, line in enumerate(log) if line.startswith("Final recognition"))
    assert final_block(cm).splitlines() == log[start:start + 3]


def test_better_is_lower_for_error_metrics() -> None:
    assert is_better("Sensitivity", 0.9, None) and is_better("Sensitivity", 0.9, 0.8)
    assert not is_better("Sensitivity", 0.8, 0.8)  # strictly
    assert is_better("MissRate", 0.1, 0.2) and not is_better("FallOut", 0.3, 0.2)


def test_top_n() -> None:
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.2, 0.3, 0.5]])
    targets = np.array([2, 1, 0])
    assert top_n_correct(scores, targets, 1) == 0
    assert top_n_correct(scores, targets, 2) == 2
    assert top_n_correct(scores, targets, 5) == 3
