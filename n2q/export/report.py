"""The export's short report (``report.txt``): opset, inputs/outputs, per-layer grids, what is
not exact, and the check's figures against the stated tolerances."""

from __future__ import annotations

from typing import Any

from n2q.export.check import FLOAT_TOLERANCE, LEVEL_SHARE, CheckResult
from n2q.export.network import ExportedGraph

MAX_LISTED = 20


def _io(values: Any) -> list[str]:
    lines = []
    for v in values:
        dims = [d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim]
        lines.append(f"  {v.name}: float32 [{', '.join(dims)}]")
    return lines


def report_text(graph: ExportedGraph, check: CheckResult, *, model_file: str,
                network: str, batch_from: str) -> str:
    kind = "QDQ (QuantizeLinear/DequantizeLinear)" if graph.quantized else "float"
    lines = [f"n2q ONNX export of {network}", f"model: {model_file} ({kind}, opset "
             f"{graph.opset}, IR version {graph.model.ir_version})", "inputs:"]
    lines += _io(graph.model.graph.input)
    lines.append("outputs:")
    lines += _io(graph.model.graph.output)
    lines.append("BatchNorm: kept as BatchNormalization nodes (not folded), as in n2q's network")
    if graph.quantized:
        lines += _quantized_lines(graph)
    lines += ["", "check (before writing):",
              f"  onnx.checker (full check): passed; onnxruntime on {check.stimuli} stimuli "
              f"of {batch_from}",
              f"  {check.line()}"]
    if graph.quantized:
        lines.append(f"  tolerance: each quantized tensor at most one level from n2q's on at "
                     f"most {LEVEL_SHARE:g} of its values (cell by cell, same inputs); float "
                     f"tensors within {FLOAT_TOLERANCE:g} x max(1, max |value|); the outputs "
                     "of onnxruntime's optimized run within the same of its unoptimized run")
        if check.near_ties:
            shown = ", ".join(f"#{i} (n2q margin {m:.3g})" for i, m in
                              check.near_ties[:MAX_LISTED])
            lines.append(f"  class differs on {len(check.near_ties)} stimuli (n2q's top-two "
                         f"logit margins: {shown})")
    else:
        lines.append(f"  tolerance: every cell output within {FLOAT_TOLERANCE:g} x max(1, "
                     "max |value|) of n2q's")
    lines += ["", "per cell (check):"] + [f"  {line}" for line in check.layer_lines]
    return "\n".join(lines) + "\n"


def _quantized_lines(graph: ExportedGraph) -> list[str]:
    lines = ["", "quantized tensors (grid of n2q's quantizer -> QDQ form):"]
    inexact = []
    for r in graph.records:
        form = r.form.describe() if r.form is not None else "float constants"
        lines.append(f"  {r.cell} {r.kind}: grid {r.grid_text} -> {form}")
        for note in r.notes:
            lines.append(f"    note: {note}")
            inexact.append(f"{r.cell} {r.kind}: {note}")
    lines.append("biases: float (no QDQ on biases, TensorRT's convention); the network input "
                 "is not quantized (n2q feeds float stimuli)")
    lines += ["", "not standard int8 / not exact in int8:"]
    lines += [f"  {n}" for n in inexact] or ["  nothing: every grid is int8 with zero point 0"]
    return lines
