"""``-fuse``: fold each BatchNorm into the Conv before it (float), before testing."""

from __future__ import annotations

from typing import Any

import torch

from n2q.quant.bnfold import bn_fold_factor


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@torch.no_grad()
def fold_batchnorm(net: Any) -> list[str]:
    """Fold each BatchNorm whose only input is a Conv (its sole consumer, no activation, no
    quantizer) into that Conv: w' = w * s, b' = (b - mean) * s + beta with
    s = gamma / sqrt(var + eps) per output channel; the BatchNorm keeps only its activation.
    Returns one line per fold."""
    lines = []
    for name, bn in net.cells.items():
        if getattr(bn, "type", "") != "BatchNorm" or len(net.inputs[name]) != 1:
            continue
        src = net.inputs[name][0]
        conv = net.cells[src] if src in net.cells else None
        if conv is None or getattr(conv, "type", "") != "Conv" or net.consumers(src) != [name]:
            continue
        if (conv.weight_quantizer is not None or conv.act_quantizer is not None
                or type(conv.activation).__name__ not in ("Identity", "Linear")
                or getattr(bn, "folded", False)):
            continue
        scale, shift = bn_fold_factor(bn, conv.weight.dtype)  # [O]: BN(z) = scale * z + shift
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        new_bias = bias * scale + shift
        if conv.bias is None:
            conv.bias = torch.nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)
        bn.op = _identity
        bn.folded = True
        lines.append(f"{name} folded into {src}")
    return lines
