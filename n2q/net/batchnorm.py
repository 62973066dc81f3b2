"""Batch normalization cells (``Type=BatchNorm``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import Cell, Shape, register_cell


@register_cell("BatchNorm")
class BatchNormCell(Cell):
    """Per-channel y = weight * (x - mean) / sqrt(var + eps) + bias.

    Training uses the batch statistics and updates the running ones with ``momentum`` = the
    weight of the current batch (torch's convention = N2D2's MovingAverageMomentum); the
    running variance is the unbiased batch variance. Inference uses the running statistics.
    """

    KEYS = frozenset({"NbOutputs", "Epsilon", "MovingAverageMomentum"})
    HAS_ACTIVATION = True

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, *,
                 eps: float = 1e-5, momentum: float = 0.1,
                 activation: nn.Module | None = None) -> None:
        super().__init__(name, inputs, in_shape, activation)
        c = self.in_shape[0]
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = nn.Parameter(torch.ones(c))   # N2D2's "scales"
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def op(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        eps = section.float("Epsilon", 1e-5)
        momentum = section.float("MovingAverageMomentum", 0.1)
        if eps <= 0:
            raise section.error("Epsilon", f"must be > 0, got {eps}")
        if not 0.0 <= momentum <= 1.0:
            raise section.error("MovingAverageMomentum", f"must be in [0, 1], got {momentum}")
        return {"eps": eps, "momentum": momentum, "activation": make_activation(section)}
