"""Quantizer registry and base classes (spec/quant.md, ARCHITECTURE.md "quant").

A weight quantizer (``QWeight=NAME`` in a Conv/Fc section) maps the full-precision weight tensor
to what the cell's op uses (:meth:`WeightQuantizer.quantize`); an activation quantizer
(``QAct=NAME``) maps a cell's output. Each method is one module that registers its classes here
with :func:`register_weight` / :func:`register_act`. Its INI sub-keys (``QWeight.<key>`` /
``QAct.<key>``) are one frozen settings dataclass (``SETTINGS``, a :class:`QuantizerSettings`),
read once from the section and validated once; the quantizer is built from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from n2q.errors import UserError, did_you_mean
from n2q.quant.protocol import IntegerGrid, QuantizedWeight, RunPlan, Settings
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


def _solver(text: str) -> str:
    """N2D2's spelling of a solver type (``adam`` -> ``Adam``); unknown text is kept so that
    validation names it."""
    return SOLVERS.get(text.lower(), text)


@dataclass(frozen=True)
class QuantizerSettings(Settings):
    """The keys every quantizer has (spec/quant.md "Common keys"): Range, Solver, QuantMode,
    Mode. A method's settings subclass adds its fields, its sub-keys to ``KEYS``, the values
    it implements to ``QUANT_MODES`` / ``MODES``, and ``from_section``."""

    PREFIX: ClassVar[str] = ""           # QWeight / QAct: the family of the INI keys
    NAME: ClassVar[str] = ""             # the method, as QWeight=NAME writes it
    KEYS: ClassVar[tuple[str, ...]] = ("Range", "Solver", "QuantMode", "Mode")
    QUANT_MODES: ClassVar[tuple[str, ...]] = ("Default",)
    MODES: ClassVar[tuple[str, ...]] = ("Default",)
    MIN_RANGE: ClassVar[int] = 1

    range: int = 255
    solver: str = "SGD"
    quant_mode: str = "Default"
    mode: str = "Default"

    def validate(self) -> None:
        p, label = self.PREFIX, f"{self.PREFIX}={self.NAME}"
        self.check(self.range >= self.MIN_RANGE, f"{p}.Range", f"{label} needs Range >= "
                   f"{self.MIN_RANGE} (255 is 8-bit, 15 is 4-bit), got {self.range}")
        self.check(self.solver in SOLVERS.values(), f"{p}.Solver",
                   f"unknown solver '{self.solver}'; valid: SGD, Adam")
        self.choice(self.quant_mode, self.QUANT_MODES, "QuantMode")
        self.choice(self.mode, self.MODES, "Mode")

    def choice(self, value: str, supported: tuple[str, ...], name: str) -> None:
        """``value`` of key ``<PREFIX>.<name>`` must be one of ``supported``."""
        self.check(value in supported, f"{self.PREFIX}.{name}",
                   f"{name}={value} is not supported by {self.PREFIX}={self.NAME}"
                   f"{did_you_mean(value, list(supported))}; valid: {', '.join(supported)}")

    @classmethod
    def from_section(cls, sec: Any) -> QuantizerSettings:
        """Read from a config Section (subclasses read their keys by their full names)."""
        raise NotImplementedError


def _common_keys(sec: Any, range_key: str, solver_key: str, quant_mode_key: str,
                 mode_key: str) -> dict[str, Any]:
    return {"range": sec.int(range_key, 255), "solver": _solver(sec.str(solver_key, "SGD")),
            "quant_mode": sec.str(quant_mode_key, "Default"), "mode": sec.str(mode_key, "Default")}


def weight_keys(sec: Any) -> dict[str, Any]:
    """The common ``QWeight.*`` keys of a section, as settings fields."""
    return _common_keys(sec, "QWeight.Range", "QWeight.Solver", "QWeight.QuantMode",
                        "QWeight.Mode")


def act_keys(sec: Any) -> dict[str, Any]:
    """The common ``QAct.*`` keys of a section, as settings fields."""
    return _common_keys(sec, "QAct.Range", "QAct.Solver", "QAct.QuantMode", "QAct.Mode")


class setting:  # noqa: N801  (used like ``property``)
    """A read-only quantizer attribute: its settings field of the same name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.settings, self.name)


