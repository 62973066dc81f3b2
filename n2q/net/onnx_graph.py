"""Reading an ONNX file into a graph the importer can walk (spec/onnx.md, Conversion).

Loading checks that every node is a standard operator at the graph's opset (an opset the
installed onnx package knows), then does the repairs the model zoo needs before anything else
looks at the graph: MXNet-era ``BatchNormalization(spatial=0)`` with per-channel parameters is
rewritten to the spatial form, graphs below opset 9 are upgraded with
``onnx.version_converter`` (the zoo ResNet-18 v1 is opset 7), the data input is resized to the
provider when asked (``IgnoreInputSize=1``) and shapes are inferred so that every tensor has
known dimensions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

MIN_OPSET = 9  # older graphs are upgraded to this opset first (onnx2torch reads 9..20)


class GraphError(Exception):
    """A problem in the ONNX file; the importer turns it into a located UserError."""


@dataclass
class OnnxGraph:
    """The repaired graph: nodes in execution order, constants as numpy arrays, shapes."""

    path: Path
    model: onnx.ModelProto
    opset: int
    nodes: list[onnx.NodeProto]
    constants: dict[str, np.ndarray]
    data_inputs: list[str]                    # graph inputs that are not initializers
    outputs: list[str]
    shapes: dict[str, tuple[int, ...]]        # tensor name -> dims (batch first)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # repairs done, for the user
    file_opset: int = 0                       # the opset written in the file (before upgrade)

    @property
    def opset_label(self) -> str:
        """The opset as the user knows it: ``opset 7, upgraded to 9`` after an upgrade."""
        if self.file_opset and self.file_opset != self.opset:
            return f"opset {self.file_opset}, upgraded to {self.opset}"
        return f"opset {self.opset}"

    def shape(self, tensor: str) -> tuple[int, ...]:
        if tensor not in self.shapes:
            raise GraphError(f"the shape of tensor '{tensor}' cannot be inferred")
        return self.shapes[tensor]

    def constant(self, tensor: str) -> np.ndarray | None:
        return self.constants.get(tensor)


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """A node's attributes as Python values (ints, floats, strings, lists, arrays)."""
    out: dict[str, Any] = {}
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        out[attr.name] = value
    return out


def node_label(node: onnx.NodeProto, opset: str = "") -> str:
    """How a node is named to the user: its first output (N2D2's cell name), op type and
    opset (``'out' (node 'n') [LRN, opset 13]``)."""
    first = node.output[0] if node.output else node.name
    named = f" (node '{node.name}')" if node.name and node.name != first else ""
    return f"'{first}'{named} [{node.op_type}{', ' + opset if opset else ''}]"


def read_model(path: Path) -> onnx.ModelProto:
    """The ModelProto of ``path`` (GraphError when missing or not ONNX)."""
    not_onnx = ("this file is not an ONNX model: give a .onnx file exported by a framework "
                "(torch.onnx.export...), or an INI file")
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise GraphError(f"ONNX file not found: {path}") from None
    except Exception:  # protobuf decode errors have no common base class
        raise GraphError(not_onnx) from None
    # protobuf parses many byte strings (an empty file) as a message with no graph
    if not model.ir_version or not model.HasField("graph") or not model.graph.node:
        raise GraphError(not_onnx)
    return model


def load_graph(path: Path, input_dims: list[tuple[int, ...]] | None = None,
               model: onnx.ModelProto | None = None) -> OnnxGraph:
    """Load, repair and shape-infer ``path`` (or ``model``, already read from it).

    ``input_dims``: per data input, the (C, H, W) to impose instead of the file's (the
    provider's size, ``IgnoreInputSize=1``); None keeps the file's dims.
    Raises GraphError (file problems) with a message for the user.
    """
    if model is None:
        model = read_model(path)
    notes: list[str] = []
    _fix_spatial_batchnorm(model, notes)
    opset = file_opset = _default_opset(model)
    _check_opset_known(opset)
    _check_domains(model)
    _check_schemas(model, opset)
    if opset < MIN_OPSET:
        model = _upgrade(model, opset, notes)
        opset = _default_opset(model)
    constants = _constants(model)
    data_inputs = [i.name for i in model.graph.input if i.name not in constants]
    if input_dims is not None:
        _impose_input_dims(model, data_inputs, input_dims)
    shapes = _infer_shapes(model)
    graph = OnnxGraph(path=path, model=model, opset=opset, nodes=list(model.graph.node),
                      constants=constants, data_inputs=data_inputs,
                      outputs=[o.name for o in model.graph.output], shapes=shapes, notes=notes,
                      file_opset=file_opset)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.nodes:
        for name in node.input:
            if name:
                consumers[name].append(node)
    graph.consumers = dict(consumers)
    return graph


