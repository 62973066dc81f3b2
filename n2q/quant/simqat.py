"""SimQAT: simulated fake quantization (Jacob et al. 2018) as MindSpore Golden Stick runs it
(spec/quant.md "SimQAT", seed 001). Weights (symmetric per output channel by default) and
activations (asymmetric per layer) share one fake quantizer on the unsigned grid [qmin, R]
with zero-point nudging; ranges tracked in buffers (latest batch or EMA), quantization after
``QuantDelay`` optimizer steps (``after_step``), straight-through gradient inside the nudged
bounds. ``QWeight.FoldBN=OneConv|TwoConv`` folds the following BatchNorm (``run_op``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from n2q.errors import UserError
from n2q.quant.protocol import IntegerGrid, QuantizedWeight
from n2q.quant.registry import (
    ActQuantizer,
    QuantizerSettings,
    WeightQuantizer,
    act_keys,
    register_act,
    register_weight,
    weight_keys,
)
from n2q.shared import Shared

FOLD_CHOICES = ("0", "OneConv", "TwoConv")
INITIAL_ACT_RANGE = 6.0           # spec: [-6, 6] before the first activation batch
Bound = Tensor | float              # per channel: tensors broadcasting on x; per layer: floats
_TINY_SCALE = 1e-12               # a [0, 0] range: every value quantizes to 0


@dataclass(frozen=True)
class SimQATSettings(QuantizerSettings):
    """The keys SimQAT weights and activations share (spec/quant.md "SimQAT")."""

    NAME = "SimQAT"
    KEYS = (*QuantizerSettings.KEYS, "PerChannel", "Symmetric", "NarrowRange", "EMA",
            "EMADecay", "QuantDelay")

    per_channel: bool = False
    symmetric: bool = False
    narrow_range: bool = False
    ema: bool = False
    ema_decay: float = 0.999            # EMA: new = decay*batch + (1 - decay)*old
    quant_delay: int = 0                # optimizer steps of float forward (ranges tracked)

    def validate(self) -> None:
        super().validate()
        p = self.PREFIX
        self.check(not self.narrow_range or self.range >= 2, f"{p}.NarrowRange",
                   "NarrowRange=1 needs Range >= 2 (its grid is [1, Range])")
        self.check(0.0 <= self.ema_decay <= 1.0, f"{p}.EMADecay", f"must be in [0, 1], got "
                   f"{self.ema_decay}")
        self.check(self.quant_delay >= 0, f"{p}.QuantDelay", "must be >= 0 steps")

    qmin = property(lambda self: 1 if self.narrow_range else 0)   # the unsigned grid [qmin, R]
    qmax = property(lambda self: self.range)


@dataclass(frozen=True)
class SimQATWeightSettings(SimQATSettings):
    """``QWeight=SimQAT``: symmetric per output channel by default; BatchNorm folding."""

    PREFIX = "QWeight"
    KEYS = (*SimQATSettings.KEYS, "FoldBN", "FreezeBN")

    per_channel: bool = True
    symmetric: bool = True
    fold_bn: str = "0"
    freeze_bn: int = 100000

    def validate(self) -> None:
        super().validate()
        self.check(self.fold_bn in FOLD_CHOICES, "QWeight.FoldBN",
                   f"must be one of {', '.join(FOLD_CHOICES)}, got {self.fold_bn}")
        self.check(self.freeze_bn >= 0, "QWeight.FreezeBN", "must be >= 0 steps")

    @classmethod
    def from_section(cls, sec: Any) -> SimQATWeightSettings:
        fold = sec.str("QWeight.FoldBN", "0")
        if "QWeight.FreezeBN" in sec and fold != "TwoConv":
            raise sec.error("QWeight.FreezeBN", "QWeight.FreezeBN only acts with "
                            "QWeight.FoldBN=TwoConv: set it or remove FreezeBN")
        return cls.located(
            sec, **weight_keys(sec), per_channel=sec.bool("QWeight.PerChannel", True),
            symmetric=sec.bool("QWeight.Symmetric", True),
            narrow_range=sec.bool("QWeight.NarrowRange", False),
            ema=sec.bool("QWeight.EMA", False), ema_decay=sec.float("QWeight.EMADecay", 0.999),
            quant_delay=sec.int("QWeight.QuantDelay", 0), fold_bn=fold,
            freeze_bn=sec.int("QWeight.FreezeBN", 100000))


@dataclass(frozen=True)
class SimQATActSettings(SimQATSettings):
    """``QAct=SimQAT``: asymmetric per layer by default."""

    PREFIX = "QAct"

    @classmethod
    def from_section(cls, sec: Any) -> SimQATActSettings:
        return cls.located(
            sec, **act_keys(sec), per_channel=sec.bool("QAct.PerChannel", False),
            symmetric=sec.bool("QAct.Symmetric", False),
            narrow_range=sec.bool("QAct.NarrowRange", False),
            ema=sec.bool("QAct.EMA", False), ema_decay=sec.float("QAct.EMADecay", 0.999),
            quant_delay=sec.int("QAct.QuantDelay", 0))


def round_half_away(v: Tensor) -> Tensor:
    """Round half away from zero (torch.round rounds half to even)."""
    t = torch.trunc(v)
    return t + ((v - t).abs() >= 0.5) * torch.sign(v)


def nudge(lo: Tensor, hi: Tensor, qmin: int, qmax: int, symmetric: bool
          ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(scale, zero point, nudged min, nudged max), float64 [C], of tracked ranges [C].

    symmetric: M = max(|min|, max), [min, max] = [-M, M]; scale = (max - min)/(qmax - qmin);
    zp = clamp(round(qmin - min/scale), qmin, qmax); nudged = (q - zp)*scale for q = qmin, qmax.
    """
    lo, hi = lo.detach().double().clamp(max=0), hi.detach().double().clamp(min=0)
    if symmetric:
        hi = torch.maximum(-lo, hi)
        lo = -hi
    # the scale is held at float32 precision: the fake-quantized float32 values are then
    # exactly (q - zp) * scale in float64 (what the integer grid and the fusion reproduce)
    scale = ((hi - lo) / (qmax - qmin)).clamp(min=_TINY_SCALE).float().double()
    if symmetric:
        # qmin - min/scale = qmin + (qmax - qmin)/2 exactly (the float quotient may miss the .5)
        zp = torch.full_like(scale, float(math.floor(qmin + (qmax - qmin) / 2 + 0.5)))
    else:
        zp = round_half_away(qmin - lo / scale).clamp(qmin, qmax)
    return scale, zp, (qmin - zp) * scale, (qmax - zp) * scale


