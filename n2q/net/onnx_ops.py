"""ONNX node -> n2q cell translations (registry ``ONNX_OPS``; spec/onnx.md, Conversion).

Each translation reads one node and either emits a :class:`CellSpec` (a cell named after the
node's first output), folds the node into the cell before it (Relu and friends become its
activation; a constant Add after MatMul becomes its bias), or makes its output an alias of an
existing cell (Flatten before Fc, Identity, an ignored node). Shapes are ONNX's (C, H, W);
with ``Transpose=1`` the n2q cell sees H and W swapped, so the spatial keys and the weights
are swapped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx

from n2q.config import Section
from n2q.errors import UserError, notice
from n2q.net.onnx import CellSpec, OnnxOptions, where
from n2q.net.onnx_graph import OnnxGraph, attributes, node_label

Handler = Callable[["Translator", onnx.NodeProto], None]
ONNX_OPS: dict[str, Handler] = {}
# Ops with no n2q cell that have no effect on inference: skipped (output = input).
PASS_THROUGH = ("Identity",)


def onnx_op(*op_types: str) -> Callable[[Handler], Handler]:
    """Register a translation for these ONNX op types."""

    def deco(fn: Handler) -> Handler:
        for op in op_types:
            ONNX_OPS[op] = fn
        return fn

    return deco


def translate(graph: OnnxGraph, section: Section, options: OnnxOptions,
              inputs: Sequence[str]) -> tuple[list[CellSpec], dict[str, str], list[str]]:
    """(cell specs in execution order, aliases, output cell names) of the whole graph."""
    t = Translator(graph, section, options, inputs)
    t.run()
    return t.specs, t.aliases, [t.source(name) for name in graph.outputs]


class Translator:
    """Walks the nodes in order, tracking which cell provides each tensor."""

    def __init__(self, graph: OnnxGraph, section: Section, options: OnnxOptions,
                 inputs: Sequence[str]) -> None:
        self.graph, self.section, self.options = graph, section, options
        self.specs: list[CellSpec] = []
        self.by_name: dict[str, CellSpec] = {}
        self.producer: dict[str, str] = {}       # tensor -> cell (or provider) name
        self.aliases: dict[str, str] = {}
        self.provider_chw: dict[str, tuple[int, int, int]] = {}
        for tensor, name in zip(graph.data_inputs, inputs, strict=False):
            self.producer[tensor] = name
            self.provider_chw[name] = self.chw(tensor)
        self.ignore = set(options.ignore)

    # -- walking ---------------------------------------------------------------------------
    def run(self) -> None:
        self._check_ignore_list()
        for node in self.graph.nodes:
            if node.op_type == "Constant" or all(o in self.graph.constants
                                                 for o in node.output):
                continue  # folded into a constant when the graph was loaded
            if node.output[0] in self.ignore or node.op_type in self.ignore:
                self.alias(node.output[0], self.source(self.data_inputs(node)[0]))
                continue
            handler = ONNX_OPS.get(node.op_type, generic)
            handler(self, node)
            self._check_extra_outputs(node)

    def _check_ignore_list(self) -> None:
        names = {o for n in self.graph.nodes for o in n.output[:1]}
        ops = {n.op_type for n in self.graph.nodes}
        for word in self.ignore:
            if word not in names and word not in ops:
                import difflib

                close = difflib.get_close_matches(word, sorted(names | ops), n=3, cutoff=0.5)
                hint = f" (closest: {', '.join(close)})" if close else ""
                raise self.section.error("Ignore", f"'{word}' is neither a node output nor "
                                         f"an operator of the graph{hint}")

    def _check_extra_outputs(self, node: onnx.NodeProto) -> None:
        for name in node.output[1:]:
            if name and (name in self.graph.consumers or name in self.graph.outputs):
                raise self.fail(node, f"its output '{name}' is used, but n2q imports only "
                                "the first output of a node")

    # -- tensors -----------------------------------------------------------------------------
    def fail(self, node: onnx.NodeProto | None, message: str) -> UserError:
        where = f"node {node_label(node, self.graph.opset_label)}: " if node is not None else ""
        return self.section.error("File", f"{self.options.path.name}: {where}{message}")

    def source(self, tensor: str) -> str:
        """The cell (or provider input) that computes ``tensor``."""
        if tensor not in self.producer:
            if tensor in self.graph.constants:
                raise self.fail(None, f"tensor '{tensor}' is a constant where n2q expects "
                                "data from a layer")
            raise self.fail(None, f"tensor '{tensor}' is computed by no imported node")
        return self.producer[tensor]

    def data_inputs(self, node: onnx.NodeProto) -> list[str]:
        return [n for n in node.input if n and n not in self.graph.constants]

    def const(self, node: onnx.NodeProto, index: int, what: str,
              optional: bool = False) -> np.ndarray | None:
        if index >= len(node.input) or not node.input[index]:
            if optional:
                return None
            raise self.fail(node, f"its {what} (input #{index}) is missing")
        value = self.graph.constant(node.input[index])
        if value is None:
            raise self.fail(node, f"its {what} '{node.input[index]}' is computed in the graph; "
                            "n2q imports weights only from initializers or Constant nodes")
        return value

    def chw(self, tensor: str) -> tuple[int, int, int]:
        """(C, H, W) of a tensor in ONNX layout; a flat [N, F] tensor is (F, 1, 1)."""
        dims = self.graph.shapes.get(tensor)
        if dims is None:
            raise self.fail(None, f"the shape of tensor '{tensor}' cannot be inferred: "
                            "re-export the graph with static shapes")
        rest = tuple(dims[1:])
        if len(rest) == 1:
            return (rest[0], 1, 1)
        if len(rest) == 3:
            return rest  # type: ignore[return-value]
        raise self.fail(None, f"tensor '{tensor}' has dims {list(dims)}; n2q cells take "
                        "N x C x H x W or N x F tensors")

    def source_chw(self, name: str) -> tuple[int, int, int]:
        spec = self.by_name.get(name)
        return spec.onnx_shape if spec is not None else self.provider_chw[name]

    def consumers_of_cell(self, name: str) -> int:
        """How many node inputs (and graph outputs) read any tensor provided by ``name``."""
        tensors = [t for t, p in self.producer.items() if p == name]
        return sum(len(self.graph.consumers.get(t, ())) + (t in self.graph.outputs)
                   for t in tensors)

    # -- results -----------------------------------------------------------------------------
    def emit(self, node: onnx.NodeProto | None, name: str, cell_type: str, inputs: list[str],
             keys: dict[str, Any], params: dict[str, np.ndarray] | None = None,
             onnx_shape: tuple[int, int, int] | None = None) -> CellSpec:
        if name in self.by_name or name in self.provider_chw:
            raise self.fail(node, f"two cells would be named '{name}'")
        shape = onnx_shape if onnx_shape is not None else self.chw(node.output[0])
        spec = CellSpec(name=name, type=cell_type, inputs=list(inputs), node=node,
                        keys={k: _text(v) for k, v in keys.items()}, params=params or {},
                        onnx_shape=shape)
        self.specs.append(spec)
        self.by_name[name] = spec
        self.producer[name] = name
        return spec

    def alias(self, tensor: str, name: str) -> None:
        self.producer[tensor] = name
        if tensor != name:
            self.aliases[tensor] = name

    def dims(self, h: int, w: int) -> str:
        """N2D2's ``<key>Dims=w h`` of an ONNX (h, w) pair, swapped by Transpose=1."""
        return f"{h} {w}" if self.options.transpose else f"{w} {h}"

    def padding_keys(self, top: int, left: int, bottom: int, right: int) -> dict[str, int]:
        if self.options.transpose:
            top, left, bottom, right = left, top, right, bottom
        return {"TopPadding": top, "BottomPadding": bottom, "LeftPadding": left,
                "RightPadding": right}

    def padding_cell(self, node: onnx.NodeProto, source: str,
                     pads: tuple[int, int, int, int]) -> str:
        """An explicit Padding cell ``<output>_padding`` (asymmetric padding); its name."""
        c, h, w = self.source_chw(source)
        top, left, bottom, right = pads
        name = f"{node.output[0]}_padding"
        self.emit(node, name, "Padding", [source],
                  {"NbOutputs": c, **self.padding_keys(top, left, bottom, right)},
                  onnx_shape=(c, h + top + bottom, w + left + right))
        return name

    def fold_activation(self, node: onnx.NodeProto, keys: dict[str, Any]) -> None:
        """Make ``keys`` the activation of the cell before ``node`` when it is that cell's
        only reader; otherwise a standalone Activation cell."""
        from n2q.net.base import CELL_TYPES
        from n2q.net.onnx_cell import GENERIC_TYPE, OnnxOpCell

        source = self.source(node.input[0])
        spec = self.by_name.get(source)
        cls = CELL_TYPES.get(spec.type) if spec is not None else None
        if spec is not None and spec.type == GENERIC_TYPE:
            cls = OnnxOpCell
        if (spec is not None and not spec.activation and self.consumers_of_cell(source) == 1
                and getattr(cls, "HAS_ACTIVATION", False)):
            spec.activation = {k: _text(v) for k, v in keys.items()}
            spec.act_sections.append(node.output[0])
            self.alias(node.output[0], source)
            return
        act = self.emit(node, node.output[0], "Activation", [source],
                        {"NbOutputs": self.source_chw(source)[0]})
        act.activation = {k: _text(v) for k, v in keys.items()}
        act.act_sections.append(node.output[0])   # its own section may replace the function


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return str(value)


