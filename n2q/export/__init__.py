"""``-export ONNX`` (spec/onnx.md "Export", cli.md): the network as an ONNX model, checked in
onnxruntime against n2q before anything is written.

A float network gives a float model; a quantized one a QDQ model built from its quantizers'
integer grids (n2q.quant.protocol), with ``calibration.json`` (NNI's form) and a TensorRT
dynamic-range file beside it, and a report. Modules: ``qdq`` (grid -> QDQ form), ``builder``
(the ONNX graph), ``quantized`` (quantizers through the protocol), ``cells`` (one translation
per cell type), ``network`` (the whole net), ``check`` (onnx.checker + onnxruntime),
``calibration`` (ranges), ``report``, and :func:`export_network` here (the folder).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from n2q.errors import UserError

FOLDER = "export_ONNX"          # N2D2 writes each export into export_<type>...
CALIBRATION_FILE = "calibration.json"
TENSORRT_FILE = "tensorrt_dynamic_range.txt"
REPORT_FILE = "report.txt"


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    model: Path
    quantized: bool
    check_line: str


def check_export_type(kind: str) -> None:
    """ONNX is exported; N2D2's other export types are refused in one line."""
    from n2q.options import EXPORT_TYPES

    if kind == "ONNX":
        return
    if kind not in EXPORT_TYPES:
        raise UserError(f"-export {kind}: unknown export type; n2q exports ONNX "
                        f"(-export ONNX); N2D2's types are {', '.join(EXPORT_TYPES)}")
    raise UserError(f"-export {kind}: not supported by n2q; the supported export type is "
                    "ONNX (-export ONNX)")


def export_network(net: Any, kind: str, *, batch: Any, folder: str | Path = ".",
                   name: str = "network", batch_from: str = "the Test set") -> ExportResult:
    """Export ``net`` as ``<folder>/export_ONNX/<name>.onnx`` (+ calibration files and
    report for a quantized network), after checking it on ``batch`` (float stimuli
    [B, C, H, W]). Nothing is written when a check fails (UserError)."""
    from n2q.export.calibration import (
        calibration_config,
        calibration_json,
        dynamic_range_text,
        dynamic_ranges,
    )
    from n2q.export.check import check_export
    from n2q.export.network import build_graph
    from n2q.export.quantized import act_grid, weight_grid
    from n2q.export.report import report_text
    from n2q.io.atomic import atomic_folder

    check_export_type(kind)
    model_net = copy.deepcopy(net).cpu().float().eval()
    weight_grids = {n: weight_grid(c) for n, c in model_net.cells.items()
                    if getattr(c, "weight_quantizer", None) is not None}
    act_grids = {n: act_grid(c) for n, c in model_net.cells.items()
                 if getattr(c, "act_quantizer", None) is not None}
    graph = build_graph(model_net, name)
    check = check_export(model_net, graph, batch, act_grids)
    model_file = f"{name}.onnx"
    files = {model_file: graph.model.SerializeToString(),
             REPORT_FILE: report_text(graph, check, model_file=model_file, network=name,
                                      batch_from=batch_from).encode()}
    if graph.quantized:
        config = calibration_config(model_net, weight_grids, act_grids)
        files[CALIBRATION_FILE] = calibration_json(config).encode()
        files[TENSORRT_FILE] = dynamic_range_text(
            dynamic_ranges(model_net, act_grids, graph.tensor_of)).encode()
    target = Path(folder) / FOLDER
    with atomic_folder(target) as tmp:
        for file, data in files.items():
            (tmp / file).write_bytes(data)
    return ExportResult(target, target / model_file, graph.quantized, check.line())


def export_from_run(ctx: Any, kind: str, best_folder: Path | None = None) -> ExportResult:
    """The ``-export`` phase of a run (n2q.run): ``ctx.net`` with its loaded weights (the
    best ones of this run's learning when ``best_folder`` is given and -test did not reload
    them), checked on the first batch of the Test set (else Validation, else Learn)."""
    if best_folder is not None:
        from n2q.io.weights import load_weights

        print(f"Importing weights from directory '{best_folder.name}'.")
        load_weights(ctx.net, best_folder, ignore_missing=False)
    sizes = ctx.sp.partition_sizes()
    partition = next((p for p in ("Test", "Validation", "Learn") if sizes.get(p, 0)), None)
    if partition is None:
        raise UserError(f"-export {kind}: the export is checked on stimuli, and the data base "
                        "has none (Test, Validation and Learn are empty)")
    batch = next(iter(ctx.sp.loader(partition, shuffle=False, limit=ctx.sp.batch_size)))[0]
    path = getattr(ctx.cfg, "path", None)
    name = Path(path).stem if path else "network"
    ctx.net.eval()
    result = export_network(ctx.net, kind, batch=batch, folder=ctx.workdir, name=name,
                            batch_from=f"the {partition} set")
    kind_text = "QDQ" if result.quantized else "float"
    print(f"Exported the {kind_text} ONNX model to {result.model} (report: "
          f"{result.folder / REPORT_FILE})")
    print(result.check_line)
    return result
