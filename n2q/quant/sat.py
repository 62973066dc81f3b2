"""SAT (Scale-Adjusted Training, Jin et al. 2019) as N2D2 implements it (spec/quant.md, seed 004).

Weights: DoReFa quantization of tanh-normalized weights, with the clamp phase
(``ApplyQuantization=0``), the four ``QuantMode`` level layouts, the SAT scaling for Fc layers
(``ApplyScaling=1``) and ``Mode=Integer``. Activations: CG-PACT, a learned clipping level alpha
with the calibrated gradient. Both run as one custom autograd Function each, whose backward is
the spec's gradient computed directly (no autograd graph through the rounding).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from n2q.errors import UserError
from n2q.quant.registry import ActQuantizer, WeightQuantizer, register_act, register_weight

# FullRange stretches q so that the R+1 levels get equal-width bins over [0, 1] (N2D2 constants)
_FULL_RANGE_GAIN = 0.9998
_FULL_RANGE_SHIFT = 0.4999


def sat_weight_levels(t: torch.Tensor, M: torch.Tensor, range_: int, quant_mode: str,
                      integer: bool = False) -> tuple[torch.Tensor, float, float]:
    """Quantize u = t/M in [-1, 1] (t = tanh(w), M = max|t|) to the mode's levels.

    Returns (w_q in float units, or the integer weights w_q/unit when ``integer``; the spec's
    gradient factor dw_q/du; the unit). Written as few in-place passes over the weight tensor:
    R*q' = t*(R*gain/(2M)) + R*gain/2 - shift for Default/FullRange, etc.
    """
    R = range_
    if quant_mode in ("Default", "FullRange"):
        # q = (u + 1)/2 [FullRange: q' = gain*q - shift/R]; n = round(R*q) in [0, R]
        gain, shift = (1.0, 0.0) if quant_mode == "Default" else (
            1 + _FULL_RANGE_GAIN / R, _FULL_RANGE_SHIFT)
        n = (t * (R * gain / 2 / M)).add_(R * gain / 2 - shift).round_()
        if integer:
            return n.mul_(2).sub_(R), gain, 1.0 / R     # integers 2n-R in [-R, R]
        return n.mul_(2 / R).sub_(1), gain, 1.0 / R     # 2*round(R*q)/R - 1, in [-1, 1]
    r = R // 2
    if quant_mode == "Symmetric":
        n = (t * (r / M)).round_()              # round(r*u) in [-r, r]
        return (n if integer else n.div_(r)), 1.0, 1.0 / r
    # Asymmetric: q' = gain*u - 1/(2r), gain = 1 + 1/(2r); n = round(r*q') in [-r-1, r]
    gain = 1 + 1 / (2 * r)
    n = (t * (r * gain / M)).sub_(0.5).round_()
    return (n if integer else n.div_(r)), gain, 1.0 / r


def _tanh(w: torch.Tensor) -> torch.Tensor:
    """tanh(w). On the CPU as 2*sigmoid(2w) - 1, the same function: this torch build's CPU
    tanh kernel is ~10x slower than its sigmoid (absolute difference about 1e-7 in float32,
    far below a quantization step)."""
    if w.is_cuda:
        return torch.tanh(w)
    return torch.sigmoid(w * 2).mul_(2).sub_(1)


class _SATWeightFn(torch.autograd.Function):
    """w [any shape] -> w_q (or integer levels in Integer mode); backward per spec:
    dL/dw = dL/dw_q * (1 - tanh(w)^2) * gain / (M * s), M and s held constant."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, quantizer: SATWeight) -> torch.Tensor:
        t = _tanh(w)
        lo, hi = torch.aminmax(t)
        M = torch.maximum(-lo, hi)
        M = torch.where(M > 0, M, torch.ones_like(M))   # all-zero weights: avoid 0/0
        gain, unit = 1.0, 1.0
        if quantizer.apply_quantization:
            w_q, gain, unit = sat_weight_levels(t, M, quantizer.range, quantizer.quant_mode,
                                                quantizer.integer)
        else:
            w_q = t / M                                 # clamp phase: no rounding
        s = torch.ones_like(M)
        if quantizer.apply_scaling:
            # n_out = kW*kH*NbOutputs (Conv [O, C, kH, kW]) or NbOutputs (Fc [O, In])
            n_out = w.shape[0] * (w[0, 0].numel() if w.dim() > 2 else 1)
            # var(w_q) = var(integers) * unit^2
            s = torch.sqrt(torch.var(w_q) * (n_out * (unit * unit if quantizer.integer else 1)))
            s = torch.where(s > 0, s, torch.ones_like(s))
            if not quantizer.integer:
                w_q = w_q.div_(s)
        coeff = gain / (M * s)
        if quantizer.integer:
            # w_q holds the integers; the cell multiplies its output by unit/s
            out_scale = unit / s
            quantizer.output_scale = out_scale.detach()
            coeff = coeff / out_scale   # the gradient arrives w.r.t. the integers
        ctx.save_for_backward(t, coeff)
        return w_q

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        t, coeff = ctx.saved_tensors
        # (1 - t^2) * coeff * grad in three passes, one allocation
        d = torch.addcmul(torch.ones((), dtype=t.dtype), t, t, value=-1)
        return d.mul_(grad).mul_(coeff), None


