"""The export's check before anything is written: onnx.checker, then onnxruntime against n2q.

Two onnxruntime runs on the same batch:
- the model as written, with onnxruntime's default optimizations (what a user runs): its
  target outputs against n2q's (classes, reported) and against the unoptimized run's (within
  FLOAT_TOLERANCE: the optimizations must not change the model);
- the model with every cell's tensor added as an output, optimizations off: cell by cell,
  n2q's cell is run on onnxruntime's own inputs of that cell, so that a difference shows where
  it arises and does not propagate.
Tolerances (stated in the report): float tensors within FLOAT_TOLERANCE * max(1, max |n2q|);
quantized tensors (their levels, in grid units) at most one level apart on at most
LEVEL_SHARE of the values: QuantizeLinear and n2q's quantizer may round a value lying on a
half level differently, as their float operations differ in order. A float export must also
match end to end within FLOAT_TOLERANCE; a QDQ export reports its end-to-end agreement
(same class, largest target difference).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from n2q.errors import UserError
from n2q.export.network import ExportedGraph
from n2q.export.quantized import EXPORT

FLOAT_TOLERANCE = 1e-4
LEVEL_SHARE = 1e-3


@dataclass
class CheckResult:
    stimuli: int = 0
    same_class: int = 0
    max_target_diff: float = 0.0
    max_deployed_diff: float = 0.0     # target outputs of the optimized session
    near_ties: list[tuple[int, float]] = field(default_factory=list)  # (stimulus, margin)
    layer_lines: list[str] = field(default_factory=list)
    levels_compared: int = 0
    levels_differing: int = 0

    def line(self) -> str:
        text = (f"onnxruntime vs n2q on {self.stimuli} stimuli: same class on "
                f"{self.same_class}/{self.stimuli}; largest output difference "
                f"{self.max_deployed_diff:.3g} (logits, unoptimized: "
                f"{self.max_target_diff:.3g})")
        if self.levels_compared:
            text += (f"; layer by layer, {self.levels_differing} of {self.levels_compared} "
                     "quantized levels differ by one")
        return text


def run_session(model: Any, optimize: bool, outputs: list[str], feed: dict[str, Any]
                ) -> list[Any]:
    """onnxruntime (CPU) on ``model``; a model it cannot load or run is a UserError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        return session.run(outputs, feed)
    except Exception as error:  # onnxruntime raises its own exception types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise UserError(f"{EXPORT}: onnxruntime {ort.__version__} cannot run the exported "
                        f"model ({first}): nothing written") from None


def with_all_outputs(graph: ExportedGraph) -> Any:
    """A copy of the model whose outputs are every cell's tensor."""
    from onnx import TensorProto
    from onnx import helper as oh

    model = copy.deepcopy(graph.model)
    present = {o.name for o in model.graph.output}
    for tensor in graph.tensor_of.values():
        if tensor not in present:
            present.add(tensor)
            model.graph.output.append(oh.make_tensor_value_info(tensor, TensorProto.FLOAT,
                                                                None))
    return model


def check_export(net: Any, graph: ExportedGraph, batch: torch.Tensor,
                 act_grids: dict[str, Any]) -> CheckResult:
    """Raise UserError when the model is invalid or onnxruntime disagrees with ``net`` beyond
    the tolerances; else the figures for the report. ``act_grids``: cell -> its output grid."""
    import onnx

    try:
        onnx.checker.check_model(graph.model, full_check=True)
    except onnx.checker.ValidationError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(f"{EXPORT}: the exported model fails onnx.checker: {first}") from None
    x = batch.detach().float().cpu()
    feed = {graph.input_name: x.numpy()}
    with torch.no_grad():
        ref = {k: v.float() for k, v in net.forward_all(x).items()}
    result = CheckResult(stimuli=int(x.shape[0]))
    names = list(graph.tensor_of)
    tensors = [graph.tensor_of[n] for n in names]
    outs = run_session(with_all_outputs(graph), False, tensors, feed)
    ort = {n: torch.from_numpy(np.asarray(o)) for n, o in zip(names, outs, strict=True)}
    ort[graph.input_name] = x
    for name in names:      # first the cell where a difference arises, if any
        _layer(net, name, ort, ref, act_grids.get(name), result)
    deployed = run_session(graph.model, True, graph.outputs, feed)
    _end_to_end(net, graph, dict(zip(graph.outputs, deployed, strict=True)), ort, ref, result)
    return result


def logits_cell(net: Any, target: str) -> str:
    """The cell whose output n2q's loss reads: a Softmax WithLoss=1's input (its logits)."""
    if net.loss_kind(target) == "softmax_ce" and len(net.inputs[target]) == 1 \
            and net.inputs[target][0] in net.cells:
        return net.inputs[target][0]
    return target


