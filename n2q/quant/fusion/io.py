"""``weights_quantized/``: writing a fused network and rebuilding it from such a folder."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from n2q.errors import UserError
from n2q.quant.fusion.build import build_fused, linear_module, sum_module
from n2q.quant.fusion.network import FusedNetwork
from n2q.quant.fusion.plan import INPUT, Domain, Step, StepKind, plan_fusion, providers
from n2q.quant.integer import Rescale


def save_fused(fused: FusedNetwork, folder: str | Path) -> Path:
    """Write `folder` atomically (weights.md): per fused Conv/Fc the integer ``_weights``, the
    accumulator-domain bias B' (``_biases``), ``_scaling`` S' and ``_clip`` C' (not for a float
    output); per fused Sum its input coefficients (``_weights``), ``_scaling`` and ``_clip``;
    cells left in float their usual files. No BatchNorm file."""
    from n2q.io.weights import save_weights

    return save_weights(fused, folder, plots=False)


def load_fused(net: Any, folder: str | Path) -> FusedNetwork:
    """Rebuild the fused network of `net` (as built from the INI) from a folder written by
    :func:`save_fused`. Fused layers and float cells take all their values from the folder;
    the activation grids of `net`'s quantizers only serve where a float cell or a target
    reads an integer output back in float units. Malformed or non-integer files raise
    UserError."""
    from n2q.io.weights import load_weights

    folder = Path(folder)
    steps, alias = plan_fusion(net)
    domains = {p: INPUT for p in providers(net)} | {s.name: s.domain for s in steps}
    templates = _Cells(_template(net, step, domains) for step in steps)
    load_weights(templates, folder, ignore_missing=False)

    def linear(step: Step, in_domain: Domain) -> nn.Module:
        template = templates[step.name]
        weight = _checked_integers(template.weight, folder, step.name)
        return linear_module(net.cells[step.name], step, weight, template.rescale, in_domain)

    def summed(step: Step, in_domains: list[Domain]) -> nn.Module:
        template = templates[step.name]
        return sum_module(net.cells[step.name], step, template.coefficients, template.rescale,
                          in_domains)

    with torch.no_grad():
        fused = build_fused(net, steps, alias, linear, summed)
        for step in steps:
            if step.kind in (StepKind.FLOAT, StepKind.PASS, StepKind.POOL_SUM):
                fused.cells[step.name].load_state_dict(templates[step.name].state_dict())
    return fused


def _template(net: Any, step: Step, domains: dict[str, Domain]) -> tuple[str, nn.Module]:
    """A module with the cell protocol of n2q.io.weights for `step`, to load a folder into."""
    cell = net.cells[step.name]
    if step.kind is StepKind.LINEAR:
        out = cell.weight.shape[0]
        zeros = torch.zeros(out, dtype=torch.float64)
        rescale = Rescale(zeros, zeros.clone() if step.domain.integer else None, zeros.clone())
        weight = torch.zeros(cell.weight.shape)  # float: integrality is checked after loading
        return step.name, linear_module(cell, step, weight, rescale, domains[step.inputs[0]])
    if step.kind is StepKind.SUM:
        one = torch.zeros(1, dtype=torch.float64)
        return step.name, sum_module(cell, step, [0.0] * len(step.inputs),
                                     Rescale(one, one.clone(), one.clone()),
                                     [domains[i] for i in step.inputs])
    return step.name, copy.deepcopy(cell)


class _Cells(dict):
    """name -> cell, accepted by n2q.io.weights as a network (it reads ``.cells``)."""

    @property
    def cells(self) -> dict[str, Any]:
        return self


def _checked_integers(weight: Tensor, folder: Path, name: str) -> Tensor:
    values = weight.double()
    rounded = torch.round(values)
    off = float((values - rounded).abs().max()) if values.numel() else 0.0
    if off > 0:
        raise UserError(
            f"{name}_weights.syntxt: fused weights must be integers (a value is "
            f"{off:.3g} off): is this a weights_quantized folder?",
            file=folder,
        )
    if values.numel() and float(rounded.abs().max()) > 32767:
        raise UserError(
            f"{name}_weights.syntxt: fused weights beyond the int16 range (|W'| > 32767): "
            "is this a weights_quantized folder?",
            file=folder,
        )
    small = not values.numel() or float(rounded.abs().max()) <= 127
    return rounded.to(torch.int8 if small else torch.int16)