# -- spatial attributes --------------------------------------------------------------------------
def _pair(attrs: dict[str, Any], key: str, default: int) -> tuple[int, int]:
    values = list(attrs.get(key, [default, default]))
    if len(values) != 2:
        raise ValueError(key)
    return int(values[0]), int(values[1])


def _pads(attrs: dict[str, Any], kernel: tuple[int, int], stride: tuple[int, int],
          dilation: tuple[int, int], in_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad`` (ONNX's SAME formula)."""
    if "pads" in attrs:
        p = [int(v) for v in attrs["pads"]]
        return p[0], p[1], p[2], p[3]
    mode = attrs.get("auto_pad", "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for n, k, s, d in zip(in_hw, kernel, stride, dilation, strict=True):
            total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if mode == "SAME_UPPER" else big)
            end.append(big if mode == "SAME_UPPER" else small)
        return begin[0], begin[1], end[0], end[1]
    return 0, 0, 0, 0


def _spatial(t: Translator, node: onnx.NodeProto, attrs: dict[str, Any],
             kernel: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int],
                                               tuple[int, int, int, int]]:
    """(stride, dilation, pads) of a 2-D Conv/Pool node."""
    try:
        stride = _pair(attrs, "strides", 1)
        dilation = _pair(attrs, "dilations", 1)
    except ValueError as exc:
        raise t.fail(node, f"attribute {exc} is not 2-D: n2q imports 2-D layers only") from None
    _, h, w = t.chw(node.input[0])
    return stride, dilation, _pads(attrs, kernel, stride, dilation, (h, w))


# -- cells with weights --------------------------------------------------------------------------
@onnx_op("Conv")
def conv(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    weight = t.const(node, 1, "weight")
    if weight.ndim != 4:
        raise t.fail(node, f"a {weight.ndim - 2}-D convolution: n2q imports 2-D ones only")
    bias = t.const(node, 2, "bias", optional=True)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    stride, dilation, (pt, pl, pb, pr) = _spatial(t, node, attrs, kernel)
    source = t.source(node.input[0])
    if (pt, pl) != (pb, pr):
        source = t.padding_cell(node, source, (pt, pl, pb, pr))
        pt = pl = 0
    keys: dict[str, Any] = {
        "KernelDims": t.dims(*kernel), "NbOutputs": weight.shape[0],
        "StrideDims": t.dims(*stride), "PaddingDims": t.dims(pt, pl),
        "DilationDims": t.dims(*dilation), "NoBias": int(bias is None)}
    groups = int(attrs.get("group", 1))
    if groups > 1:
        keys["Mapping.NbGroups"] = groups
    if t.options.transpose:
        weight = weight.transpose(0, 1, 3, 2)
    params = {"weight": weight}
    if bias is not None:
        params["bias"] = bias
    spec = t.emit(node, node.output[0], "Conv", [source], keys, params)
    spec.zero_bias = bias is None


@onnx_op("Gemm", "MatMul")
def fully_connected(t: Translator, node: onnx.NodeProto) -> None:
    """Gemm (y = alpha * x B' + beta * C) and MatMul by a constant -> Fc [O, C*H*W]."""
    attrs = attributes(node)
    if node.op_type == "Gemm" and int(attrs.get("transA", 0)):
        raise t.fail(node, "Gemm with transA=1 is not a fully-connected layer")
    matrix = t.const(node, 1, "weight")
    if matrix.ndim != 2:
        raise t.fail(node, f"a {matrix.ndim}-D weight: n2q's Fc takes a 2-D one")
    trans_b = node.op_type == "Gemm" and int(attrs.get("transB", 0))
    weight = matrix if trans_b else matrix.T          # [O, I]
    weight = weight * float(attrs.get("alpha", 1.0))
    source = t.source(node.input[0])
    c, h, w = t.source_chw(source)
    if weight.shape[1] != c * h * w:
        raise t.fail(node, f"weight takes {weight.shape[1]} inputs but its input "
                     f"'{source}' has {c}x{h}x{w} = {c * h * w} values")
    if t.options.transpose and h * w > 1:   # n2q flattens the transposed map: C, W, H order
        weight = weight.reshape(-1, c, h, w).transpose(0, 1, 3, 2).reshape(weight.shape[0], -1)
    params = {"weight": np.ascontiguousarray(weight)}
    bias = t.const(node, 2, "bias", optional=True) if node.op_type == "Gemm" else None
    if bias is not None:
        bias = np.broadcast_to(bias * float(attrs.get("beta", 1.0)), (weight.shape[0],))
        params["bias"] = bias
    spec = t.emit(node, node.output[0], "Fc", [source],
                  {"NbOutputs": weight.shape[0], "NoBias": int(bias is None)}, params)
    spec.zero_bias = bias is None


@onnx_op("BatchNormalization")
def batch_norm(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    names = ("weight", "bias", "running_mean", "running_var")
    params = {n: t.const(node, i + 1, n.replace("_", " ")) for i, n in enumerate(names)}
    c = t.chw(node.input[0])[0]
    # ONNX momentum weighs the running value; N2D2/torch's weighs the new batch
    momentum = 1.0 - float(attrs.get("momentum", 0.9))
    t.emit(node, node.output[0], "BatchNorm", [t.source(node.input[0])],
           {"NbOutputs": c, "Epsilon": float(attrs.get("epsilon", 1e-5)),
            "MovingAverageMomentum": round(momentum, 12)}, params)


# -- pooling -------------------------------------------------------------------------------------
@onnx_op("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
def pool(t: Translator, node: onnx.NodeProto) -> None:
    attrs = attributes(node)
    c, h, w = t.chw(node.input[0])
    pooling = "Max" if "Max" in node.op_type else "Average"
    if node.op_type.startswith("Global"):
        kernel, stride, pads = (h, w), (1, 1), (0, 0, 0, 0)
    else:
        kernel = _pair(attrs, "kernel_shape", 1)
        stride, dilation, pads = _spatial(t, node, attrs, kernel)
        if dilation != (1, 1):
            raise t.fail(node, "dilated pooling is not supported")
        if int(attrs.get("ceil_mode", 0)):
            pads = _ceil_pads(pads, kernel, stride, (h, w))
    pt, pl, pb, pr = pads
    source = t.source(node.input[0])
    explicit = (pt, pl) != (pb, pr)
    if pooling == "Average" and any(pads) and int(attrs.get("count_include_pad", 0)):
        explicit = True  # zeros that count: an explicit Padding cell does exactly that
    elif pooling == "Average" and explicit:
        raise t.fail(node, "average pooling with asymmetric padding that does not count the "
                     "padded values cannot be imported")
    if explicit:
        if pooling == "Max" and not _non_negative(t, source):
            notice(f"{where(t.section)} node "
                   f"{node_label(node)}: asymmetric max-pool padding is imported as a zero "
                   "Padding cell (as N2D2 does): exact only for non-negative inputs")
        source = t.padding_cell(node, source, pads)
        pt = pl = 0
    t.emit(node, node.output[0], "Pool", [source],
           {"PoolDims": t.dims(*kernel), "StrideDims": t.dims(*stride),
            "PaddingDims": t.dims(pt, pl), "Pooling": pooling, "NbOutputs": c,
            "Mapping.ChannelsPerGroup": 1,
            # N2D2 (and n2q's default) count the padding; ONNX's default does not
            **({"CountIncludePadding": 0} if pooling == "Average" and pt + pl else {})})


def _ceil_pads(pads: tuple[int, int, int, int], kernel: tuple[int, int],
               stride: tuple[int, int], in_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """ceil_mode=1: extra end padding so that the floor formula gives the ceil size (the last
    window must still start inside the input or the begin padding, as ONNX/torch rule)."""
    begin, end = [pads[0], pads[1]], [pads[2], pads[3]]
    for i in range(2):
        span = in_hw[i] + begin[i] + end[i] - kernel[i]
        out = -(-span // stride[i]) + 1
        if (out - 1) * stride[i] >= in_hw[i] + begin[i]:
            out -= 1
        end[i] += max(0, (out - 1) * stride[i] - span)
    return begin[0], begin[1], end[0], end[1]


def _non_negative(t: Translator, source: str) -> bool:
    spec = t.by_name.get(source)
    return spec is not None and spec.activation.get("ActivationFunction") == "Rectifier"


# -- activations (folded into the previous cell) ---------------------------------------------
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


def generic(t: Translator, node: onnx.NodeProto) -> None:
    """An operator without n2q cell type: a float cell computed by onnx2torch's module."""
    from n2q.net.onnx_cell import GENERIC_TYPE, convertible

    what = f"ONNX operator {node.op_type} has no n2q cell"
    if not convertible(node.op_type, t.graph.opset):
        raise t.fail(node, f"{what} and onnx2torch has no converter for it at opset "
                     f"{t.graph.opset}: remove it from the graph, or skip it with "
                     f"Ignore={node.output[0]}")
    if t.options.transpose:
        raise t.fail(node, f"{what}; it could run as an onnx2torch float cell, but not with "
                     "Transpose=1: re-export the graph with the layout of the data")
    tensors = t.data_inputs(node)
    spec = t.emit(node, node.output[0], GENERIC_TYPE, [t.source(n) for n in tensors], {})
    spec.tensors = tensors


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