def _end_to_end(net: Any, graph: ExportedGraph, deployed: dict[str, np.ndarray],
                ort: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
                result: CheckResult) -> None:
    """Classes of the model as written (default optimizations) against n2q's; the largest
    difference of the logits (every cell's, for a float export, within the tolerance)."""
    for name in (graph.tensor_of if not graph.quantized else ()):
        mine, theirs = ref[name].flatten(1), ort[name].flatten(1)
        diff = float((mine - theirs).abs().max()) if mine.numel() else 0.0
        scale = max(1.0, float(mine.abs().max())) if mine.numel() else 1.0
        if diff > FLOAT_TOLERANCE * scale:
            raise UserError(f"{EXPORT}: cell {name}: onnxruntime's output differs from n2q's "
                            f"by {diff:.3g} (tolerance {FLOAT_TOLERANCE:g} x {scale:.3g}): "
                            "nothing written")
    for target in dict.fromkeys(t.cell for t in net.targets):
        logits = logits_cell(net, target)
        mine = ref[logits].flatten(1)
        diff = float((mine - ort[logits].flatten(1)).abs().max()) if mine.numel() else 0.0
        result.max_target_diff = max(result.max_target_diff, diff)
        theirs = torch.from_numpy(np.asarray(deployed[graph.tensor_of[target]])).flatten(1)
        out = ref[target].flatten(1)
        if out.numel():
            result.max_deployed_diff = max(result.max_deployed_diff,
                                           float((out - theirs).abs().max()))
            # onnxruntime's optimizations must not change the model: the optimized run (as
            # deployed) against the unoptimized one that was checked cell by cell
            plain = ort[target].flatten(1)
            moved = float((plain - theirs).abs().max())
            if moved > FLOAT_TOLERANCE * max(1.0, float(plain.abs().max())):
                raise UserError(f"{EXPORT}: onnxruntime's optimized run changes {target} by "
                                f"{moved:.3g} against its unoptimized run (tolerance "
                                f"{FLOAT_TOLERANCE:g}): nothing written")
        if mine.shape[1] < 2:
            result.same_class += result.stimuli
            continue
        same = mine.argmax(1) == theirs.argmax(1)
        result.same_class += int(same.sum())
        top2 = mine.topk(2, dim=1).values
        for i in torch.nonzero(~same).flatten().tolist():
            result.near_ties.append((i, float(top2[i, 0] - top2[i, 1])))


def _layer(net: Any, name: str, ort: dict[str, torch.Tensor], ref: dict[str, torch.Tensor],
           grid: Any, result: CheckResult) -> None:
    """n2q's cell on onnxruntime's inputs against onnxruntime's output of the cell."""
    cell = net.cells[name]
    ins = [ort[i] for i in net.inputs[name]]
    ins = [i.reshape(i.shape[0], -1, 1, 1) if i.dim() == 2 else i for i in ins]
    with torch.no_grad():
        arg = ins if cell.MULTI_INPUT else (ins[0] if len(ins) == 1 else torch.cat(ins, 1))
        mine = cell(arg).float().flatten(1)
    theirs = ort[name].float().flatten(1)
    if grid is not None:
        shaped = _channels(mine, ref[name])
        a, b = grid.integers(shaped), grid.integers(_channels(theirs, ref[name]))
        off_grid = float((grid.dequantize(a) - shaped.double()).abs().max()) \
            if a.numel() else 0.0
        if off_grid > 1e-3 * float(grid.scale.min()):
            raise UserError(f"{EXPORT}: cell {name}: n2q's quantized output is off its "
                            f"quantizer's integer grid by up to {off_grid:.3g} (the grid does "
                            "not describe the quantizer): nothing written")
        off = (a - b).abs()
        worst, count = (float(off.max()), int((off > 0).sum())) if off.numel() else (0.0, 0)
        result.levels_compared += off.numel()
        result.levels_differing += count
        if worst > 1 or count > LEVEL_SHARE * max(off.numel(), 1):
            raise UserError(f"{EXPORT}: cell {name}: onnxruntime's quantized output differs "
                            f"from n2q's on {count} of {off.numel()} levels (up to "
                            f"{worst:g} levels; tolerance: one level on {LEVEL_SHARE:g} of "
                            "them): nothing written")
        result.layer_lines.append(f"{name}: {count}/{off.numel()} levels differ")
        return
    diff = float((mine - theirs).abs().max()) if mine.numel() else 0.0
    scale = max(1.0, float(mine.abs().max())) if mine.numel() else 1.0
    if diff > FLOAT_TOLERANCE * scale:
        why = ("; its weight quantizer changes the op beyond the quantized weight (e.g. it "
               "folds the next BatchNorm during training), which the export does not express"
               if getattr(cell, "weight_quantizer", None) is not None else "")
        raise UserError(f"{EXPORT}: cell {name}: onnxruntime's output differs from n2q's by "
                        f"{diff:.3g} on the same inputs (tolerance {FLOAT_TOLERANCE:g} x "
                        f"{scale:.3g}){why}: nothing written")
    result.layer_lines.append(f"{name}: max |difference| {diff:.3g}")


def _channels(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A flattened [B, N] output back in the cell's layout (per-channel grids, axis 1)."""
    return flat.reshape(like.shape)
