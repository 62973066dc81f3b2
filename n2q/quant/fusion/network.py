"""The fused integer-only network (fusion.md): runs the planned steps on integer tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from n2q.quant.fusion.plan import INPUT, Domain, Step, StepKind, pads_pool
from n2q.quant.integer import quantize_input


class FusedNetwork(nn.Module):
    """The integer-only network; called like ``Network`` with the provider's [0, 1] stimuli.

    ``cells``: node name -> module in execution order (IntegerLinearLayer, IntegerElemWise, or
    the original cell for PASS and FLOAT nodes); ``inputs``: node -> input names;
    ``steps``: the plan; ``float_lines``: one line per cell left in float. It has the
    ``cells`` / ``inputs`` / ``targets`` of a Network, so ``n2q.io.graph.draw_graph`` draws it
    (no BatchNorm, no quantizer) and ``n2q.io.weights.save_weights`` writes its files.
    """

    def __init__(
        self,
        steps: list[Step],
        alias: dict[str, str],
        modules: dict[str, nn.Module],
        targets: list[Any],
        providers: list[str],
        input_shape: Any = None,
        loss_kinds: dict[str, str] | None = None,
    ) -> None:
        from n2q.net.graph import CellDict

        super().__init__()
        self.steps = steps
        self.alias = alias
        self.providers = providers
        self.cells = CellDict()
        for step in steps:
            self.cells[step.name] = modules[step.name]
        self.inputs = {s.name: list(s.inputs) for s in steps}
        self.domains: dict[str, Domain] = {s.name: s.domain for s in steps}
        self.domains.update({p: INPUT for p in providers})
        self.targets = list(targets)
        self.input_shape = input_shape
        self._loss_kinds = dict(loss_kinds or {})
        self.float_lines = [f"{s.name}: {s.reason}; it stays float" for s in steps
                            if s.kind is StepKind.FLOAT and s.reason]

    def loss_kind(self, name: str) -> str:
        """As ``Network.loss_kind`` for the original target cell `name`."""
        return self._loss_kinds.get(name, "output")

    def forward_all(self, x: Tensor) -> dict[str, Tensor]:
        """Every node's output: integer levels (uint8 for [0, 255]) or float tensors."""
        return self._run(x)[0]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Target cell -> float output as ``Network.forward`` gives it (a Softmax WithLoss=1
        target: its logits; a LogisticWithLoss target: its pre-activation)."""
        values, logits = self._run(x)
        outputs = {}
        for target in self.targets:
            node = self.alias.get(target.cell, target.cell)
            module = self.cells[node]
            if node in logits:
                outputs[target.cell] = logits[node]
            elif getattr(module, "with_loss", False):  # Softmax WithLoss=1
                source = self.inputs[node][0]
                outputs[target.cell] = self.domains[source].dequantize(values[source])
            else:
                outputs[target.cell] = self.domains[node].dequantize(values[node])
        return outputs

    def _run(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        x_int = quantize_input(x, INPUT.qmax)
        values: dict[str, Tensor] = {p: x_int for p in self.providers}
        logits: dict[str, Tensor] = {}
        for step in self.steps:
            xs = [values[i] for i in step.inputs]
            values[step.name] = self._node(step, xs, logits)
        return values, logits

    def _node(self, step: Step, xs: list[Tensor], logits: dict[str, Tensor]) -> Tensor:
        module = self.cells[step.name]
        if step.kind is StepKind.LINEAR:
            x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
            if step.logits:
                logits[step.name] = module.logits(x)
            return module(x)
        if step.kind is StepKind.SUM:
            return module(*xs)
        if step.kind is StepKind.POOL_SUM:  # [N, C, H, W] -> [N, C, 1, 1] exact integer sums
            total = xs[0].to(torch.int32).sum(dim=(2, 3), keepdim=True)
            return total.to(step.domain.dtype)
        if step.kind is StepKind.PASS:  # exact: the cell only moves or picks integers
            if pads_pool(module):  # its padding is -inf, a float
                return module(xs[0].to(torch.float32)).to(xs[0].dtype)
            return module(xs[0])
        return self._float_node(step, module, xs, logits)

    def _float_node(self, step: Step, module: nn.Module, xs: list[Tensor],
                    logits: dict[str, Tensor]) -> Tensor:
        """The original cell on dequantized inputs; an integer output back to its levels."""
        floats = [self.domains[i].dequantize(v) for i, v in zip(step.inputs, xs, strict=True)]
        if getattr(module, "MULTI_INPUT", False):
            arg: Any = floats
        else:
            arg = floats[0] if len(floats) == 1 else torch.cat(floats, dim=1)
        if step.logits:
            logits[step.name] = module.op(arg)
        y = module(arg)
        return step.domain.levels(y) if step.domain.integer else y

    def run_node(self, node: str, xs: list[Tensor]) -> Tensor:
        """The output of one node on given inputs (in its inputs' domains: levels for integer
        inputs), e.g. the fake-quant network's own levels to check a layer in isolation."""
        step = next(s for s in self.steps if s.name == node)
        return self._node(step, list(xs), {})

    def source_cell(self, node: str) -> str:
        """The original cell whose output the node reproduces (bn1 for the node conv1)."""
        return next(s for s in self.steps if s.name == node).covers[-1]

    def integer_nodes(self) -> list[str]:
        return [s.name for s in self.steps if s.domain.integer]

    def check_integer_outputs(self, values: dict[str, Tensor]) -> list[str]:
        """Nodes whose output is not an integer tensor with values in [qmin, qmax] of its
        domain (empty: all ok)."""
        bad = []
        for name in self.integer_nodes():
            y, domain = values[name], self.domains[name]
            if (y.dtype != domain.dtype or int(y.min()) < domain.qmin
                    or int(y.max()) > domain.qmax):
                bad.append(name)
        return bad