class _FakeQuant(torch.autograd.Function):
    """:func:`fake_quantize`; dL/dx = dL/dy on lo <= x <= hi, 0 elsewhere."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Bound, lo: Bound, hi: Bound, offset: Bound) -> Tensor:
        ctx.bounds = None
        if isinstance(lo, float):     # per layer: the bounds just outside [lo, hi] in x's dtype
            dtype = torch.empty(0, dtype=x.dtype).numpy().dtype   # (numpy: torch's is slow)
            ctx.bounds = np.nextafter(np.array([lo, hi], dtype), np.array([-1, 1], dtype)
                                      * np.inf).tolist()
        ctx.save_for_backward(x, *(() if ctx.bounds else (lo, hi)))
        return fake_quantize(x, scale, lo, hi, offset)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.bounds is not None:    # hardtanh_backward passes grad on lo' < x < hi' (strict)
            x = ctx.saved_tensors[0]
            return torch.ops.aten.hardtanh_backward(grad, x, *ctx.bounds), None, None, None, None
        x, lo, hi = ctx.saved_tensors
        return grad * ((x >= lo) & (x <= hi)), None, None, None, None


def fake_quantize(x: Tensor, scale: Bound, lo: Bound, hi: Bound, offset: Bound) -> Tensor:
    """The spec's y = round((clamp(x, lo, hi) - lo)/scale)*scale + lo as (r + offset)*scale with
    offset = qmin - zp = lo/scale: one rounding, y = (q - zp)*scale exactly (x's dtype)."""
    if isinstance(lo, float):                   # per layer: scalar kernels, one clamp pass
        v = torch.clamp(x, lo, hi)
    else:
        v = torch.maximum(torch.minimum(x, hi), lo)
    v = v.sub_(lo).div_(scale)                              # in [0, qmax - qmin]
    # v >= 0: round half away = floor(v) + floor(2 frac(v)), exact, float kernels only (this
    # CPU build's boolean kernels are much slower)
    r = torch.floor(v)
    return v.sub_(r).mul_(2).floor_().add_(r).add_(offset).mul_(scale)


def _along(t: Tensor, dim: int, ndim: int) -> Tensor:
    """[C] -> shape broadcasting on axis ``dim`` of an ``ndim``-d tensor ([1] stays scalar)."""
    shape = [1] * ndim
    shape[dim] = -1
    return t.reshape(()) if t.numel() == 1 else t.reshape(shape)


def channel_min_max(x: Tensor, dim: int | None) -> tuple[Tensor, Tensor]:
    """Min and max [C] of x per index of axis ``dim``, or [1] over all of x (dim None)."""
    x = x.detach()
    if dim is None:
        lo, hi = torch.aminmax(x)
        return lo.reshape(1), hi.reshape(1)
    return torch.aminmax(x.transpose(0, dim).reshape(x.shape[dim], -1), dim=1)


class _SimQAT:
    """Mixin of both quantizers: buffers ``min``/``max`` [C], ``steps`` (optimizer steps seen),
    ``tracked`` (a range was observed or loaded)."""

    # channel axis of the quantized tensor (weights 0, activations 1); INITIAL > 0: the range
    # [-INITIAL, INITIAL] counts as tracked (the EMA starts there)
    AXIS, FILE_TAG, INITIAL = 0, "", 0.0
    SYNC_OPS = {"min": "MIN", "max": "MAX"}  # issue 14 (n2q.train.ddp): global batch ranges

    def __init__(self, settings: SimQATSettings | None = None, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.register_buffer("min", torch.full((1,), -self.INITIAL))   # [C] once bound
        self.register_buffer("max", torch.full((1,), self.INITIAL))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("tracked", torch.tensor(self.INITIAL > 0))

    @property
    def quantizing(self) -> bool:
        """Inference always quantizes; training once QuantDelay steps are done."""
        return not self.training or int(self.steps) >= self.settings.quant_delay

    def bind(self, cell: Any, net: Any) -> None:
        """Per channel: one range per output channel of the cell (its files need the count)."""
        c = int(cell.out_shape[0]) if self.settings.per_channel else 1
        if self.min.numel() != c:     # at build time, before any file or state is loaded
            self.min = self.min.new_full((c,), -self.INITIAL)
            self.max = self.max.new_full((c,), self.INITIAL)

    def after_step(self, step: int) -> None:
        self.steps.fill_(int(step))

    def _observe(self, x: Tensor) -> None:
        """Training: min/max of this batch (or EMA), then min <= 0 <= max."""
        s = self.settings
        lo, hi = channel_min_max(x, self.AXIS if s.per_channel else None)
        if lo.shape != self.min.shape:              # per channel, first sight of the shape
            self.min, self.max = lo.new_zeros(lo.shape), hi.new_zeros(hi.shape)
            self.tracked.fill_(False)
        if s.ema and bool(self.tracked):
            # Golden Stick: the NEW batch value is weighted by decay
            lo = s.ema_decay * lo + (1 - s.ema_decay) * self.min
            hi = s.ema_decay * hi + (1 - s.ema_decay) * self.max
        self.min.copy_(lo.clamp(max=0))
        self.max.copy_(hi.clamp(min=0))
        self.tracked.fill_(True)

    def _nudged(self, like: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        s = self.settings
        lo, hi = self.min, self.max
        if like is not None and not bool(self.tracked):   # never observed: the tensor itself
            lo, hi = channel_min_max(like, self.AXIS if s.per_channel else None)
        return nudge(lo, hi, s.qmin, s.qmax, s.symmetric)

    def _fake(self, x: Tensor, like: Tensor | None = None) -> Tensor:
        """Track (training) and fake-quantize x (float during the quant delay)."""
        if self.training:
            self._observe(x)
        if not self.quantizing:
            return x
        scale, zp, lo, hi = self._nudged(like)
        params = (scale, lo, hi, self.settings.qmin - zp)
        if scale.numel() == 1:    # Python floats (rounded to x's dtype by each kernel)
            args = torch.stack(params).to(x.dtype).reshape(-1).tolist()
        else:
            args = [_along(t.to(x.dtype), self.AXIS, x.dim()) for t in params]
        if not torch.is_grad_enabled() or not x.requires_grad:
            return fake_quantize(x, *args)
        return _FakeQuant.apply(x, *args)

    def _grid(self, like: Tensor | None) -> IntegerGrid:
        s, qmin, qmax = self.settings, self.settings.qmin, self.settings.qmax
        scale, zp, _, _ = self._nudged(like)
        axis = self.AXIS if s.per_channel and scale.numel() > 1 else None
        if axis is None:
            scale, zp = scale.reshape(()), zp.reshape(())
        if s.symmetric and self.AXIS == 0:    # weights: signed integers, zero point 0
            z = int(zp.reshape(-1)[0])
            return IntegerGrid(qmin - z, qmax - z, scale, zp - z, axis)
        return IntegerGrid(qmin, qmax, scale, zp, axis)

    def files(self, cell_name: str) -> dict[str, Tensor]:   # one line "min max" per channel
        return {f"{cell_name}_{self.FILE_TAG}_SimQAT_MinMax.syntxt":
                torch.stack([self.min, self.max], dim=1).detach()}

    def load_file(self, name: str, tensor: Tensor) -> None:
        if not name.endswith(f"_{self.FILE_TAG}_SimQAT_MinMax.syntxt"):
            raise UserError(f"{name}: {self.FILE_TAG}=SimQAT has no parameter file of that name")
        values, c = torch.as_tensor(tensor, dtype=torch.float32).reshape(-1), self.min.numel()
        sized = not self.settings.per_channel or c > 1 or bool(self.tracked)  # else: no cell
        if values.numel() % 2 or (values.numel() != 2 * c and sized):
            raise UserError(f"{name}: expected {c} line(s) 'min max' ({2 * c} values), got "
                            f"{values.numel()} values")
        t = values.reshape(-1, 2)
        if not torch.isfinite(t).all() or (t[:, 0] > 0).any() or (t[:, 1] < 0).any():
            raise UserError(f"{name}: each line 'min max': expected 1 value <= 0 and 1 value "
                            f">= 0 (a tracked range holds 0), got {t.tolist()}")
        self.min, self.max = t[:, 0].clone(), t[:, 1].clone()
        self.tracked.fill_(True)          # loaded ranges are kept (EMA continues from them)

    def _load_from_state_dict(self, state: dict, prefix: str, *args: Any) -> None:
        for key in ("min", "max"):       # per-channel buffers take the saved channel count
            if prefix + key in state:
                setattr(self, key, torch.empty_like(state[prefix + key]))
        super()._load_from_state_dict(state, prefix, *args)

    def extra_repr(self) -> str:
        s = self.settings
        return super().extra_repr() + (
            f", per_channel={s.per_channel:d}, symmetric={s.symmetric:d}, narrow={s.narrow_range:d}"
            f", ema={s.ema_decay if s.ema else 0:g}, delay={s.quant_delay}"
            + (f", fold={s.fold_bn}" if getattr(s, "fold_bn", "0") != "0" else ""))


@register_act("SimQAT")
class SimQATAct(_SimQAT, ActQuantizer):
    """``QAct=SimQAT``: the cell's output, asymmetric per layer by default."""

    SETTINGS = SimQATActSettings
    AXIS, FILE_TAG, INITIAL = 1, "QAct", INITIAL_ACT_RANGE

    def forward(self, x: Tensor) -> Tensor:
        return self._fake(x)

    def integer_grid(self, w: Tensor | None = None) -> IntegerGrid:
        return self._grid(None)


@register_weight("SimQAT")
class SimQATWeight(_SimQAT, WeightQuantizer):
    """``QWeight=SimQAT``: symmetric per output channel by default; ``FoldBN`` folds the
    following BatchNorm (bound by :meth:`bind`) into the quantized weight during training."""

    SETTINGS = SimQATWeightSettings
    AXIS, FILE_TAG = 0, "QWeight"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._bn = Shared(None)                 # the folded BatchNorm cell (not a submodule)

    def bind(self, cell: Any, net: Any) -> None:
        """FoldBN: find the BatchNorm that is the Conv's only consumer (else a located
        error); TwoConv marks it as normalized upstream so that it does not normalize twice."""
        super().bind(cell, net)
        fold = self.settings.fold_bn
        if fold == "0":
            return
        consumers = net.consumers(cell.name)
        bn = net.cells[consumers[0]] if len(consumers) == 1 else None
        problem = None
        if cell.type != "Conv":
            problem = f"folds a BatchNorm into a Conv, this is a {cell.type} cell"
        elif bn is None or bn.type != "BatchNorm":
            problem = (f"needs a BatchNorm as the only consumer of {cell.name}, found "
                       f"{', '.join(consumers) or 'none'}")
        elif type(cell.activation).__name__ not in ("Identity", "Linear"):
            problem = "needs a linear Conv (the BatchNorm normalizes the conv output)"
        elif getattr(cell, "act_quantizer", None) is not None:
            problem = "needs the QAct on the BatchNorm, not on the folded Conv"
        if problem:
            message, sec = f"QWeight.FoldBN={fold} {problem}", cell.section
            raise sec.error("QWeight.FoldBN", message) if sec is not None else UserError(message)
        self._bn = Shared(bn)
        bn.folded_into = cell.name if fold == "TwoConv" else None

    # protocol attribute read by the fusion: the weight grid holds w*gamma/sigma already
    folds_batchnorm = property(lambda self: self.settings.fold_bn != "0")

    def _bn_cell(self) -> Any:
        if self._bn.value is None:
            raise UserError(f"QWeight.FoldBN={self.settings.fold_bn}: not bound to its BatchNorm "
                            "(call bind(cell, net) after building the network)")
        return self._bn.value

    def _folded(self, w: Tensor) -> Tensor:
        if self.settings.fold_bn == "0":
            return w
        return w * _along(self._bn_cell().fold_factor(), 0, w.dim())

    def quantize(self, w: Tensor) -> QuantizedWeight:
        """The weight the op uses (folded weights: w*gamma/sigma_run, as deployed); training
        also tracks its range."""
        folded = self._folded(w)
        return QuantizedWeight(self._fake(folded, like=folded))

    def integer_grid(self, w: Tensor | None = None) -> IntegerGrid:
        if w is None:
            raise ValueError("QWeight=SimQAT: integer_grid needs the cell's weight")
        with torch.no_grad():
            return self._grid(self._folded(w))

    def run_op(self, op: Callable[..., Tensor], x: Tensor, weight: Tensor,
               bias: Tensor | None, mask: Tensor | None = None) -> Tensor:
        fold = self.settings.fold_bn
        if fold == "0":
            return super().run_op(op, x, weight, bias, mask)
        wq = self.quantize(weight).weight
        if mask is not None:
            wq = wq * mask
        if fold == "OneConv":
            # y = conv(x, Q(w f)) / f (+ b); the BatchNorm cell then normalizes y
            y = op(x, wq, None) / _along(self._bn_cell().fold_factor(), 1, x.dim())
            return y if bias is None else y + _along(bias, 1, y.dim())
        # TwoConv: the batch statistics come from a float conv (training before FreezeBN)
        batch = self.training and int(self.steps) < self.settings.freeze_bn
        return self._bn_cell().folded_output(op(x, wq, None), op(x, weight, bias) if batch
                                             else None, bias)
