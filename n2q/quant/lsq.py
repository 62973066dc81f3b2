"""LSQ (Learned Step size Quantization, Esser et al. 2020), N2D2's form (spec/quant.md).

Weights and activations share one custom autograd Function: v = x/s, y = s*clamp(round(v),
Qn, Qp); the gradient passes straight through strictly inside (Qn, Qp) and the step size gets
g * sum(dL/dy * (Qn | Qp | round(v) - v)).

Gradient scale g = 1/sqrt(numel * Qp). For weights numel is the number of weights of the layer.
For activations n2q follows N2D2 (and NNI's v2 quantizer): numel is the number of elements of
the whole BATCH tensor, g = 1/sqrt(numel(x) * R); the LSQ paper uses the number of features of
ONE example instead, which makes g sqrt(batch size) times larger. The step sizes learned by the
two choices are the same in the limit, only the effective learning rate of s differs.

Step-size initialization (``StepOptInitStepSize=1``, N2D2's code spells it
``SetOptInitStepSize``): at the first forward, s = 2*mean(|x|)/sqrt(Qp). A step size loaded from
a weights folder (or a net_state checkpoint) is kept: that is recorded in the ``initialized``
buffer, which travels with the state dict.
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
    Quantizer,
    QuantizerSettings,
    WeightQuantizer,
    act_keys,
    register_act,
    register_weight,
    setting,
    weight_keys,
)

VARIANTS = ("N2D2", "NNI")


@dataclass(frozen=True)
class LSQSettings(QuantizerSettings):
    """What LSQ weights and activations share: StepSize, its first-batch init, Variant."""

    KEYS = (*QuantizerSettings.KEYS, "StepSize", "StepOptInitStepSize", "SetOptInitStepSize",
            "Variant")

    step_size: float = 100.0
    init_step_size: bool = True     # s = 2*mean(|x|)/sqrt(Qp) at the first forward
    variant: str = "N2D2"           # NNI: b-bit signed activations too (spec/quant.md)

    def validate(self) -> None:
        super().validate()
        self.check(self.step_size > 0, f"{self.PREFIX}.StepSize",
                   "StepSize must be > 0 (the initial step size)")
        self.choice(self.variant, VARIANTS, "Variant")
        # NNI counts bits b: its levels [-2^(b-1), 2^(b-1) - 1] need R + 1 = 2^b, b >= 2
        self.check(self.variant != "NNI" or (self.range >= 3 and self.range & (self.range + 1)
                                             == 0), f"{self.PREFIX}.Range",
                   f"Variant=NNI needs Range = 2^b - 1 with b >= 2 bits (255, 15, 3), "
                   f"got {self.range}")


def _lsq_keys(sec: Any, step_key: str, init_key: str, n2d2_init_key: str,
              variant_key: str) -> dict[str, Any]:
    """StepSize, its init (``init_key`` or N2D2's code's spelling ``n2d2_init_key``), Variant."""
    if init_key in sec and n2d2_init_key in sec:
        raise sec.error(n2d2_init_key, f"{init_key} and its N2D2 spelling {n2d2_init_key} are "
                        "both set: keep one")
    return {"step_size": sec.float(step_key, 100.0),
            "init_step_size": sec.bool(n2d2_init_key if n2d2_init_key in sec else init_key, True),
            "variant": sec.str(variant_key, "N2D2")}


@dataclass(frozen=True)
class LSQWeightSettings(LSQSettings):
    """``QWeight=LSQ`` keys."""

    PREFIX = "QWeight"
    NAME = "LSQ"
    MODES = ("Default", "Integer")
    MIN_RANGE = 3           # R < 3 gives Qp = 0: no positive level and g = 1/sqrt(0)

    @classmethod
    def from_section(cls, sec: Any) -> LSQWeightSettings:
        return cls.located(sec, **weight_keys(sec), **_lsq_keys(
            sec, "QWeight.StepSize", "QWeight.StepOptInitStepSize", "QWeight.SetOptInitStepSize",
            "QWeight.Variant"))


@dataclass(frozen=True)
class LSQActSettings(LSQSettings):
    """``QAct=LSQ`` keys."""

    PREFIX = "QAct"
    NAME = "LSQ"

    @classmethod
    def from_section(cls, sec: Any) -> LSQActSettings:
        return cls.located(sec, **act_keys(sec), **_lsq_keys(
            sec, "QAct.StepSize", "QAct.StepOptInitStepSize", "QAct.SetOptInitStepSize",
            "QAct.Variant"))


class _LSQFn(torch.autograd.Function):
    """x [any shape], s [] -> s*clamp(round(x/s), Qn, Qp) (or the integers when ``integer``).

    Float-only kernels (boolean masks are slow on this CPU build): ``inside`` is 1.0 where
    Qn < v < Qp (``hardtanh_backward`` has strict bounds), and the step-size derivative
    (Qn | round(v) - v | Qp) is n - inside*v since n = clamp(round(v)) is Qn/Qp outside."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, s: torch.Tensor, qn: int, qp: int, g: float,
                integer: bool) -> torch.Tensor:
        v = x / s
        n = torch.round(v).clamp_(qn, qp)
        one = torch.ones((), dtype=v.dtype, device=v.device).expand_as(v)
        inside = torch.ops.aten.hardtanh_backward(one, v, qn, qp)
        d_s = torch.addcmul(n, inside, v, value=-1) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(inside, d_s, s)
        ctx.consts = (g, integer)
        return n if integer else n.mul_(s)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inside, d_s, s = ctx.saved_tensors
        g, integer = ctx.consts
        if integer:
            grad = grad / s     # the op saw the integers n = w_q/s, output rescaled by s
        grad_x = grad * inside
        grad_s = None
        if d_s is not None:
            grad_s = (g * torch.dot(grad.reshape(-1), d_s.reshape(-1))).reshape(s.shape)
        return grad_x, grad_s, None, None, None, None


