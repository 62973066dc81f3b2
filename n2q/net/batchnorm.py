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
    Folded by SimQAT's TwoConv (``folded_into``), the Conv before it normalizes and updates
    the statistics; this cell then applies only its activation.
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
        # name of the Conv whose weight quantizer already applies this normalization
        # (QWeight.FoldBN=TwoConv, set by its bind): the op then passes its input through
        self.folded_into: str | None = None

    def op(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded_into is not None:
            return x
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def fold_factor(self) -> torch.Tensor:
        """gamma / sqrt(running_var + eps) [C] (differentiable in gamma): the factor a
        folded Conv's weights are multiplied by."""
        return self.weight / torch.sqrt(self.running_var + self.eps)

    def folded_output(self, y_q: torch.Tensor, y_float: torch.Tensor | None,
                      bias: torch.Tensor | None) -> torch.Tensor:
        """This normalization applied by a folded Conv (Jacob et al.; SimQAT TwoConv).

        ``y_q`` [B, C, ...]: the bias-free conv with the weights w*gamma/sigma_run quantized;
        ``y_float``: the float conv (bias included) giving the batch statistics mu_B, sigma_B
        (training), or None (inference, frozen): y_q + beta + gamma*(b - mu_run)/sigma_run.
        Training: y_q*sigma_run/sigma_B + beta + gamma*(b - mu_B)/sigma_B, and the running
        statistics are updated from the batch as :meth:`op` would.
        """
        sigma_run = torch.sqrt(self.running_var + self.eps)
        b = bias if bias is not None else torch.zeros_like(self.bias)
        along = (1, -1) + (1,) * (y_q.dim() - 2)      # [C] on the channel axis
        if y_float is None:
            shift = self.bias + self.weight * (b - self.running_mean) / sigma_run
            return y_q + shift.reshape(along)
        dims = [0] + list(range(2, y_float.dim()))
        mu, var = y_float.mean(dims), y_float.var(dims, unbiased=False)
        sigma = torch.sqrt(var + self.eps)
        with torch.no_grad():   # the running variance takes the unbiased batch variance
            n = y_float.numel() // y_float.shape[1]
            self.running_mean.mul_(1 - self.momentum).add_(mu, alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var * (n / max(n - 1, 1)),
                                                          alpha=self.momentum)
        shift = self.bias + self.weight * (b - mu) / sigma
        return y_q * (sigma_run / sigma).reshape(along) + shift.reshape(along)

    @classmethod
    def section_args(cls, section: Section, in_shape: Shape) -> dict[str, Any]:
        eps = section.float("Epsilon", 1e-5)
        momentum = section.float("MovingAverageMomentum", 0.1)
        if eps <= 0:
            raise section.error("Epsilon", f"must be > 0, got {eps}")
        if not 0.0 <= momentum <= 1.0:
            raise section.error("MovingAverageMomentum", f"must be in [0, 1], got {momentum}")
        return {"eps": eps, "momentum": momentum, "activation": make_activation(section)}
