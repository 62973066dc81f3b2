"""A whole n2q network as one ONNX model (cells in execution order, see cells.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from n2q.errors import UserError
from n2q.export.builder import GraphBuilder, QdqRecord
from n2q.export.cells import translate
from n2q.export.quantized import EXPORT


@dataclass
class ExportedGraph:
    """The model and what the check, the calibration file and the report need."""

    model: onnx.ModelProto
    input_name: str
    outputs: list[str]                  # graph outputs: the target cells' tensors
    tensor_of: dict[str, str]           # cell name -> the tensor holding its output
    records: list[QdqRecord] = field(default_factory=list)

    @property
    def quantized(self) -> bool:
        return bool(self.records)

    @property
    def opset(self) -> int:
        return int(self.model.opset_import[0].version)


def provider_name(net: Any) -> str:
    """The name cells use for the stimuli (``sp``, or ``env`` in seed 004's INIs)."""
    names = {i for ins in net.inputs.values() for i in ins if i not in net.cells}
    if len(names) != 1:
        raise UserError(f"{EXPORT}: the network reads {len(names)} inputs "
                        f"({', '.join(sorted(names)) or 'none'}); one stimuli input is "
                        "exported")
    return names.pop()


def build_graph(net: Any, graph_name: str = "n2q") -> ExportedGraph:
    """Translate every cell of ``net`` (in eval mode) into one ONNX graph."""
    b = GraphBuilder()
    source = provider_name(net)
    b.reserve([source, *net.cells.keys()])
    b.rank[source] = 4
    tensor_of: dict[str, str] = {source: source}
    for name, cell in net.cells.items():
        inputs = [tensor_of[i] for i in net.inputs[name]]
        tensor_of[name] = translate(b, cell, inputs)
    targets = list(dict.fromkeys(t.cell for t in net.targets))
    outputs = [tensor_of[t] for t in targets]
    model = b.model(source, tuple(net.input_shape),
                    [(tensor_of[t], tuple(net.cells[t].out_shape)) for t in targets],
                    graph_name)
    del tensor_of[source]
    return ExportedGraph(model, source, outputs, tensor_of, b.records)