class _LSQBase(Quantizer):
    """Step size parameter, its init and its weights-folder file (``FILE_SUFFIX``)."""

    FILE_SUFFIX = ""
    settings: LSQSettings

    def __init__(self, settings: LSQSettings | None = None, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.step_size = nn.Parameter(torch.tensor(float(self.settings.step_size)))
        # True once s holds a usable value: after the first-forward init or a load
        self.register_buffer("initialized", torch.tensor(not self.init_step_size))
        self._initialized = not self.init_step_size   # python mirror: no sync per forward

    init_step_size = setting()
    variant = setting()

    @property
    def qn(self) -> int:
        raise NotImplementedError

    @property
    def qp(self) -> int:
        raise NotImplementedError

    def _init_value(self, x: torch.Tensor) -> torch.Tensor:
        """The first-batch step size 2*mean(|x|)/sqrt(Qp) (0-dim)."""
        return 2 * x.detach().abs().mean() / math.sqrt(self.qp)

    def _maybe_init(self, x: torch.Tensor) -> None:
        if self._initialized:
            return
        with torch.no_grad():
            self.step_size.copy_(self._init_value(x))
            self.initialized.fill_(True)
        self._initialized = True

    def _quantize(self, x: torch.Tensor, s: torch.Tensor, integer: bool) -> torch.Tensor:
        """s*clamp(round(x/s), Qn, Qp), or the integers when ``integer``."""
        if not torch.is_grad_enabled():     # inference: no backward state to prepare
            n = torch.round(x / s).clamp_(self.qn, self.qp)
            return n if integer else n.mul_(s)
        g = 1.0 / math.sqrt(x.numel() * self.qp)
        return _LSQFn.apply(x, s, self.qn, self.qp, g, integer)

    def _grid(self, s: torch.Tensor) -> IntegerGrid:
        return IntegerGrid(self.qn, self.qp, s.detach())

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._initialized = bool(self.initialized)

    def files(self, cell_name: str) -> dict[str, torch.Tensor]:
        return {f"{cell_name}{self.FILE_SUFFIX}": self.step_size.detach().reshape(1)}

    def load_file(self, name: str, tensor: torch.Tensor) -> None:
        if not name.endswith(self.FILE_SUFFIX):
            super().load_file(name, tensor)
        values = torch.as_tensor(tensor).reshape(-1)
        if values.numel() == 1 and not 0 < float(values[0]) < math.inf:
            raise UserError(f"{name}: the step size must be > 0, got {float(values[0])}")
        self._load_scalar(name, self.step_size, values)
        self.initialized.fill_(True)    # a loaded step size is never re-initialized
        self._initialized = True

    def extra_repr(self) -> str:
        s = f"{float(self.step_size.detach()):.4g}" if self._initialized else "init@first"
        variant = ", NNI" if self.variant == "NNI" else ""
        return super().extra_repr() + f"{variant}, Q=[{self.qn},{self.qp}], step={s}"


@register_weight("LSQ")
class LSQWeight(_LSQBase, WeightQuantizer):
    """``QWeight=LSQ``: signed levels Qn = -((R+1)>>1) .. Qp = (R-1)>>1, one step per layer.
    NNI's variant is the same on weights (b-bit signed, init and g with Qp = 2^(b-1) - 1).

    The first-batch init of s is kept in training mode or with autograd on; in inference
    mode without autograd an uninitialized quantizer uses the value that init would set (a
    function of w alone) without keeping it, so that saving weights has no side effect."""

    SETTINGS = LSQWeightSettings
    FILE_SUFFIX = "_alphaW_LSQ.syntxt"

    @property
    def qn(self) -> int:
        return -((self.range + 1) >> 1)

    @property
    def qp(self) -> int:
        return (self.range - 1) >> 1

    def _step(self, w: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():   # learning (or may learn) from it
            self._maybe_init(w)
        return self.step_size if self._initialized else self._init_value(w)

    def quantize(self, w: torch.Tensor) -> QuantizedWeight:
        s = self._step(w)
        out = self._quantize(w, s, self.integer)
        return QuantizedWeight(out, s.detach() if self.integer else None)

    def integer_grid(self, w: torch.Tensor | None = None) -> IntegerGrid | None:
        """Qn..Qp times s (per layer); s from w if not initialized yet."""
        if w is None and not self._initialized:
            return None
        return self._grid(self.step_size if self._initialized else self._init_value(w))


@register_act("LSQ")
class LSQAct(_LSQBase, ActQuantizer):
    """``QAct=LSQ``: unsigned levels 0 .. R on the cell's output, one step per layer
    (``Variant=NNI``: signed -2^(b-1) .. 2^(b-1) - 1 with R = 2^b - 1)."""

    SETTINGS = LSQActSettings
    FILE_SUFFIX = "_QAct_LSQ_StepSize.syntxt"

    @property
    def qn(self) -> int:
        return -((self.range + 1) >> 1) if self.variant == "NNI" else 0

    @property
    def qp(self) -> int:
        return (self.range - 1) >> 1 if self.variant == "NNI" else self.range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._maybe_init(x)
        return self._quantize(x, self.step_size, False)

    def integer_grid(self, w: torch.Tensor | None = None) -> IntegerGrid | None:
        """Qn..Qp times s; None before the first batch has set s."""
        return self._grid(self.step_size) if self._initialized else None
