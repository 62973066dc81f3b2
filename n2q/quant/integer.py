"""Integer-only arithmetic of a fused SAT network (fusion.md): formulas and the integer layers.

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
import torch.nn.functional as F
from torch import Tensor, nn

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
    dtype = torch.int8 if rounded.abs().max().item() <= 127 else torch.int16
    return rounded.to(dtype)


def activation_dtype(range_out: int) -> torch.dtype:
    """The narrowest integer dtype holding [0, R]."""
    if range_out <= 255:
        return torch.uint8
    if range_out <= 32767:
        return torch.int16
    return torch.int32


def accumulator_dtype(w_int: Tensor, range_in: float) -> torch.dtype:
    """float32 when sum_i |W'_oi| * R_in < 2^24 for every output o (exact), else float64."""
    per_output = w_int.reshape(w_int.shape[0], -1).abs().sum(dim=1).double()
    bound = (per_output * float(range_in)).max().item() if per_output.numel() else 0.0
    return torch.float32 if bound < FLOAT32_EXACT else torch.float64


def bn_factor(gamma: Tensor, var: Tensor, eps: float) -> Tensor:
    """f = gamma / sqrt(var + eps) per channel [O], float64; f = 0 where var <= 1e-12."""
    f = gamma.detach().double() / torch.sqrt(var.detach().double() + eps)
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
) -> Rescale:
    """B', C', S' of a Conv + BatchNorm + SAT activation block (fusion.md), all [O] float64.

    f: BN factor gamma/sqrt(var+eps) [O] (0 for dead channels); beta, mean: BN shift and running
    mean [O]; conv_bias: b [O] (zeros if NoBias). A Conv with its own QAct and no BatchNorm is
    the case f = 1, beta = mean = 0. Dead channels (f = 0) have W' = 0 and output the constant
    q(beta): bias = that integer, clip = R_out, scaling = 1.
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
    constant = torch.round(torch.clamp(beta, 0.0, alpha_out) * (range_out / alpha_out))
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
        return Rescale(bias=b, clip=None, scaling=torch.full_like(b, 1.0 / acc_units))
    assert range_out is not None
    clip = torch.full_like(b, alpha_out * acc_units)
    scaling = torch.full_like(b, (range_out / alpha_out) / acc_units)
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


def requantize(acc: Tensor, rescale: Rescale, range_out: int, channel_dim: int = 1) -> Tensor:
    """y_int = saturate_[0,R](round(clamp(acc + B', 0, C') * S')) as an integer tensor.

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
    y = acc.add_(bias).clamp_(min=0.0)
    torch.minimum(y, clip, out=y)
    y.mul_(scaling).round_().clamp_(0, range_out)
    return y.to(activation_dtype(range_out))


def to_float_units(acc: Tensor, rescale: Rescale, channel_dim: int = 1) -> Tensor:
    """(acc + B') * S' as float32: the float output of a layer without output quantizer."""
    shape = [1] * acc.dim()
    shape[channel_dim] = -1
    y = (acc.double() + rescale.bias.view(shape)) * rescale.scaling.view(shape)
    return y.float()


def quantize_input(x: Tensor, range_in: int = 255) -> Tensor:
    """The provider's [0, 1] stimuli as integers: round(clamp(x, 0, 1) * 255) (fusion.md)."""
    return torch.round(torch.clamp(x, 0.0, 1.0) * range_in).to(activation_dtype(range_in))


def to_integer_levels(y: Tensor, alpha: float, range_out: int) -> Tensor:
    """A fake-quantized float activation (k * alpha / R) back to its integer level k."""
    return torch.clamp(torch.round(y.double() * (range_out / alpha)), 0, range_out).to(
        activation_dtype(range_out)
    )


class IntegerLinearLayer(nn.Module):
    """A fused Conv or Fc: integer weights W', exact accumulation, per-channel rescale.

    kind "Conv": weight [O, C/groups, kH, kW], input [N, C, H, W]; kind "Fc": weight [O, CHW],
    input flattened to [N, CHW], output [N, O, 1, 1]. range_out None: float output (the
    logits), then `activation` (a float module, identity when None) is applied.
    """

    def __init__(
        self,
        kind: str,
        weight: Tensor,
        rescale: Rescale,
        *,
        range_in: float,
        range_out: int | None,
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
        groups: int = 1,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("Conv", "Fc"):
            raise ValueError(f"integer layer kind must be Conv or Fc, got {kind!r}")
        self.kind = kind
        self.range_in = range_in
        self.range_out = range_out
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.activation = activation if activation is not None else nn.Identity()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", rescale.bias)
        self.register_buffer("scaling", rescale.scaling)
        self.register_buffer("clip", rescale.clip if rescale.clip is not None else None)
        self.acc_dtype = accumulator_dtype(weight, range_in)
        self._max_weight = int(weight.long().abs().max()) if weight.numel() else 0
        # Float copy of the integer weights in the accumulator dtype, made once (not saved).
        self.register_buffer("_weight_acc", weight.to(self.acc_dtype), persistent=False)

    @property
    def type(self) -> str:
        """The cell type it replaces ("Conv" / "Fc"): weights writer and graph drawer use it."""
        return self.kind

    @property
    def rescale(self) -> Rescale:
        return Rescale(bias=self.bias, clip=self.clip, scaling=self.scaling)

    # Weights-folder protocol of n2q.io.weights: the writer saves `weight` and `bias` (B') as a
    # Conv / Fc cell's `_weights` / `_biases`, and these extra per-channel files.
    def files(self, stem: str) -> dict[str, Tensor]:
        files = {f"{stem}_scaling.syntxt": self.scaling}
        if self.clip is not None:
            files[f"{stem}_clip.syntxt"] = self.clip
        return files

    def load_file(self, name: str, tensor: Tensor) -> None:
        buffer = self.scaling if name.endswith("_scaling.syntxt") else self.clip
        buffer.copy_(tensor.reshape(buffer.shape).to(buffer.dtype))

    def accumulate(self, x_int: Tensor) -> Tensor:
        """acc = conv(x_int, W') (or x_int @ W'^T), exact integers in acc_dtype."""
        weight = self._weight_acc
        if weight.is_cuda and weight.dtype == torch.float32 and not self._tf32_exact():
            weight = weight.double()  # TF32 operands keep 11 significant bits only
        x = x_int.to(weight.dtype)
        if self.kind == "Fc":  # [N, O, 1, 1] like the Fc cell
            return F.linear(x.flatten(1), weight)[:, :, None, None]
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

    def _tf32_exact(self) -> bool:
        """On CUDA a float32 conv / matmul may run in TF32 (torch's allow_tf32 switches): its
        operands are rounded to 11 significant bits, which leaves integers up to 2^11 exact
        (activations R_in <= 255 and W_s <= 255 are), products and sums staying float32."""
        return self.range_in <= TF32_EXACT and self._max_weight <= TF32_EXACT

    def forward(self, x_int: Tensor) -> Tensor:
        acc = self.accumulate(x_int)
        if self.range_out is None:
            return self.activation(to_float_units(acc, self.rescale))
        return requantize(acc, self.rescale, self.range_out)

    def logits(self, x_int: Tensor) -> Tensor:
        """The float output before the activation (float-output layers only)."""
        return to_float_units(self.accumulate(x_int), self.rescale)

    def extra_repr(self) -> str:
        out = f"R_out={self.range_out}" if self.range_out is not None else "float output"
        return f"{self.kind}, W' {self.weight.dtype} {tuple(self.weight.shape)}, {out}, " + (
            f"accumulator {self.acc_dtype}"
        )


class IntegerBranchLayer(IntegerLinearLayer):
    """A fused residual branch: Conv (+ BatchNorm without QAct) whose only consumer is a SAT Sum.

    Output: acc * S' + B' per channel, float64 [N, O, H, W] in the Sum's output level units
    (branch_rescale), neither clamped nor rounded: the Sum adds it to its other inputs, then
    clamps and rounds once, as the fake-quant network does. In a weights folder: ``_weights``
    (W'), ``_biases`` (B', in the Sum's output units, unlike a quantized layer's accumulator-domain
    B') and ``_scaling`` (S'); no ``_clip``.
    """

    def __init__(self, kind: str, weight: Tensor, rescale: Rescale, **kwargs) -> None:
        super().__init__(kind, weight, rescale, range_out=None, **kwargs)

    def forward(self, x_int: Tensor) -> Tensor:
        acc = self.accumulate(x_int).double()
        shape = [1, -1] + [1] * (acc.dim() - 2)
        return acc.mul_(self.scaling.view(shape)).add_(self.bias.view(shape))

    def logits(self, x_int: Tensor) -> Tensor:
        return self.forward(x_int)

    def extra_repr(self) -> str:
        return (
            f"{self.kind} branch, W' {self.weight.dtype} {tuple(self.weight.shape)}, "
            f"accumulator {self.acc_dtype}, output acc * S' + B' (float64, Sum units)"
        )


class IntegerElemWise(nn.Module):
    """A fused residual Sum: sum_i c_i * x_i (c_0 = 1 in the usual case), then the rescale.

    In a weights folder: ``<cell>_weights.syntxt`` (one coefficient per input), ``_scaling``
    and ``_clip`` (one value each).
    """

    type = "ElemWise"

    def __init__(self, coefficients: list[float], rescale: Rescale, range_out: int) -> None:
        super().__init__()
        self.coefficients = [float(c) for c in coefficients]
        self.range_out = range_out
        self.register_buffer("bias", rescale.bias)
        self.register_buffer("clip", rescale.clip)
        self.register_buffer("scaling", rescale.scaling)

    @property
    def rescale(self) -> Rescale:
        return Rescale(bias=self.bias, clip=self.clip, scaling=self.scaling)

    def files(self, stem: str) -> dict[str, Tensor]:
        return {
            f"{stem}_weights.syntxt": torch.tensor(self.coefficients, dtype=torch.float64),
            f"{stem}_scaling.syntxt": self.scaling,
            f"{stem}_clip.syntxt": self.clip,
        }

    def load_file(self, name: str, tensor: Tensor) -> None:
        if name.endswith("_weights.syntxt"):
            self.coefficients = [float(v) for v in tensor.reshape(-1).tolist()]
            return
        buffer = self.scaling if name.endswith("_scaling.syntxt") else self.clip
        buffer.copy_(tensor.reshape(buffer.shape).to(buffer.dtype))

    def forward(self, *inputs: Tensor) -> Tensor:
        # float32 is exact for the integer inputs; the coefficient products round to ~1e-7.
        # Branch inputs (IntegerBranchLayer, float64 in the output units) keep float64.
        wide = any(x.is_floating_point() for x in inputs)
        dtype = torch.float64 if wide else torch.float32
        acc = inputs[0].to(dtype) * self.coefficients[0]
        for c, x in zip(self.coefficients[1:], inputs[1:], strict=True):
            acc.add_(x.to(dtype), alpha=c)
        # Per-layer parameters: broadcast along the channel axis as one-element vectors.
        return requantize(acc, self.rescale, self.range_out)

    def extra_repr(self) -> str:
        return f"coefficients={self.coefficients}, R_out={self.range_out}"