class Quantizer(nn.Module):
    """What weight and activation quantizers share: their settings (``SETTINGS``, a frozen
    :class:`QuantizerSettings` subclass), the lifecycle and weights-folder defaults.

    Built from a settings object, or from settings fields for short (``SATWeight(range=15)``
    is ``SATWeight(SATWeightSettings(range=15))``).
    """

    PREFIX: ClassVar[str] = ""
    NAME: ClassVar[str] = ""
    SETTINGS: ClassVar[type[QuantizerSettings]] = QuantizerSettings
    # INI sub-keys (``Range`` -> ``"15"``) with which tests/test_quant_registry.py builds a tiny
    # instance on real cells; a method whose defaults do not fit a tiny layer sets them
    TEST_KEYS: ClassVar[dict[str, str]] = {}
    # Protocol: True when the quantizer's own parameters replace the cell's float weight (SLB's
    # logits). The solver then learns those instead, the summary counts them, and data-parallel
    # learning expects parameters that get no gradient (the float weight; logits after t_end).
    replaces_weight: ClassVar[bool] = False

    def __init__(self, settings: QuantizerSettings | None = None, **fields: Any) -> None:
        super().__init__()
        if settings is not None and fields:
            raise TypeError("give a settings object or settings fields, not both")
        self.settings = settings if settings is not None else self.SETTINGS(**fields)

    range = setting()
    solver = setting()
    quant_mode = setting()
    mode = setting()

    # -- INI --------------------------------------------------------------------------------
    @classmethod
    def from_section(cls, sec: Any, cell: Any = None) -> Quantizer:
        """Build from the ``<PREFIX>.*`` keys of a config Section (strict: unknown sub-keys and
        values outside what this method implements are UserErrors located at the key)."""
        prefix = cls.PREFIX + "."
        keys = cls.SETTINGS.KEYS
        for sub in sec.subkeys(prefix):
            if sub not in keys:
                raise sec.error(prefix + sub, f"unknown key for {cls.PREFIX}={cls.NAME}"
                                f"{did_you_mean(sub, list(keys))}; valid: "
                                f"{', '.join(prefix + k for k in keys)}")
        return cls(cls.SETTINGS.from_section(sec))

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
    """``QWeight=``: ``quantize(w) -> QuantizedWeight`` for a Conv weight [O, C/groups, kH, kW]
    or Fc [O, In]. Pure: nothing is left in an attribute for the caller.

    ``mode == "Integer"`` (seed 004): ``quantize(w)`` returns the integer-valued weights and
    the scale such that ``weight * scale`` is the fake-quantized weight; :meth:`run_op`
    multiplies the op's bias-free output by it.
    """

    PREFIX = "QWeight"

    @property
    def integer(self) -> bool:
        return self.mode == "Integer"

    def quantize(self, w: torch.Tensor) -> QuantizedWeight:
        """What the op uses: the weight (float units, or integers in Integer mode), scale."""
        raise NotImplementedError

    def forward(self, w: torch.Tensor) -> QuantizedWeight:
        return self.quantize(w)

    def fake_quantize(self, w: torch.Tensor) -> torch.Tensor:
        """The quantized weight in float units, whatever the mode."""
        return self.quantize(w).fake()

    def run_op(self, op: Callable[..., torch.Tensor], x: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """``op(x, w_q, bias)`` with the quantized weight, then the connection ``mask`` (bool,
        the weight's shape: a masked weight is exactly 0 in the op whatever the quantizer maps
        0 to). In Integer mode the op runs on integer weights and its bias-free output
        [B, O, ...] is rescaled (0-dim or per output channel [O]) before the bias is added,
        so that predictions equal fake quantization's. A method that changes the op itself
        (SimQAT's BatchNorm folding) overrides this."""
        qw = self.quantize(weight)
        wq = qw.weight if mask is None else qw.weight * mask
        if qw.scale is None:
            return op(x, wq, bias)
        y = op(x, wq, None)
        y = y * _channels(qw.scale, y)
        if bias is not None:
            y = y + _channels(bias, y)
        return y

    def stored_weight(self, w: torch.Tensor) -> torch.Tensor | None:
        """What a weights folder saves for this cell instead of the float weight ``w`` (SLB:
        its one-hot weights), or None (the default: the float weight)."""
        return None


def _channels(values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``values`` (0-dim, or [O]) broadcast on the channel axis of y [B, O, ...]."""
    if values.dim() == 0:
        return values
    return values.reshape((1, -1) + (1,) * (y.dim() - 2))


class ActQuantizer(Quantizer):
    """``QAct=``: ``q(x) -> y``, applied to the cell's output after its activation."""

    PREFIX = "QAct"


def fake_quantized(quantizer: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """The quantized weight in float units, whatever the mode (any nn.Module mapping w to the
    op's weight is accepted as a quantizer)."""
    fake = getattr(quantizer, "fake_quantize", None)
    return quantizer(w) if fake is None else fake(w)


def apply_weight_op(quantizer: nn.Module | None, op: Callable[..., torch.Tensor],
                    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``op(x, weight, bias)`` (F.conv2d / F.linear with the cell's other arguments bound)
    through the weight quantizer's :meth:`WeightQuantizer.run_op`. A plain nn.Module mapping
    w to the op's weight also stands as a quantizer (then masked like run_op does)."""
    if quantizer is None:
        return op(x, weight if mask is None else weight * mask, bias)
    run_op = getattr(quantizer, "run_op", None)
    if run_op is not None:
        return run_op(op, x, weight, bias, mask)
    wq = quantizer(weight)
    return op(x, wq if mask is None else wq * mask, bias)
