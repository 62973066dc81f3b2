"""Integer-only arithmetic of a fused network (fusion.md): the formulas of the integer layers
(n2q.quant.fusion.layers).

Every activation between fused layers is an integer tensor (uint8 for ranges up to 255) holding
``k`` for the float value ``k * alpha / R`` of the fake-quantized network. A fused layer
accumulates ``acc = conv(x_int, W')`` with integer weights ``W'`` and then rescales per output
channel, the only float step:

    y_int = saturate_[0, R_out]( round( clamp(acc + B', 0, C') * S' ) )

Accumulation is done with exact float arithmetic, because PyTorch has no integer convolution on
CPU: float32 when the accumulator provably stays below 2^24 (every partial sum of integers is
then exact whatever the summation order), float64 otherwise (exact below 2^53). The result is
bit-identical to an int32 accumulator. On CUDA, where float32 convolutions may run in TF32,
float32 is kept only while the operands (activations and W') stay within TF32's exact 2^11.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from n2q.quant.bnfold import fold_factor

# 2^24: largest magnitude below which every integer is exact in float32.
FLOAT32_EXACT = float(2**24)
# 2^11: every integer up to it is exact as a TF32 operand (10-bit mantissa).
TF32_EXACT = 2**11
# Variances at or below this are treated as a dead channel: f = 0 (fusion.md).
DEAD_VARIANCE = 1e-12
# A quantized weight may sit this far from the integer grid (float32 rounding of k/R).
GRID_TOLERANCE = 1e-3

WEIGHT_MODES = ("Default", "Symmetric", "FullRange", "Asymmetric")


def weight_scale(range_w: int, mode: str = "Default") -> int:
    """W_s: the factor that maps a SAT weight w_q in [-1, 1] onto integers.

    Default / FullRange grids are (2k - R)/R: W_s = R/2 when R is even, R when R is odd (an even
    number of levels, N2D2's 4-bit special case generalised: W' = 2k - R). Symmetric /
    Asymmetric grids are k/r with r = floor(R/2): W_s = r. Never below 1.
    """
    if range_w < 1:
        raise ValueError(f"weight range must be >= 1, got {range_w}")
    if mode in ("Default", "FullRange"):
        return range_w if range_w % 2 else range_w // 2
    if mode in ("Symmetric", "Asymmetric"):
        return max(range_w // 2, 1)
    raise ValueError(
        f"unknown weight quantization mode {mode!r} (known: {', '.join(WEIGHT_MODES)})"
    )


def integer_weights(w_q: Tensor, w_s: int, sign: Tensor | None = None) -> Tensor:
    """W' = sg * W_s * w_q as an integer tensor (int8 when it fits, else int16).

    w_q: quantized weights [O, ...] in [-1, 1]; sign: sg per output channel [O] (-1, 0 or 1) or
    None. Raises ValueError when w_q is not on the grid of W_s (e.g. clamp-phase weights).
    """
    scaled = w_q.detach().double() * w_s
    if sign is not None:
        scaled = scaled * sign.double().view(-1, *([1] * (w_q.dim() - 1)))
    rounded = torch.round(scaled)
    deviation = (scaled - rounded).abs().max().item() if scaled.numel() else 0.0
    if deviation > GRID_TOLERANCE:
        raise ValueError(
            f"weights are not on the {w_s}-step integer grid (off by up to {deviation:.3g}): "
            "are they quantized (ApplyQuantization=1)?"
        )
    fits = rounded.numel() == 0 or (rounded.min() >= -128 and rounded.max() <= 127)
    dtype = torch.int8 if fits else torch.int16     # int8 holds [-128, 127] (SimQAT's grid)
    return rounded.to(dtype)


def activation_dtype(qmax: int, qmin: int = 0) -> torch.dtype:
    """The narrowest integer dtype holding [qmin, qmax] ([0, R] by default)."""
    if qmin >= 0 and qmax <= 255:
        return torch.uint8
    if qmin >= -128 and qmax <= 127:
        return torch.int8
    if qmin >= -32768 and qmax <= 32767:
        return torch.int16
    return torch.int32


def accumulator_dtype(w_int: Tensor, range_in: float) -> torch.dtype:
    """float32 when sum_i |W'_oi| * R_in < 2^24 for every output o (exact), else float64."""
    per_output = w_int.reshape(w_int.shape[0], -1).abs().sum(dim=1).double()
    bound = (per_output * float(range_in)).max().item() if per_output.numel() else 0.0
    return torch.float32 if bound < FLOAT32_EXACT else torch.float64


def bn_factor(gamma: Tensor, var: Tensor, eps: float) -> Tensor:
    """f = gamma / sqrt(var + eps) per channel [O] (n2q.quant.bnfold), float64; f = 0 where
    var <= 1e-12 (a dead channel, fusion.md)."""
    f = fold_factor(gamma, var, eps)
    return torch.where(var.detach().double() <= DEAD_VARIANCE, torch.zeros_like(f), f)


