"""Scoring a partition (Validation, Test) and the reports of the test phase.

``evaluate`` runs a network over one partition without gradient and returns, per target, its
confusion matrix, success log, misclassified stimuli and top-N count; ``report_test`` prints
N2D2's final block and writes the target folders' test files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from n2q.train import ddp  # issue 14: sharded evaluation
from n2q.train import distributed as dist  # issue 14
from n2q.train.metrics import ConfusionMatrix, final_block, percent, top_n_correct
from n2q.train.progress import Progress
from n2q.train.reports import SuccessLog
from n2q.train.targets import TargetInfo

if TYPE_CHECKING:  # pragma: no cover
    from n2q.train.context import RunContext

Misclassified = tuple[int, str, int, int]  # (stimulus id, name, target class, estimated class)


@dataclass
class TargetScore:
    """The result of one target on one partition."""

    cm: ConfusionMatrix
    success: SuccessLog
    misclassified: list[Misclassified] = field(default_factory=list)
    top_n_correct: int = 0

    def top_n_rate(self) -> float:
        total = self.cm.total()
        return self.top_n_correct / total if total else 0.0


def misclassified_rows(sp: Any, ids: np.ndarray, labels: np.ndarray,
                       preds: np.ndarray) -> list[Misclassified]:
    """The rows of Misclassified_*.dat for one batch (ids, labels, preds: [B])."""
    wrong = np.flatnonzero((labels != preds) & (labels >= 0))  # -1: not scored
    return [(int(ids[i]), sp.stimulus_name(int(ids[i])), int(labels[i]), int(preds[i]))
            for i in wrong]


@torch.no_grad()
def evaluate(ctx: RunContext, partition: str, *, net: Any = None, limit: int | None = None,
             indices: list[int] | None = None, desc: str | None = None
             ) -> dict[str, TargetScore]:
    """Score ``partition`` (in partition order) for every target; ``net`` default: ctx.net
    (``-qat-sat`` passes the fused network)."""
    model = ctx.net if net is None else net
    was_training = model.training
    model.eval()
    results = {t.section: TargetScore(ConfusionMatrix.empty(t.nb_classes), SuccessLog(None))
               for t in ctx.targets}
    size = ctx.sp.partition_sizes()[partition]
    total = len(indices) if indices is not None else min(size, limit) if limit else size
    progress = Progress(total, desc or partition, ctx.report_every)
    try:
        loader = ctx.sp.loader(partition, shuffle=False, limit=limit, indices=indices,
                               with_ids=True, shard=dist.shard("eval"))
        for x, labels, ids in loader:
            outs = model(ddp.to_device(x, ctx.device, ctx.dtype))
            for t in ctx.targets:
                _score_batch(ctx.sp, t, outs[t.cell], labels, ids, results[t.section])
            progress.update(len(labels) * dist.current().world)
    finally:
        progress.close()
        model.train(was_training)
    dist.reduce_scores(results, ctx.sp, partition)  # issue 14: each rank scored its shard
    return results


def _score_batch(sp: Any, t: TargetInfo, out: torch.Tensor, labels: torch.Tensor,
                 ids: torch.Tensor, result: TargetScore) -> None:
    y = t.map_labels(labels).numpy()
    scored = y >= 0  # LabelsMapping may ignore labels
    scores = t.scores(out).float().cpu().numpy()[scored]
    preds = t.predict(out).cpu().numpy()
    result.misclassified += misclassified_rows(sp, ids.numpy(), y, preds)
    preds, y = preds[scored], y[scored]
    if not len(y):
        return
    result.cm.add(y, preds)
    result.success.add(int((preds == y).sum()), len(y))
    if t.top_n > 1 and t.nb_outputs > 1:
        result.top_n_correct += top_n_correct(scores, y, t.top_n)


def write_partition_reports(t: TargetInfo, partition: str, score: TargetScore) -> None:
    """ConfusionMatrix_<p>.dat/.png/_score.dat and Misclassified_<p>.dat of one target."""
    t.report.write_confusion(partition, score.cm)
    t.report.write_misclassified(partition, score.misclassified)


def test_block(t: TargetInfo, score: TargetScore) -> str:
    """N2D2's final block (+ the top-N rate when TopN > 1)."""
    text = final_block(score.cm)
    if t.top_n > 1 and t.nb_outputs > 1:
        text += f"\n    Top-{t.top_n} recognition rate: {percent(score.top_n_rate())}%"
    return text


def report_test(ctx: RunContext, results: dict[str, TargetScore]) -> None:
    """N2D2's final block per target and the target folders' test files."""
    for t in ctx.targets:
        score = results[t.section]
        t.report.write_success("test", score.success)
        write_partition_reports(t, "test", score)
        if len(ctx.targets) > 1:
            print(f"[{t.section}]")
        print(test_block(t, score))
