"""The ONNX node translator: registry ``ONNX_OPS`` (op type -> translation), the
:class:`Translator` walking a graph, the spatial-attribute helpers every layer translation
uses, and ``generic``, the fallback for operators without n2q cell type (spec/onnx.md).

The translations themselves live in :mod:`n2q.net.onnx_ops_layers` (weighted layers and
pools) and :mod:`n2q.net.onnx_ops_misc` (activations, element-wise, structural ops);
:mod:`n2q.net.onnx_ops` imports both and runs a whole graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx

from n2q.config import Section
from n2q.errors import UserError
from n2q.net.onnx import CellSpec, OnnxOptions
from n2q.net.onnx_graph import OnnxGraph, node_label

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
                        keys={k: attr_text(v) for k, v in keys.items()}, params=params or {},
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
            spec.activation = {k: attr_text(v) for k, v in keys.items()}
            spec.act_sections.append(node.output[0])
            self.alias(node.output[0], source)
            return
        act = self.emit(node, node.output[0], "Activation", [source],
                        {"NbOutputs": self.source_chw(source)[0]})
        act.activation = {k: attr_text(v) for k, v in keys.items()}
        act.act_sections.append(node.output[0])   # its own section may replace the function


def attr_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(attr_text(v) for v in value)
    return str(value)


# -- spatial attributes --------------------------------------------------------------------------
def attr_pair(attrs: dict[str, Any], key: str, default: int) -> tuple[int, int]:
    values = list(attrs.get(key, [default, default]))
    if len(values) != 2:
        raise ValueError(key)
    return int(values[0]), int(values[1])


def onnx_pads(attrs: dict[str, Any], kernel: tuple[int, int], stride: tuple[int, int],
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


def spatial_attributes(t: Translator, node: onnx.NodeProto, attrs: dict[str, Any],
             kernel: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int],
                                               tuple[int, int, int, int]]:
    """(stride, dilation, pads) of a 2-D Conv/Pool node."""
    try:
        stride = attr_pair(attrs, "strides", 1)
        dilation = attr_pair(attrs, "dilations", 1)
    except ValueError as exc:
        raise t.fail(node, f"attribute {exc} is not 2-D: n2q imports 2-D layers only") from None
    _, h, w = t.chw(node.input[0])
    return stride, dilation, onnx_pads(attrs, kernel, stride, dilation, (h, w))


# -- cells with weights --------------------------------------------------------------------------


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
