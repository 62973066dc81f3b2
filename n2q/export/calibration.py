"""The calibration ranges inference engines read: ``calibration.json`` in NNI's form and a
TensorRT per-tensor dynamic-range file.

NNI's ``export_model`` (seed 003, spec/quant.md) writes, per quantized layer, ``weight_bits``
(here the bits of the grid's levels, ceil(log2(levels)): 4 for SAT's Range=15 weights),
``input_bits``, ``tracked_min_input``, ``tracked_max_input``, ``output_bits``,
``tracked_min_output``, ``tracked_max_output``. n2q writes the same keys from the integer grids:
a range is the grid's float span, (qmin - z) * s .. (qmax - z) * s (LSQ: step size times the
integer range; SAT activations: 0 .. alpha). A layer's input range is the grid of the tensor
it reads: its producer's output grid, followed back through cells that keep the levels (max
pooling, dropout, zero padding, a linear Activation cell). The network's input has no learned
range and gets none.

TensorRT's dynamic range (``ITensor::setDynamicRange``, sampleINT8API's per-tensor file
``name: value``) is symmetric: amax = max(|min|, |max|) per tensor, which TensorRT maps to
int8 as scale = amax / 127.
"""

from __future__ import annotations

import json
from typing import Any

from n2q.export.qdq import grid_range, level_bits

LEVEL_KEEPING = ("Dropout", "Padding", "Activation")


def _linear(cell: Any) -> bool:
    return getattr(cell.activation, "name", "Linear") == "Linear"


def _keeps_levels(cell: Any) -> bool:
    if cell.act_quantizer is not None or not _linear(cell) or len(cell.inputs) != 1:
        return False
    if cell.type == "Pool":
        return cell.pooling == "Max"
    return cell.type in LEVEL_KEEPING


def input_grid(net: Any, name: str, grids: dict[str, Any]) -> Any:
    """The grid of the tensor cell ``name`` reads (one input), or None."""
    ins = net.inputs[name]
    while len(ins) == 1 and ins[0] in net.cells:
        source = ins[0]
        if source in grids:
            return grids[source]
        if not _keeps_levels(net.cells[source]):
            return None
        ins = net.inputs[source]
    return None


def _range_entry(prefix: str, grid: Any) -> dict[str, Any]:
    lo, hi = grid_range(grid)
    return {f"{prefix}_bits": level_bits(grid), f"tracked_min_{prefix}": lo,
            f"tracked_max_{prefix}": hi}


def calibration_config(net: Any, weight_grids: dict[str, Any], act_grids: dict[str, Any]
                       ) -> dict[str, dict[str, Any]]:
    """{cell: NNI's keys} for every cell with a weight or activation quantizer."""
    config: dict[str, dict[str, Any]] = {}
    for name in net.cells.keys():
        if name not in weight_grids and name not in act_grids:
            continue
        entry: dict[str, Any] = {}
        if name in weight_grids:
            entry["weight_bits"] = level_bits(weight_grids[name])
        source = input_grid(net, name, act_grids)
        if source is not None:
            entry.update(_range_entry("input", source))
        if name in act_grids:
            entry.update(_range_entry("output", act_grids[name]))
        config[name] = entry
    return config


def output_grids(net: Any, act_grids: dict[str, Any]) -> dict[str, Any]:
    """The grid of every cell output on one: the quantized cells' and those of the cells
    that keep their input's levels (a max pooling after a quantized BatchNorm)."""
    grids: dict[str, Any] = {}
    for name, cell in net.cells.items():
        if name in act_grids:
            grids[name] = act_grids[name]
        elif _keeps_levels(cell):
            source = input_grid(net, name, grids)
            if source is not None:
                grids[name] = source
    return grids


def dynamic_ranges(net: Any, act_grids: dict[str, Any], tensor_of: dict[str, str]
                   ) -> dict[str, float]:
    """{tensor name: amax} for every cell output on an integer grid."""
    ranges = {}
    for name, grid in output_grids(net, act_grids).items():
        lo, hi = grid_range(grid)
        ranges[tensor_of[name]] = max(abs(lo), abs(hi))
    return ranges


def calibration_json(config: dict[str, dict[str, Any]]) -> str:
    return json.dumps(config, indent=2) + "\n"


def dynamic_range_text(ranges: dict[str, float]) -> str:
    """One ``tensor: amax`` line per tensor (float repr: exact round trip)."""
    return "".join(f"{name}: {value!r}\n" for name, value in ranges.items())
