"""Quantizers in the exported graph, read through the quantizer protocol only.

Weights: ``q.integer_grid(w)`` gives the grid of the cell's quantized weight; the integers are
stored as an initializer followed by DequantizeLinear (per axis 0 when the grid is per
channel). Activations: ``q.integer_grid()`` gives the output grid; the cell's output goes
through QuantizeLinear -> DequantizeLinear [-> clamp]. Biases stay float (TensorRT's
convention: no QDQ on biases). A quantizer whose ``integer_grid`` is None has no integer form
(SAT's clamp phase): the export is refused, naming the cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from n2q.errors import UserError
from n2q.export.builder import BASE_OPSET, GraphBuilder, QdqRecord
from n2q.export.qdq import grid_summary, needs_clamp, qdq_form, stored_integers

EXPORT = "-export ONNX"


def label(q: Any) -> str:
    """How the network summary names a quantizer (``SAT R=15``)."""
    describe = getattr(q, "describe", None)
    return describe() if callable(describe) else type(q).__name__


def weight_grid(cell: Any) -> Any:
    """The integer grid of ``cell``'s weight quantizer, or a UserError naming the cell."""
    q = cell.weight_quantizer
    w = cell.weight.detach()
    mask = getattr(cell, "mask", None)
    if mask is not None:    # the quantizer sees the masked weight (n2q.net.conv)
        w = w * mask
    grid = q.integer_grid(w) if hasattr(q, "integer_grid") else None
    if grid is None:
        raise UserError(f"{EXPORT}: cell {cell.name}: its weight quantizer ({label(q)}) "
                        "gives no integer grid (e.g. SAT's clamp phase, "
                        "QWeight.ApplyQuantization=0), so it has no QDQ form; export the "
                        "quantized network, or the float one without QWeight")
    return grid


def act_grid(cell: Any) -> Any:
    q = cell.act_quantizer
    grid = q.integer_grid() if hasattr(q, "integer_grid") else None
    if grid is None:
        raise UserError(f"{EXPORT}: cell {cell.name}: its activation quantizer ({label(q)}) "
                        "gives no integer grid, so it has no QDQ form")
    return grid


def weight_tensor(b: GraphBuilder, cell: Any) -> str:
    """The float weight tensor [O, ...] the op uses: a float initializer for an unquantized
    cell, else stored integers + DequantizeLinear (or float constants when no standard form
    exists)."""
    with torch.no_grad():
        w_q = cell.quantized_weight().detach().float().cpu()
    if cell.weight_quantizer is None:
        return b.const(f"{cell.name}/weight", w_q.numpy())
    grid = weight_grid(cell)
    form = qdq_form(grid, w_q)
    record = QdqRecord(cell.name, "weight", f"{cell.name}/weight", form, grid_summary(grid))
    b.records.append(record)
    if form is None or form.opset > BASE_OPSET:
        # a 16-bit grid would need int16 QDQ at opset 21, which TensorRT does not read and
        # which onnxruntime (1.32) fails to load when a DequantizeLinear feeds a MaxPool
        # (its QDQ propagation at opset 21): the exact quantized values as float constants
        need = "more than 16 bits" if form is None else f"{form.type_name} (opset {form.opset})"
        record.notes.append(f"grid needs {need}: the quantized weights are written as float "
                            "constants (exact values, no QDQ)")
        record.form = None
        return b.const(f"{cell.name}/weight", w_q.numpy())
    try:
        integers = stored_integers(form, grid, w_q)
    except ValueError as error:
        raise UserError(f"{EXPORT}: cell {cell.name}: {error}; its quantizer "
                        f"({label(cell.weight_quantizer)}) cannot be exported") from None
    record.notes.extend(form.notes)
    if grid.stride > 1:
        every = "every other integer" if grid.stride == 2 else f"every {grid.stride}th integer"
        record.notes.append(f"{every} of the type is used ({grid.qmin}, "
                            f"{grid.qmin + grid.stride}, ..., {grid.qmax})")
    if form.type_name == "int8" and form.vmin == -128:
        record.notes.append("uses -128: TensorRT's int8 weights are [-127, 127]")
    if not form.zero_points_all_zero:
        record.notes.append("non-zero weight zero point (TensorRT needs 0)")
    return b.dequantized_const(f"{cell.name}/weight", form, integers, f"{cell.name}/weight")


def quantize_output(b: GraphBuilder, cell: Any, x: str) -> str:
    """The cell's activation quantizer on tensor ``x``: QuantizeLinear + DequantizeLinear."""
    grid = act_grid(cell)
    form = qdq_form(grid)
    if form is None:
        raise UserError(f"{EXPORT}: cell {cell.name}: the activation grid "
                        f"{grid_summary(grid)} has no int8/int16 QDQ form")
    if grid.stride > 1 or form.multiplier > 1:
        # QuantizeLinear rounds to every integer of its type: a grid of every other integer
        # (or with a half-integer zero point) would become a finer grid, not this one
        raise UserError(f"{EXPORT}: cell {cell.name}: the activation grid "
                        f"{grid_summary(grid)} has no QuantizeLinear form (it is not every "
                        "integer of a range with an integer zero point)")
    if grid.per_channel and grid.axis != 1:
        raise UserError(f"{EXPORT}: cell {cell.name}: an activation grid per channel on axis "
                        f"{grid.axis} (only the channel axis 1 is exported)")
    record = QdqRecord(cell.name, "output", f"{cell.name}/q", form, grid_summary(grid),
                       list(form.notes))
    b.records.append(record)
    if not form.zero_points_all_zero:
        record.notes.append("non-zero zero point (TensorRT needs 0)")
    if form.type_name != "int8":
        record.notes.append(f"{form.type_name} activations (TensorRT quantizes to int8)")
    clamp = None
    if needs_clamp(form, grid):
        # the grid's float range per channel: (qmin - z) * s .. (qmax - z) * s
        lo = grid.dequantize(torch.full_like(grid.zero_point, float(grid.qmin))).numpy()
        hi = grid.dequantize(torch.full_like(grid.zero_point, float(grid.qmax))).numpy()
        clamp = (lo.astype(np.float32), hi.astype(np.float32))
    record.tensor = b.quantize_dequantize(x, f"{cell.name}/q", form, f"{cell.name}/q", clamp)
    return record.tensor
