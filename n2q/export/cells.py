"""One ONNX translation per cell type, and the activations that follow a cell's op.

Each translator gets the builder, the cell and its input tensor names, and returns the name of
the tensor its op produces (before the activation and the activation quantizer). The nodes are
the ones n2q's ONNX import reads back as the same cells (Conv, Gemm after Flatten,
BatchNormalization, MaxPool/AveragePool, Add/Mul/Max, Softmax, Pad, Concat), so that a float
export re-imports with the same predictions. BatchNorm is KEPT as BatchNormalization (not
folded into the Conv before it): the exported graph is n2q's network cell for cell, and a
quantized Conv's DequantizeLinear weights stay the quantizer's exact grid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from n2q.errors import UserError
from n2q.export.builder import GraphBuilder
from n2q.export.quantized import EXPORT, quantize_output, weight_tensor

Translator = Callable[[GraphBuilder, Any, list[str]], str]
TRANSLATORS: dict[str, Translator] = {}


def translates(*types: str) -> Callable[[Translator], Translator]:
    def deco(fn: Translator) -> Translator:
        for t in types:
            TRANSLATORS[t] = fn
        return fn
    return deco


def refuse(cell: Any, why: str) -> UserError:
    return UserError(f"{EXPORT}: cell {cell.name} (Type={cell.type}): {why}")


def _np(t: Any) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def translate(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    """The cell's op (its output tensor named after the cell), activation and activation
    quantizer; returns the tensor of the cell's output."""
    fn = TRANSLATORS.get(cell.type)
    if fn is None:
        raise refuse(cell, f"no ONNX translation for this cell type (exported types: "
                     f"{', '.join(sorted(TRANSLATORS))})")
    if len(inputs) > 1 and not cell.MULTI_INPUT:   # several inputs: concatenated channels
        inputs = [b.node("Concat", [b.as_4d(i, cell.name) for i in inputs],
                         f"{cell.name}/concat", 4, axis=1)]
    y = fn(b, cell, inputs)
    if y in inputs:     # no node of its own (Dropout): an Identity carries the cell's name
        y = b.node("Identity", [y], f"{cell.name}/identity", b.rank.get(y, 4))
    y = b.rename(y, cell.name)      # N2D2's naming: a cell is its op node's first output
    y = activation(b, cell, y)
    if cell.act_quantizer is not None:
        y = quantize_output(b, cell, y)
    return y