@dataclass
class Rescale:
    """Per-output-channel float64 parameters [O] of the integer rescale step.

    bias B' and clip C' are in the accumulator domain, scaling S' maps it to the output integer
    domain (or to float units for a float output, where clip is None).
    """

    bias: Tensor
    clip: Tensor | None
    scaling: Tensor


def conv_bn_act_rescale(
    f: Tensor,
    beta: Tensor,
    mean: Tensor,
    conv_bias: Tensor,
    *,
    alpha_in: float,
    range_in: float,
    alpha_out: float,
    range_out: int,
    w_s: float,
    low_out: int = 0,
) -> Rescale:
    """B', C', S' of a Conv + BatchNorm + SAT activation block (fusion.md), all [O] float64.

    f: BN factor gamma/sqrt(var+eps) [O] (0 for dead channels); beta, mean: BN shift and running
    mean [O]; conv_bias: b [O] (zeros if NoBias). A Conv with its own QAct and no BatchNorm is
    the case f = 1, beta = mean = 0. Dead channels (f = 0) have W' = 0 and output the constant
    q(beta): bias = that integer, clip = R_out, scaling = 1. ``low_out``: the lowest output
    level (relative to the zero point; 0 for an unsigned or rectified output).
    """
    f, beta, mean, b = (t.detach().double() for t in (f, beta, mean, conv_bias))
    sg = torch.sign(f)
    live = f != 0
    safe_f = torch.where(live, f, torch.ones_like(f))
    in_units = range_in / alpha_in  # integer steps per float unit at the input
    # B' = sg * ((beta + (b - mu)*f)/f) * (R_in/alpha_in) * W_s
    bias = sg * ((beta + (b - mean) * f) / safe_f) * in_units * w_s
    # C' = sg * alpha_out * R_in / (f * alpha_in) * W_s
    clip = sg * alpha_out * in_units / safe_f * w_s
    # S' = sg * (alpha_in/R_in) * (R_out/alpha_out) * f / W_s
    scaling = sg * (alpha_in / range_in) * (range_out / alpha_out) * f / w_s
    # dead channel: y_int = saturate(round(clamp(0 + B', 0, R_out) * 1)) = q(beta)
    constant = torch.round(torch.clamp(beta * (range_out / alpha_out), float(low_out),
                                       float(range_out)))
    bias = torch.where(live, bias, constant)
    clip = torch.where(live, clip, torch.full_like(clip, float(range_out)))
    scaling = torch.where(live, scaling, torch.ones_like(scaling))
    return Rescale(bias=bias, clip=clip, scaling=scaling)


def fc_rescale(
    bias: Tensor,
    *,
    alpha_in: float,
    range_in: float,
    w_s: float,
    weight_scaling: float = 1.0,
    alpha_out: float | None = None,
    range_out: int | None = None,
) -> Rescale:
    """B', C', S' of an Fc (or a Conv without BatchNorm), all [O] float64 (fusion.md).

    weight_scaling: the SAT ApplyScaling divisor s (forward weights are w_q / s; W' = w_q * W_s).
    Without an output quantizer (alpha_out None) the output stays in float units: clip is None
    and S' maps the accumulator back to the fake-quant network's float values.
    """
    in_units = range_in / alpha_in
    acc_units = in_units * w_s * weight_scaling  # accumulator steps per float unit
    b = bias.detach().double() * acc_units
    if alpha_out is None:
        # acc_units: a float, or [O] for per-channel weight grids (SimQAT)
        return Rescale(bias=b, clip=None, scaling=torch.ones_like(b) / acc_units)
    assert range_out is not None
    clip = torch.ones_like(b) * (alpha_out * acc_units)
    scaling = torch.ones_like(b) * ((range_out / alpha_out) / acc_units)
    return Rescale(bias=b, clip=clip, scaling=scaling)


def branch_rescale(
    f: Tensor,
    beta: Tensor,
    mean: Tensor,
    conv_bias: Tensor,
    *,
    alpha_in: float,
    range_in: float,
    w_s: float,
    weight_scaling: float = 1.0,
    alpha_out: float,
    range_out: int,
) -> Rescale:
    """S', B' of a residual branch: a Conv (+ BatchNorm without QAct) feeding a SAT Sum.

    The branch's float output is f * (z - mean) + beta with z = acc * alpha_in / (R_in * W_s
    * s) + b the Conv output (acc = conv(x_int, W'), W' = W_s * w_q, s the ApplyScaling
    divisor); the Sum adds it in its own output level units u = R_out / alpha_out, so the
    branch contributes acc * S' + B' with (all [O] float64, clip None: the Sum clamps)
        S' = f * alpha_in / (R_in * W_s * s) * u,   B' = (beta + f * (b - mean)) * u.
    f is the BN's true factor gamma / sqrt(var + eps), dead channels included (nothing is
    divided by it here); a Conv without BatchNorm is f = 1, beta = mean = 0.
    """
    f, beta, mean, b = (t.detach().double() for t in (f, beta, mean, conv_bias))
    units = range_out / alpha_out
    scaling = f * (alpha_in / (range_in * w_s * weight_scaling)) * units
    bias = (beta + f * (b - mean)) * units
    return Rescale(bias=bias, clip=None, scaling=scaling)


