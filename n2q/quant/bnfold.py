"""BatchNorm folding: the one place where a BatchNorm's inference affine is computed.

In inference a BatchNorm cell is y = f * z + shift per channel, with
f = gamma / sqrt(running_var + eps) and shift = beta - running_mean * f. Folding it into the
Conv/Fc before it (``-fuse``), into an integer layer (``-qat-sat`` / ``-qat-fuse``) or into a
quantized weight (SimQAT) starts from these two vectors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def fold_factor(gamma: Tensor, var: Tensor, eps: float,
                dtype: torch.dtype = torch.float64) -> Tensor:
    """f = gamma / sqrt(var + eps) per channel [C], in ``dtype``."""
    return gamma.detach().to(dtype) / torch.sqrt(var.detach().to(dtype) + eps)


def bn_fold_factor(bn: Any, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """(f [C], shift [C]) of a BatchNorm cell in inference: BN(z) = f * z + shift with
    f = gamma / sqrt(running_var + eps), shift = beta - running_mean * f (``dtype``: float64
    by default; the cell's own dtype to fold into its float weights)."""
    f = fold_factor(bn.weight, bn.running_var, bn.eps, dtype)
    shift = bn.bias.detach().to(dtype) - bn.running_mean.detach().to(dtype) * f
    return f, shift
