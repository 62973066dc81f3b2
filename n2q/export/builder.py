"""An ONNX graph under construction: nodes, initializers, tensor ranks, QDQ pairs.

Tensor names: each cell's output is the tensor named after the cell (N2D2's naming, which
n2q's ONNX import gives back: a cell is named after its node's first output); intermediate
tensors are ``<cell>/<what>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from n2q.export.qdq import QdqForm

BASE_OPSET = 13     # per-axis QuantizeLinear/DequantizeLinear, Softmax over one axis


@dataclass
class QdqRecord:
    """One quantized tensor of the exported graph, for the report and the calibration."""

    cell: str
    kind: str            # "weight" | "output"
    tensor: str          # the float tensor the DequantizeLinear gives
    form: QdqForm | None  # None: float constants (no standard QDQ form)
    grid_text: str
    notes: list[str] = field(default_factory=list)


class GraphBuilder:
    """Accumulates nodes and initializers; ``rank[name]`` is each tensor's rank (2 after an
    Fc, 4 for feature maps) so that cells can reshape between the two."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.rank: dict[str, int] = {}
        self.opset = BASE_OPSET
        self.records: list[QdqRecord] = []
        self._names: set[str] = set()

    # -- names -------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A tensor name not used yet: ``base``, else ``base_2``, ..."""
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def reserve(self, names: list[str]) -> None:
        """Names given later by :meth:`rename` (the cells'): never handed out by fresh."""
        self._names.update(names)

    def rename(self, tensor: str, name: str) -> str:
        """Give the output ``tensor`` of the last node the (reserved) ``name``."""
        last = self.nodes[-1]
        assert list(last.output) == [tensor], (tensor, last.output)
        last.output[0] = name
        last.name = name
        self.rank[name] = self.rank.pop(tensor)
        return name

    # -- tensors ------------------------------------------------------------------------------
    def const(self, base: str, array: Any, dtype: Any = np.float32) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, rank: int, **attrs: Any) -> str:
        """Add ``op`` whose single output is named ``output`` (made unique) of rank ``rank``."""
        out = self.fresh(output)
        self.nodes.append(oh.make_node(op, inputs, [out], name=out, **attrs))
        self.rank[out] = rank
        return out

    def channel_const(self, base: str, values: np.ndarray, rank: int) -> str:
        """Per-channel values [C] shaped to broadcast on axis 1 of a rank-``rank`` tensor."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 0 or values.size == 1:
            return self.const(base, values.reshape(()))
        return self.const(base, values.reshape((1, -1) + (1,) * (rank - 2)))

    def as_4d(self, x: str, base: str) -> str:
        """A rank-2 tensor [B, C] as [B, C, 1, 1] (for cells that need feature maps)."""
        if self.rank.get(x, 4) == 4:
            return x
        shape = self.const(f"{base}/shape4d", np.array([0, -1, 1, 1]), np.int64)
        return self.node("Reshape", [x, shape], f"{base}/as4d", 4)

    # -- quantization -------------------------------------------------------------------------
    def need_opset(self, opset: int) -> None:
        self.opset = max(self.opset, opset)

    def qdq_params(self, base: str, form: QdqForm) -> tuple[str, str, dict[str, Any]]:
        """Scale and zero-point initializers, and the ``axis`` attribute when per channel."""
        self.need_opset(form.opset)
        scale = self.const(f"{base}/scale", form.scale)
        zero = self.const(f"{base}/zero_point", form.zero_point, form.np_type)
        attrs = {"axis": int(form.axis)} if form.per_channel else {}
        return scale, zero, attrs

    def dequantized_const(self, base: str, form: QdqForm, integers: np.ndarray,
                          output: str) -> str:
        """Stored integers -> DequantizeLinear -> float tensor (weights: no QuantizeLinear,
        the integers are the initializer, as TensorRT reads pre-quantized weights)."""
        q = self.const(f"{base}/quantized", integers, form.np_type)
        scale, zero, attrs = self.qdq_params(base, form)
        return self.node("DequantizeLinear", [q, scale, zero], output, integers.ndim, **attrs)

    def quantize_dequantize(self, x: str, base: str, form: QdqForm, output: str,
                            clamp: tuple[np.ndarray, np.ndarray] | None) -> str:
        """x -> QuantizeLinear -> DequantizeLinear [-> clamp to the grid's float range].

        The clamp of a grid narrower than its type (4-bit levels in int8) follows the
        DequantizeLinear: clamping commutes with the monotonic Q/DQ, and onnxruntime's QDQ
        propagation (1.32, from its basic optimization level on) drops a Clip placed before a
        QuantizeLinear when it moves the DequantizeLinear past a following MaxPool."""
        rank = self.rank.get(x, 4)
        scale, zero, attrs = self.qdq_params(base, form)
        q = self.node("QuantizeLinear", [x, scale, zero], f"{base}/quantized", rank, **attrs)
        if clamp is None:
            return self.node("DequantizeLinear", [q, scale, zero], output, rank, **attrs)
        y = self.node("DequantizeLinear", [q, scale, zero], f"{base}/dequantized", rank,
                      **attrs)
        lo, hi = clamp
        if lo.ndim == 0:
            return self.node("Clip", [y, self.const(f"{base}/min", lo),
                                      self.const(f"{base}/max", hi)], output, rank)
        # per-channel bounds: Clip takes scalars only
        y = self.node("Max", [y, self.channel_const(f"{base}/min", lo, rank)],
                      f"{base}/max", rank)
        return self.node("Min", [y, self.channel_const(f"{base}/max", hi, rank)], output, rank)

    # -- the model ----------------------------------------------------------------------------
    def model(self, input_name: str, input_shape: tuple[int, ...],
              outputs: list[tuple[str, tuple[int, ...]]], graph_name: str) -> onnx.ModelProto:
        """The model: input [batch, C, H, W] with a symbolic batch dimension, float outputs
        (name, (C, H, W) of the cell): [batch, C] after an Fc, else [batch, C, H, W]."""
        inp = oh.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                        ["batch", *input_shape])
        outs = [oh.make_tensor_value_info(o, TensorProto.FLOAT, ["batch", *(
            shape if self.rank.get(o, 4) == 4 else shape[:1])]) for o, shape in outputs]
        graph = oh.make_graph(self.nodes, graph_name, [inp], outs, self.initializers)
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", self.opset)],
                              producer_name="n2q")
        # the IR version of the opset (onnx's table), so that older runtimes load it
        model.ir_version = min(onnx.IR_VERSION, 7 if self.opset <= 14 else 10)
        return model