def elemwise_rescale(
    scales_in: list[tuple[float, float]],
    *,
    alpha_out: float,
    range_out: int,
    weights: list[float] | None = None,
    reference: tuple[float, float] | None = None,
) -> tuple[list[float], Rescale]:
    """Coefficients of a residual Sum and its rescale (fusion.md), per layer.

    scales_in: (alpha, R) of every input. The reference integer scale (the first input's unless
    `reference` is given) is the accumulator's: input i is multiplied by
    w_i * (R_ref/alpha_ref) * (alpha_i/R_i) (1 for the reference input with weight 1), then the
    sum gets scaling (R_out/alpha_out)/(R_ref/alpha_ref) and clip alpha_out*R_ref/alpha_ref.
    With reference = (alpha_out, R_out) (a Sum with branch inputs, already in its output
    units): scaling 1, clip R_out. Returns (coefficients, Rescale with one-element tensors).
    """
    weights = weights or [1.0] * len(scales_in)
    ref_alpha, ref_range = reference if reference is not None else scales_in[0]
    ref_units = ref_range / ref_alpha
    coefficients = [w * ref_units * (a / r) for w, (a, r) in zip(weights, scales_in, strict=True)]
    one = torch.ones(1, dtype=torch.float64)
    rescale = Rescale(
        bias=one * 0.0,
        clip=one * (alpha_out * ref_units),
        scaling=one * ((range_out / alpha_out) / ref_units),
    )
    return coefficients, rescale


def requantize(acc: Tensor, rescale: Rescale, range_out: int, channel_dim: int = 1, *,
               low: int = 0, zero_point: int = 0) -> Tensor:
    """y_int = saturate_[0,R](round(clamp(acc + B', 0, C') * S')) as an integer tensor; with
    an output grid whose levels go below its zero point z (``low`` < 0, e.g. signed levels
    after a linear activation): saturate_[low,R](round(min(acc + B', C') * S')) + z (the
    same rounding: the clamp at 0 only moves a saturation before the monotone rounding).

    acc: accumulator [N, O, ...] holding exact integers in float32 or float64, overwritten
    (in-place passes, no temporaries); the per-channel vectors [O] are broadcast along
    channel_dim. The rescale runs in acc's dtype: in float32 it is off the exact value by a few
    ulps at most (~1e-6 of a level), less than the fake-quant network's own float32 error, so
    only near-.5 ties can differ from it (fusion.md).
    """
    shape = [1] * acc.dim()
    shape[channel_dim] = -1
    bias, clip, scaling = (
        t.to(acc.dtype).view(shape) for t in (rescale.bias, rescale.clip, rescale.scaling)
    )
    y = acc.add_(bias)
    if low == 0:
        y.clamp_(min=0.0)
    torch.minimum(y, clip, out=y)
    y.mul_(scaling).round_().clamp_(low, range_out)
    if zero_point:
        y.add_(zero_point)
    return y.to(activation_dtype(range_out + zero_point, low + zero_point))


def to_float_units(acc: Tensor, rescale: Rescale, channel_dim: int = 1) -> Tensor:
    """(acc + B') * S' as float32: the float output of a layer without output quantizer."""
    shape = [1] * acc.dim()
    shape[channel_dim] = -1
    y = (acc.double() + rescale.bias.view(shape)) * rescale.scaling.view(shape)
    return y.float()


def quantize_input(x: Tensor, range_in: int = 255) -> Tensor:
    """The provider's [0, 1] stimuli as integers: round(clamp(x, 0, 1) * 255) (fusion.md)."""
    return torch.round(torch.clamp(x, 0.0, 1.0) * range_in).to(activation_dtype(range_in))


def to_integer_levels(y: Tensor, scale: float, range_out: int, *, low: int = 0,
                      zero_point: int = 0) -> Tensor:
    """A fake-quantized float activation ((k - z) * scale) back to its integer level k."""
    k = torch.clamp(torch.round(y.double() / scale), low, range_out) + zero_point
    return k.to(activation_dtype(range_out + zero_point, low + zero_point))
