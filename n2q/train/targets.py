"""Targets at run time: loss, prediction and scoring of one ``[<cell>.Target]``.

A target cell's output ``out`` is [B, C] or [B, C, H, W]; a stimulus has one label, which
applies to every position of a spatial output (N2D2 frame targets).
- Softmax with WithLoss=1 (``net.loss_kind == "softmax_ce"``): ``out`` holds the LOGITS;
  loss = cross-entropy, gradient softmax - target map (N2D2's, spec/network.md), batch mean.
  With the defaults TargetValue=1, DefaultValue=0 that is the usual one-hot cross-entropy;
  other values give soft targets, e.g. label smoothing eps over K classes (Golden Stick's
  ``CrossEntropySmooth`` of the SLB recipe, seeds 000/002): TargetValue=1-eps,
  DefaultValue=eps/(K-1). The loss is then logsumexp(z) - sum_c t_c z_c (its gradient is
  exactly softmax - t, even where the targets do not sum to 1).
- LogisticWithLoss (``"logistic_bce"``): logits, binary cross-entropy against the target map.
- otherwise: loss = sum((out - target map)^2) / (2 B), i.e. gradient (out - target) / B, with
  the target map = TargetValue at the label's channel, DefaultValue elsewhere.
Prediction: the channel scores averaged over positions, argmax; a single-output target (C = 1)
is binary: class 1 when the score is above (TargetValue + DefaultValue) / 2.
``LabelsMapping=file`` maps data base labels to outputs (several labels to one output; -1:
the stimulus is not scored by this target: no loss, no statistics).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from n2q.errors import UserError
from n2q.train.reports import TargetReport


@dataclass
class TargetInfo:
    section: str          # "softmax.Target": also the report folder name
    cell: str             # "softmax"
    loss_kind: str        # "softmax_ce" | "logistic_bce" | "output"
    nb_outputs: int       # C, channels of the target cell
    nb_classes: int       # K, classes of the confusion matrix (2 for a single output)
    target_value: float
    default_value: float
    top_n: int
    report: TargetReport
    label_map: torch.Tensor | None = None  # int64 [data base labels] -> class, -1 = ignored
    _maps: dict[str, torch.Tensor] = field(default_factory=dict)  # label_map per device

    def map_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Data base labels [B] -> this target's classes [B] (-1: not scored, LabelsMapping)."""
        if self.label_map is None:
            return labels
        key = str(labels.device)
        if key not in self._maps:
            self._maps[key] = self.label_map.to(labels.device)
        return self._maps[key][labels]

    # -- loss ----------------------------------------------------------------------------------
    def target_map(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B, C, P] float: TargetValue at the label's channel, DefaultValue elsewhere."""
        b, c = out.shape[0], self.nb_outputs
        positions = out[0].numel() // c
        if c == 1:
            values = torch.where(labels == 1, self.target_value, self.default_value)
            return values.to(out.dtype).view(b, 1, 1).expand(b, 1, positions)
        t = torch.full((b, c), self.default_value, dtype=out.dtype, device=out.device)
        t.scatter_(1, labels.view(b, 1), self.target_value)
        return t.view(b, c, 1).expand(b, c, positions)

    @property
    def soft_targets(self) -> bool:
        """Softmax targets other than one-hot (TargetValue/DefaultValue not 1/0)."""
        return (self.loss_kind == "softmax_ce" and self.nb_outputs > 1
                and (self.target_value, self.default_value) != (1.0, 0.0))

    def _soft_cross_entropy(self, flat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[B, P]: logsumexp(z) - sum_c t_c z_c per position, t the target map; its gradient
        on the logits z [B, C, P] is softmax(z) - t."""
        target = self.target_map(flat, labels)
        return torch.logsumexp(flat, dim=1) - (target * flat).sum(dim=1)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``labels``: this target's classes (``map_labels``); -1 rows do not count."""
        b = out.shape[0]
        flat = out.reshape(b, self.nb_outputs, -1)  # [B, C, P]
        if self.label_map is not None:
            return self._masked_loss(flat, labels)
        if self.soft_targets:
            return self._soft_cross_entropy(flat, labels).mean()
        if self.loss_kind == "softmax_ce":
            return F.cross_entropy(flat, labels.view(b, 1).expand(b, flat.shape[2]))
        target = self.target_map(out, labels)
        if self.loss_kind == "logistic_bce":
            return F.binary_cross_entropy_with_logits(flat, target)
        return (flat - target).pow(2).sum() / (2 * b)

    def _masked_loss(self, flat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The same losses averaged over the scored stimuli only (no host sync)."""
        b, _, positions = flat.shape
        scored = labels >= 0  # [B]
        count = scored.sum().clamp(min=1)
        if self.soft_targets:
            per_position = self._soft_cross_entropy(flat, labels.clamp(min=0))  # [B, P]
            weight = scored.to(flat.dtype).view(b, 1)
            return (per_position * weight).sum() / (count * positions)
        if self.loss_kind == "softmax_ce":
            per_position = F.cross_entropy(flat, labels.view(b, 1).expand(b, positions),
                                           ignore_index=-1, reduction="sum")
            return per_position / (count * positions)
        target = self.target_map(flat, labels.clamp(min=0))
        weight = scored.to(flat.dtype).view(b, 1, 1)
        if self.loss_kind == "logistic_bce":
            per_element = F.binary_cross_entropy_with_logits(flat, target, reduction="none")
            return (per_element * weight).sum() / (count * flat[0].numel())
        return ((flat - target).pow(2) * weight).sum() / (2 * count)

    # -- prediction ----------------------------------------------------------------------------
    def scores(self, out: torch.Tensor) -> torch.Tensor:
        """[B, C] channel scores averaged over positions."""
        return out.reshape(out.shape[0], self.nb_outputs, -1).mean(dim=2)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        scores = self.scores(out)
        if self.nb_outputs == 1:
            threshold = 0.5 * (self.target_value + self.default_value)
            if self.loss_kind != "output":
                threshold = 0.0  # logits
            return (scores[:, 0] > threshold).long()
        return scores.argmax(dim=1)


def make_targets(net: Any, sp: Any, workdir: Path) -> list[TargetInfo]:
    """One TargetInfo per ``net.targets`` entry, checked against the data base labels."""
    infos = []
    # ``n2q model.onnx``: the INI is n2q's, so "set NbOutputs" is no advice the user can follow
    bare_onnx = Path(getattr(getattr(sp, "cfg", None), "path", "")).suffix.lower() == ".onnx"
    for t in net.targets:
        cell = net.cells[t.cell]
        c = int(cell.out_shape[0])
        k = 2 if c == 1 else c
        names = _labels(sp, k)
        label_map = None
        if t.labels_mapping is not None:
            mapping = read_labels_mapping(Path(t.labels_mapping), list(sp.labels),
                                          t.create_missing_labels, t.section)
            _check_classes(t.section, t.cell, c, k, int(mapping.max(initial=-1)) + 1,
                           "LabelsMapping outputs", bare_onnx)
            label_map = torch.from_numpy(mapping)
            names = _output_names(mapping, list(sp.labels), k)
        else:
            _check_classes(t.section, t.cell, c, k, sp.nb_classes, "data base labels",
                           bare_onnx)
        kind = net.loss_kind(t.cell) if hasattr(net, "loss_kind") else "output"
        infos.append(TargetInfo(
            section=t.section, cell=t.cell, loss_kind=kind, nb_outputs=c, nb_classes=k,
            target_value=t.target_value, default_value=t.default_value, top_n=t.top_n,
            report=TargetReport(workdir / t.section, names), label_map=label_map))
    return infos


def write_labels_logs(targets: list[TargetInfo], sp: Any) -> None:
    """labels_mapping.log.dat in every target folder (needs the data base's label array)."""
    labels_of = getattr(getattr(sp, "database", None), "targets", None)
    if labels_of is None:
        return
    labels_of = np.asarray(labels_of)
    names = list(sp.labels)
    counts = {p: np.bincount(labels_of[sp.partition_ids(p)], minlength=len(names))
              for p in ("Learn", "Validation", "Test")}
    for t in targets:
        outputs = (t.label_map.tolist() if t.label_map is not None
                   else list(range(len(names))))
        t.report.write_labels_mapping(names, outputs, counts)


def _check_classes(section: str, cell: str, c: int, k: int, needed: int, what: str,
                   bare_onnx: bool = False) -> None:
    if needed <= k:
        return
    fix = (f"write an INI with [sp], an [onnx] section (File=) and a [{cell}.Target] to "
           "use this graph with this data base" if bare_onnx
           else f"set NbOutputs={needed} on {cell}")
    raise UserError(f"the target cell {cell} has {c} output(s) but there are {needed} "
                    f"{what}: {fix}", section=section)


def read_labels_mapping(path: Path, labels: list[str], create_missing: bool,
                        section: str) -> np.ndarray:
    """N2D2's LabelsMapping file -> int64 [len(labels)]: the output of each data base label,
    -1 for labels this target ignores.

    Lines ``<label or pattern> <output>`` (``*`` / ``?`` wildcards, ``default <output>`` for
    the labels no line names, ``#`` comments); an exact name wins over a pattern, then the
    first matching pattern in file order. A label matched by nothing: the default, else a new
    output with CreateMissingLabels=1, else an error."""
    if not path.is_file():
        raise UserError(f"no such labels mapping file: {path}", section=section,
                        key="LabelsMapping")
    rules: list[tuple[str, int]] = []
    default: int | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or not words[1].lstrip("-").isdigit() or int(words[1]) < -1:
            raise UserError(f"'{raw.strip()}': write '<label or pattern> <output index>' "
                            "(-1: ignore this label)", file=path, line=number)
        if words[0] == "default":
            default = int(words[1])
        else:
            rules.append((words[0], int(words[1])))
    next_free = max([o for _, o in rules] + [default if default is not None else -1]) + 1
    outputs = []
    for name in labels:
        out = next((o for pattern, o in rules if pattern == name), None)
        if out is None:
            out = next((o for pattern, o in rules if fnmatch.fnmatchcase(name, pattern)), None)
        if out is None and default is not None:
            out = default
        if out is None:
            if not create_missing:
                raise UserError(f"label '{name}' of the data base has no output: add a line "
                                f"'{name} <output>' or 'default <output>', or set "
                                "CreateMissingLabels=1", file=path)
            out, next_free = next_free, next_free + 1
        outputs.append(out)
    return np.array(outputs, dtype=np.int64)


def _output_names(mapping: np.ndarray, labels: list[str], k: int) -> list[str]:
    """An output's name: the data base labels mapped to it (its index if none)."""
    names = []
    for o in range(k):
        mapped = [labels[i] for i in np.flatnonzero(mapping == o)]
        names.append(",".join(mapped) if mapped else str(o))
    return names


def _labels(sp: Any, k: int) -> list[str]:
    labels = list(getattr(sp, "labels", []))
    return labels + [str(i) for i in range(len(labels), k)]
