"""The quantizer protocol: what the learning loop, fusion and export ask of every quantizer.

A method (SAT, LSQ, SLB, SimQAT, ...) is one module with a settings object and one or two
quantizer classes registered by name. Shared code never asks for a class: it calls these
methods, whose defaults in :class:`n2q.quant.registry.Quantizer` do nothing.

- Lifecycle (called by the learning loop on every quantizer of the network, in this order):
  ``bind(cell, net)`` once after the network is built; ``plan(RunPlan)`` before learning;
  ``start_epoch(epoch)`` before each epoch (1-based, counting epochs already trained);
  ``after_step(step)`` after each optimizer step (``step`` = optimizer steps done in the whole
  run, resumed runs included); ``wants_calibration(epoch)`` after each epoch: if any quantizer
  says True, the loop runs one pass over the Learn set without gradient, with every quantizer in
  inference mode and every BatchNorm updating its running statistics (SLB's BN calibration).
  Whatever a quantizer keeps between calls lives in buffers, so state dicts (net_state, ``-l``)
  resume it bit-exactly.
- Pure forward: a weight quantizer's ``quantize(w)`` returns a :class:`QuantizedWeight`
  (the tensor the op uses, and the scale of its output in Integer mode); nothing is left in an
  attribute for the caller to read afterwards.
- Integer grid: after learning, ``integer_grid(w)`` (weights: ``w`` = the cell's float weight;
  activations: no argument) says which integers the quantizer produces and how they map back to
  floats. Integer fusion and export read only this.
- Settings: each method's INI keys are one frozen :class:`Settings` dataclass, validated at
  construction (``check``), read from a section in one place with each key written out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class RunPlan:
    """What a learning run will do, given to quantizers before its first step.

    ``total_epochs`` is E of SLB's temperature schedule: the epochs the run ends at, counting
    those already trained by a resumed state (``-learn N`` counts ceil(N / learn_size)).
    """

    total_epochs: int
    start_epoch: int = 0          # epochs already trained (resume), 0 for a fresh run
    learn_size: int = 0           # stimuli in the Learn partition
    batch_size: int = 1
    steps_per_epoch: int = 0      # optimizer steps per epoch (batches / IterationSize)
    world_size: int = 1           # processes learning together (data parallel)


class QuantizedWeight(NamedTuple):
    """What a weight quantizer gives the op: ``weight`` (float units, or integers in Integer
    mode) and ``scale`` (None, or the 0-dim / per-output-channel [O] factor by which the op's
    bias-free output is multiplied in Integer mode)."""

    weight: Tensor
    scale: Tensor | None = None

    def fake(self) -> Tensor:
        """The weight in float units, whatever the mode."""
        if self.scale is None:
            return self.weight
        return self.weight * _along(self.scale, self.weight, 0)


def _along(values: Tensor, like: Tensor, axis: int | None) -> Tensor:
    """``values`` (0-dim or [C]) shaped to broadcast on ``like``'s axis ``axis``."""
    if values.dim() == 0 or axis is None:
        return values
    shape = [1] * like.dim()
    shape[axis] = -1
    return values.reshape(shape)


@dataclass(frozen=True)
class IntegerGrid:
    """The integers a quantizer produces: x = (q - zero_point) * scale with q in
    {qmin, qmin + stride, ..., qmax}.

    ``scale`` / ``zero_point`` are float64 tensors, 0-dim (per layer) or [C] (per channel, on
    ``axis``: 0 for weights [O, ...], 1 for activations [B, C, H, W]). ``stride`` is 2 for
    grids of odd (or even) integers only, e.g. SAT's Default weights 2n - R. ``zero_point`` may
    be fractional where a method's grid has no integer zero (export must then say so).
    """

    qmin: int
    qmax: int
    scale: Tensor
    zero_point: Tensor = dataclasses.field(default_factory=lambda: torch.zeros((),
                                                                               dtype=torch.float64))
    axis: int | None = None
    stride: int = 1

    def __post_init__(self) -> None:
        if self.qmax < self.qmin or self.stride < 1 or (self.qmax - self.qmin) % self.stride:
            raise ValueError(f"bad integer grid [{self.qmin}, {self.qmax}] step {self.stride}")
        object.__setattr__(self, "scale", torch.as_tensor(self.scale, dtype=torch.float64))
        object.__setattr__(self, "zero_point",
                           torch.as_tensor(self.zero_point, dtype=torch.float64))

    @property
    def levels(self) -> int:
        return (self.qmax - self.qmin) // self.stride + 1

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    @property
    def bits(self) -> int:
        """Bits of the narrowest two's-complement (signed) or unsigned integer holding it."""
        if self.signed:
            return 1 + max(math.ceil(math.log2(max(-self.qmin, self.qmax + 1))), 0)
        return max(math.ceil(math.log2(self.qmax + 1)), 1)

    @property
    def per_channel(self) -> bool:
        return self.scale.dim() > 0

    def integers(self, x: Tensor) -> Tensor:
        """The integers of a fake-quantized tensor (float64, exact integers for on-grid x)."""
        s = _along(self.scale, x, self.axis)
        z = _along(self.zero_point, x, self.axis)
        return torch.round(x.double() / s + z)

    def dequantize(self, q: Tensor) -> Tensor:
        """(q - zero_point) * scale, in float64."""
        s = _along(self.scale, q, self.axis)
        z = _along(self.zero_point, q, self.axis)
        return (q.double() - z) * s


class SettingError(ValueError):
    """A settings value that fails validation; ``key`` is the INI key (``QWeight.Range``), so
    the INI path turns it into a located error and the Python API shows the same message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Settings:
    """Base of a method's settings: frozen, validated once in ``validate`` (raise with
    :meth:`check`). Subclasses write ``from_section(sec)`` reading each key by its full name
    (``sec.int("QWeight.Range", 255)``) and return ``cls.located(sec, **values)``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SettingError` (through :meth:`check`) on an impossible value."""

    @staticmethod
    def check(condition: bool, key: str, message: str) -> None:
        if not condition:
            raise SettingError(key, message)

    @classmethod
    def located(cls, sec: Any, **values: Any) -> Any:
        """Construct; a failed check becomes the section's UserError at the key's line."""
        try:
            return cls(**values)
        except SettingError as error:
            raise sec.error(error.key if error.key in sec else None, error.message) from None


def quantizers(net: Any) -> list[tuple[str, Any]]:
    """(cell name, quantizer) for every weight and activation quantizer of ``net``, in cell
    order (weights first): what the learning loop calls the lifecycle methods on."""
    found = []
    for name, cell in net.cells.items():
        for q in (getattr(cell, "weight_quantizer", None), getattr(cell, "act_quantizer", None)):
            if q is not None:
                found.append((name, q))
    return found
