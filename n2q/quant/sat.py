"""SAT (Scale-Adjusted Training, Jin et al. 2019) as N2D2 implements it (spec/quant.md, seed 004).

Weights: DoReFa quantization of tanh-normalized weights, with the clamp phase
(``ApplyQuantization=0``), the four ``QuantMode`` level layouts, the SAT scaling for Fc layers
(``ApplyScaling=1``) and ``Mode=Integer``. Activations: CG-PACT, a learned clipping level alpha
with the calibrated gradient. Both run as one custom autograd Function each, whose backward is
the spec's gradient computed directly (no autograd graph through the rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from n2q.errors import UserError
from n2q.quant.protocol import IntegerGrid, QuantizedWeight
from n2q.quant.registry import (
    ActQuantizer,
    QuantizerSettings,
    WeightQuantizer,
    act_keys,
    register_act,
    register_weight,
    setting,
    weight_keys,
)

# FullRange stretches q so that the R+1 levels get equal-width bins over [0, 1] (N2D2 constants)
_FULL_RANGE_GAIN = 0.9998
_FULL_RANGE_SHIFT = 0.4999


@dataclass(frozen=True)
class SATWeightSettings(QuantizerSettings):
    """``QWeight=SAT`` keys (spec/quant.md "SAT, weights")."""

    PREFIX = "QWeight"
    NAME = "SAT"
    KEYS = (*QuantizerSettings.KEYS, "ApplyQuantization", "ApplyScaling")
    QUANT_MODES = ("Default", "Symmetric", "Asymmetric", "FullRange")
    MODES = ("Default", "Integer")

    apply_quantization: bool = True     # 0: the clamp phase, w_q = t/M without rounding
    apply_scaling: bool = False

    def validate(self) -> None:
        super().validate()
        self.check(self.quant_mode not in ("Symmetric", "Asymmetric") or self.range >= 2,
                   "QWeight.QuantMode", f"QuantMode={self.quant_mode} needs QWeight.Range >= 2 "
                   "(it uses floor(Range/2) levels per side)")
        self.check(self.mode != "Integer" or self.apply_quantization, "QWeight.Mode",
                   "Mode=Integer needs QWeight.ApplyQuantization=1 (the clamp phase has no "
                   "integer weights); use Mode=Default")

    @classmethod
    def from_section(cls, sec: Any) -> SATWeightSettings:
        return cls.located(sec, **weight_keys(sec),
                           apply_quantization=sec.bool("QWeight.ApplyQuantization", True),
                           apply_scaling=sec.bool("QWeight.ApplyScaling", False))


@dataclass(frozen=True)
class SATActSettings(QuantizerSettings):
    """``QAct=SAT`` keys (spec/quant.md "SAT, activations")."""

    PREFIX = "QAct"
    NAME = "SAT"
    KEYS = (*QuantizerSettings.KEYS, "Alpha")

    alpha: float = 8.0                  # initial clipping level (the seed uses 6.0 to 8.0)

    def validate(self) -> None:
        super().validate()
        self.check(self.alpha != 0, "QAct.Alpha", "Alpha must be non-zero (it is the clipping "
                   "level, the seed uses 6.0 to 8.0)")

    @classmethod
    def from_section(cls, sec: Any) -> SATActSettings:
        return cls.located(sec, **act_keys(sec), alpha=sec.float("QAct.Alpha", 8.0))


def sat_weight_integers(t: torch.Tensor, M: torch.Tensor, range_: int,
                        quant_mode: str) -> tuple[torch.Tensor, float, float]:
    """Quantize u = t/M in [-1, 1] (t = tanh(w), M = max|t|) to the mode's integers k.

    Returns (k, the spec's gradient factor dw_q/du, the unit): the weight is k * unit (before
    ApplyScaling). Default/FullRange: k = 2n - R with n = round(R*q') in [0, R] (odd or even
    integers in [-R, R], unit 1/R); Symmetric: k in [-r, r]; Asymmetric: k in [-r-1, r]
    (r = floor(R/2), unit 1/r). Written as few in-place passes over the weight tensor.
    """
    R = range_
    if quant_mode in ("Default", "FullRange"):
        # q = (u + 1)/2 [FullRange: q' = gain*q - shift/R]; R*q' = t*(R*gain/(2M)) + ...
        gain, shift = (1.0, 0.0) if quant_mode == "Default" else (
            1 + _FULL_RANGE_GAIN / R, _FULL_RANGE_SHIFT)
        n = (t * (R * gain / 2 / M)).add_(R * gain / 2 - shift).round_()
        return n.mul_(2).sub_(R), gain, 1.0 / R
    r = R // 2
    if quant_mode == "Symmetric":
        return (t * (r / M)).round_(), 1.0, 1.0 / r     # round(r*u)
    # Asymmetric: q' = gain*u - 1/(2r), gain = 1 + 1/(2r); k = round(r*q')
    gain = 1 + 1 / (2 * r)
    return (t * (r * gain / M)).sub_(0.5).round_(), gain, 1.0 / r


def sat_weight_bounds(range_: int, quant_mode: str) -> tuple[int, int, int]:
    """(qmin, qmax, stride) of :func:`sat_weight_integers`'s k."""
    if quant_mode in ("Default", "FullRange"):
        return -range_, range_, 2
    r = range_ // 2
    return (-r if quant_mode == "Symmetric" else -r - 1), r, 1


