"""ONNX translations of activations (folded into the previous cell when possible),
element-wise ops, Concat, Flatten/Reshape, Identity, Dropout, Softmax and Pad."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from n2q.net.onnx_graph import attributes
from n2q.net.onnx_translator import (
    PASS_THROUGH,
    Translator,
    onnx_op,
)


@onnx_op("Relu")
def relu(t: Translator, node: onnx.NodeProto) -> None:
    t.fold_activation(node, {"ActivationFunction": "Rectifier"})


@onnx_op("LeakyRelu")
def leaky_relu(t: Translator, node: onnx.NodeProto) -> None:
    alpha = float(attributes(node).get("alpha", 0.01))
    t.fold_activation(node, {"ActivationFunction": "Rectifier",
                             "ActivationFunction.LeakSlope": alpha})


@onnx_op("Clip")
def clip(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    low = attrs.get("min", -np.inf)
    high = attrs.get("max", np.inf)
    if len(node.input) > 1 and node.input[1]:
        low = float(t.const(node, 1, "min"))
    if len(node.input) > 2 and node.input[2]:
        high = float(t.const(node, 2, "max"))
    if low == 0.0 and 0.0 < high < np.inf:
        t.fold_activation(node, {"ActivationFunction": "Rectifier",
                                 "ActivationFunction.Clipping": float(high)})
    elif low == 0.0 and high == np.inf:
        t.fold_activation(node, {"ActivationFunction": "Rectifier"})
    elif -low == high and high < np.inf:
        t.fold_activation(node, {"ActivationFunction": "Saturation",
                                 "ActivationFunction.Threshold": float(high)})
    elif low == -np.inf and high == np.inf:
        t.alias(node.output[0], t.source(node.input[0]))
    else:
        raise t.fail(node, f"Clip to [{low}, {high}] has no n2q activation (supported: "
                     "[0, max] as a clipped Rectifier, [-t, t] as Saturation)")


_SIMPLE_ACTIVATIONS = {"Sigmoid": "Logistic", "Tanh": "Tanh", "Softplus": "Softplus"}


@onnx_op(*_SIMPLE_ACTIVATIONS)
def simple_activation(t: Translator, node: onnx.NodeProto) -> None:
    t.fold_activation(node, {"ActivationFunction": _SIMPLE_ACTIVATIONS[node.op_type]})


# -- element-wise, concatenation -------------------------------------------------------------
_ELEMWISE = {"Add": ("Sum", None), "Sum": ("Sum", None), "Sub": ("Sum", "1 -1"),
             "Mul": ("Prod", None), "Max": ("Max", None)}


@onnx_op(*_ELEMWISE)
def elemwise(t: Translator, node: onnx.NodeProto) -> None:
    operands = [n for n in node.input if n]
    constants = [n for n in operands if n in t.graph.constants]
    if constants:
        if node.op_type == "Add" and len(operands) == 2 and _fold_bias(t, node, constants[0]):
            return
        raise t.fail(node, f"{node.op_type} with the constant '{constants[0]}' has no n2q "
                     "cell (only a per-output bias after MatMul/Gemm/Conv is folded)")
    shapes = {t.chw(n) for n in operands}
    if len(shapes) != 1:
        raise t.fail(node, f"{node.op_type} of tensors of different shapes "
                     f"({', '.join('x'.join(map(str, s)) for s in shapes)}): broadcasting is "
                     "not supported")
    operation, weights = _ELEMWISE[node.op_type]
    keys: dict[str, Any] = {"NbOutputs": t.chw(node.output[0])[0], "Operation": operation}
    if weights:
        keys["Weights"] = weights
    t.emit(node, node.output[0], "ElemWise", [t.source(n) for n in operands], keys)


def _fold_bias(t: Translator, node: onnx.NodeProto, constant: str) -> bool:
    """MatMul + Add(constant) -> the Fc's bias (same for a bias-less Conv)."""
    data = next(n for n in node.input if n and n != constant)
    source = t.producer.get(data)
    spec = t.by_name.get(source) if source else None
    if spec is None or spec.type not in ("Fc", "Conv") or "bias" in spec.params \
            or spec.activation or t.consumers_of_cell(source) != 1:
        return False
    n_out = int(spec.keys["NbOutputs"])
    value = np.asarray(t.graph.constants[constant], dtype=np.float32)
    if value.size == 1:
        value = np.full(n_out, float(value.reshape(())), dtype=np.float32)
    if value.size != n_out or value.reshape(-1).shape[0] != n_out:
        return False
    spec.params["bias"] = value.reshape(-1)
    spec.keys["NoBias"] = "0"
    spec.zero_bias = False
    t.alias(node.output[0], source)
    return True


