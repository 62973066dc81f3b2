"""Element-wise cells (``Type=ElemWise``): combine inputs of the same shape."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import Cell, Shape, nb_outputs, register_cell

OPERATIONS = ("Sum", "AbsSum", "EuclideanSum", "Prod", "Max")
COEFF_MODES = ("PerInput", "PerLayer", "PerChannel")


@register_cell("ElemWise")
class ElemWiseCell(Cell):
    """With inputs x_k, weights w_k and shifts s_k (N2D2's formulas):
    Sum: sum_k w_k x_k + s_k;  AbsSum: sum_k w_k |x_k|;
    EuclideanSum: sqrt(sum_k w_k^2 x_k^2 + s_k^2);  Prod: prod_k x_k;  Max: max_k x_k.

    ``weights`` / ``shifts`` are fixed coefficients [K, C] (K inputs, C channels): CoeffMode
    PerLayer gives one value for everything, PerInput one per input, PerChannel one per
    input and channel (or C values shared by all inputs).
    """

    KEYS = frozenset({"NbOutputs", "Operation", "Weights", "Shifts", "CoeffMode"})
    HAS_ACTIVATION = True
    MULTI_INPUT = True

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape,
                 operation: str = "Sum", *, weights: torch.Tensor | None = None,
                 shifts: torch.Tensor | None = None,
                 activation: nn.Module | None = None) -> None:
        """``weights``/``shifts``: broadcastable to [K, C] (None: 1 and 0)."""
        super().__init__(name, inputs, in_shape, activation)
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; valid: {', '.join(OPERATIONS)}")
        self.operation = operation
        k, c = len(self.inputs), self.in_shape[0]
        w = torch.ones(k, c) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        s = torch.zeros(k, c) if shifts is None else torch.as_tensor(shifts, dtype=torch.float32)
        # [K, 1, C, 1, 1]: broadcast against the stacked inputs [K, B, C, H, W]
        self.register_buffer("weights", w.expand(k, c).reshape(k, 1, c, 1, 1).clone())
        self.register_buffer("shifts", s.expand(k, c).reshape(k, 1, c, 1, 1).clone())
        self._unit = bool((self.weights == 1).all() and (self.shifts == 0).all())

    def op(self, xs: Sequence[torch.Tensor]) -> torch.Tensor:
        if self.operation == "Prod":
            y = xs[0]
            for x in xs[1:]:
                y = y * x
            return y
        if self.operation == "Max":
            y = xs[0]
            for x in xs[1:]:
                y = torch.maximum(y, x)
            return y
        if self.operation == "Sum" and self._unit:  # the residual add: no extra work
            y = xs[0]
            for x in xs[1:]:
                y = y + x
            return y
        x = torch.stack(list(xs))  # [K, B, C, H, W]
        if self.operation == "Sum":
            return (self.weights * x + self.shifts).sum(0)
        if self.operation == "AbsSum":
            return (self.weights * x.abs()).sum(0)
        return ((self.weights * x) ** 2 + self.shifts ** 2).sum(0).sqrt()

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> ElemWiseCell:
        cls.check_section_keys(section)
        shapes = list(input_shapes or [in_shape])
        first = tuple(shapes[0])
        for n, s in zip(inputs, shapes, strict=True):
            if tuple(s) != first:
                raise section.error("Input", f"all inputs of an ElemWise cell must have the "
                                    f"same shape: {inputs[0]} is {_fmt(first)}, {n} is "
                                    f"{_fmt(s)}")
        nb_outputs(section, first[0])
        operation = section.enum("Operation", OPERATIONS)
        mode = section.enum("CoeffMode", COEFF_MODES, "PerInput")
        k, c = len(inputs), first[0]
        weights = _coefficients(section, "Weights", mode, k, c, 1.0)
        shifts = _coefficients(section, "Shifts", mode, k, c, 0.0)
        return cls(name, inputs, first, operation, weights=weights, shifts=shifts,
                   activation=make_activation(section))


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(v) for v in shape)


def _coefficients(section: Section, key: str, mode: str, k: int, c: int, default: float
                  ) -> torch.Tensor:
    """[K, C] coefficients from a list whose length the CoeffMode fixes."""
    values = section.floats(key, [])
    if not values:
        return torch.full((k, c), default)
    t = torch.tensor(values, dtype=torch.float32)
    n = len(values)
    if mode == "PerLayer":
        if n != 1:
            raise section.error(key, f"CoeffMode=PerLayer takes 1 value, got {n}")
        return t.expand(k, c).clone()
    if mode == "PerInput":
        if n != k:
            raise section.error(key, f"CoeffMode=PerInput takes 1 value per input ({k}), "
                                f"got {n} (CoeffMode=PerLayer shares one value)")
        return t[:, None].expand(k, c).clone()
    if n == c:
        return t[None, :].expand(k, c).clone()
    if n != k * c:
        raise section.error(key, f"CoeffMode=PerChannel takes {c} values (one per channel) "
                            f"or {k * c} (per input, then per channel), got {n}")
    return t.reshape(k, c)
