"""A float cell for ONNX operators that have no n2q cell type (LRN, Resize, ...).

The node alone is cut out of the graph (with its constant inputs) and converted by onnx2torch;
the resulting module computes the node on the cell's inputs. Such a cell has no quantizer of
its own and is never fused to integers, but the cells around it import normally and an
activation (a following Relu) or ``QAct`` can still be attached to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnx
import torch
from onnx import TensorProto, numpy_helper
from onnx import helper as oh
from torch import nn

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import COMMON_KEYS, Cell, Shape
from n2q.net.onnx_graph import OnnxGraph, node_label

GENERIC_TYPE = "ONNX"   # CellSpec.type of a node wrapped here (never an INI Type)


class OnnxOpCell(Cell):
    """One ONNX node computed by the onnx2torch module ``module``.

    ``type`` reads ``ONNX:<op type>`` in summaries; inputs are passed as separate tensors.
    """

    HAS_ACTIVATION = True
    MULTI_INPUT = True

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, out_shape: Shape,
                 module: nn.Module, op_type: str, activation: nn.Module | None = None) -> None:
        super().__init__(name, inputs, in_shape, activation)
        self.module = module
        self.op_type = op_type
        self.type = f"ONNX:{op_type}"  # type: ignore[misc]  # per instance, for summaries
        self.out_shape = tuple(int(v) for v in out_shape)  # type: ignore[assignment]

    def op(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        y = self.module(*xs)
        return y.reshape(y.shape[0], *self.out_shape)


def single_node_model(graph: OnnxGraph, node: onnx.NodeProto,
                      data_inputs: Sequence[str]) -> onnx.ModelProto:
    """``node`` as a model of its own: its data inputs as graph inputs (with their inferred
    shapes), its constant inputs as initializers, its first output as the output."""

    def value(name: str) -> onnx.ValueInfoProto:
        return oh.make_tensor_value_info(name, TensorProto.FLOAT, list(graph.shapes[name]))

    inits = [numpy_helper.from_array(graph.constants[n], n) for n in node.input
             if n and n in graph.constants]
    single = oh.make_node(node.op_type, list(node.input), [node.output[0]], name=node.name,
                          domain=node.domain)
    single.attribute.extend(node.attribute)
    body = oh.make_graph([single], "node", [value(n) for n in data_inputs],
                         [value(node.output[0])], inits)
    model = oh.make_model(body, opset_imports=[oh.make_opsetid("", graph.opset)])
    model.ir_version = graph.model.ir_version or 7
    return model


def convertible(op_type: str, opset: int) -> bool:
    """Whether onnx2torch has a converter for this operator at this opset."""
    from onnx2torch.node_converters.registry import get_converter

    try:
        get_converter(op_type, opset)
    except NotImplementedError:
        return False
    return True


def build_generic_cell(graph: OnnxGraph, spec: Any, section: Section,
                       input_shapes: Sequence[Shape], data_inputs: Sequence[str]) -> OnnxOpCell:
    """The cell of a node without n2q cell type (``spec.type == GENERIC_TYPE``)."""
    import onnx2torch

    section.check_keys(set(COMMON_KEYS) | {"NbOutputs", "ActivationFunction"},
                       f"an imported {spec.node.op_type} node",
                       ("ActivationFunction.", "QAct"))
    try:
        module = onnx2torch.convert(single_node_model(graph, spec.node, data_inputs))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise section.error(None, f"node {node_label(spec.node, graph.opset_label)}: "
                            f"onnx2torch cannot convert it ({reason})") from None
    return OnnxOpCell(spec.name, spec.inputs, input_shapes[0], spec.onnx_shape, module,
                      spec.node.op_type, make_activation(section))