def data_input_dims(model: onnx.ModelProto) -> list[tuple[str, tuple[int | None, ...]]]:
    """(name, dims) of each data input as declared in the file (None for a symbolic dim)."""
    constants = {t.name for t in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in constants:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in value.type.tensor_type.shape.dim)
        out.append((value.name, dims))
    return out


# -- repairs -----------------------------------------------------------------------------------
def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


def _check_opset_known(opset: int) -> None:
    """A graph newer than the installed onnx package cannot be checked nor shape-inferred."""
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise GraphError(f"the graph is opset {opset}, newer than the installed onnx package "
                         f"knows (opset {newest}): re-export it with opset {MIN_OPSET}..{newest}"
                         " or upgrade the onnx package")


def _check_domains(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            raise GraphError(f"node {node_label(node)} uses the custom operator domain "
                             f"'{node.domain}', which n2q cannot import: export the model "
                             "with standard ONNX operators")


def _check_schemas(model: onnx.ModelProto, opset: int) -> None:
    """Every node must be a standard operator at the graph's opset: experimental operators of
    old exporters (ImageScaler, Crop...) and operators of later opsets cannot be upgraded nor
    shape-inferred, so they are named here rather than in a converter assertion."""
    for node in model.graph.node:
        try:
            onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            kind = ("is not a standard ONNX operator (an experimental or removed one)"
                    if not onnx.defs.has(node.op_type) else f"does not exist at opset {opset}")
            raise GraphError(f"node {node_label(node, f'opset {opset}')}: {node.op_type} "
                             f"{kind}: re-export the graph without it, with standard operators"
                             f" of opset {MIN_OPSET}..{onnx.defs.onnx_opset_version()}"
                             ) from None


def _fix_spatial_batchnorm(model: onnx.ModelProto, notes: list[str]) -> None:
    """``spatial=0`` with parameters of shape [C] is the spatial form in disguise (MXNet wrote
    it that way); the version converter refuses it, so rewrite it first."""
    inits = {t.name: t for t in model.graph.initializer}
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        spatial = [a for a in node.attribute if a.name == "spatial"]
        if not spatial or spatial[0].i != 0:
            continue
        params = [inits.get(name) for name in node.input[1:5]]
        if any(p is None or len(p.dims) != 1 for p in params):
            raise GraphError(f"node {node_label(node)}: BatchNormalization with spatial=0 "
                             "and per-element parameters is not supported (only per-channel "
                             "parameters can be imported)")
        kept = [a for a in node.attribute if a.name != "spatial"]
        del node.attribute[:]
        node.attribute.extend(kept)
        fixed += 1
    if fixed:
        notes.append(f"{fixed} BatchNormalization node(s) with spatial=0 and per-channel "
                     "parameters read as spatial=1")


def _upgrade(model: onnx.ModelProto, opset: int, notes: list[str]) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        raise GraphError(f"the graph is opset {opset} and could not be upgraded to opset "
                         f"{MIN_OPSET} ({str(exc).splitlines()[-1]}): re-export it with opset "
                         f">= {MIN_OPSET}") from None
    notes.append(f"graph upgraded from opset {opset} to {MIN_OPSET}")
    return upgraded


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and the outputs of Constant nodes, as numpy arrays."""
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            attrs = attributes(node)
            if "value" in attrs:
                out[node.output[0]] = np.asarray(attrs["value"])
            for key in ("value_float", "value_int"):
                if key in attrs:
                    out[node.output[0]] = np.asarray(attrs[key])
            for key in ("value_floats", "value_ints"):
                if key in attrs:
                    out[node.output[0]] = np.asarray(list(attrs[key]))
        elif node.op_type == "Identity" and node.input[0] in out:
            out[node.output[0]] = out[node.input[0]]  # PyTorch exports BN stats this way
    return out


def _impose_input_dims(model: onnx.ModelProto, data_inputs: list[str],
                       input_dims: list[tuple[int, ...]]) -> None:
    """Set the data inputs to [N, C, H, W] = [1, *input_dims]; intermediate shapes written in
    the file are dropped (they were for the old size)."""
    by_name = {v.name: v for v in model.graph.input}
    for name, dims in zip(data_inputs, input_dims, strict=False):
        shape = by_name[name].type.tensor_type.shape
        del shape.dim[:]
        for d in (1, *dims):
            shape.dim.add().dim_value = int(d)
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")


def _infer_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:
        raise GraphError(f"shape inference failed ({str(exc).splitlines()[-1]})") from None
    shapes: dict[str, tuple[int, ...]] = {}
    values = list(inferred.graph.input) + list(inferred.graph.value_info) + list(
        inferred.graph.output)
    for value in values:
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        if dims and all(d > 0 for d in dims[1:]):
            shapes[value.name] = (1, *dims[1:])   # the batch dimension is the provider's
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes
