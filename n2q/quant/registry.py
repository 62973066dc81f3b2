"""Quantizer registry and base classes (spec/quant.md, ARCHITECTURE.md "quant").

A weight quantizer (``QWeight=NAME`` in a Conv/Fc section) maps the full-precision weight tensor
to the tensor the cell's op uses; an activation quantizer (``QAct=NAME``) maps a cell's output.
Each method is one module that registers its classes here with :func:`register_weight` /
:func:`register_act`; the INI sub-keys it understands (``QWeight.<key>`` / ``QAct.<key>``) are
its ``KEYS`` (name -> default), read strictly by :meth:`Quantizer.from_section`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from n2q.errors import UserError, did_you_mean
from n2q.quant.protocol import IntegerGrid, RunPlan
from n2q.registry import registrar

# Solver types a quantizer parameter group may use (network.md); case-insensitive like N2D2's
# documentation, which writes both ``ADAM`` and ``Adam``.
SOLVERS = {"sgd": "SGD", "adam": "Adam"}

WEIGHT_QUANTIZERS: dict[str, type[WeightQuantizer]] = {}
ACT_QUANTIZERS: dict[str, type[ActQuantizer]] = {}

# Class decorators: ``@register_weight("SAT")`` makes ``QWeight=SAT`` build the class and sets
# its ``NAME``; ``@register_act`` the same for ``QAct=``.
register_weight = registrar(WEIGHT_QUANTIZERS, "NAME")
register_act = registrar(ACT_QUANTIZERS, "NAME")


class Quantizer(nn.Module):
    """What weight and activation quantizers share: Range, Solver, QuantMode, Mode.

    Subclasses extend ``KEYS`` (INI sub-key -> default) and ``QUANT_MODES`` / ``MODES`` (the
    values they implement), and override :meth:`options` to read their own keys.
    """

    PREFIX: ClassVar[str] = ""
    NAME: ClassVar[str] = ""
    KEYS: ClassVar[dict[str, Any]] = {
        "Range": 255, "Solver": "SGD", "QuantMode": "Default", "Mode": "Default"}
    QUANT_MODES: ClassVar[tuple[str, ...]] = ("Default",)
    MODES: ClassVar[tuple[str, ...]] = ("Default",)
    MIN_RANGE: ClassVar[int] = 1

    def __init__(self, *, range: int = 255, solver: str = "SGD", quant_mode: str = "Default",
                 mode: str = "Default") -> None:
        super().__init__()
        if range < self.MIN_RANGE:
            raise ValueError(f"{self.PREFIX}={self.NAME} needs Range >= {self.MIN_RANGE}")
        if quant_mode not in self.QUANT_MODES or mode not in self.MODES:
            raise ValueError(f"{self.PREFIX}={self.NAME}: unsupported QuantMode/Mode "
                             f"{quant_mode}/{mode}")
        self.range = int(range)
        self.solver = solver
        self.quant_mode = quant_mode
        self.mode = mode

    # -- INI --------------------------------------------------------------------------------
    @classmethod
    def from_section(cls, sec: Any, cell: Any = None) -> Quantizer:
        """Build from the ``<PREFIX>.*`` keys of a config Section (strict: unknown sub-keys and
        values outside what this method implements are UserErrors located at the key)."""
        prefix = cls.PREFIX + "."
        for sub in sec.subkeys(prefix):
            if sub not in cls.KEYS:
                raise sec.error(prefix + sub, f"unknown key for {cls.PREFIX}={cls.NAME}"
                                f"{did_you_mean(sub, list(cls.KEYS))}; valid: "
                                f"{', '.join(prefix + k for k in cls.KEYS)}")
        return cls(**cls.options(sec, cell))

    @classmethod
    def options(cls, sec: Any, cell: Any) -> dict[str, Any]:
        """Constructor arguments read from the section (subclasses add theirs)."""
        p = cls.PREFIX + "."
        rng = sec.int(p + "Range", cls.KEYS["Range"])
        if rng < cls.MIN_RANGE:
            raise sec.error(p + "Range", f"{cls.PREFIX}={cls.NAME} needs Range >= "
                            f"{cls.MIN_RANGE} (255 is 8-bit, 15 is 4-bit), got {rng}")
        solver = sec.str(p + "Solver", cls.KEYS["Solver"])
        if solver.lower() not in SOLVERS:
            raise sec.error(p + "Solver", f"unknown solver '{solver}'; valid: SGD, Adam")
        quant_mode = cls._choice(sec, p + "QuantMode", cls.QUANT_MODES, "QuantMode")
        mode = cls._choice(sec, p + "Mode", cls.MODES, "Mode")
        return {"range": rng, "solver": SOLVERS[solver.lower()], "quant_mode": quant_mode,
                "mode": mode}

    @classmethod
    def _choice(cls, sec: Any, key: str, supported: tuple[str, ...], name: str) -> str:
        value = sec.str(key, cls.KEYS[name])
        if value not in supported:
            raise sec.error(key, f"{name}={value} is not supported by {cls.PREFIX}={cls.NAME}"
                            f"{did_you_mean(value, list(supported))}; valid: "
                            f"{', '.join(supported)}")
        return value

    # -- lifecycle (n2q.quant.protocol): called by the learning loop, default: nothing ------
    def bind(self, cell: Any, net: Any) -> None:
        """Once, after the network is built: the cell this quantizer belongs to, and the net."""

    def plan(self, plan: RunPlan) -> None:
        """Before learning: the run's plan (total epochs, the epoch a resumed run starts at)."""

    def start_epoch(self, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based, counting the epochs already trained)."""

    def after_step(self, step: int) -> None:
        """After each optimizer step; ``step`` = optimizer steps done in the whole run."""

    def wants_calibration(self, epoch: int) -> bool:
        """After epoch ``epoch``: True asks the loop for a BatchNorm calibration pass."""
        return False

    def integer_grid(self, w: torch.Tensor | None = None) -> IntegerGrid | None:
        """The integers this quantizer produces now (weights: ``w`` is the cell's float
        weight), or None when its output is not on an integer grid (e.g. SAT's clamp phase)."""
        return None

    # -- weights folders --------------------------------------------------------------------
    def files(self, cell_name: str) -> dict[str, torch.Tensor]:
        """The weights-folder files of this quantizer's parameters: {file name: tensor}."""
        return {}

    def load_file(self, name: str, tensor: torch.Tensor) -> None:
        """Load one of the files of :meth:`files`; a loaded parameter is kept as is (no
        first-batch initialization afterwards)."""
        raise UserError(f"{name}: {self.PREFIX}={self.NAME} has no parameter file of that name")

    def _load_scalar(self, name: str, param: nn.Parameter, tensor: torch.Tensor) -> None:
        values = torch.as_tensor(tensor).reshape(-1)
        if values.numel() != 1:
            raise UserError(f"{name}: expected 1 value ({self.PREFIX}={self.NAME}), "
                            f"got {values.numel()}")
        with torch.no_grad():
            param.copy_(values.to(param).reshape(param.shape))

    def extra_repr(self) -> str:
        parts = [f"{self.PREFIX}={self.NAME}", f"range={self.range}"]
        if self.quant_mode != "Default":
            parts.append(f"quant_mode={self.quant_mode}")
        if self.mode != "Default":
            parts.append(f"mode={self.mode}")
        return ", ".join(parts)

    def describe(self) -> str:
        """Short label for the network summary and graph: ``SAT R=15``."""
        return f"{self.NAME} R={self.range}" + ("" if self.mode == "Default" else f" {self.mode}")


class WeightQuantizer(Quantizer):
    """``QWeight=``: ``q(w) -> w_q`` for a Conv weight [O, C/groups, kH, kW] or Fc [O, In].

    ``mode == "Integer"`` (seed 004): ``q(w)`` returns integer-valued weights and
    :attr:`output_scale` the scalar such that ``w_int * output_scale`` is the fake-quantized
    weight; the cell multiplies its bias-free op output by it (see :func:`apply_weight_op`).
    """

    PREFIX = "QWeight"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.output_scale: torch.Tensor | None = None

    @property
    def integer(self) -> bool:
        return self.mode == "Integer"

    def run_op(self, op: Callable[..., torch.Tensor], x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The cell's op with this quantizer (see :func:`apply_weight_op`); overridable."""
        return default_run_op(self, op, x, weight, bias, mask)

    def fake_quantize(self, w: torch.Tensor) -> torch.Tensor:
        """The quantized weight in float units (= ``q(w)`` in Default mode)."""
        out = self(w)
        return out * self.output_scale if self.integer else out


class ActQuantizer(Quantizer):
    """``QAct=``: ``q(x) -> y``, applied to the cell's output after its activation."""

    PREFIX = "QAct"


def fake_quantized(quantizer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """The quantized weight in float units, whatever the mode (any nn.Module mapping w to the
    op's weight is accepted as a quantizer)."""
    if isinstance(quantizer, WeightQuantizer):
        return quantizer.fake_quantize(w)
    return quantizer(w)


def apply_weight_op(quantizer: WeightQuantizer | None, op: Callable[..., torch.Tensor],
                    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``op(x, weight, bias)`` (F.conv2d / F.linear with the cell's other arguments bound)
    with the weight quantizer applied, then the connection ``mask`` (bool, weight's shape: a
    masked weight is exactly 0 in the op whatever the quantizer maps 0 to). In Integer mode the
    op runs on integer weights and its bias-free output is rescaled before the bias is added,
    so predictions equal fake quantization's."""
    if quantizer is None:
        return op(x, weight if mask is None else weight * mask, bias)
    run_op = getattr(quantizer, "run_op", None)   # any nn.Module may stand as a quantizer
    if run_op is not None:
        return run_op(op, x, weight, bias, mask)
    return default_run_op(quantizer, op, x, weight, bias, mask)


def default_run_op(quantizer: nn.Module, op: Callable[..., torch.Tensor], x: torch.Tensor,
                   weight: torch.Tensor, bias: torch.Tensor | None,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Quantize, mask, op, Integer-mode rescale (what :meth:`WeightQuantizer.run_op` does
    unless a method overrides it, e.g. SimQAT's BatchNorm folding)."""
    wq = quantizer(weight)
    if mask is not None:
        wq = wq * mask
    if not getattr(quantizer, "integer", False):   # any nn.Module may stand as a quantizer
        return op(x, wq, bias)
    y = op(x, wq, None) * quantizer.output_scale
    if bias is not None:
        # bias [O] broadcast on the channel axis of y [B, O, ...]
        y = y + bias.reshape((1, -1) + (1,) * (y.dim() - 2))
    return y
