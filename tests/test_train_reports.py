"""Target folder files in N2D2's formats, checked against the real N2D2 run when available."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from n2q.train.metrics import ConfusionMatrix
from n2q.train.reports import SuccessLog, TargetReport

REF = "n2d2-run-LeNet/softmax.Target"
LABELS = [str(i) for i in range(10)]


def reference_confusion(folder: Path, partition: str) -> ConfusionMatrix:
    rows = np.loadtxt(folder / f"ConfusionMatrix_{partition}.dat", skiprows=1)
    cm = ConfusionMatrix.empty(10)
    for t, e, count, _ in rows:
        cm.counts[int(t), int(e)] = int(count)
    return cm


@pytest.mark.parametrize("partition", ["test", "validation", "learning"])
def test_confusion_files_are_byte_identical_to_n2d2(reference: Path, tmp_path: Path,
                                                   partition: str) -> None:
    ref = reference / REF
    report = TargetReport(tmp_path / "softmax.Target", LABELS)
    report.write_confusion(partition, reference_confusion(ref, partition))
    for name in (f"ConfusionMatrix_{partition}.dat", f"ConfusionMatrix_{partition}_score.dat"):
        assert (tmp_path / "softmax.Target" / name).read_text() == (ref / name).read_text()
    assert (tmp_path / "softmax.Target" / f"ConfusionMatrix_{partition}.png").stat().st_size > 0


def test_learning_success_running_average_matches_n2d2(reference: Path, tmp_path: Path) -> None:
    """N2D2 averages the learning success over its last 10000 stimuli (78 batches of 128)."""
    lines = (reference / REF / "Success_learning.dat").read_text().splitlines()
    log = SuccessLog()
    for line in lines:
        log.add(round(float(line.split()[0]) * 128), 128)
    ours = np.array([[float(v) for v in x.split()] for x in log.lines()])
    theirs = np.array([[float(v) for v in x.split()] for x in lines])
    np.testing.assert_allclose(ours, theirs, atol=1.5e-4)  # their values have 4 digits


def test_test_success_average_is_cumulative(tmp_path: Path) -> None:
    log = SuccessLog(window=None)
    for correct, size in ((100, 128), (128, 128), (70, 80)):
        log.add(correct, size)
    assert log.lines() == ["0.7812 0.7812", "1 0.8906", "0.875 0.8869"]  # 298/336 = 0.88690...
    report = TargetReport(tmp_path / "t.Target", LABELS)
    report.write_success("test", log)
    assert (tmp_path / "t.Target/Success_test.dat").read_text().splitlines() == log.lines()
    assert (tmp_path / "t.Target/Success_test.png").exists()


def test_validation_curve_and_misclassified(tmp_path: Path) -> None:
    report = TargetReport(tmp_path / "softmax.Target", LABELS)
    report.add_validation(50, 0.856990, "Sensitivity")
    report.add_validation(100, 0.9345591, "Sensitivity")
    folder = tmp_path / "softmax.Target"
    assert (folder / "Success_validation.dat").read_text() == "50 0.85699\n100 0.934559\n"
    report.write_misclassified("test", [(8089, "t10k[00089]", 6, 0), (8110, "t10k[00110]", 7, 9)])
    assert (folder / "Misclassified_test.dat").read_text() == (
        '# name target estimated count\n8089 "t10k[00089]" 6 0 1\n8110 "t10k[00110]" 7 9 1\n')


def test_score_file_skips_classes_never_seen(tmp_path: Path) -> None:
    report = TargetReport(tmp_path / "x.Target", ["cat", "dog", "emu"])
    report.write_confusion("test", ConfusionMatrix(np.array([[3, 1, 0], [0, 2, 2], [0, 0, 0]])))
    lines = (tmp_path / "x.Target/ConfusionMatrix_test_score.dat").read_text().splitlines()
    assert lines[1].startswith('0 "cat" 0.75 1 1 0.875 0.857143 0.75 0.75')
    assert lines[2].startswith('1 "dog" 0.5 0.75 0.666667 0.625 0.571429 0.25 0.4')
    assert lines[3] == "" and lines[4].startswith("- AVG 0.625 0.875 0.833333")
    assert len(lines) == 5


@pytest.mark.parametrize("window", [None, 300])
def test_running_average_agrees_with_the_vectorized_lines(window: int | None) -> None:
    log = SuccessLog(window)
    rng = np.random.default_rng(3)
    for _ in range(40):
        size = int(rng.integers(50, 101))
        log.add(int(rng.integers(0, size + 1)), size)
    averages = log.averages()
    for i in (0, 5, 39):
        assert log.running_average(i) == pytest.approx(averages[i])
    if window is not None:  # batch 39: the mean success of its last 300 // size batches
        span = 300 // log.batches[39][1]
        want = np.mean([c / n for c, n in log.batches[40 - span:]])
        assert averages[39] == pytest.approx(want)
