"""Convolution cells (``Type=Conv``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from n2q.config import Section
from n2q.net.activations import make_activation
from n2q.net.base import (
    Cell,
    Shape,
    check_spatial,
    conv_out_size,
    nb_outputs,
    read_dims,
    register_cell,
)
from n2q.net.fillers import Filler, default_filler, make_filler
from n2q.net.mapping import MAPPING_PREFIXES, read_connectivity
from n2q.quant.registry import apply_weight_op, fake_quantized

WEIGHT_KEYS = frozenset({"NbOutputs", "NoBias", "BackPropagate", "WeightsExportFormat",
                         "WeightsFiller", "BiasFiller"})
WEIGHT_PREFIXES = ("WeightsFiller.", "BiasFiller.")


def read_bool(section: Section, key: str, default: bool) -> bool:
    return bool(section.bool(key, default))


@register_cell("Conv")
class ConvCell(Cell):
    """2-D convolution: ``weight [O, C/groups, kH, kW]``, ``bias [O]`` or None.

    ``mask`` (bool, weight's shape) realises a mapping that is not a group pattern: masked
    weights are zero at init and in every forward (before and after the weight quantizer),
    so they stay exactly 0. Sub-sampling (N2D2's ``SubSample``) SUMS the convolution outputs
    over non-overlapping s x s blocks (a last partial block sums what it has), then adds
    the bias: output size ceil(conv size / s).
    """

    KEYS = WEIGHT_KEYS | {
        "KernelDims", "KernelSize", "KernelWidth", "KernelHeight",
        "StrideDims", "Stride", "StrideX", "StrideY",
        "PaddingDims", "Padding", "PaddingX", "PaddingY",
        "DilationDims", "Dilation", "DilationX", "DilationY",
        "SubSampleDims", "SubSample", "SubSampleX", "SubSampleY"}
    PREFIXES = WEIGHT_PREFIXES + MAPPING_PREFIXES
    HAS_ACTIVATION = True
    INTEGER_WEIGHTS = True  # op rescales QWeight.Mode=Integer outputs (apply_weight_op)

    def __init__(self, name: str, inputs: Sequence[str], in_shape: Shape, nb_outputs: int,
                 kernel: tuple[int, int], *, stride: tuple[int, int] = (1, 1),
                 padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
                 sub_sample: tuple[int, int] = (1, 1), groups: int = 1,
                 mask: torch.Tensor | None = None, bias: bool = True,
                 activation: nn.Module | None = None, back_propagate: bool = True,
                 weights_filler: Filler | None = None, bias_filler: Filler | None = None,
                 weights_export_format: str = "OCHW") -> None:
        """All pairs are (height, width) as in torch. ``mask``: bool [O, C] or the weight's
        shape; implies groups=1."""
        super().__init__(name, inputs, in_shape, activation)
        c, h, w = self.in_shape
        if c % groups or nb_outputs % groups:
            raise ValueError(f"{groups} groups do not divide {c} input channels and "
                             f"{nb_outputs} outputs")
        self.kernel, self.groups = tuple(kernel), groups
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.dilation, self.sub_sample = tuple(dilation), tuple(sub_sample)
        self.back_propagate = back_propagate
        self.weights_export_format = weights_export_format
        self.weight = nn.Parameter(torch.empty(nb_outputs, c // groups, *self.kernel))
        self.bias = nn.Parameter(torch.empty(nb_outputs)) if bias else None
        if mask is not None:
            if groups != 1:
                raise ValueError("a mask needs groups=1")
            mask = mask.to(torch.bool)
            if mask.dim() == 2:
                mask = mask[:, :, None, None].expand_as(self.weight).contiguous()
        self.register_buffer("mask", mask, persistent=False)
        oh, ow = (-(-conv_out_size(n, k, s, p, d) // ss) for n, k, s, p, d, ss in
                  zip((h, w), self.kernel, stride, self.padding, self.dilation, sub_sample,
                      strict=True))
        check_spatial(name, self.in_shape, (oh, ow))
        self.out_shape = (nb_outputs, oh, ow)
        self.reset_parameters(weights_filler or default_filler(),
                              bias_filler or default_filler())

    @property
    def fan_in(self) -> int:
        return self.weight.shape[1] * self.kernel[0] * self.kernel[1]

    @property
    def fan_out(self) -> int:
        return self.weight.shape[0] * self.kernel[0] * self.kernel[1]

    @torch.no_grad()
    def reset_parameters(self, weights_filler: Filler, bias_filler: Filler) -> None:
        weights_filler.fill(self.weight, self.fan_in, self.fan_out)
        if self.mask is not None:
            self.weight.mul_(self.mask)
        if self.bias is not None:
            bias_filler.fill(self.bias, self.fan_in, self.fan_out)

    def quantized_weight(self) -> torch.Tensor:
        """The weight in float units as the forward uses it (``QWeight.Mode=Integer``: the
        integer levels times the quantizer's output scale, i.e. fake quantization)."""
        w = self.weight
        if self.mask is not None:
            w = w * self.mask
        if self.weight_quantizer is not None:
            w = fake_quantized(self.weight_quantizer, w)
            if self.mask is not None:  # a quantizer may map 0 to a non-zero level
                w = w * self.mask
        return w

    def op(self, x: torch.Tensor) -> torch.Tensor:
        if not self.back_propagate:
            x = x.detach()
        w = self.weight if self.mask is None else self.weight * self.mask
        # the quantizer sees the masked weight, its output is masked again; in Integer mode
        # the bias-free output (sub-sampling included: a sum, so linear) is rescaled
        return apply_weight_op(self.weight_quantizer, self._conv, x, w, self.bias, self.mask)

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """x [B, C, H, W] -> [B, O, oH, oW] with weight ``w`` and bias ``b`` (or None)."""
        if self.sub_sample == (1, 1):
            return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        y = F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)
        # sum over s x s blocks: average pooling with divisor 1, partial last blocks kept
        y = F.avg_pool2d(y, self.sub_sample, self.sub_sample, ceil_mode=True,
                         divisor_override=1)
        return y if b is None else y + b[:, None, None]

    def nb_params(self) -> int:
        n = self.weight_params(int(self.mask.sum()) if self.mask is not None
                               else self.weight.numel())
        return n + (self.bias.numel() if self.bias is not None else 0)

    @classmethod
    def from_section(cls, section: Section, name: str, inputs: Sequence[str],
                     in_shape: Shape, input_shapes: Sequence[Shape] | None = None
                     ) -> ConvCell:
        cls.check_section_keys(section)
        kw, kh = read_dims(section, "Kernel", None)
        n_out = nb_outputs(section)
        sw, sh = read_dims(section, "Stride", 1)
        pw, ph = read_dims(section, "Padding", 0, minimum=0)
        dw, dh = read_dims(section, "Dilation", 1)
        uw, uh = read_dims(section, "SubSample", 1)
        channels = [s[0] for s in (input_shapes or [in_shape])]
        conn = read_connectivity(section, list(zip(inputs, channels, strict=True)), n_out)
        return cls(name, inputs, in_shape, n_out, (kh, kw), stride=(sh, sw),
                   padding=(ph, pw), dilation=(dh, dw), sub_sample=(uh, uw),
                   groups=conn.groups, mask=conn.mask,
                   bias=not read_bool(section, "NoBias", False),
                   activation=make_activation(section),
                   back_propagate=read_bool(section, "BackPropagate", True),
                   weights_filler=make_filler(section, "WeightsFiller"),
                   bias_filler=make_filler(section, "BiasFiller"),
                   weights_export_format=section.enum("WeightsExportFormat",
                                                      ("OCHW", "HWCO"), "OCHW"))