# -- cells with weights --------------------------------------------------------------------------
@translates("Conv")
def conv(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    if tuple(cell.sub_sample) != (1, 1):
        raise refuse(cell, "SubSample > 1 (N2D2's summed sub-sampling) has no ONNX Conv form")
    x = b.as_4d(inputs[0], cell.name)
    args = [x, weight_tensor(b, cell)]
    if cell.bias is not None:
        args.append(b.const(f"{cell.name}/bias", _np(cell.bias)))
    (ph, pw), (kh, kw) = cell.padding, cell.kernel
    return b.node("Conv", args, f"{cell.name}/conv", 4, kernel_shape=[kh, kw],
                  strides=list(cell.stride), pads=[ph, pw, ph, pw],
                  dilations=list(cell.dilation), group=int(cell.groups))


@translates("Fc")
def fc(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    """Flatten in C, H, W order (n2q's Fc) then Gemm with transB=1 (weight [O, C*H*W])."""
    x = inputs[0]
    if b.rank.get(x, 4) != 2:
        x = b.node("Flatten", [x], f"{cell.name}/flatten", 2, axis=1)
    args = [x, weight_tensor(b, cell)]
    if cell.bias is not None:
        args.append(b.const(f"{cell.name}/bias", _np(cell.bias)))
    return b.node("Gemm", args, f"{cell.name}/gemm", 2, transB=1)


# -- shape-preserving cells ----------------------------------------------------------------------
@translates("BatchNorm")
def batch_norm(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    n = cell.name
    params = [b.const(f"{n}/scale", _np(cell.weight)), b.const(f"{n}/bias", _np(cell.bias)),
              b.const(f"{n}/mean", _np(cell.running_mean)),
              b.const(f"{n}/var", _np(cell.running_var))]
    x = inputs[0]
    # ONNX's momentum weighs the running value; n2q's (torch's) weighs the new batch
    return b.node("BatchNormalization", [x, *params], f"{n}/bn", b.rank.get(x, 4),
                  epsilon=float(cell.eps), momentum=1.0 - float(cell.momentum))


@translates("Pool")
def pool(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    x = b.as_4d(inputs[0], cell.name)
    (ph, pw), kernel, stride = cell.padding, list(cell.kernel), list(cell.stride)
    explicit = any(p > k // 2 for p, k in zip(cell.padding, cell.kernel, strict=True))
    pads = [ph, pw, ph, pw]
    if explicit:    # ONNX pooling (as torch) wants pads below half the kernel: pad first
        if cell.pooling == "Average" and not cell.count_include_pad:
            raise refuse(cell, "average pooling with padding over half the kernel that does "
                         "not count the padded values has no ONNX form")
        value = b.const(f"{cell.name}/pad_value",
                        np.float32(-np.inf if cell.pooling == "Max" else 0.0))
        x = b.node("Pad", [x, b.const(f"{cell.name}/pads", np.array(
            [0, 0, ph, pw, 0, 0, ph, pw]), np.int64), value], f"{cell.name}/pad", 4)
        pads = [0, 0, 0, 0]
    if cell.pooling == "Max":
        return b.node("MaxPool", [x], f"{cell.name}/pool", 4, kernel_shape=kernel,
                      strides=stride, pads=pads)
    return b.node("AveragePool", [x], f"{cell.name}/pool", 4, kernel_shape=kernel,
                  strides=stride, pads=pads, count_include_pad=int(cell.count_include_pad))


@translates("Dropout", "Activation")
def identity(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    """Dropout is the identity in inference; an Activation cell's op is (its inputs are
    concatenated by :func:`translate` first)."""
    return inputs[0]


@translates("Softmax")
def softmax(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    x = inputs[0]
    return b.node("Softmax", [x], f"{cell.name}/softmax", b.rank.get(x, 4), axis=1)


@translates("Padding")
def padding(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    x = b.as_4d(inputs[0], cell.name)
    top, bottom, left, right = (int(getattr(cell, k)) for k in ("top", "bottom", "left",
                                                                 "right"))
    pads = b.const(f"{cell.name}/pads", np.array([0, 0, top, left, 0, 0, bottom, right]),
                   np.int64)
    return b.node("Pad", [x, pads], f"{cell.name}/pad", 4)


@translates("Scaling")
def scaling(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    x = inputs[0]
    rank = b.rank.get(x, 4)
    factor = b.channel_const(f"{cell.name}/factor", _np(cell.factor).reshape(-1), rank)
    return b.node("Mul", [x, factor], f"{cell.name}/scale", rank)


@translates("ElemWise")
def elemwise(b: GraphBuilder, cell: Any, inputs: list[str]) -> str:
    """N2D2's formulas (n2q.net.elemwise) with the [K, C] coefficients as constants."""
    n, op = cell.name, cell.operation
    rank = max(b.rank.get(x, 4) for x in inputs)
    xs = [b.as_4d(x, n) if rank == 4 else x for x in inputs]
    if op in ("Prod", "Max") or (op == "Sum" and cell._unit):
        onnx_op = {"Prod": "Mul", "Max": "Max", "Sum": "Add"}[op]
        y = xs[0]
        for i, x in enumerate(xs[1:]):
            y = b.node(onnx_op, [y, x], f"{n}/{onnx_op.lower()}{i}", rank)
        return y
    weights, shifts = _np(cell.weights)[:, 0, :, 0, 0], _np(cell.shifts)[:, 0, :, 0, 0]
    terms = []
    for k, x in enumerate(xs):      # w_k * f(x_k) [+ s_k]
        if op == "AbsSum":
            x = b.node("Abs", [x], f"{n}/abs{k}", rank)
        t = b.node("Mul", [x, b.channel_const(f"{n}/w{k}", weights[k], rank)],
                   f"{n}/term{k}", rank)
        if op == "EuclideanSum":
            t = b.node("Mul", [t, t], f"{n}/square{k}", rank)
            shift = shifts[k] ** 2
        else:
            shift = shifts[k] if op == "Sum" else np.zeros_like(shifts[k])
        if np.any(shift):
            t = b.node("Add", [t, b.channel_const(f"{n}/s{k}", shift, rank)],
                       f"{n}/shifted{k}", rank)
        terms.append(t)
    y = terms[0]
    for k, t in enumerate(terms[1:]):
        y = b.node("Add", [y, t], f"{n}/sum{k}", rank)
    return b.node("Sqrt", [y], f"{n}/sqrt", rank) if op == "EuclideanSum" else y


# -- activations ---------------------------------------------------------------------------------
def activation(b: GraphBuilder, cell: Any, x: str) -> str:
    """The cell's activation function (n2q.net.activations) as ONNX nodes."""
    act = cell.activation
    name = getattr(act, "name", "Linear")       # nn.Identity: no activation
    rank, n = b.rank.get(x, 4), cell.name
    if name == "Linear":
        return x
    if name == "Rectifier":
        if act.leak_slope:
            x = b.node("LeakyRelu", [x], f"{n}/leaky_relu", rank, alpha=float(act.leak_slope))
        if act.clipping > 0:    # Clip(0, c): the import reads it back as a clipped Rectifier
            low = "" if act.leak_slope else b.const(f"{n}/relu_min", np.float32(0))
            return b.node("Clip", [x, low, b.const(f"{n}/relu_max", np.float32(act.clipping))],
                          f"{n}/relu", rank)
        return x if act.leak_slope else b.node("Relu", [x], f"{n}/relu", rank)
    if name in ("Logistic", "LogisticWithLoss"):
        return b.node("Sigmoid", [x], f"{n}/sigmoid", rank)
    if name == "Saturation":
        t = float(act.threshold)
        return b.node("Clip", [x, b.const(f"{n}/sat_min", np.float32(-t)),
                               b.const(f"{n}/sat_max", np.float32(t))], f"{n}/saturation",
                      rank)
    if name == "Softplus":
        return b.node("Softplus", [x], f"{n}/softplus", rank)
    if name == "Swish":
        s = b.node("Sigmoid", [x], f"{n}/swish_sigmoid", rank)
        return b.node("Mul", [x, s], f"{n}/swish", rank)
    if name in ("Tanh", "TanhLeCun"):
        alpha, gain = (float(act.alpha), 1.0) if name == "Tanh" else (2.0 / 3.0, 1.7159)
        if alpha != 1.0:
            x = b.node("Mul", [x, b.const(f"{n}/tanh_alpha", np.float32(alpha))],
                       f"{n}/tanh_in", rank)
        y = b.node("Tanh", [x], f"{n}/tanh", rank)
        if gain != 1.0:
            y = b.node("Mul", [y, b.const(f"{n}/tanh_gain", np.float32(gain))],
                       f"{n}/tanh_out", rank)
        return y
    raise refuse(cell, f"activation {name} has no ONNX translation")
