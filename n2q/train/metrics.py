"""Confusion matrix -> N2D2's 13 classification metrics, per class and macro-averaged.

Counts for class c of a confusion matrix M (rows = target, columns = estimated):
TP = M[c,c], FN = row sum - TP, FP = column sum - TP, TN = total - TP - FN - FP.
A ratio whose denominator is 0 counts as 0. The macro average runs over the classes SEEN,
i.e. the classes with at least one stimulus as target (a class absent from the partition does
not drag the average down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from n2q.options import METRIC_NAMES as METRICS  # the -valid-metric values, one list

# error-like metrics: a smaller value is a better model
LOWER_IS_BETTER = ("MissRate", "FallOut", "FalseDiscoveryRate", "FalseOmissionRate")
# the columns of ConfusionMatrix_*_score.dat, N2D2's order and spelling
SCORE_COLUMNS = (("Sensitivity", "Sensitivity"), ("Specificity", "Specificity"),
                 ("Precision", "Precision"), ("Accuracy", "Accuracy"), ("F1-score", "F1Score"),
                 ("Informedness", "Informedness"), ("IU", "IU"))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass
class ConfusionMatrix:
    """Counts [n, n] int64: ``counts[target, estimated]``."""

    counts: np.ndarray

    @classmethod
    def empty(cls, nb_classes: int) -> ConfusionMatrix:
        return cls(np.zeros((nb_classes, nb_classes), dtype=np.int64))

    @property
    def nb_classes(self) -> int:
        return self.counts.shape[0]

    def add(self, targets: np.ndarray, estimated: np.ndarray) -> None:
        n = self.nb_classes
        flat = np.asarray(targets, dtype=np.int64) * n + np.asarray(estimated, dtype=np.int64)
        self.counts += np.bincount(flat, minlength=n * n).reshape(n, n)

    def total(self) -> int:
        return int(self.counts.sum())

    def correct(self) -> int:
        return int(np.trace(self.counts))

    def recognition_rate(self) -> float:
        """Correct / total stimuli (N2D2's "Final recognition rate")."""
        total = self.total()
        return self.correct() / total if total else 0.0

    def seen(self) -> np.ndarray:
        """Bool [n]: classes with at least one stimulus as target."""
        return self.counts.sum(axis=1) > 0

    def per_class(self) -> dict[str, np.ndarray]:
        """Every metric for every class: name -> float64 [n]."""
        m = self.counts.astype(np.float64)
        tp = np.diag(m)
        fn = m.sum(axis=1) - tp
        fp = m.sum(axis=0) - tp
        tn = m.sum() - tp - fn - fp
        out = {
            "Sensitivity": _ratio(tp, tp + fn),
            "Specificity": _ratio(tn, tn + fp),
            "Precision": _ratio(tp, tp + fp),
            "NegativePredictiveValue": _ratio(tn, tn + fn),
            "MissRate": _ratio(fn, fn + tp),
            "FallOut": _ratio(fp, fp + tn),
            "FalseDiscoveryRate": _ratio(fp, fp + tp),
            "FalseOmissionRate": _ratio(fn, fn + tn),
            "IU": _ratio(tp, tp + fp + fn),
            "Accuracy": _ratio(tp + tn, tp + tn + fp + fn),
            "F1Score": _ratio(2 * tp, 2 * tp + fp + fn),
        }
        out["Informedness"] = out["Sensitivity"] + out["Specificity"] - 1.0
        out["Markedness"] = out["Precision"] + out["NegativePredictiveValue"] - 1.0
        return out

    def macro(self) -> dict[str, float]:
        """Every metric averaged over the classes seen."""
        seen = self.seen()
        if not seen.any():
            return dict.fromkeys(METRICS, 0.0)
        return {k: float(v[seen].mean()) for k, v in self.per_class().items()}

    def score(self, metric: str) -> float:
        return self.macro()[metric]


def is_better(metric: str, score: float, best: float | None) -> bool:
    """Strictly better than the best so far (lower for the error-like metrics)."""
    if best is None:
        return True
    return score < best if metric in LOWER_IS_BETTER else score > best


def percent(x: float) -> str:
    """N2D2's console percentages: 4 significant digits, no trailing zeros (97.25, 85.7)."""
    return f"{100.0 * x:.4g}"


def metrics_block(macro: dict[str, float], indent: str = "    ") -> str:
    """The two lines N2D2 prints after a validation score and the final recognition rate."""
    p = {k: percent(v) for k, v in macro.items()}
    return (f"{indent}Sensitivity: {p['Sensitivity']}% / Specificity: {p['Specificity']}% / "
            f"Precision: {p['Precision']}%\n"
            f"{indent}Accuracy: {p['Accuracy']}% / F1-score: {p['F1Score']}% / "
            f"Informedness: {p['Informedness']}%")


def final_block(cm: ConfusionMatrix) -> str:
    """``Final recognition rate: 97.25%    (error rate: 2.75%)`` + the metrics block."""
    rate = cm.recognition_rate()
    return (f"Final recognition rate: {percent(rate)}%    (error rate: {percent(1.0 - rate)}%)\n"
            + metrics_block(cm.macro()))


def top_n_correct(scores: np.ndarray, targets: np.ndarray, n: int) -> int:
    """How many rows of ``scores`` [B, C] have their target among their n highest scores."""
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    return int((top == np.asarray(targets)[:, None]).any(axis=1).sum())