@onnx_op("Concat")
def concat(t: Translator, node: onnx.NodeProto) -> None:
    """Channel concatenation: a Linear Activation cell with several inputs (N2D2's way)."""
    rank = len(t.graph.shapes.get(node.output[0], (0, 0, 0, 0)))
    axis = int(attributes(node).get("axis", 1))
    if axis < 0:
        axis += rank
    if axis != 1:
        raise t.fail(node, f"concatenation on axis {axis}: n2q concatenates channels (axis 1)"
                     " only")
    t.emit(node, node.output[0], "Activation", [t.source(n) for n in node.input if n],
           {"NbOutputs": t.chw(node.output[0])[0]})


# -- shape-only nodes ----------------------------------------------------------------------------
@onnx_op("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def flatten(t: Translator, node: onnx.NodeProto) -> None:
    """Flatten-like nodes are aliases: Fc flattens its input in C, H, W order, and a
    C x 1 x 1 map is the same thing as a flat vector of C values."""
    source = t.source(node.input[0])
    c, h, w = t.source_chw(source)
    dims = t.graph.shapes.get(node.output[0])
    flat_ok = dims is not None and int(np.prod(dims[1:])) == c * h * w and len(dims) in (2, 4)
    same_map = dims is not None and tuple(dims[1:]) in ((c * h * w,), (c, h, w))
    if node.op_type == "Flatten" and int(attributes(node).get("axis", 1)) != 1:
        flat_ok = False
    readers = t.graph.consumers.get(node.output[0], [])
    into_fc = readers and all(r.op_type in ("Gemm", "MatMul") for r in readers)
    if flat_ok and (h * w == 1 or into_fc or (same_map and len(dims) == 4)):
        t.alias(node.output[0], source)
        return
    raise t.fail(node, f"{node.op_type} of a {c}x{h}x{w} map to {list(dims or [])} is "
                 "only imported when it flattens for a fully-connected layer")


@onnx_op(*PASS_THROUGH)
def identity(t: Translator, node: onnx.NodeProto) -> None:
    t.alias(node.output[0], t.source(node.input[0]))


# -- other cells ---------------------------------------------------------------------------------
@onnx_op("Dropout")
def dropout(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    ratio = float(attrs.get("ratio", 0.5))
    if len(node.input) > 1 and node.input[1]:
        ratio = float(t.const(node, 1, "ratio"))
    t.emit(node, node.output[0], "Dropout", [t.source(node.input[0])],
           {"NbOutputs": t.chw(node.input[0])[0], "Dropout": ratio})


@onnx_op("Softmax")
def softmax(t: Translator, node: onnx.NodeProto) -> None:
    c, h, w = t.chw(node.input[0])
    rank = len(t.graph.shapes.get(node.input[0], ()))
    axis = int(attributes(node).get("axis", 1 if t.graph.opset < 13 else -1))
    if axis < 0:
        axis += rank
    if h * w != 1 and not (axis == 1 and t.graph.opset >= 13):
        raise t.fail(node, f"softmax over axis {axis} of a {c}x{h}x{w} map: n2q's Softmax is "
                     "over channels")
    t.emit(node, node.output[0], "Softmax", [t.source(node.input[0])], {"NbOutputs": c})


@onnx_op("Pad")
def pad(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    if attrs.get("mode", "constant") != "constant":
        raise t.fail(node, f"{attrs['mode']} padding: n2q pads with zeros only")
    pads = attrs.get("pads")
    if len(node.input) > 1 and node.input[1]:
        pads = t.const(node, 1, "pads")
    value = float(attrs.get("value", 0.0))
    if len(node.input) > 2 and node.input[2]:
        value = float(t.const(node, 2, "constant value"))
    pads = [int(p) for p in pads]
    if value != 0.0 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        raise t.fail(node, f"pads {pads} with value {value}: n2q pads H and W with zeros only")
    c = t.chw(node.input[0])[0]
    t.emit(node, node.output[0], "Padding", [t.source(node.input[0])],
           {"NbOutputs": c, **t.padding_keys(pads[2], pads[3], pads[6], pads[7])})
