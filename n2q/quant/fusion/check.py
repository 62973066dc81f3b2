"""The fused network against the fake-quant one (fusion.md "What the tests must show")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from n2q.quant.fusion.network import FusedNetwork
from n2q.quant.fusion.plan import INPUT
from n2q.quant.integer import quantize_input


def tied_top(logits: Tensor, classes: Tensor) -> Tensor:
    """[N] bool: ``classes`` [N] holds one of the top logits [N, K] exactly (a tie that only
    float32 noise of the fake-quant network decides)."""
    top = logits.max(1, keepdim=True).values
    return logits.gather(1, classes[:, None]).squeeze(1) == top.squeeze(1)


@dataclass
class FusionCheck:
    """The fused network against the fake-quant one on the same stimuli, batch by batch:
    same class, integer activations within their levels ([0, R] for unsigned grids), the
    share of activation levels that differ (float32 ties of the fake-quant network), the
    largest logit difference. ``update`` per batch, then ``line()`` for the report."""

    total: int = 0
    same_class: int = 0
    ties: int = 0       # other class, where the fused (exact) logits tie at the top
    levels: int = 0
    differing: int = 0
    max_logit_diff: float = 0.0
    bad_nodes: set[str] = field(default_factory=set)

    @torch.no_grad()
    def update(self, net: Any, fused: FusedNetwork, x: Tensor) -> None:
        """x: a batch of the provider's [0, 1] stimuli; both networks see round(255 x) / 255."""
        x8 = quantize_input(x, INPUT.qmax).to(x.dtype) / INPUT.qmax
        fake_all, fused_all = net.forward_all(x8), fused.forward_all(x8)
        self.bad_nodes.update(fused.check_integer_outputs(fused_all))
        for node in fused.integer_nodes():
            domain = fused.domains[node]
            fake = fake_all[fused.source_cell(node)].double()
            reference = torch.round(fake / domain.scale) + domain.zero_point
            self.differing += int((fused_all[node].double() != reference).sum())
            self.levels += reference.numel()
        fake, logits = net(x8), fused(x8)
        for target in fused.targets:
            a, b = fake[target.cell].flatten(1), logits[target.cell].flatten(1)
            self.max_logit_diff = max(self.max_logit_diff, float((a - b).abs().max()))
            same = a.argmax(1) == b.argmax(1)
            self.same_class += int(same.sum())
            self.ties += int((~same & tied_top(b, a.argmax(1))).sum())
            self.total += len(a)

    @property
    def share(self) -> float:
        return self.differing / self.levels if self.levels else 0.0

    def line(self) -> str:
        integers = "all integers in [0, R]" if not self.bad_nodes else (
            "NOT integers in [0, R]: " + ", ".join(sorted(self.bad_nodes)))
        ties = f" ({self.ties} of the others: exact ties of the fused logits)" if self.ties else ""
        return (
            f"fused vs fake-quant: same class on {self.same_class}/{self.total} stimuli{ties}; "
            f"activations {integers}, {self.differing} of {self.levels} levels differ "
            f"(share {self.share:.2g}); max |logit diff| {self.max_logit_diff:.3g}"
        )
