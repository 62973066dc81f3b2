"""``-test -qat-sat``: fuse BatchNorm and SAT quantizers into an integer-only network (fusion.md).

``fuse_sat(net)`` plans the fused graph from the network's structure (:func:`plan_fusion`), then
computes the integer weights and the per-channel bias / clip / scaling of every fused layer from
the trained parameters. ``save_fused`` writes them as ``weights_quantized/`` and ``load_fused``
rebuilds the same integer network from such a folder and the INI's network.

Each node's output has a domain: the integer levels k of a SAT quantizer (alpha, R), whose
float value is k * alpha / R, or float. The provider's [0, 1] input is the integer domain
(1, 255). A residual branch (a Conv, + a BatchNorm without QAct, feeding only a SAT Sum, as
in the zoo's ResNet-18 v1) outputs partial sums in the Sum's level units, which the Sum adds,
clamps and rounds once; a global Average pool outputs the exact integer sum of its window in
the finer domain (alpha, R * H * W). A cell the fusion does not cover runs as the original float
cell on dequantized inputs (its SAT output, if any, is turned back into levels), and is
reported in one line.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from n2q.errors import UserError
from n2q.quant.integer import (
    IntegerBranchLayer,
    IntegerElemWise,
    IntegerLinearLayer,
    Rescale,
    activation_dtype,
    bn_factor,
    branch_rescale,
    conv_bn_act_rescale,
    elemwise_rescale,
    fc_rescale,
    integer_weights,
    quantize_input,
    to_integer_levels,
    weight_scale,
)

INPUT_DOMAIN = (1.0, 255)  # the provider's [0, 1] stimuli times 255 (fusion.md)
# Cells that only move or pick values: exact on integers (Pool only when Max).
PASS_TYPES = ("Pool", "Padding", "Dropout", "Reshape", "Transpose")
LINEAR_TYPES = ("Conv", "Fc")


@dataclass(frozen=True)
class Domain:
    """Output domain of a node: integer levels of (alpha, range), or float (alpha None).

    partial: a residual branch's output, float64 in the level units of (alpha, range) (the
    consuming Sum's SAT quantizer), not yet clamped nor rounded: not an integer activation.
    """

    alpha: float | None = None
    range: int | None = None
    partial: bool = False

    @property
    def integer(self) -> bool:
        return self.alpha is not None and not self.partial

    def dequantize(self, x: Tensor) -> Tensor:
        """Levels k -> k * alpha / R in float32 (the fake-quant network's values)."""
        if self.alpha is None:
            return x
        return x.to(torch.float32) * self.alpha / self.range


FLOAT = Domain()


@dataclass
class Step:
    """One node of the fused network, decided from the network's structure only.

    kind: "linear" (a Conv/Fc on integers, `bn` folded into it, the SAT quantizer of
    `act_cell` as output, a float output when `domain` is float, or a residual branch's
    partial output when `domain.partial`), "sum" (a residual ElemWise on integers and
    branches), "pass" (Pool Max / Padding / Dropout... unchanged on integers), "pool_sum" (a
    global Average pool: the integer sum of its window, domain (alpha, R * H * W)) or
    "float" (the original cell on float inputs; `reason` says why, empty for the Softmax).
    `covers`: the original cells this node replaces (conv1, bn1).
    """

    name: str
    kind: str
    inputs: list[str]
    domain: Domain
    covers: list[str]
    bn: str | None = None
    reason: str = ""
    logits: bool = field(default=False)  # a LogisticWithLoss target: keep the pre-activation


# ---------------------------------------------------------------------------------------------
# Reading the network (cells of n2q.net, quantizers of n2q.quant.sat)


def _sat_act(cell: Any) -> Any | None:
    from n2q.quant.sat import SATAct

    q = getattr(cell, "act_quantizer", None)
    return q if isinstance(q, SATAct) else None


def _sat_domain(cell: Any) -> Domain:
    q = _sat_act(cell)
    return Domain(float(q.alpha.detach().abs()), int(q.range))


def _is_identity(activation: nn.Module | None) -> bool:
    return activation is None or type(activation).__name__ in ("Identity", "Linear")


def _clamp_compatible(activation: nn.Module | None) -> bool:
    """Activations that a SAT clamp to [0, alpha] makes redundant: none, Linear, ReLU."""
    if _is_identity(activation):
        return True
    return (
        type(activation).__name__ == "Rectifier"
        and not getattr(activation, "leak_slope", 0.0)
        and not getattr(activation, "clipping", 0.0)
    )


def _weight_problem(cell: Any) -> str | None:
    """Why a Conv/Fc's weights cannot become integers (None when they can)."""
    from n2q.quant.sat import SATWeight

    q = getattr(cell, "weight_quantizer", None)
    if not isinstance(q, SATWeight):
        return "its weights have no QWeight=SAT quantizer"
    if not q.apply_quantization:
        return "QWeight.ApplyQuantization=0 (clamp phase): its weights are not quantized"
    return None


def sat_integer_weights(cell: Any) -> tuple[Tensor, float, float]:
    """(w_q, W_s, s) of a SAT-quantized Conv/Fc: w_q [weight's shape] float64 on the level grid
    (masked), W_s its integer scale, s the ApplyScaling divisor (1 without scaling); the cell's
    forward weight is w_q / s.

    Read from the quantizer's integer grid: integers k times grid.scale = unit / s, with unit
    the level step (1/R for Default and FullRange, 1/floor(R/2) otherwise).
    """
    q = cell.weight_quantizer
    mask = getattr(cell, "mask", None)
    unit = 1.0 / (q.range if q.quant_mode in ("Default", "FullRange") else q.range // 2)
    with torch.no_grad():
        w = cell.weight if mask is None else cell.weight * mask
        grid = q.integer_grid(w)
        forward = q.fake_quantize(w)
        levels = grid.integers(forward)
        if mask is not None:
            levels, forward = levels * mask, forward * mask
    s = unit / float(grid.scale)
    w_q = levels * unit
    if not torch.allclose(w_q / s, forward.double(), rtol=1e-5, atol=1e-6):
        raise RuntimeError(f"{cell.name}: SAT weights recomputed for fusion differ from the cell's")
    return w_q, float(weight_scale(q.range, q.quant_mode)), s


# ---------------------------------------------------------------------------------------------
# Planning


def _providers(net: Any) -> list[str]:
    return sorted({i for name in net.cells for i in net.inputs[name] if i not in net.cells})


def plan_fusion(net: Any) -> tuple[list[Step], dict[str, str]]:
    """The fused graph of `net`: steps in execution order, and for every original cell the node
    that produces its output (bn1 -> conv1 when bn1 is folded into conv1)."""
    steps: list[Step] = []
    alias = {p: p for p in _providers(net)}
    domain = {p: Domain(*INPUT_DOMAIN) for p in alias}
    logit_targets = {t.cell for t in net.targets if _loss_kind(net, t.cell) == "logistic_bce"}
    for name, cell in net.cells.items():
        if name in alias:  # folded into an earlier node
            continue
        inputs = [alias[i] for i in net.inputs[name]]
        step = _plan_cell(net, name, cell, inputs, [domain[i] for i in inputs])
        step.logits = name in logit_targets
        steps.append(step)
        for covered in step.covers:
            alias[covered] = step.name
        domain[step.name] = step.domain
    return steps, alias


def _loss_kind(net: Any, name: str) -> str:
    kind = getattr(net, "loss_kind", None)
    return kind(name) if callable(kind) else "output"


def _plan_cell(net: Any, name: str, cell: Any, inputs: list[str], in_domains: list[Domain]) -> Step:
    all_integer = all(d.integer for d in in_domains)
    if cell.type in LINEAR_TYPES:
        return _plan_linear(net, name, cell, inputs, in_domains)
    if cell.type == "ElemWise":
        return _plan_sum(name, cell, inputs, in_domains)
    if cell.type == "Softmax":
        return _float_step(name, cell, inputs, "")  # float on the float logits by design
    if cell.type == "BatchNorm":
        return _float_step(
            name, cell, inputs, "a BatchNorm without QAct=SAT, or not right after a fusable Conv/Fc"
        )
    if not all_integer:
        return _float_step(name, cell, inputs, "its input is float")
    if cell.type in PASS_TYPES and len(inputs) == 1:
        problem = _pass_problem(cell)
        if problem is None:
            return Step(name, "pass", inputs, in_domains[0], covers=[name])
        window = _global_average_window(cell)
        if window and _pass_problem(cell, average_ok=True) is None:
            # An average of integers is not an integer; their sum is, and it is the average
            # exactly in the finer domain (alpha, R * window): k * alpha / (R * window).
            domain = Domain(in_domains[0].alpha, in_domains[0].range * window)
            return Step(name, "pool_sum", inputs, domain, covers=[name])
        return _float_step(name, cell, inputs, problem)
    return _float_step(name, cell, inputs, f"a {cell.type} cell is not fused")


def _pads_pool(cell: Any) -> bool:
    return cell.type == "Pool" and any(int(p) for p in getattr(cell, "padding", (0,)))


def _pass_problem(cell: Any, average_ok: bool = False) -> str | None:
    if getattr(cell, "act_quantizer", None) is not None or not _is_identity(cell.activation):
        return "it has an activation or an activation quantizer"
    if cell.type == "Pool" and getattr(cell, "pooling", "Max") != "Max" and not average_ok:
        return f"Pooling={cell.pooling} averages integers (only a global average is fused)"
    return None


def _global_average_window(cell: Any) -> int:
    """H * W of an unpadded Average pool whose window is its whole input (output 1x1), else 0.

    Other average pools stay float (reported): their sums would be exact too, but a global
    pool before the last Fc is the case networks have (GlobalAveragePool)."""
    if cell.type != "Pool" or getattr(cell, "pooling", None) != "Average":
        return 0
    in_shape, kernel = getattr(cell, "in_shape", None), tuple(getattr(cell, "kernel", ()))
    if in_shape is None or any(int(p) for p in getattr(cell, "padding", (0,))):
        return 0
    if kernel != tuple(in_shape[1:]) or tuple(cell.out_shape[1:]) != (1, 1):
        return 0
    return int(kernel[0] * kernel[1])


def _float_step(name: str, cell: Any, inputs: list[str], reason: str) -> Step:
    out = _sat_domain(cell) if _sat_act(cell) is not None else FLOAT
    return Step(name, "float", inputs, out, covers=[name], reason=reason)


def _plan_linear(
    net: Any, name: str, cell: Any, inputs: list[str], in_domains: list[Domain]
) -> Step:
    problem = _weight_problem(cell)
    if problem is None and not all(d.integer for d in in_domains):
        problem = "its input is float"
    if problem is None and len(set(in_domains)) > 1:
        problem = "its inputs have different integer scales"
    if problem is not None:
        return _float_step(name, cell, inputs, problem)
    bn = _following_bn(net, name, cell)
    if bn is not None:
        bn_cell = net.cells[bn]
        return Step(name, "linear", inputs, _sat_domain(bn_cell), covers=[name, bn], bn=bn)
    branch = _residual_branch(net, name, cell)
    if branch is not None:
        covers, summed = branch
        sum_domain = _sat_domain(net.cells[summed])
        domain = Domain(sum_domain.alpha, sum_domain.range, partial=True)
        bn_name = covers[1] if len(covers) > 1 else None
        return Step(name, "linear", inputs, domain, covers=covers, bn=bn_name)
    if getattr(cell, "act_quantizer", None) is None:
        # integer accumulation, float output (the logits), then the float activation
        return Step(name, "linear", inputs, FLOAT, covers=[name])
    if _sat_act(cell) is not None and _clamp_compatible(cell.activation):
        return Step(name, "linear", inputs, _sat_domain(cell), covers=[name])
    return _float_step(
        name, cell, inputs, "its activation quantizer is not a QAct=SAT after a Linear activation"
    )


def _following_bn(net: Any, name: str, cell: Any) -> str | None:
    """The BatchNorm to fold into the Conv/Fc `name`: its only consumer, reading only it,
    with a SAT activation quantizer; the Conv/Fc itself linear and unquantized at the output."""
    consumers = list(net.consumers(name))
    if len(consumers) != 1 or getattr(cell, "act_quantizer", None) is not None:
        return None
    bn = net.cells[consumers[0]]
    if bn.type != "BatchNorm" or list(net.inputs[consumers[0]]) != [name]:
        return None
    if not _is_identity(cell.activation) or _sat_act(bn) is None:
        return None
    return consumers[0] if _clamp_compatible(bn.activation) else None


def _residual_branch(net: Any, name: str, cell: Any) -> tuple[list[str], str] | None:
    """(covered cells, Sum) when the Conv `name` is a residual branch of a fusable Sum: the
    Conv linear without QAct, feeding (through at most one BatchNorm that has no QAct and a
    Linear activation, reading only the Conv) only that Sum. None otherwise."""
    if cell.type != "Conv" or getattr(cell, "act_quantizer", None) is not None:
        return None
    if not _is_identity(cell.activation):
        return None
    covers = [name]
    consumers = list(net.consumers(name))
    if len(consumers) == 1 and net.cells[consumers[0]].type == "BatchNorm":
        bn = net.cells[consumers[0]]
        if list(net.inputs[consumers[0]]) != [name] or bn.act_quantizer is not None:
            return None
        if not _is_identity(bn.activation):
            return None
        covers.append(consumers[0])
        consumers = list(net.consumers(consumers[0]))
    if len(consumers) != 1 or net.cells[consumers[0]].type != "ElemWise":
        return None
    summed = consumers[0]
    if list(net.inputs[summed]).count(covers[-1]) != 1 or _sum_problem(net.cells[summed]):
        return None
    return covers, summed


def _sum_problem(cell: Any) -> str | None:
    """Why an ElemWise cell cannot be a fused Sum, its inputs aside (None when it can)."""
    if getattr(cell, "operation", None) != "Sum":
        return f"Operation={cell.operation} is not fused"
    if _sat_act(cell) is None or not _clamp_compatible(cell.activation):
        return "no QAct=SAT after a Linear activation"
    if bool((cell.shifts != 0).any()):
        return "Shifts are not fused"
    weights = cell.weights.reshape(cell.weights.shape[0], -1)
    if not bool((weights == weights[:, :1]).all()):
        return "per-channel Weights are not fused"
    return None


def _plan_sum(name: str, cell: Any, inputs: list[str], in_domains: list[Domain]) -> Step:
    problem = None
    out = _sat_domain(cell) if _sat_act(cell) is not None else FLOAT
    branch_domain = Domain(out.alpha, out.range, partial=True)
    if not all(d.integer or d == branch_domain for d in in_domains):
        problem = "an input is float"
    problem = _sum_problem(cell) or problem
    if problem is not None:
        return _float_step(name, cell, inputs, problem)
    return Step(name, "sum", inputs, out, covers=[name])


# ---------------------------------------------------------------------------------------------
# The fused network


class FusedNetwork(nn.Module):
    """The integer-only network; called like ``Network`` with the provider's [0, 1] stimuli.

    ``cells``: node name -> module in execution order (IntegerLinearLayer, IntegerElemWise, or
    the original cell for "pass" and "float" nodes); ``inputs``: node -> input names;
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
        self.domains = {s.name: s.domain for s in steps}
        self.domains.update({p: Domain(*INPUT_DOMAIN) for p in providers})
        self.targets = list(targets)
        self.input_shape = input_shape
        self._loss_kinds = dict(loss_kinds or {})
        self.float_lines = [
            f"{s.name}: {s.reason}; it stays float" for s in steps if s.kind == "float" and s.reason
        ]

    def loss_kind(self, name: str) -> str:
        """As ``Network.loss_kind`` for the original target cell `name`."""
        return self._loss_kinds.get(name, "output")

    def forward_all(self, x: Tensor) -> dict[str, Tensor]:
        """Every node's output: integer levels (uint8 for R <= 255) or float tensors."""
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
        x_int = quantize_input(x, INPUT_DOMAIN[1])
        values: dict[str, Tensor] = {p: x_int for p in self.providers}
        logits: dict[str, Tensor] = {}
        for step in self.steps:
            xs = [values[i] for i in step.inputs]
            values[step.name] = self._node(step, xs, logits)
        return values, logits

    def _node(self, step: Step, xs: list[Tensor], logits: dict[str, Tensor]) -> Tensor:
        module = self.cells[step.name]
        if step.kind == "linear":
            x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
            if step.logits:
                logits[step.name] = module.logits(x)
            return module(x)
        if step.kind == "sum":
            return module(*xs)
        if step.kind == "pool_sum":  # [N, C, H, W] -> [N, C, 1, 1] exact integer sums
            total = xs[0].to(torch.int32).sum(dim=(2, 3), keepdim=True)
            return total.to(activation_dtype(step.domain.range))
        if step.kind == "pass":  # exact: the cell only moves or picks integers
            if _pads_pool(module):  # its padding is -inf, a float
                return module(xs[0].to(torch.float32)).to(xs[0].dtype)
            return module(xs[0])
        floats = [self.domains[i].dequantize(v) for i, v in zip(step.inputs, xs, strict=True)]
        if getattr(module, "MULTI_INPUT", False):
            arg: Any = floats
        else:
            arg = floats[0] if len(floats) == 1 else torch.cat(floats, dim=1)
        if step.logits:
            logits[step.name] = module.op(arg)
        y = module(arg)
        if step.domain.integer:
            return to_integer_levels(y, step.domain.alpha, step.domain.range)
        return y

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
        """Nodes whose output is not an integer tensor with values in [0, R] (empty: all ok)."""
        bad = []
        for name in self.integer_nodes():
            y, r = values[name], self.domains[name].range
            if y.dtype != activation_dtype(r) or int(y.min()) < 0 or int(y.max()) > r:
                bad.append(name)
        return bad


# ---------------------------------------------------------------------------------------------
# Building the nodes


def _as_stored(rescale: Rescale) -> Rescale:
    """Per-channel values rounded to float32, what a weights folder holds: a saved and
    reloaded network is then the very same network."""
    return Rescale(
        bias=rescale.bias.float().double(),
        clip=None if rescale.clip is None else rescale.clip.float().double(),
        scaling=rescale.scaling.float().double(),
    )


def _linear_module(
    cell: Any, step: Step, weight: Tensor, rescale: Rescale, range_in: float
) -> IntegerLinearLayer:
    """An IntegerLinearLayer with the cell attributes that the weights writer and the graph
    drawer read (name, shapes, mask, groups, export format, stride, padding)."""
    conv = cell.type == "Conv"
    geometry = dict(
        range_in=range_in,
        stride=tuple(cell.stride) if conv else (1, 1),
        padding=tuple(cell.padding) if conv else (0, 0),
        dilation=tuple(cell.dilation) if conv else (1, 1),
        groups=int(getattr(cell, "groups", 1)) if conv else 1,
    )
    layer: IntegerLinearLayer
    if step.domain.partial:
        layer = IntegerBranchLayer(cell.type, weight, _as_stored(rescale), **geometry)
    else:
        layer = IntegerLinearLayer(
            cell.type,
            weight,
            _as_stored(rescale),
            range_out=step.domain.range,
            activation=None if step.domain.integer else copy.deepcopy(cell.activation),
            **geometry,
        )
    layer.register_buffer("mask", getattr(cell, "mask", None), persistent=False)
    layer.weights_export_format = getattr(cell, "weights_export_format", None)
    _describe(layer, cell, step)
    return layer


def _sum_module(
    cell: Any, step: Step, coefficients: list[float], rescale: Rescale
) -> IntegerElemWise:
    stored = [float(torch.tensor(c, dtype=torch.float32)) for c in coefficients]
    module = IntegerElemWise(stored, _as_stored(rescale), step.domain.range)
    module.activation = nn.Identity()
    _describe(module, cell, step)
    return module


def _describe(module: nn.Module, cell: Any, step: Step) -> None:
    module.name = step.name
    module.section = getattr(cell, "section", None)
    module.in_shape = getattr(cell, "in_shape", None)
    module.out_shape = getattr(cell, "out_shape", None)
    module.weight_quantizer = None
    module.act_quantizer = None


def _fuse_linear(net: Any, step: Step, in_domain: Domain) -> IntegerLinearLayer:
    """The integer layer of a "linear" step: W' and the per-channel B', C', S' (fusion.md)."""
    cell = net.cells[step.name]
    w_q, w_s, s = sat_integer_weights(cell)
    out_channels = w_q.shape[0]
    bias = cell.bias if getattr(cell, "bias", None) is not None else torch.zeros(out_channels)
    if step.domain.partial:
        return _fuse_branch(net, step, in_domain, w_q, w_s, s, bias)
    if step.bn is None:
        return _fuse_fc(cell, step, in_domain, w_q, w_s, s, bias)
    return _fuse_conv_bn(net, step, in_domain, w_q, w_s, s, bias)


def _fuse_fc(
    cell: Any, step: Step, in_domain: Domain, w_q: Tensor, w_s: float, s: float, bias: Tensor
) -> IntegerLinearLayer:
    """fusion.md "Fc" (also a Conv with its own QAct and no BatchNorm): W' = w_q * W_s,
    B' = b * (R_in/alpha_in) * W_s * s, S' = (R_out/alpha_out) / ((R_in/alpha_in) * s * W_s),
    C' = alpha_out * (R_in/alpha_in) * W_s * s; a float output (the logits) has no C'."""
    rescale = fc_rescale(
        bias,
        alpha_in=in_domain.alpha,
        range_in=in_domain.range,
        w_s=w_s,
        weight_scaling=s,
        alpha_out=step.domain.alpha,
        range_out=step.domain.range,
    )
    return _linear_module(cell, step, integer_weights(w_q, w_s), rescale, in_domain.range)


def _fuse_conv_bn(
    net: Any, step: Step, in_domain: Domain, w_q: Tensor, w_s: float, s: float, bias: Tensor
) -> IntegerLinearLayer:
    """fusion.md "Conv + BatchNorm + SAT activation": W' = sg * W_s * w_q with f the BN factor
    gamma / sqrt(var + eps) [O] and sg = sign(f), then the per-channel bias B', clip C' and
    scaling S' of :func:`conv_bn_act_rescale`."""
    bn = net.cells[step.bn]
    f = bn_factor(bn.weight, bn.running_var, bn.eps)
    w_int = integer_weights(w_q, w_s, torch.sign(f))
    # A scaled weight (w_q / s) before the BN: BN(z) with z = w_q.x/s + b equals the spec's
    # block with f/s, mean*s and b*s.
    rescale = conv_bn_act_rescale(
        f / s,
        bn.bias,
        bn.running_mean.double() * s,
        bias.double() * s,
        alpha_in=in_domain.alpha,
        range_in=in_domain.range,
        alpha_out=step.domain.alpha,
        range_out=step.domain.range,
        w_s=w_s,
    )
    return _linear_module(net.cells[step.name], step, w_int, rescale, in_domain.range)


def _fuse_branch(
    net: Any, step: Step, in_domain: Domain, w_q: Tensor, w_s: float, s: float, bias: Tensor
) -> IntegerLinearLayer:
    """fusion.md "Residual ElemWise", the branch side: W' = W_s * w_q, output acc * S' + B' in
    the Sum's level units (:func:`branch_rescale`), neither clamped nor rounded."""
    cell = net.cells[step.name]
    out_channels = w_q.shape[0]
    if step.bn is None:  # a Conv straight into the Sum: the BN affine is the identity
        one, zero = torch.ones(out_channels), torch.zeros(out_channels)
        f, beta, mean = one, zero, zero
    else:
        bn = net.cells[step.bn]
        # the true factor (no dead-channel zeroing): the branch divides by nothing
        f = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        beta, mean = bn.bias, bn.running_mean
    rescale = branch_rescale(
        f,
        beta,
        mean,
        bias,
        alpha_in=in_domain.alpha,
        range_in=in_domain.range,
        w_s=w_s,
        weight_scaling=s,
        alpha_out=step.domain.alpha,
        range_out=step.domain.range,
    )
    return _linear_module(cell, step, integer_weights(w_q, w_s), rescale, in_domain.range)


def _fuse_sum(net: Any, step: Step, in_domains: list[Domain]) -> IntegerElemWise:
    """fusion.md "Residual ElemWise": input i times the rescale c_i = w_i * (R_ref/alpha_ref) *
    (alpha_i/R_i), then scaling (R_out/alpha_out)/(R_ref/alpha_ref) and clip
    alpha_out*R_ref/alpha_ref (:func:`elemwise_rescale`)."""
    cell = net.cells[step.name]
    weights = cell.weights.reshape(len(step.inputs), -1)[:, 0].tolist()
    # With branch inputs (already in the Sum's output units) the accumulator is in those units.
    branches = any(d.partial for d in in_domains)
    coefficients, rescale = elemwise_rescale(
        [(d.alpha, d.range) for d in in_domains],
        alpha_out=step.domain.alpha,
        range_out=step.domain.range,
        weights=weights,
        reference=(step.domain.alpha, step.domain.range) if branches else None,
    )
    return _sum_module(cell, step, coefficients, rescale)


LinearMaker = Callable[[Step, Domain], nn.Module]
SumMaker = Callable[[Step, list[Domain]], nn.Module]


def _build(
    net: Any, steps: list[Step], alias: dict[str, str], linear: LinearMaker, summed: SumMaker
) -> FusedNetwork:
    providers = _providers(net)
    domains = {p: Domain(*INPUT_DOMAIN) for p in providers}
    modules: dict[str, nn.Module] = {}
    for step in steps:
        in_domains = [domains[i] for i in step.inputs]
        if step.kind == "linear":
            modules[step.name] = linear(step, in_domains[0])
        elif step.kind == "sum":
            modules[step.name] = summed(step, in_domains)
        else:
            modules[step.name] = copy.deepcopy(net.cells[step.name]).eval()
        domains[step.name] = step.domain
    kinds = {t.cell: _loss_kind(net, t.cell) for t in net.targets}
    shape = getattr(net, "input_shape", None)
    return FusedNetwork(steps, alias, modules, list(net.targets), providers, shape, kinds).eval()


def fuse_sat(net: Any) -> tuple[FusedNetwork, list[str]]:
    """The integer-only network of a SAT-trained `net` (fusion.md), and one line per cell
    that could not be fused and stays float."""
    steps, alias = plan_fusion(net)
    if not any(s.kind in ("linear", "sum") for s in steps):
        raise _nothing_fused(net, steps)
    with torch.no_grad():
        fused = _build(
            net,
            steps,
            alias,
            lambda step, domain: _fuse_linear(net, step, domain),
            lambda step, domains: _fuse_sum(net, step, domains),
        )
    return fused, list(fused.float_lines)


def _nothing_fused(net: Any, steps: list[Step]) -> UserError:
    """The error for a network without any fusable Conv/Fc (e.g. the clamp phase's INI),
    located at the first Conv/Fc's quantizer key."""
    first = next((s for s in steps if net.cells[s.name].type in LINEAR_TYPES), None)
    if first is None:
        return UserError("-qat-sat: nothing to fuse: the network has no Conv or Fc cell")
    key = "QWeight.ApplyQuantization" if "ApplyQuantization" in first.reason else "QWeight"
    message = (
        f"-qat-sat: nothing to fuse ({first.name}: {first.reason}): fuse the network of the "
        "quantization phase (QWeight=SAT with ApplyQuantization=1, BatchNorm QAct=SAT)"
    )
    section = getattr(net.cells[first.name], "section", None)
    return section.error(key, message) if section is not None else UserError(message)


@dataclass
class FusionCheck:
    """The fused network against the fake-quant one on the same stimuli, batch by batch
    (fusion.md "What the tests must show"): same class, integer activations in [0, R], the
    share of activation levels that differ (float32 ties of the fake-quant network), the
    largest logit difference. ``update`` per batch, then ``line()`` for the report."""

    total: int = 0
    same_class: int = 0
    levels: int = 0
    differing: int = 0
    max_logit_diff: float = 0.0
    bad_nodes: set[str] = field(default_factory=set)

    @torch.no_grad()
    def update(self, net: Any, fused: FusedNetwork, x: Tensor) -> None:
        """x: a batch of the provider's [0, 1] stimuli; both networks see round(255 x) / 255."""
        x8 = quantize_input(x, INPUT_DOMAIN[1]).to(x.dtype) / INPUT_DOMAIN[1]
        fake_all, fused_all = net.forward_all(x8), fused.forward_all(x8)
        self.bad_nodes.update(fused.check_integer_outputs(fused_all))
        for node in fused.integer_nodes():
            domain = fused.domains[node]
            reference = fake_all[fused.source_cell(node)].double() * (domain.range / domain.alpha)
            self.differing += int((fused_all[node].double() != torch.round(reference)).sum())
            self.levels += reference.numel()
        fake, logits = net(x8), fused(x8)
        for target in fused.targets:
            a, b = fake[target.cell].flatten(1), logits[target.cell].flatten(1)
            self.max_logit_diff = max(self.max_logit_diff, float((a - b).abs().max()))
            self.same_class += int((a.argmax(1) == b.argmax(1)).sum())
            self.total += len(a)

    @property
    def share(self) -> float:
        return self.differing / self.levels if self.levels else 0.0

    def line(self) -> str:
        integers = "all integers in [0, R]" if not self.bad_nodes else (
            "NOT integers in [0, R]: " + ", ".join(sorted(self.bad_nodes))
        )
        return (
            f"fused vs fake-quant: same class on {self.same_class}/{self.total} stimuli; "
            f"activations {integers}, {self.differing} of {self.levels} levels differ "
            f"(share {self.share:.2g}); max |logit diff| {self.max_logit_diff:.3g}"
        )


# ---------------------------------------------------------------------------------------------
# weights_quantized/


def save_fused(fused: FusedNetwork, folder: str | Path) -> Path:
    """Write `folder` atomically (weights.md): per fused Conv/Fc the integer ``_weights``, the
    accumulator-domain bias B' (``_biases``), ``_scaling`` S' and ``_clip`` C' (not for a float
    output); per fused Sum its input coefficients (``_weights``), ``_scaling`` and ``_clip``;
    cells left in float their usual files. No BatchNorm file."""
    from n2q.io.weights import save_weights

    return save_weights(fused, folder, plots=False)


def load_fused(net: Any, folder: str | Path) -> FusedNetwork:
    """Rebuild the fused network of `net` (as built from the INI) from a folder written by
    :func:`save_fused`. Fused layers and float cells take all their values from the folder;
    the SAT alphas of `net` only serve where a float cell or a target reads an integer output
    back in float units. Malformed or non-integer files raise UserError."""
    from n2q.io.weights import load_weights

    folder = Path(folder)
    steps, alias = plan_fusion(net)
    providers = _providers(net)
    domains = {p: Domain(*INPUT_DOMAIN) for p in providers} | {s.name: s.domain for s in steps}
    templates = _Cells(_template(net, step, domains) for step in steps)
    load_weights(templates, folder, ignore_missing=False)

    def linear(step: Step, in_domain: Domain) -> nn.Module:
        template = templates[step.name]
        weight = _checked_integers(template.weight, folder, step.name)
        return _linear_module(net.cells[step.name], step, weight, template.rescale, in_domain.range)

    def summed(step: Step, in_domains: list[Domain]) -> nn.Module:
        template = templates[step.name]
        return _sum_module(net.cells[step.name], step, template.coefficients, template.rescale)

    with torch.no_grad():
        fused = _build(net, steps, alias, linear, summed)
        for step in steps:
            if step.kind in ("float", "pass", "pool_sum"):
                fused.cells[step.name].load_state_dict(templates[step.name].state_dict())
    return fused


def _template(net: Any, step: Step, domains: dict[str, Domain]) -> tuple[str, nn.Module]:
    """A module with the cell protocol of n2q.io.weights for `step`, to load a folder into."""
    cell = net.cells[step.name]
    if step.kind == "linear":
        out = cell.weight.shape[0]
        zeros = torch.zeros(out, dtype=torch.float64)
        rescale = Rescale(zeros, zeros.clone() if step.domain.integer else None, zeros.clone())
        weight = torch.zeros(cell.weight.shape)  # float: integrality is checked after loading
        return step.name, _linear_module(cell, step, weight, rescale, domains[step.inputs[0]].range)
    if step.kind == "sum":
        one = torch.zeros(1, dtype=torch.float64)
        return step.name, _sum_module(
            cell, step, [0.0] * len(step.inputs), Rescale(one, one.clone(), one.clone())
        )
    return step.name, copy.deepcopy(cell)


class _Cells(dict):
    """name -> cell, accepted by n2q.io.weights as a network (it reads ``.cells``)."""

    @property
    def cells(self) -> dict[str, Any]:
        return self


def _checked_integers(weight: Tensor, folder: Path, name: str) -> Tensor:
    values = weight.double()
    rounded = torch.round(values)
    off = float((values - rounded).abs().max()) if values.numel() else 0.0
    if off > 0:
        raise UserError(
            f"{name}_weights.syntxt: fused weights must be integers (a value is "
            f"{off:.3g} off): is this a weights_quantized folder?",
            file=folder,
        )
    if values.numel() and float(rounded.abs().max()) > 32767:
        raise UserError(
            f"{name}_weights.syntxt: fused weights beyond the int16 range (|W'| > 32767): "
            "is this a weights_quantized folder?",
            file=folder,
        )
    small = not values.numel() or float(rounded.abs().max()) <= 127
    return rounded.to(torch.int8 if small else torch.int16)