def _tanh(w: torch.Tensor) -> torch.Tensor:
    """tanh(w). On the CPU as 2*sigmoid(2w) - 1, the same function: this torch build's CPU
    tanh kernel is ~10x slower than its sigmoid (absolute difference about 1e-7 in float32,
    far below a quantization step)."""
    if w.is_cuda:
        return torch.tanh(w)
    return torch.sigmoid(w * 2).mul_(2).sub_(1)


class _SATWeightFn(torch.autograd.Function):
    """w [any shape] -> (w_q, scale): w_q = k * scale (or the integers k in Integer mode),
    scale = unit / s (0-dim; 1 in the clamp phase, where w_q = t/M/s). Backward per spec:
    dL/dw = dL/dw_q * (1 - tanh(w)^2) * gain / (M * s), M and s held constant."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, settings: SATWeightSettings
                ) -> tuple[torch.Tensor, torch.Tensor]:
        t = _tanh(w)
        lo, hi = torch.aminmax(t)
        M = torch.maximum(-lo, hi)
        M = torch.where(M > 0, M, torch.ones_like(M))   # all-zero weights: avoid 0/0
        gain, unit = 1.0, 1.0
        if settings.apply_quantization:
            w_q, gain, unit = sat_weight_integers(t, M, settings.range, settings.quant_mode)
        else:
            w_q = t / M                                 # clamp phase: no rounding
        s = torch.ones_like(M)
        if settings.apply_scaling:
            # n_out = kW*kH*NbOutputs (Conv [O, C, kH, kW]) or NbOutputs (Fc [O, In]);
            # s = sqrt(var(k * unit) * n_out)
            n_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
            s = torch.sqrt(torch.var(w_q) * (n_out * unit * unit))
            s = torch.where(s > 0, s, torch.ones_like(s))
        scale = unit / s
        coeff = gain / (M * s)
        if settings.mode == "Integer":
            coeff = coeff / scale       # the gradient arrives w.r.t. the integers
        else:
            # one multiply by the 0-dim scale: the integer grid (k, scale) reproduces it exactly
            w_q = w_q.mul_(scale)
        ctx.save_for_backward(t, coeff)
        ctx.mark_non_differentiable(scale)
        return w_q, scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _grad_scale: torch.Tensor
                 ) -> tuple[torch.Tensor, None]:
        t, coeff = ctx.saved_tensors
        # (1 - t^2) * coeff * grad in three passes, one allocation
        d = torch.addcmul(torch.ones((), dtype=t.dtype), t, t, value=-1)
        return d.mul_(grad).mul_(coeff), None


@register_weight("SAT")
class SATWeight(WeightQuantizer):
    """``QWeight=SAT``: DoReFa on tanh-normalized weights, per layer. No learnable parameter."""

    SETTINGS = SATWeightSettings
    settings: SATWeightSettings

    apply_quantization = setting()
    apply_scaling = setting()

    def quantize(self, w: torch.Tensor) -> QuantizedWeight:
        w_q, scale = _SATWeightFn.apply(w, self.settings)
        return QuantizedWeight(w_q, scale if self.integer else None)

    def integer_grid(self, w: torch.Tensor | None = None) -> IntegerGrid | None:
        """k * unit / s, k on the mode's integers (Default: odd or even 2n - R); None in
        the clamp phase (no rounding)."""
        if not self.apply_quantization or w is None:
            return None
        with torch.no_grad():
            _, scale = _SATWeightFn.apply(w, self.settings)
        qmin, qmax, stride = sat_weight_bounds(self.range, self.quant_mode)
        return IntegerGrid(qmin, qmax, scale, stride=stride)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if not self.apply_quantization:
            text += ", clamp (ApplyQuantization=0)"
        return text + (", scaling" if self.apply_scaling else "")

    def describe(self) -> str:
        if not self.apply_quantization:
            return "SAT clamp" + (" +scaling" if self.apply_scaling else "")
        return super().describe() + (" +scaling" if self.apply_scaling else "")


class _SATActFn(torch.autograd.Function):
    """CG-PACT: y = a*round(R*clamp(x,0,a)/a)/R with a = |alpha|; backward per spec.

    Written with float-only kernels (this CPU build's boolean masks and ``where`` are an order
    of magnitude slower than arithmetic): the forward stores the per-element alpha derivative,
    the backward masks the gradient with ``hardtanh_backward`` (strict bounds) on x."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: torch.Tensor, range_: int) -> torch.Tensor:
        R = range_
        a = alpha.abs()
        q = torch.clamp(x, min=0, max=a).div_(a)            # q = clamp(x, 0, a)/a
        v = q * R
        n = torch.round(v)
        y = n * (a / R)                                     # a*round(R*q)/R
        d_alpha = None
        if ctx.needs_input_grad[1]:
            # calibrated gradient: round(Rq)/R - q below alpha (0 for x <= 0), 1 from alpha up
            # (q == 1 exactly iff x >= a, so floor(q) is that indicator)
            d_alpha = n.sub_(v).div_(R).add_(q.floor_())
        # dL/dx passes for 0 < x <= a: strict upper bound just above a (in x's precision)
        ctx.upper = None if x.is_cuda else torch.nextafter(a, a + 1).item()
        ctx.save_for_backward(x, d_alpha, alpha)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, d_alpha, alpha = ctx.saved_tensors
        grad_x = grad_alpha = None
        if ctx.needs_input_grad[0]:
            if ctx.upper is None:
                grad_x = grad * ((x > 0) & (x <= alpha.abs()))
            else:
                grad_x = torch.ops.aten.hardtanh_backward(grad, x, 0.0, ctx.upper)
        if d_alpha is not None:
            grad_alpha = torch.dot(grad.reshape(-1), d_alpha.reshape(-1)).reshape(alpha.shape)
        return grad_x, grad_alpha, None


