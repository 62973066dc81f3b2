"""What the learning loop counts between two log points: the confusion of the Learn batches
(kept on the device, no host sync per batch) and the timings of -bench."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from n2q.train.evaluate import Misclassified, misclassified_rows
from n2q.train.metrics import ConfusionMatrix
from n2q.train.targets import TargetInfo

Timing = tuple[int, int, float, float]  # (batches, stimuli, data seconds, compute seconds)


class LearnTally:
    """Per-target learning statistics since the last log point, kept on the device until
    read (no host sync per batch)."""

    def __init__(self, targets: list[TargetInfo], device: torch.device):
        self.targets = targets
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.counts = {t.section: torch.zeros(t.nb_classes ** 2, dtype=torch.int64,
                                              device=self.device) for t in self.targets}
        self.batches: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {
            t.section: [] for t in self.targets}

    def add(self, t: TargetInfo, labels: torch.Tensor, preds: torch.Tensor,
            ids: torch.Tensor) -> None:
        k = t.nb_classes
        cells = labels * k + preds  # [B] confusion cell of each stimulus
        if t.label_map is None:
            self.counts[t.section] += torch.bincount(cells, minlength=k * k)
        else:  # -1 labels weigh 0 (a weighted count needs no host sync, unlike a mask)
            scored = (labels >= 0).to(torch.float32)
            counts = torch.bincount(cells.clamp(min=0), weights=scored, minlength=k * k)
            self.counts[t.section] += counts.round().to(torch.int64)
        self.batches[t.section].append((labels, preds, ids))

    def confusion(self, t: TargetInfo) -> ConfusionMatrix:
        k = t.nb_classes
        return ConfusionMatrix(self.counts[t.section].cpu().numpy().reshape(k, k))

    def misclassified(self, sp: Any, t: TargetInfo) -> list[Misclassified]:
        rows: list[Misclassified] = []
        for labels, preds, ids in self.batches[t.section]:
            rows += misclassified_rows(sp, ids.numpy(), labels.cpu().numpy(),
                                       preds.cpu().numpy())
        return rows


def write_timings(workdir: Path, timings: list[Timing]) -> None:
    """timings/learning.dat (-bench): one row per learning stretch (an epoch, a -log chunk)
    with the data-loading and compute seconds and the stimuli per second, and a summary."""
    if not timings:
        return
    folder = workdir / "timings"
    folder.mkdir(exist_ok=True)
    lines = ["# batches stimuli data_s compute_s stimuli_per_s"]
    previous = (0, 0)
    for batches, stimuli, data_s, step_s in timings:
        seen = stimuli - previous[1]
        rate = seen / (data_s + step_s) if data_s + step_s > 0 else 0.0
        lines.append(f"{batches} {stimuli} {data_s:.4f} {step_s:.4f} {rate:.1f}")
        previous = (batches, stimuli)
    (folder / "learning.dat").write_text("\n".join(lines) + "\n")
    total = sum(d + s for _, _, d, s in timings)
    data = sum(d for _, _, d, _ in timings)
    print(f"[LOG] Learning timings (timings/learning.dat): {total:.1f} s, of which "
          f"{data:.1f} s waiting for data")
