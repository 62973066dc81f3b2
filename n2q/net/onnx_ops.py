"""ONNX node -> n2q cell translations (registry ``ONNX_OPS``; spec/onnx.md, Conversion).

Each translation reads one node and either emits a :class:`CellSpec` (a cell named after the
node's first output), folds the node into the cell before it (Relu and friends become its
activation; a constant Add after MatMul becomes its bias), or makes its output an alias of an
existing cell (Flatten before Fc, Identity, an ignored node). Shapes are ONNX's (C, H, W);
with ``Transpose=1`` the n2q cell sees H and W swapped, so the spatial keys and the weights
are swapped here. Importing this module registers every translation.
"""

from __future__ import annotations

from collections.abc import Sequence

from n2q.config import Section
from n2q.net import onnx_ops_layers, onnx_ops_misc  # noqa: F401  (register the translations)
from n2q.net.onnx import CellSpec, OnnxOptions
from n2q.net.onnx_graph import OnnxGraph
from n2q.net.onnx_translator import ONNX_OPS, Translator

__all__ = ["ONNX_OPS", "translate"]


def translate(graph: OnnxGraph, section: Section, options: OnnxOptions,
              inputs: Sequence[str]) -> tuple[list[CellSpec], dict[str, str], list[str]]:
    """(cell specs in execution order, aliases, output cell names) of the whole graph."""
    t = Translator(graph, section, options, inputs)
    t.run()
    return t.specs, t.aliases, [t.source(name) for name in graph.outputs]
