"""Fully connected cells (``Type=Fc``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import Cell, Shape, nb_outputs, register_cell
from n2q.net.conv import WEIGHT_KEYS, WEIGHT_PREFIXES, read_bool
from n2q.net.fillers import Filler, default_filler, make_filler
from n2q.quant.registry import apply_weight_op, fake_quantized


@register_cell("Fc")
class FcCell(Cell):
    """y = W x + b on the input flattened in C, H, W order: ``weight [O, C*H*W]``.
    Output shape (O, 1, 1)."""

    KEYS = WEIGHT_KEYS
    PREFIXES = WEIGHT_PREFIXES
    HAS_ACTIVATION = True
    INTEGER_WEIGHTS = True  # op rescales QWeight.Mode=Integer outputs (apply_weight_op)

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, nb_outputs: int,
                 *, bias: bool = True, activation: nn.Module | None = None,
                 back_propagate: bool = True, weights_filler: Filler | None = None,
                 bias_filler: Filler | None = None, weights_export_format: str = "OC") -> None:
        super().__init__(name, inputs, in_shape, activation)
        c, h, w = self.in_shape
        self.back_propagate = back_propagate
        self.weights_export_format = weights_export_format
        self.weight = nn.Parameter(torch.empty(nb_outputs, c * h * w))
        self.bias = nn.Parameter(torch.empty(nb_outputs)) if bias else None
        self.out_shape = (nb_outputs, 1, 1)
        self.reset_parameters(weights_filler or default_filler(),
                              bias_filler or default_filler())

    @property
    def fan_in(self) -> int:
        return self.weight.shape[1]

    @property
    def fan_out(self) -> int:
        return self.weight.shape[0]

    @torch.no_grad()
    def reset_parameters(self, weights_filler: Filler, bias_filler: Filler) -> None:
        weights_filler.fill(self.weight, self.fan_in, self.fan_out)
        if self.bias is not None:
            bias_filler.fill(self.bias, self.fan_in, self.fan_out)

    def quantized_weight(self) -> torch.Tensor:
        """The weight in float units as the forward uses it (fake quantization in Integer
        mode too)."""
        if self.weight_quantizer is not None:
            return fake_quantized(self.weight_quantizer, self.weight)
        return self.weight

    def op(self, x: torch.Tensor) -> torch.Tensor:
        if not self.back_propagate:
            x = x.detach()
        # [B, In] -> [B, O]; in Integer mode on integer weights, rescaled before the bias
        y = apply_weight_op(self.weight_quantizer, F.linear, x.flatten(1), self.weight,
                            self.bias)
        return y[:, :, None, None]

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> FcCell:
        cls.check_section_keys(section)
        return cls(name, inputs, in_shape, nb_outputs(section),
                   bias=not read_bool(section, "NoBias", False),
                   activation=make_activation(section),
                   back_propagate=read_bool(section, "BackPropagate", True),
                   weights_filler=make_filler(section, "WeightsFiller"),
                   bias_filler=make_filler(section, "BiasFiller"),
                   weights_export_format=section.enum("WeightsExportFormat", ("OC", "CO"),
                                                      "OC"))