@register_weight("SAT")
class SATWeight(WeightQuantizer):
    """``QWeight=SAT``: DoReFa on tanh-normalized weights, per layer. No learnable parameter."""

    KEYS = {**WeightQuantizer.KEYS, "ApplyQuantization": 1, "ApplyScaling": 0}
    QUANT_MODES = ("Default", "Symmetric", "Asymmetric", "FullRange")
    MODES = ("Default", "Integer")

    def __init__(self, *, apply_quantization: bool = True, apply_scaling: bool = False,
                 **kw: Any) -> None:
        super().__init__(**kw)
        if kw.get("quant_mode") in ("Symmetric", "Asymmetric") and self.range < 2:
            raise ValueError("SAT Symmetric/Asymmetric needs Range >= 2")
        if self.integer and not apply_quantization:
            raise ValueError("SAT Mode=Integer needs ApplyQuantization=1")
        self.apply_quantization = bool(apply_quantization)
        self.apply_scaling = bool(apply_scaling)

    @classmethod
    def options(cls, sec: Any, cell: Any) -> dict[str, Any]:
        opts = super().options(sec, cell)
        opts["apply_quantization"] = sec.bool("QWeight.ApplyQuantization", True)
        opts["apply_scaling"] = sec.bool("QWeight.ApplyScaling", False)
        if opts["quant_mode"] in ("Symmetric", "Asymmetric") and opts["range"] < 2:
            raise sec.error("QWeight.QuantMode", f"QuantMode={opts['quant_mode']} needs "
                            "QWeight.Range >= 2 (it uses floor(Range/2) levels per side)")
        if opts["mode"] == "Integer" and not opts["apply_quantization"]:
            raise sec.error("QWeight.Mode", "Mode=Integer needs QWeight.ApplyQuantization=1 "
                            "(the clamp phase has no integer weights); use Mode=Default")
        return opts

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _SATWeightFn.apply(w, self)

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

    KEYS = {**ActQuantizer.KEYS, "Alpha": 8.0}

    def __init__(self, *, alpha: float = 8.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    @classmethod
    def options(cls, sec: Any, cell: Any) -> dict[str, Any]:
        opts = super().options(sec, cell)
        opts["alpha"] = sec.float("QAct.Alpha", cls.KEYS["Alpha"])
        if opts["alpha"] == 0:
            raise sec.error("QAct.Alpha", "Alpha must be non-zero (it is the clipping level, "
                            "the seed uses 6.0 to 8.0)")
        return opts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():     # inference: no backward state to prepare
            a = self.alpha.abs()
            q = torch.clamp(x, min=0, max=a).div_(a)
            return q.mul_(self.range).round_().mul_(a / self.range)
        return _SATActFn.apply(x, self.alpha, self.range)

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
