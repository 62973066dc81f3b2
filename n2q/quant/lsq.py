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
from typing import Any

import torch
from torch import nn

from n2q.errors import UserError
from n2q.quant.registry import (
    ActQuantizer,
    Quantizer,
    WeightQuantizer,
    register_act,
    register_weight,
)


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

    KEYS = {**Quantizer.KEYS, "StepSize": 100.0, "StepOptInitStepSize": 1,
            "SetOptInitStepSize": 1}
    FILE_SUFFIX = ""

    def __init__(self, *, step_size: float = 100.0, init_step_size: bool = True,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.step_size = nn.Parameter(torch.tensor(float(step_size)))
        self.init_step_size = bool(init_step_size)
        # True once s holds a usable value: after the first-forward init or a load
        self.register_buffer("initialized", torch.tensor(not self.init_step_size))
        self._initialized = not self.init_step_size   # python mirror: no sync per forward

    @property
    def qn(self) -> int:
        raise NotImplementedError

    @property
    def qp(self) -> int:
        raise NotImplementedError

    @classmethod
    def options(cls, sec: Any, cell: Any) -> dict[str, Any]:
        opts = super().options(sec, cell)
        p = cls.PREFIX + "."
        opts["step_size"] = sec.float(p + "StepSize", cls.KEYS["StepSize"])
        if opts["step_size"] <= 0:
            raise sec.error(p + "StepSize", "StepSize must be > 0 (the initial step size)")
        both = [k for k in ("StepOptInitStepSize", "SetOptInitStepSize") if p + k in sec]
        if len(both) == 2:
            raise sec.error(p + both[1], f"{p}StepOptInitStepSize and its N2D2 spelling "
                            f"{p}SetOptInitStepSize are both set: keep one")
        key = p + (both[0] if both else "StepOptInitStepSize")
        opts["init_step_size"] = sec.bool(key, True)
        return opts

    def _maybe_init(self, x: torch.Tensor) -> None:
        if self._initialized:
            return
        with torch.no_grad():
            self.step_size.copy_(2 * x.detach().abs().mean() / math.sqrt(self.qp))
            self.initialized.fill_(True)
        self._initialized = True

    def _quantize(self, x: torch.Tensor, integer: bool) -> torch.Tensor:
        self._maybe_init(x)
        if not torch.is_grad_enabled():     # inference: no backward state to prepare
            n = torch.round(x / self.step_size).clamp_(self.qn, self.qp)
            return n if integer else n.mul_(self.step_size)
        g = 1.0 / math.sqrt(x.numel() * self.qp)
        return _LSQFn.apply(x, self.step_size, self.qn, self.qp, g, integer)

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
        return super().extra_repr() + f", Q=[{self.qn},{self.qp}], step={s}"


@register_weight("LSQ")
class LSQWeight(_LSQBase, WeightQuantizer):
    """``QWeight=LSQ``: signed levels Qn = -((R+1)>>1) .. Qp = (R-1)>>1, one step per layer."""

    KEYS = {**WeightQuantizer.KEYS, **_LSQBase.KEYS}
    MODES = ("Default", "Integer")
    MIN_RANGE = 3           # R < 3 gives Qp = 0: no positive level and g = 1/sqrt(0)
    FILE_SUFFIX = "_alphaW_LSQ.syntxt"

    @property
    def qn(self) -> int:
        return -((self.range + 1) >> 1)

    @property
    def qp(self) -> int:
        return (self.range - 1) >> 1

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        out = self._quantize(w, self.integer)
        if self.integer:
            self.output_scale = self.step_size.detach()
        return out


@register_act("LSQ")
class LSQAct(_LSQBase, ActQuantizer):
    """``QAct=LSQ``: unsigned levels 0 .. R on the cell's output, one step per layer."""

    KEYS = {**ActQuantizer.KEYS, **_LSQBase.KEYS}
    FILE_SUFFIX = "_QAct_LSQ_StepSize.syntxt"

    @property
    def qn(self) -> int:
        return 0

    @property
    def qp(self) -> int:
        return self.range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._quantize(x, False)
