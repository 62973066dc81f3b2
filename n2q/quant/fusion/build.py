"""Building the integer nodes of a planned fusion (fusion.md) from the trained parameters:
integer weights W' from the weight quantizer's grid, the BatchNorm folded through
n2q.quant.bnfold, and the per-channel bias B', clip C' and scaling S'."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from n2q.errors import UserError
from n2q.quant.bnfold import bn_fold_factor
from n2q.quant.fusion.layers import IntegerBranchLayer, IntegerElemWise, IntegerLinearLayer
from n2q.quant.fusion.network import FusedNetwork
from n2q.quant.fusion.plan import (
    INPUT,
    LINEAR_TYPES,
    Domain,
    Step,
    StepKind,
    loss_kind,
    plan_fusion,
    providers,
)
from n2q.quant.integer import (
    DEAD_VARIANCE,
    Rescale,
    branch_rescale,
    conv_bn_act_rescale,
    elemwise_rescale,
    fc_rescale,
    integer_weights,
)


def weight_integers(cell: Any) -> tuple[Tensor, float | Tensor]:
    """(W' [weight's shape] integer-valued float64, masked; step) of a Conv/Fc whose weight
    quantizer has a per-layer grid, or a per-output-channel one (step [O] float64, SimQAT):
    the cell's forward weight is W' * step.

    Read from the grid: integers k of the fake-quantized weight, divided by the grid's stride
    when every level is a multiple of it (SAT Default with even R: W' = (2n - R) / 2)."""
    q = cell.weight_quantizer
    mask = getattr(cell, "mask", None)
    with torch.no_grad():
        w = cell.weight if mask is None else cell.weight * mask
        grid = q.integer_grid(w)
        fake = q.fake_quantize(w)
        k = grid.integers(fake)
    if mask is not None:
        k = k * mask
    common = grid.stride if grid.qmin % grid.stride == 0 else 1
    if grid.per_channel:
        return k / common, grid.scale * common
    return k / common, float(grid.scale) * common


def _as_stored(rescale: Rescale) -> Rescale:
    """Per-channel values rounded to float32, what a weights folder holds: a saved and
    reloaded network is then the very same network."""
    return Rescale(
        bias=rescale.bias.float().double(),
        clip=None if rescale.clip is None else rescale.clip.float().double(),
        scaling=rescale.scaling.float().double(),
    )


def linear_module(cell: Any, step: Step, weight: Tensor, rescale: Rescale,
                  in_domain: Domain) -> IntegerLinearLayer:
    """An IntegerLinearLayer with the cell attributes that the weights writer and the graph
    drawer read (name, shapes, mask, groups, export format, stride, padding)."""
    conv = cell.type == "Conv"
    geometry = dict(
        range_in=in_domain.magnitude,
        zero_point_in=in_domain.zero_point,
        stride=tuple(cell.stride) if conv else (1, 1),
        padding=tuple(cell.padding) if conv else (0, 0),
        dilation=tuple(cell.dilation) if conv else (1, 1),
        groups=int(getattr(cell, "groups", 1)) if conv else 1,
    )
    layer: IntegerLinearLayer
    out = step.domain
    if out.partial:
        layer = IntegerBranchLayer(cell.type, weight, _as_stored(rescale), **geometry)
    else:
        layer = IntegerLinearLayer(
            cell.type, weight, _as_stored(rescale),
            range_out=out.range if out.integer else None,
            low_out=out.low if out.integer else 0,
            zero_point_out=out.zero_point,
            activation=None if out.integer else copy.deepcopy(cell.activation),
            **geometry,
        )
    layer.register_buffer("mask", getattr(cell, "mask", None), persistent=False)
    layer.weights_export_format = getattr(cell, "weights_export_format", None)
    _describe(layer, cell, step)
    return layer


def sum_module(cell: Any, step: Step, coefficients: list[float], rescale: Rescale,
               in_domains: list[Domain]) -> IntegerElemWise:
    stored = [float(torch.tensor(c, dtype=torch.float32)) for c in coefficients]
    out = step.domain
    module = IntegerElemWise(stored, _as_stored(rescale), out.range,
                             zero_points_in=[0 if d.partial else d.zero_point for d in in_domains],
                             low_out=out.low, zero_point_out=out.zero_point)
    module.activation = nn.Identity()
    _describe(module, cell, step)
    return module


def _describe(module: nn.Module, cell: Any, step: Step) -> None:
    module.name = step.name
    module.section = getattr(cell, "section", None)
    module.in_shape = getattr(cell, "in_shape", None)
    module.out_shape = getattr(cell, "out_shape", None)
    module.weight_quantizer = None
    module.act_quantizer = None


def _fuse_linear(net: Any, step: Step, in_domain: Domain) -> IntegerLinearLayer:
    """The integer layer of a LINEAR step: W' and the per-channel B', C', S' (fusion.md),
    with the weight step (the float value of one W' unit) in the place of 1 / (W_s * s)."""
    cell = net.cells[step.name]
    w_int, step_w = weight_integers(cell)
    out_channels = w_int.shape[0]
    bias = cell.bias if getattr(cell, "bias", None) is not None else torch.zeros(out_channels)
    out, units_in = step.domain, dict(alpha_in=in_domain.alpha, range_in=in_domain.range)
    if isinstance(step_w, Tensor) and not out.partial and out.integer:
        # per-channel weight steps: the Conv + BatchNorm block's per-channel factor (f = 1
        # without a BatchNorm) carries them
        return _fuse_conv_bn(net, step, in_domain, w_int, step_w, bias)
    if out.partial or step.bn is None:
        if step.bn is None:  # no BatchNorm: its affine is the identity
            f, shift = torch.ones(out_channels, dtype=torch.float64), torch.zeros(out_channels)
        else:
            # the true factor (no dead-channel zeroing): a branch divides by nothing
            f, shift = bn_fold_factor(net.cells[step.bn])
        if out.partial:  # fusion.md "Residual ElemWise", the branch side
            rescale = branch_rescale(f, shift, torch.zeros(out_channels), bias, **units_in,
                                     w_s=1.0 / step_w, alpha_out=out.alpha, range_out=out.range)
            return linear_module(cell, step, integer_weights(w_int, 1), rescale, in_domain)
        # fusion.md "Fc" (also a Conv with its own QAct and no BatchNorm)
        rescale = fc_rescale(bias, **units_in, w_s=1.0 / step_w,
                             alpha_out=out.alpha if out.integer else None,
                             range_out=out.range if out.integer else None)
        return linear_module(cell, step, integer_weights(w_int, 1), rescale, in_domain)
    return _fuse_conv_bn(net, step, in_domain, w_int, step_w, bias)


def _fuse_conv_bn(net: Any, step: Step, in_domain: Domain, w_int: Tensor,
                  step_w: float | Tensor, bias: Tensor) -> IntegerLinearLayer:
    """fusion.md "Conv + BatchNorm + activation quantizer": W' = sg * w_int with f the BN
    factor [O] (0 on dead channels) and sg = sign(f). The forward weight w_int * step before
    the BN: BN(z) with z = step * acc / in_units + b is the spec's block with f * step,
    mean / step and b / step for a unit weight scale."""
    if step.bn is None:  # a Conv/Fc with per-channel weight steps: the identity affine
        f = torch.ones(w_int.shape[0], dtype=torch.float64)
        beta, mean = torch.zeros_like(f), torch.zeros_like(f)
    else:
        bn = net.cells[step.bn]
        f, _ = bn_fold_factor(bn)
        f = torch.where(bn.running_var.detach().double() <= DEAD_VARIANCE, torch.zeros_like(f),
                        f)
        # the spec's block takes beta and mean apart: a dead channel (f = 0) outputs q(beta)
        beta, mean = bn.bias.detach().double(), bn.running_mean.detach().double()
        if getattr(net.cells[step.name].weight_quantizer, "folds_batchnorm", False):
            # the weight grid already holds w * f (SimQAT FoldBN): the BatchNorm is the shift
            # beta + f * (b - mean) alone
            beta = beta + f * (bias.detach().double() - mean)
            f, mean, bias = torch.ones_like(f), torch.zeros_like(f), torch.zeros_like(bias)
    out = step.domain
    rescale = conv_bn_act_rescale(
        f * step_w, beta, mean / step_w, bias.detach().double() / step_w,
        alpha_in=in_domain.alpha, range_in=in_domain.range,
        alpha_out=out.alpha, range_out=out.range, w_s=1.0, low_out=out.low,
    )
    w = integer_weights(w_int, 1, torch.sign(f))
    return linear_module(net.cells[step.name], step, w, rescale, in_domain)


def _fuse_sum(net: Any, step: Step, in_domains: list[Domain]) -> IntegerElemWise:
    """fusion.md "Residual ElemWise": input i times c_i = w_i * scale_i / scale_ref, then
    scaling scale_ref / scale_out and clip alpha_out / scale_ref (:func:`elemwise_rescale`)."""
    cell = net.cells[step.name]
    weights = cell.weights.reshape(len(step.inputs), -1)[:, 0].tolist()
    # With branch inputs (already in the Sum's output units) the accumulator is in those units.
    branches = any(d.partial for d in in_domains)
    out = step.domain
    coefficients, rescale = elemwise_rescale(
        [(d.alpha, d.range) for d in in_domains],
        alpha_out=out.alpha, range_out=out.range, weights=weights,
        reference=(out.alpha, out.range) if branches else None,
    )
    return sum_module(cell, step, coefficients, rescale, in_domains)


LinearMaker = Callable[[Step, Domain], nn.Module]
SumMaker = Callable[[Step, list[Domain]], nn.Module]


def build_fused(net: Any, steps: list[Step], alias: dict[str, str], linear: LinearMaker,
                summed: SumMaker) -> FusedNetwork:
    """The FusedNetwork of a plan; ``linear`` / ``summed`` make the integer nodes (from the
    trained network, or from a weights_quantized/ folder)."""
    sources = providers(net)
    domains = {p: INPUT for p in sources}
    modules: dict[str, nn.Module] = {}
    for step in steps:
        in_domains = [domains[i] for i in step.inputs]
        if step.kind is StepKind.LINEAR:
            modules[step.name] = linear(step, in_domains[0])
        elif step.kind is StepKind.SUM:
            modules[step.name] = summed(step, in_domains)
        else:
            modules[step.name] = copy.deepcopy(net.cells[step.name]).eval()
        domains[step.name] = step.domain
    kinds = {t.cell: loss_kind(net, t.cell) for t in net.targets}
    shape = getattr(net, "input_shape", None)
    return FusedNetwork(steps, alias, modules, list(net.targets), sources, shape, kinds).eval()


def fuse_network(net: Any) -> tuple[FusedNetwork, list[str]]:
    """The integer-only network of a quantization-trained `net` (fusion.md), whatever its
    quantizers (read through their integer grids), and one line per cell that could not be
    fused and stays float."""
    steps, alias = plan_fusion(net)
    if not any(s.kind in (StepKind.LINEAR, StepKind.SUM) for s in steps):
        raise _nothing_fused(net, steps)
    with torch.no_grad():
        fused = build_fused(net, steps, alias,
                            lambda step, domain: _fuse_linear(net, step, domain),
                            lambda step, domains: _fuse_sum(net, step, domains))
    return fused, list(fused.float_lines)


def _nothing_fused(net: Any, steps: list[Step]) -> UserError:
    """The error for a network without any fusable Conv/Fc (e.g. SAT's clamp phase), located
    at the first Conv/Fc's QWeight key that its reason names (else at QWeight)."""
    first = next((s for s in steps if net.cells[s.name].type in LINEAR_TYPES), None)
    if first is None:
        return UserError("-qat-fuse (-qat-sat): nothing to fuse: the network has no Conv or "
                         "Fc cell")
    message = (f"-qat-fuse (-qat-sat): nothing to fuse ({first.name}: {first.reason}): fuse a "
               "network whose Conv/Fc weights are quantized on an integer grid (e.g. QWeight=SAT "
               "with ApplyQuantization=1, or QWeight=LSQ) and whose activations have a QAct")
    section = getattr(net.cells[first.name], "section", None)
    if section is None:
        return UserError(message)
    named = [k for k in section.subkeys("QWeight.") if f"{k}=" in first.reason]
    return section.error("QWeight." + named[0] if named else "QWeight", message)