@register_act("SAT")
class SATAct(ActQuantizer):
    """``QAct=SAT``: CG-PACT with a learnable clipping level alpha (one per layer)."""

    SETTINGS = SATActSettings

    def __init__(self, settings: SATActSettings | None = None, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.alpha = nn.Parameter(torch.tensor(float(self.settings.alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():     # inference: no backward state to prepare
            a = self.alpha.abs()
            q = torch.clamp(x, min=0, max=a).div_(a)
            return q.mul_(self.range).round_().mul_(a / self.range)
        return _SATActFn.apply(x, self.alpha, self.range)

    def integer_grid(self, w: torch.Tensor | None = None) -> IntegerGrid:
        """Levels 0..R times |alpha|/R (the forward's one multiply by that scale)."""
        return IntegerGrid(0, self.range, (self.alpha.detach().abs() / self.range))

    def files(self, cell_name: str) -> dict[str, torch.Tensor]:
        return {f"{cell_name}_QAct_SAT_Alpha.syntxt": self.alpha.detach().reshape(1)}

    def load_file(self, name: str, tensor: torch.Tensor) -> None:
        if not name.endswith("_QAct_SAT_Alpha.syntxt"):
            super().load_file(name, tensor)
        values = torch.as_tensor(tensor).reshape(-1)
        if values.numel() == 1 and (float(values[0]) == 0 or not math.isfinite(values[0])):
            raise UserError(f"{name}: alpha must be a non-zero number (the clipping level), "
                            f"got {float(values[0])}")
        self._load_scalar(name, self.alpha, values)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", alpha={float(self.alpha.detach()):.4g}"
