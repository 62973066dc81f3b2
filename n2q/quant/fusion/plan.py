"""Planning an integer fusion (fusion.md) from the network's structure and its quantizers'
integer grids (n2q.quant.protocol.IntegerGrid), never from their classes.

Each node's output has a :class:`Domain`: integers q for the float value (q - z) * scale, or
float. The provider's [0, 1] input is the integer domain (1/255, [0, 255]). A residual branch (a
Conv, + a BatchNorm without QAct, feeding only a fusable Sum, as in the zoo's ResNet-18 v1)
outputs partial sums in the Sum's level units; a global Average pool outputs the exact integer
sum of its window in the finer domain (scale / (H*W)). Uncovered cells stay float (reported)."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from n2q.quant.integer import activation_dtype, to_integer_levels

# Cells that only move or pick values: exact on integers (Pool only when Max).
PASS_TYPES = ("Pool", "Padding", "Dropout", "Reshape", "Transpose")
LINEAR_TYPES = ("Conv", "Fc")


@dataclass(frozen=True)
class Domain:
    """Output domain of a node: integers q in [qmin, qmax] for the float value
    (q - zero_point) * scale, or float (scale None). ``qmin`` is the grid's lowest level, or
    its zero point when a ReLU before the quantizer cuts the levels below it.

    partial: a residual branch's output, float64 in the level units of the consuming Sum's
    quantizer, not yet clamped nor rounded: not an integer activation.
    """

    scale: float | None = None
    qmin: int = 0
    qmax: int = 0
    zero_point: int = 0
    partial: bool = False

    @property
    def integer(self) -> bool:
        return self.scale is not None and not self.partial

    @property
    def range(self) -> int:
        """R of fusion.md: the levels above the zero point."""
        return self.qmax - self.zero_point

    @property
    def low(self) -> int:
        """The lowest level relative to the zero point (0 for unsigned or rectified)."""
        return self.qmin - self.zero_point

    @property
    def alpha(self) -> float:
        """alpha of fusion.md: the float value of the top level."""
        return self.range * self.scale

    @property
    def magnitude(self) -> int:
        """The largest |q - zero_point|: what bounds an accumulator reading this domain."""
        return max(self.range, -self.low)

    @property
    def dtype(self) -> Any:
        return activation_dtype(self.qmax, self.qmin)

    def dequantize(self, x: Tensor) -> Tensor:
        """Levels q -> (q - z) * scale in float32 (the fake-quant network's values)."""
        if self.scale is None:
            return x
        x = x.float()
        return (x - self.zero_point if self.zero_point else x) * self.scale

    def levels(self, y: Tensor) -> Tensor:
        """A fake-quantized float tensor back to its integer levels."""
        return to_integer_levels(y, self.scale, self.range, low=self.low,
                                 zero_point=self.zero_point)

    def window_sum(self, window: int) -> Domain:
        """The domain of the sum of ``window`` values of this one (a global average pool)."""
        return Domain(self.scale / window, self.qmin * window, self.qmax * window,
                      self.zero_point * window)


FLOAT = Domain()
INPUT = Domain(1.0 / 255, 0, 255)  # the provider's [0, 1] stimuli times 255 (fusion.md)


class StepKind(enum.Enum):
    """What a node of the fused network does."""

    LINEAR = "linear"       # a Conv/Fc on integers, its BatchNorm folded in
    SUM = "sum"             # a residual ElemWise Sum on integers and branches
    PASS = "pass"           # Pool Max / Padding / Dropout...: unchanged on integers
    POOL_SUM = "pool_sum"   # a global Average pool: the integer sum of its window
    FLOAT = "float"         # the original cell on float inputs


@dataclass
class Step:
    """One node of the fused network, decided from the network's structure only.

    LINEAR: `bn` folded in, the activation quantizer of the last covered cell as output (a
    float output when `domain` is float, a residual branch's partial output when
    `domain.partial`). FLOAT: `reason` says why (empty for the Softmax). `covers`: the
    original cells this node replaces (conv1, bn1).
    """

    name: str
    kind: StepKind
    inputs: list[str]
    domain: Domain
    covers: list[str]
    bn: str | None = None
    reason: str = ""
    logits: bool = field(default=False)  # a LogisticWithLoss target: keep the pre-activation


# ---------------------------------------------------------------------------------------------
# Reading the network: activations and weights through the quantizers' integer grids


def is_identity(activation: nn.Module | None) -> bool:
    return activation is None or type(activation).__name__ in ("Identity", "Linear")


def _is_relu(activation: nn.Module | None) -> bool:
    return (type(activation).__name__ == "Rectifier" and not getattr(activation, "leak_slope", 0.0)
            and not getattr(activation, "clipping", 0.0))


def grid_problem(cell: Any) -> str | None:
    """Why the output of ``cell`` is not on a per-layer integer grid (None when it is)."""
    q = getattr(cell, "act_quantizer", None)
    if q is None:
        return "it has no activation quantizer"
    grid = q.integer_grid() if hasattr(q, "integer_grid") else None
    if grid is None:
        return f"its activation quantizer ({q.extra_repr()}) gives no integer grid"
    if grid.per_channel or grid.stride != 1:
        return "its activation grid is per channel or strided (not fused)"
    if float(grid.zero_point) != round(float(grid.zero_point)):
        return "its activation zero point is not an integer"
    return None


def act_problem(cell: Any) -> str | None:
    """Why the output of ``cell`` cannot end a fused layer (None when it can): its grid, or
    an activation before the quantizer that the requantization does not compute."""
    problem = grid_problem(cell)
    if problem is None and not (is_identity(cell.activation) or _is_relu(cell.activation)):
        problem = "its activation before the quantizer is neither Linear nor a plain ReLU"
    return problem


def act_domain(cell: Any) -> Domain:
    """The integer domain of a cell whose :func:`grid_problem` is None."""
    grid = cell.act_quantizer.integer_grid()
    z = int(round(float(grid.zero_point)))
    # a ReLU before the quantizer keeps the levels from the zero point up
    qmin = max(grid.qmin, z) if _is_relu(cell.activation) else grid.qmin
    return Domain(float(grid.scale), qmin, grid.qmax, z)


def out_domain(cell: Any) -> Domain:
    return act_domain(cell) if grid_problem(cell) is None else FLOAT


def weight_problem(cell: Any) -> str | None:
    """Why a Conv/Fc's weights cannot become integers (None when they can)."""
    q = getattr(cell, "weight_quantizer", None)
    if q is None or not hasattr(q, "integer_grid"):
        return "its weights have no weight quantizer (QWeight)"
    grid = q.integer_grid(cell.weight.detach())
    if grid is None:
        return f"its weight quantizer ({q.extra_repr()}) gives no integer grid"
    if (grid.per_channel and grid.axis != 0) or bool((grid.zero_point != 0).any()):
        return "its weight grid has a zero point or is not per output channel (not fused)"
    # a quantizer that folds the following BatchNorm (SimQAT FoldBN) is fused with that
    # BatchNorm as a shift only (build._fuse_conv_bn)
    if not _runs_plain_op(q, cell) and not getattr(q, "folds_batchnorm", False):
        return (f"its weight quantizer ({q.extra_repr()}) changes the op beyond its quantized "
                "weight (e.g. a folded BatchNorm): not fused")
    return None


def _linear_probe(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A linear op: the per-output-channel sums of the weight, as an output [1, O, 1, 1]."""
    return weight.reshape(1, weight.shape[0], -1).sum(2)[:, :, None, None]


def _runs_plain_op(q: Any, cell: Any) -> bool:
    """Fusion replaces the cell's op by integers of ``fake_quantize(w)``: true when the
    quantizer's ``run_op`` is the op on that weight (Integer mode's rescale included), probed
    with a linear op."""
    mask = getattr(cell, "mask", None)
    w = cell.weight.detach()
    x = torch.zeros(1, 1, 1, 1)
    with torch.no_grad():
        ran = q.run_op(_linear_probe, x, w, None, mask)
        fake = q.fake_quantize(w if mask is None else w * mask)
        plain = _linear_probe(x, fake if mask is None else fake * mask, None)
    return bool(torch.allclose(ran, plain, rtol=1e-5, atol=1e-6))


# ---------------------------------------------------------------------------------------------
# Planning


def providers(net: Any) -> list[str]:
    return sorted({i for name in net.cells for i in net.inputs[name] if i not in net.cells})


def loss_kind(net: Any, name: str) -> str:
    kind = getattr(net, "loss_kind", None)
    return kind(name) if callable(kind) else "output"


def plan_fusion(net: Any) -> tuple[list[Step], dict[str, str]]:
    """The fused graph of `net`: steps in execution order, and for every original cell the node
    that produces its output (bn1 -> conv1 when bn1 is folded into conv1)."""
    steps: list[Step] = []
    alias = {p: p for p in providers(net)}
    domain = {p: INPUT for p in alias}
    logit_targets = {t.cell for t in net.targets if loss_kind(net, t.cell) == "logistic_bce"}
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


def _plan_cell(net: Any, name: str, cell: Any, inputs: list[str], in_domains: list[Domain]) -> Step:
    if cell.type in LINEAR_TYPES:
        return _plan_linear(net, name, cell, inputs, in_domains)
    if cell.type == "ElemWise":
        return _plan_sum(name, cell, inputs, in_domains)
    if cell.type == "Softmax":
        return _float_step(name, cell, inputs, "")  # float on the float logits by design
    if cell.type == "BatchNorm":
        return _float_step(name, cell, inputs, "a BatchNorm without a fusable QAct, or not "
                           "right after a fusable Conv/Fc")
    if not all(d.integer for d in in_domains):
        return _float_step(name, cell, inputs, "its input is float")
    if cell.type in PASS_TYPES and len(inputs) == 1:
        return _plan_pass(name, cell, inputs, in_domains[0])
    return _float_step(name, cell, inputs, f"a {cell.type} cell is not fused")


def _plan_pass(name: str, cell: Any, inputs: list[str], in_domain: Domain) -> Step:
    problem = _pass_problem(cell)
    if cell.type == "Padding" and in_domain.zero_point:
        problem = "it pads with level 0, not the zero point of its input"
    if problem is None:
        return Step(name, StepKind.PASS, inputs, in_domain, covers=[name])
    window = _global_average_window(cell)
    if window and _pass_problem(cell, average_ok=True) is None:
        # An average of integers is not an integer; their sum is, and it is the average
        # exactly in the finer domain (scale / window).
        return Step(name, StepKind.POOL_SUM, inputs, in_domain.window_sum(window), covers=[name])
    return _float_step(name, cell, inputs, problem)


def pads_pool(cell: Any) -> bool:
    return cell.type == "Pool" and any(int(p) for p in getattr(cell, "padding", (0,)))


def _pass_problem(cell: Any, average_ok: bool = False) -> str | None:
    if getattr(cell, "act_quantizer", None) is not None or not is_identity(cell.activation):
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
    return Step(name, StepKind.FLOAT, inputs, out_domain(cell), covers=[name], reason=reason)


def _plan_linear(
    net: Any, name: str, cell: Any, inputs: list[str], in_domains: list[Domain]
) -> Step:
    problem = weight_problem(cell)
    if problem is None and not all(d.integer for d in in_domains):
        problem = "its input is float"
    if problem is None and len(set(in_domains)) > 1:
        problem = "its inputs have different integer scales"
    if problem is not None:
        return _float_step(name, cell, inputs, problem)
    bn = _following_bn(net, name, cell)
    if bn is not None:
        return Step(name, StepKind.LINEAR, inputs, act_domain(net.cells[bn]), covers=[name, bn],
                    bn=bn)
    branch = _residual_branch(net, name, cell)
    if branch is not None:
        covers, summed = branch
        domain = dataclasses.replace(act_domain(net.cells[summed]), partial=True)
        bn_name = covers[1] if len(covers) > 1 else None
        return Step(name, StepKind.LINEAR, inputs, domain, covers=covers, bn=bn_name)
    if getattr(cell, "act_quantizer", None) is None:
        # integer accumulation, float output (the logits), then the float activation
        return Step(name, StepKind.LINEAR, inputs, FLOAT, covers=[name])
    problem = act_problem(cell)
    if problem is None:
        return Step(name, StepKind.LINEAR, inputs, act_domain(cell), covers=[name])
    return _float_step(name, cell, inputs, problem)


def _following_bn(net: Any, name: str, cell: Any) -> str | None:
    """The BatchNorm to fold into the Conv/Fc `name`: its only consumer, reading only it,
    with a fusable activation quantizer; the Conv/Fc itself linear and unquantized at the
    output."""
    consumers = list(net.consumers(name))
    if len(consumers) != 1 or getattr(cell, "act_quantizer", None) is not None:
        return None
    bn = net.cells[consumers[0]]
    if bn.type != "BatchNorm" or list(net.inputs[consumers[0]]) != [name]:
        return None
    if not is_identity(cell.activation) or act_problem(bn) is not None:
        return None
    return consumers[0]


def _residual_branch(net: Any, name: str, cell: Any) -> tuple[list[str], str] | None:
    """(covered cells, Sum) when the Conv `name` is a residual branch of a fusable Sum: the
    Conv linear without QAct, feeding (through at most one BatchNorm that has no QAct and a
    Linear activation, reading only the Conv) only that Sum. None otherwise."""
    if cell.type != "Conv" or getattr(cell, "act_quantizer", None) is not None:
        return None
    if not is_identity(cell.activation):
        return None
    covers = [name]
    consumers = list(net.consumers(name))
    if len(consumers) == 1 and net.cells[consumers[0]].type == "BatchNorm":
        bn = net.cells[consumers[0]]
        if list(net.inputs[consumers[0]]) != [name] or bn.act_quantizer is not None:
            return None
        if not is_identity(bn.activation):
            return None
        covers.append(consumers[0])
        consumers = list(net.consumers(consumers[0]))
    if len(consumers) != 1 or net.cells[consumers[0]].type != "ElemWise":
        return None
    summed = consumers[0]
    if list(net.inputs[summed]).count(covers[-1]) != 1 or sum_problem(net.cells[summed]):
        return None
    return covers, summed


def sum_problem(cell: Any) -> str | None:
    """Why an ElemWise cell cannot be a fused Sum, its inputs aside (None when it can)."""
    if getattr(cell, "operation", None) != "Sum":
        return f"Operation={cell.operation} is not fused"
    problem = act_problem(cell)
    if problem is not None:
        return problem
    if bool((cell.shifts != 0).any()):
        return "Shifts are not fused"
    weights = cell.weights.reshape(cell.weights.shape[0], -1)
    if not bool((weights == weights[:, :1]).all()):
        return "per-channel Weights are not fused"
    return None


def _plan_sum(name: str, cell: Any, inputs: list[str], in_domains: list[Domain]) -> Step:
    problem = None
    out = out_domain(cell)
    branch_domain = dataclasses.replace(out, partial=True)
    if not all(d.integer or d == branch_domain for d in in_domains):
        problem = "an input is float"
    problem = sum_problem(cell) or problem
    if problem is not None:
        return _float_step(name, cell, inputs, problem)
    return Step(name, StepKind.SUM, inputs, out, covers=[name])
